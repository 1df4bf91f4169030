"""Verification of a snapshot against the home's chain (``node/ops/snapshot.py`` imports
through it): the anchor (chain, genesis, checkpoint certificate), the ranges of per-height
entries, the certified blocks and their records, and the optional replay from genesis.
Every refusal is a :class:`SnapshotFailure` with a stable reason."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from mdtp.consensus.block import genesis_hash
from mdtp.consensus.certificates import verify_checkpoint_certificate, verify_commit_certificate
from mdtp.consensus.codec import unpack_canonical
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.errors import ConsensusError
from mdtp.consensus.messages import CheckpointCertificate, WireLimits
from mdtp.node.chain.driver import DriverLimits, consensus_config
from mdtp.node.chain.execution import decode_block, decode_certificate
from mdtp.node.errors import MdtpError
from mdtp.node.identity.genesis import Genesis, MemberSignatures
from mdtp.node.ledger.machine import BlockContext
from mdtp.node.ledger.setup import build_ledger
from mdtp.node.ledger.state import Overlay, next_state_root
from mdtp.storage.blockstore import (
    BLOCK,
    CERT,
    RECORD,
    STATE,
    TXINDEX,
    BlockStore,
    CommittedBlock,
    key_height,
)
from mdtp.storage.errors import StorageError
from mdtp.storage.snapshot import SnapshotHeader, SnapshotReader

_PER_HEIGHT = (BLOCK, CERT, RECORD)


class SnapshotFailure(MdtpError):
    """A snapshot that cannot be written or must not be imported; ``reason`` says why."""

    reason = "snapshot_refused"


@dataclass(frozen=True)
class ChainFacts:
    """What export and import check a store against: the home's genesis and its consensus
    parameters, as the node itself derives them."""

    genesis: Genesis
    genesis_root: bytes
    config: ConsensusConfig
    limits: WireLimits

    @classmethod
    def of(cls, genesis: Genesis, node_id: str, limits: DriverLimits) -> ChainFacts:
        root = build_ledger(genesis).genesis_root
        config = consensus_config(genesis, node_id, root, limits)
        return cls(genesis, root, config, WireLimits.from_config(config))


def _fail(reason: str, message: str) -> SnapshotFailure:
    return SnapshotFailure(message, reason=reason)


def verify_anchor(chain: ChainFacts, reader: SnapshotReader) -> CheckpointCertificate:
    header, genesis = reader.header, chain.genesis
    if header.chain_id != genesis.chain_id or header.genesis_hash != genesis.hash():
        raise _fail(
            "wrong_chain",
            f"the snapshot is of chain {header.chain_id!r} with genesis "
            f"{header.genesis_hash.hex()[:16]}, this home's is {genesis.chain_id!r} with "
            f"genesis {genesis.hash().hex()[:16]}",
        )
    if header.base != (1 if header.full else header.checkpoint_height):
        raise _fail("bad_header", f"base {header.base} does not fit the snapshot's kind")
    try:
        raw = unpack_canonical(reader.checkpoint, chain.limits.message_bytes_max)
        cp = CheckpointCertificate.from_wire(raw, chain.limits)
        if cp.height != header.checkpoint_height:
            raise _fail(
                "checkpoint_mismatch",
                f"the certificate is of height {cp.height}, the header says "
                f"{header.checkpoint_height}",
            )
        verify_checkpoint_certificate(chain.config, cp, MemberSignatures(genesis.members))
    except ConsensusError as e:
        raise _fail("bad_checkpoint_certificate", f"checkpoint certificate: {e}") from None
    return cp


def check_ranges(batch: list[tuple[bytes, bytes]], header: SnapshotHeader, depth: int) -> None:
    for key, value in batch:
        space = key[:2]
        if space in _PER_HEIGHT:
            low = max(1, header.base - depth) if space == RECORD else header.base
            height = key_height(key)
            if not low <= height <= header.height:
                raise _fail("bad_entry", f"entry {key[:2]!r} at height {height} out of range")
        elif space == TXINDEX:
            try:
                loc = BlockStore.decode_tx_location(value)
            except StorageError as e:
                raise _fail("bad_entry", str(e)) from None
            if not header.base <= loc.height <= header.height:
                raise _fail("bad_entry", f"tx index entry at height {loc.height} out of range")


def verify_blocks(
    chain: ChainFacts, store: BlockStore, header: SnapshotHeader, cp: CheckpointCertificate
) -> bytes:
    """Check the blocks ``base..T`` against their certificates, records and the
    checkpoint; the tip's state root."""
    config, depth = chain.config, chain.config.pipeline_depth
    verify = MemberSignatures(chain.genesis.members)

    def record_at(height: int) -> tuple[bytes, bytes, int]:
        try:
            rec = store.record(height)
        except StorageError as e:
            raise _fail("bad_record", str(e)) from None
        if rec is None:
            raise _fail("missing_entry", f"no block record at height {height}")
        return rec.hash, rec.state_root, rec.timestamp_ms

    if header.base == 1:
        prev = genesis_hash(config.chain_id, config.genesis_state_root)
    else:
        prev = record_at(header.base - 1)[0]
    for height in range(header.base, header.height + 1):
        raw_block, raw_cert = store.block_bytes(height), store.certificate_bytes(height)
        if raw_block is None or raw_cert is None:
            raise _fail("missing_entry", f"no block or commit certificate at height {height}")
        try:
            block = decode_block(raw_block, chain.limits)
            cert = decode_certificate(raw_cert, chain.limits)
            verify_commit_certificate(config, config.chain_id, block, cert, verify)
        except ConsensusError as e:
            raise _fail("bad_commit_certificate", f"block {height}: {e}") from None
        if block.height != height or block.header.prev_hash != prev:
            raise _fail("bad_chain", f"block {height} does not extend block {height - 1}")
        block_hash, root, timestamp_ms = record_at(height)
        if block_hash != block.hash() or timestamp_ms != block.header.timestamp_ms:
            raise _fail("bad_record", f"the record at height {height} is not its block's")
        committed = height - depth
        committed_root = config.genesis_state_root if committed <= 0 else record_at(committed)[1]
        if block.header.state_root != committed_root:
            raise _fail(
                "bad_record",
                f"block {height} commits to another state root at height {committed} than "
                "the snapshot's record",
            )
        if height == cp.height and (block_hash, root) != (cp.block_hash, cp.state_root):
            raise _fail(
                "checkpoint_mismatch",
                f"block {height} or its state root is not the one the checkpoint certifies",
            )
        prev = block_hash
    return record_at(header.height)[1]


