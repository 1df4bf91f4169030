"""The offline verifier of exported audit entries: a real block, a real commit certificate
signed by genesis node keys, and every way an entry can be tampered with."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from mdtp.consensus.block import Block
from mdtp.consensus.codec import pack
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.messages import TAG_COMMIT, CommitCertificate, signing_bytes
from mdtp.node.cli import main
from mdtp.node.identity.genesis import Genesis, Member, load_genesis
from mdtp.node.identity.home import write_genesis
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.tx import sign_tx
from mdtp.node.sdk.audit_verify import VerifyError, parse_entry, verify_entry

CHAIN_ID = "mdtp-audit-test"
MEMBERS = ("m0", "m1", "m2", "m3")
HEIGHT = 7
TIME_MS = 1_700_000_123_456


class Chain:
    """One committed block with three transactions and the certificate that commits it."""

    def __init__(self, signers: tuple[str, ...] = ("m0", "m1", "m3")) -> None:
        self.node_keys = {m: SigningKey.generate() for m in MEMBERS}
        self.genesis = Genesis(
            chain_id=CHAIN_ID,
            genesis_time_ms=TIME_MS - 60_000,
            members=tuple(
                Member(
                    id=m,
                    name=f"Member {m}",
                    node_public_key=self.node_keys[m].public_key.hex(),
                    tls_fingerprint=hashlib.sha256(m.encode()).hexdigest(),
                    p2p=f"127.0.0.1:{7000 + i}",
                    api=f"127.0.0.1:{7100 + i}",
                )
                for i, m in enumerate(MEMBERS)
            ),
        )
        self.user = SigningKey.generate(with_encryption=True)
        self.txs = tuple(
            sign_tx(
                self.user,
                chain_id=CHAIN_ID,
                type_=type_,
                sender=self.user.account_id,
                nonce=n,
                expires_at_ms=2**62,
                body={"contract_id": "c1"},
            )
            for n, type_ in enumerate(("contract.offer", "contract.sign", "contract.delete"), 1)
        )
        config = ConsensusConfig(chain_id=CHAIN_ID, members=MEMBERS, my_id="m0")
        self.block = Block.build(config, HEIGHT, b"\x01" * 32, b"\x02" * 32, TIME_MS, self.txs)
        fields = [0, HEIGHT, self.block.hash()]
        sigs = tuple(
            (s, self.node_keys[s].sign(signing_bytes(TAG_COMMIT, CHAIN_ID, s, fields)))
            for s in sorted(signers)
        )
        self.cert = CommitCertificate(0, HEIGHT, self.block.hash(), sigs)

    def entry(self, index: int = 1, **overrides: Any) -> dict[str, Any]:
        raw = self.txs[index]
        return {
            "kind": "contract",
            "subject": "c1",
            "seq": 2,
            "height": HEIGHT,
            "tx_id": hashlib.sha256(raw).hexdigest(),
            "time_ms": TIME_MS,
            "type": ("contract.offer", "contract.sign", "contract.delete")[index],
            "actor": self.user.account_id,
            "summary": "signed contract c1 v1; now SIGNING",
            "index": index,
            "block_hash": self.block.hash().hex(),
            "certificate": {
                "view": 0,
                "signatures": [[s, g.hex()] for s, g in self.cert.signatures],
            },
            "block_bytes": pack(self.block.to_wire()).hex(),
            "certificate_bytes": pack(self.cert.to_wire()).hex(),
            "as_of_height": HEIGHT + 3,
            **overrides,
        }


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain()


def flip(hex_text: str, byte: int) -> str:
    data = bytearray(bytes.fromhex(hex_text))
    data[byte % len(data)] ^= 0x01
    return data.hex()


def refused(chain: Chain, entry: dict[str, Any], genesis: Genesis | None = None) -> str:
    with pytest.raises(VerifyError) as e:
        verify_entry(entry, genesis or chain.genesis)
    return e.value.reason


def test_an_untouched_entry_verifies_and_names_the_quorum_that_committed_it(chain: Chain) -> None:
    proven = verify_entry(chain.entry(), chain.genesis)
    assert proven.height == HEIGHT and proven.index == 1
    assert proven.type == "contract.sign" and proven.sender == chain.user.account_id
    assert proven.signers == ("m0", "m1", "m3") and proven.quorum == 3
    assert proven.block_hash == chain.block.hash().hex()
    assert any("3 of quorum 3" in line for line in proven.lines())


@pytest.mark.parametrize("byte", [0, 5, 40, 77, 120, 200, 333, -1])
def test_flipping_any_byte_of_the_block_fails_verification(chain: Chain, byte: int) -> None:
    entry = chain.entry()
    entry["block_bytes"] = flip(entry["block_bytes"], byte)
    assert refused(chain, entry) in {
        "bad_block",
        "block_hash_mismatch",
        "bad_certificate",
        "height_mismatch",
        "time_mismatch",
        "wrong_chain",
        "tx_mismatch",
    }


@pytest.mark.parametrize("byte", [0, 3, 20, 50, 100, 150, -1])
def test_flipping_any_byte_of_the_certificate_fails_verification(chain: Chain, byte: int) -> None:
    entry = chain.entry()
    entry["certificate_bytes"] = flip(entry["certificate_bytes"], byte)
    assert refused(chain, entry) == "bad_certificate"


def test_an_entry_pointing_at_another_index_of_the_same_block_fails(chain: Chain) -> None:
    assert refused(chain, chain.entry() | {"index": 2}) == "tx_mismatch"
    assert refused(chain, chain.entry() | {"index": 3}) == "bad_index"


def test_an_entry_claiming_another_transaction_id_fails(chain: Chain) -> None:
    entry = chain.entry()
    assert refused(chain, entry | {"tx_id": flip(entry["tx_id"], 0)}) == "tx_mismatch"


def test_an_entry_whose_type_or_actor_differs_from_the_signed_transaction_fails(
    chain: Chain,
) -> None:
    assert refused(chain, chain.entry() | {"type": "contract.review"}) == "tx_mismatch"
    other = SigningKey.generate().account_id
    assert refused(chain, chain.entry() | {"actor": other}) == "tx_mismatch"


def test_an_entry_with_another_height_time_or_block_hash_fails(chain: Chain) -> None:
    assert refused(chain, chain.entry() | {"height": HEIGHT + 1}) == "height_mismatch"
    assert refused(chain, chain.entry() | {"time_ms": TIME_MS + 1}) == "time_mismatch"
    entry = chain.entry()
    assert refused(chain, entry | {"block_hash": flip(entry["block_hash"], 3)}) == (
        "block_hash_mismatch"
    )


def test_a_certificate_below_quorum_does_not_prove_a_commit() -> None:
    weak = Chain(signers=("m0", "m2"))
    assert refused(weak, weak.entry()) == "bad_certificate"


def test_a_certificate_checked_against_another_consortium_fails(chain: Chain) -> None:
    stranger = Chain()
    other_keys = Genesis(CHAIN_ID, stranger.genesis.genesis_time_ms, stranger.genesis.members)
    assert refused(chain, chain.entry(), other_keys) == "bad_certificate"
    other_chain = Genesis("mdtp-other", chain.genesis.genesis_time_ms, chain.genesis.members)
    assert refused(chain, chain.entry(), other_chain) == "wrong_chain"


def test_a_line_without_the_proof_fields_is_refused_with_what_to_do(chain: Chain) -> None:
    entry = chain.entry()
    del entry["block_bytes"]
    with pytest.raises(VerifyError) as e:
        parse_entry(json.dumps(entry))
    assert e.value.reason == "bad_entry" and "mdtp audit export" in e.value.message
    with pytest.raises(VerifyError):
        parse_entry("not json")


def test_verify_receipt_command_exits_0_for_genuine_and_1_for_tampered_entries(
    chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    genesis_file = tmp_path / "genesis.json"
    write_genesis(chain.genesis, genesis_file)
    assert load_genesis(genesis_file).chain_id == CHAIN_ID
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(chain.entry(0)) + "\n" + json.dumps(chain.entry(2)) + "\n")
    assert main(["verify-receipt", str(good), "--genesis", str(genesis_file)]) == 0
    out = capsys.readouterr().out
    assert out.count("verified") == 2 and "NOT VERIFIED" not in out
    tampered = tmp_path / "tampered.jsonl"
    bad = chain.entry(1)
    bad["certificate_bytes"] = flip(bad["certificate_bytes"], 60)
    tampered.write_text(json.dumps(chain.entry(0)) + "\n" + json.dumps(bad) + "\n")
    assert main(["verify-receipt", str(tampered), "--genesis", str(genesis_file)]) == 1
    out = capsys.readouterr().out
    assert "line 1: verified" in out and "line 2: NOT VERIFIED: bad_certificate" in out
    assert (
        main(["verify-receipt", str(tampered), "--genesis", str(genesis_file), "--line", "1"]) == 0
    )
