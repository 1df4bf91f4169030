"""A one-process chain for the trading rules: real keys, real signed transactions, blocks
executed by the real :class:`Ledger` over a :class:`MemoryKV`, one block per ``run``."""

from __future__ import annotations

import hashlib
from typing import Any

from mdtp.node.identity.genesis import Admin, Genesis, Member
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.machine import BlockContext, Ledger, TxResult, account_nonce
from mdtp.node.ledger.state import MemoryKV, Overlay
from mdtp.node.ledger.trading import genesis_writes, install
from mdtp.node.ledger.trading.contracts import load_contract, terms_hash
from mdtp.node.ledger.tx import decode_tx, sign_tx

CHAIN_ID = "mdtp-test"
T0 = 1_700_000_000_000
DAY_MS = 86_400_000
MEMBERS = ("m1", "m2")
# Failures of the common checks leave the sender's nonce untouched.
NONCE_KEPT = {"expired", "wrong_key", "revoked", "unknown_sender", "bad_nonce", "malformed"}


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


class Chain:
    def __init__(self) -> None:
        self.node_keys = {m: SigningKey.generate() for m in MEMBERS}
        self.admins = {m: SigningKey.generate(with_encryption=True) for m in MEMBERS}
        self.genesis = Genesis(
            chain_id=CHAIN_ID,
            genesis_time_ms=T0,
            members=tuple(
                Member(
                    id=m,
                    name=f"Member {m}",
                    node_public_key=self.node_keys[m].public_key.hex(),
                    tls_fingerprint=digest(m).hex(),
                    p2p=f"127.0.0.1:{7000 + i}",
                    api=f"127.0.0.1:{7100 + i}",
                )
                for i, m in enumerate(MEMBERS)
            ),
            admins=tuple(
                Admin(
                    member=m,
                    account_id=k.account_id,
                    public_key=k.public_key.hex(),
                    encryption_public_key=(k.encryption_public_key or b"").hex(),
                )
                for m, k in self.admins.items()
            ),
        )
        self.ledger = Ledger(CHAIN_ID)
        install(self.ledger, self.genesis)
        self.kv = MemoryKV(genesis_writes(self.genesis))
        self.height = 0
        self.time_ms = T0
        self.pending: dict[str, int] = {}
        self.write_log: list[dict[bytes, bytes | None]] = []
        self.blocks: list[tuple[int, tuple[bytes, ...]]] = []

    # ---- transactions and blocks -----------------------------------------------------

    def tx(
        self,
        signer: SigningKey,
        type_: str,
        body: dict[str, Any],
        *,
        sender: str | None = None,
        expires_at_ms: int | None = None,
    ) -> bytes:
        sender = sender or signer.account_id
        nonce = account_nonce(Overlay(self.kv), sender) + self.pending.get(sender, 0) + 1
        self.pending[sender] = self.pending.get(sender, 0) + 1
        return sign_tx(
            signer,
            chain_id=CHAIN_ID,
            type_=type_,
            sender=sender,
            nonce=nonce,
            expires_at_ms=expires_at_ms if expires_at_ms is not None else 2**62,
            body=body,
        )

    def run(self, *txs: bytes, at_ms: int | None = None) -> list[TxResult]:
        self.height += 1
        self.time_ms = at_ms if at_ms is not None else self.time_ms + 1000
        ctx = BlockContext(CHAIN_ID, self.height, self.time_ms, "m1")
        state = Overlay(self.kv, cache_reads=True)  # as the executor runs a block
        results = self.ledger.execute_block(ctx, state, txs)
        self.blocks.append((self.time_ms, txs))
        self.kv.apply(state.writes)
        self.write_log.append(dict(state.writes))
        self.pending.clear()
        return results

    def submit(
        self,
        signer: SigningKey,
        type_: str,
        body: dict[str, Any],
        *,
        sender: str | None = None,
        at_ms: int | None = None,
    ) -> TxResult:
        return self.run(self.tx(signer, type_, body, sender=sender), at_ms=at_ms)[0]

    def ok(self, signer: SigningKey, type_: str, body: dict[str, Any], **kw: Any) -> TxResult:
        result = self.submit(signer, type_, body, **kw)
        assert result.ok, (type_, result.reason, result.detail)
        return result

    def refused(
        self, reason: str, signer: SigningKey, type_: str, body: dict[str, Any], **kw: Any
    ) -> TxResult:
        before = dict(self.kv.data)
        result = self.submit(signer, type_, body, **kw)
        assert not result.ok, f"{type_} was accepted; expected {reason}"
        assert result.reason == reason, (result.reason, result.detail)
        changed = {
            k for k in set(before) | set(self.kv.data) if before.get(k) != self.kv.data.get(k)
        }
        # A refused transaction leaves nothing behind but its sender's consumed nonce.
        assert all(k.startswith(b"nonce/") for k in changed), changed
        return result

    @staticmethod
    def tx_id(raw: bytes) -> bytes:
        return decode_tx(raw, chain_id=CHAIN_ID).id

    # ---- accounts, datasets, terms ---------------------------------------------------

    def user(self, *roles: str, member: str = "m1", name: str = "user") -> SigningKey:
        key = SigningKey.generate(with_encryption=True)
        self.ok(self.admins[member], "account.register", register_body(key, list(roles), name))
        return key