def replay_chain(
    chain: ChainFacts, store: BlockStore, header: SnapshotHeader, scratch: Path
) -> None:
    """Re-execute blocks ``1..T`` (already verified) from genesis in a scratch store, as the
    node's executor does: every state root must be the snapshot's record, and the resulting
    state must be the snapshot's, entry for entry (both streamed in key order)."""
    ledger = build_ledger(chain.genesis)
    shutil.rmtree(scratch, ignore_errors=True)
    replayed = BlockStore(scratch, sync=False)
    try:
        replayed.bind_chain(chain.genesis.chain_id, chain.genesis.hash(), chain.genesis_root)
        replayed.apply_genesis_state(ledger.genesis_writes)
        root = chain.genesis_root
        for height in range(1, header.height + 1):
            raw, record = store.block_bytes(height), store.record(height)
            assert raw is not None and record is not None  # _verify_blocks saw them
            block = decode_block(raw, chain.limits)
            h = block.header
            overlay = Overlay(replayed.state)
            ctx = BlockContext(chain.genesis.chain_id, height, h.timestamp_ms, h.proposer)
            ledger.ledger.execute_block(ctx, overlay, block.payload)
            root = next_state_root(root, overlay.writes)
            if root != record.state_root:
                raise _fail(
                    "state_mismatch",
                    f"re-executing block {height} gives state root {root.hex()[:16]}, the "
                    f"snapshot's record says {record.state_root.hex()[:16]}",
                )
            replayed.commit_block(
                CommittedBlock(
                    height, b"", b"", record.hash, root, h.timestamp_ms, (), overlay.writes
                )
            )
        ours, theirs = replayed.raw_items(STATE), store.raw_items(STATE)
        for mine, file_entry in zip_longest(ours, theirs):
            if mine != file_entry:
                key = (mine or file_entry or (b"", b""))[0]
                raise _fail(
                    "state_mismatch",
                    f"state entry {key[2:][:48]!r} differs from the one re-executing the "
                    "chain gives",
                )
    finally:
        replayed.close()
        shutil.rmtree(scratch, ignore_errors=True)
