"""Offline verification of an exported audit entry, given only the genesis file.

An entry (one JSON line of ``GET /v1/audit/{kind}/{id}/export`` or ``mdtp audit export``)
carries the block bytes and commit certificate bytes of its height. :func:`verify_entry`
proves, without talking to any node:

1. the block decodes, is for the genesis chain, is at the entry's height, has the entry's
   block hash and block time, and its payload matches its header;
2. the commit certificate decodes, names this block (height and hash) and carries a quorum
   of valid COMMIT signatures by distinct members of the block's epoch (genesis, or a
   membership history proven from genesis: ``--history``)
   (:func:`consensus.certificates.verify_commit_certificate`), so the block is final;
3. the transaction at the entry's index in that block has the entry's tx id, and its
   type and sender are the entry's.

What it does not prove: that the transaction *succeeded* — that follows from executing
the chain (audit entries are only written for successful transactions), which needs the
state, not one block. Every failure is a :class:`VerifyError` with a stable reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mdtp.consensus.block import Block
from mdtp.consensus.certificates import verify_commit_certificate
from mdtp.consensus.codec import unpack_canonical
from mdtp.consensus.config import quorum_size
from mdtp.consensus.errors import ConsensusError
from mdtp.consensus.messages import DEFAULT_LIMITS, CommitCertificate
from mdtp.node.identity.genesis import Genesis
from mdtp.node.ledger.governance.membership import Epoch, genesis_epoch
from mdtp.node.ledger.governance.proofs import certifiers
from mdtp.node.ledger.tx import TxError, decode_tx

ENTRY_BYTES_MAX = 64 * 1024 * 1024
_REQUIRED = ("height", "tx_id", "time_ms", "type", "actor", "index", "block_hash")


class VerifyError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Proven:
    """What :func:`verify_entry` established."""

    chain_id: str
    height: int
    block_hash: str
    time_ms: int
    view: int
    signers: tuple[str, ...]
    quorum: int
    tx_id: str
    index: int
    type: str
    sender: str
    summary: str

    def lines(self) -> list[str]:
        return [
            f"block {self.height} of chain {self.chain_id} has hash {self.block_hash[:16]}... "
            f"and time {self.time_ms}",
            f"committed: {len(self.signers)} of quorum {self.quorum} member signatures in view "
            f"{self.view} ({', '.join(self.signers)}) verify against the genesis node keys",
            f"transaction {self.tx_id[:16]}... is at index {self.index} of that block: "
            f"{self.type} by {self.sender}",
        ]


def _hex(entry: dict[str, Any], name: str) -> bytes:
    value = entry.get(name)
    if not isinstance(value, str):
        raise VerifyError("bad_entry", f"{name} is missing or not a string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise VerifyError("bad_entry", f"{name} is not hex") from None


def _int(entry: dict[str, Any], name: str) -> int:
    value = entry.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VerifyError("bad_entry", f"{name} must be a non-negative integer")
    return value


def parse_entry(line: str | bytes) -> dict[str, Any]:
    if len(line) > ENTRY_BYTES_MAX:
        raise VerifyError("bad_entry", f"entry is larger than {ENTRY_BYTES_MAX} bytes")
    try:
        entry = json.loads(line)
    except ValueError as e:
        raise VerifyError("bad_entry", f"not JSON ({e})") from None
    if not isinstance(entry, dict):
        raise VerifyError("bad_entry", "an entry is a JSON object")
    missing = [k for k in (*_REQUIRED, "block_bytes", "certificate_bytes") if k not in entry]
    if missing:
        raise VerifyError(
            "bad_entry",
            f"missing {', '.join(missing)}; export entries with `mdtp audit export` "
            "(they carry the block and its certificate)",
        )
    return entry


def verify_entry(
    entry: dict[str, Any], genesis: Genesis, epochs: Sequence[Epoch] | None = None
) -> Proven:
    """Check ``entry`` against its own block and commit certificate and the members of its
    height's epoch: those of genesis, or of ``epochs``, a history proven from genesis
    (:func:`mdtp.node.ledger.governance.proofs.verify_history`)."""
    height, index, time_ms = _int(entry, "height"), _int(entry, "index"), _int(entry, "time_ms")
    tx_id, block_hash = _hex(entry, "tx_id"), _hex(entry, "block_hash")
    raw_block, raw_cert = _hex(entry, "block_bytes"), _hex(entry, "certificate_bytes")
    limits = DEFAULT_LIMITS
    try:
        block = Block.from_wire(
            unpack_canonical(raw_block, limits.message_bytes_max),
            limits.block_txs_max,
            limits.tx_bytes_max,
        )
    except ConsensusError as e:
        raise VerifyError("bad_block", f"block bytes do not decode: {e}") from None
    try:
        cert = CommitCertificate.from_wire(
            unpack_canonical(raw_cert, limits.message_bytes_max), limits
        )
    except ConsensusError as e:
        raise VerifyError("bad_certificate", f"certificate bytes do not decode: {e}") from None
    header = block.header
    if header.chain_id != genesis.chain_id:
        raise VerifyError("wrong_chain", f"block is for chain {header.chain_id!r}")
    if block.height != height:
        raise VerifyError("height_mismatch", f"block is at height {block.height}, entry {height}")
    if block.hash() != block_hash:
        raise VerifyError(
            "block_hash_mismatch", f"the block hashes to {block.hash().hex()}, not the entry's"
        )
    if header.timestamp_ms != time_ms:
        raise VerifyError("time_mismatch", f"block time is {header.timestamp_ms}, entry {time_ms}")
    who = certifiers(genesis, epochs or [genesis_epoch(genesis)], height)
    try:
        verify_commit_certificate(who.members, who.chain_id, block, cert, who.verify, who.domain)
    except ConsensusError as e:
        raise VerifyError(
            "bad_certificate", f"the commit certificate does not prove the block: {e}"
        ) from None
    if index >= len(block.payload):
        raise VerifyError("bad_index", f"the block has {len(block.payload)} transactions")
    raw_tx = block.payload[index]
    if hashlib.sha256(raw_tx).digest() != tx_id:
        raise VerifyError("tx_mismatch", f"transaction {index} of the block is not {tx_id.hex()}")
    try:
        tx = decode_tx(raw_tx, chain_id=genesis.chain_id, max_bytes=len(raw_tx))
    except TxError as e:
        raise VerifyError("bad_tx", f"the transaction does not decode: {e}") from None
    if tx.type != entry["type"] or tx.sender != entry["actor"]:
        raise VerifyError(
            "tx_mismatch",
            f"the transaction is {tx.type} by {tx.sender}, the entry says "
            f"{entry['type']} by {entry['actor']}",
        )
    return Proven(
        chain_id=genesis.chain_id,
        height=height,
        block_hash=block_hash.hex(),
        time_ms=time_ms,
        view=cert.view,
        signers=tuple(s for s, _ in cert.signatures),
        quorum=quorum_size(len(who.members)),
        tx_id=tx_id.hex(),
        index=index,
        type=tx.type,
        sender=tx.sender,
        summary=str(entry.get("summary", "")),
    )