def register_body(key: SigningKey, roles: list[str], name: str = "user") -> dict[str, Any]:
    return {
        "account_id": key.account_id,
        "public_key": key.public_key,
        "encryption_public_key": key.encryption_public_key or bytes(32),
        "roles": roles,
        "display_name": name,
    }


def quality(**overrides: Any) -> dict[str, Any]:
    return {
        "collection_start_ms": T0 - 30 * DAY_MS,
        "collection_end_ms": T0 - DAY_MS,
        "machine_type": "CNC milling centre",
        "sampling_rate_millihz": 1_000_000,
        "validation_method": "range checks against calibration",
        **overrides,
    }


def dataset_body(dataset_id: str = "ds1", **overrides: Any) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "title": "Spindle vibration, line 3",
        "description": "Three-axis accelerometer traces.\nOne file per shift.",
        "tags": ["vibration", "cnc"],
        "schema": "time_ms:int,x:int,y:int,z:int",
        "format": "csv",
        "size_bytes": 10_485_760,
        "chunk_count": 10,
        "merkle_root": digest(f"root {dataset_id}"),
        "plaintext_digest": digest(f"plain {dataset_id}"),
        "supplier_node": "m1",
        "quality": quality(),
        **overrides,
    }


def terms(**overrides: Any) -> dict[str, Any]:
    return {
        "delivery_method": "download",
        "purpose": "predictive maintenance model training",
        "use_start_ms": T0,
        "use_end_ms": T0 + 30 * DAY_MS,
        "max_downloads": 3,
        "redistribution_banned": True,
        "disposal_method": "crypto-erase",
        "disposal_deadline_ms": T0 + 37 * DAY_MS,
        "price_minor": 150_000,
        "currency": "EUR",
        "price_model": "one_time",
        "terms_document_hash": digest("terms document"),
        **overrides,
    }


class Market:
    """A chain with a supplier (m1) that published ``ds1``, a consumer and a reviewer (m2)."""

    def __init__(self) -> None:
        self.chain = chain = Chain()
        self.supplier = chain.user("supplier", name="Acme Machining")
        self.consumer = chain.user("consumer", member="m2", name="Beta Analytics")
        self.reviewer = chain.user("reviewer", member="m2", name="Compliance")
        self.node = chain.node_keys["m1"]
        chain.ok(self.supplier, "dataset.publish", dataset_body("ds1"))

    def offer_body(self, contract_id: str = "c1", **overrides: Any) -> dict[str, Any]:
        return {
            "contract_id": contract_id,
            "dataset_id": "ds1",
            "consumer": self.consumer.account_id,
            "terms": terms(**overrides),
        }

    def offer(
        self, contract_id: str = "c1", by: SigningKey | None = None, **overrides: Any
    ) -> None:
        self.chain.ok(
            by or self.supplier, "contract.offer", self.offer_body(contract_id, **overrides)
        )

    def sign_body(
        self, contract_id: str = "c1", version: int = 1, **overrides: Any
    ) -> dict[str, Any]:
        return {
            "contract_id": contract_id,
            "version": version,
            "terms_hash": terms_hash(terms(**overrides)),
        }

    def sign(
        self, who: SigningKey, contract_id: str = "c1", version: int = 1, **overrides: Any
    ) -> None:
        self.chain.ok(who, "contract.sign", self.sign_body(contract_id, version, **overrides))

    def activate(self, contract_id: str = "c1", **overrides: Any) -> None:
        """Offer and have both parties sign version 1 (no reviewer unless overridden)."""
        self.offer(contract_id, **overrides)
        self.sign(self.supplier, contract_id, **overrides)
        self.sign(self.consumer, contract_id, **overrides)

    def contract(self, contract_id: str = "c1") -> dict[str, Any]:
        record = load_contract(self.chain.kv, contract_id)
        assert record is not None
        return record
