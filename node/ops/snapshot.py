"""Backup and restore of a node's store: ``mdtp snapshot export|import``.

Export (node stopped: LevelDB lets one process open a store, so export on a running node
fails with ``store_locked``) writes the store at its tip ``T``, anchored on its latest stable
checkpoint ``h <= T`` (the checkpoint certificate from the consensus state: 2f+1 member
signatures over height, block hash and state root). The store holds the state at its tip
only (no history of values), hence the state is the tip's and blocks ``h..T`` with their
commit certificates link it to the checkpoint. A state-only snapshot (the default) holds:
ledger state, blocks, commit certificates and records ``h..T``, records from
``h - pipeline_depth`` (the roots the next blocks commit to), and the transaction index of
heights ``>= h``. ``--full`` holds every block from height 1 (audit proofs of old entries).
The framing (header, checksum, bounded frames) is ``storage/snapshot.py``.

Import verifies, before the restored store is put in place, that:

- the file is whole: magic, frames, key order, entry count, SHA-256 (``storage/snapshot.py``);
- its chain id and genesis hash are the home's genesis (``wrong_chain``);
- the checkpoint certificate holds 2f+1 valid signatures of distinct genesis members
  (``bad_checkpoint_certificate``);
- every block ``base..T`` has a commit certificate that verifies, links to its predecessor
  (block ``base`` to the genesis hash or to the record below it), and its record holds its
  hash and time; each block header's committed state root (that of ``height - depth``) is the
  record's (``bad_commit_certificate``, ``bad_chain``, ``bad_record``);
- the block at ``h`` hashes to the certified hash and its record's state root is the
  certified state root (``checkpoint_mismatch``);
- per-height entries and the transaction index lie inside the snapshot's heights.

What cannot be verified from the file: that the state entries are the ones the certified
root stands for. The state root is a hash chain over each block's write set
(``node/ledger/state.py``), not a hash of the state's contents, so it cannot be recomputed
from key/values; only re-executing every block from genesis could. The state is therefore
protected by the file's SHA-256 (damage, truncation, an edited byte), and a node started on a
state that differs from the chain's computes different roots after its first blocks that
touch the difference, which the certified headers expose (the node halts as diverged).

Everything is written into ``DATA_DIR/ledger.importing`` and renamed to ``DATA_DIR/ledger``
only after every check passed; on any failure the directory is removed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdtp.consensus.block import genesis_hash
from mdtp.consensus.certificates import verify_checkpoint_certificate, verify_commit_certificate
from mdtp.consensus.codec import pack, unpack_canonical
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.errors import ConsensusError
from mdtp.consensus.messages import CheckpointCertificate, WireLimits
from mdtp.consensus.state import PersistedState, decode_state, encode_state
from mdtp.node.chain.driver import DriverLimits, consensus_config
from mdtp.node.chain.execution import decode_block, decode_certificate
from mdtp.node.errors import MdtpError
from mdtp.node.identity.config import load_config
from mdtp.node.identity.genesis import Genesis, MemberSignatures, load_genesis
from mdtp.node.ledger.setup import build_ledger
from mdtp.storage.blockstore import (
    BLOCK,
    CERT,
    DATA_SPACES,
    RECORD,
    TXINDEX,
    BlockStore,
    key_height,
)
from mdtp.storage.errors import StorageError
from mdtp.storage.snapshot import SnapshotHeader, SnapshotReader, SnapshotWriter

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


def _home(home: Path) -> tuple[ChainFacts, Path]:
    """The chain facts of a node home and its data directory."""
    cfg = load_config(home)
    genesis = load_genesis(cfg.path("node", "genesis"))
    limits = DriverLimits(
        block_txs_max=cfg.get("consensus", "block_txs_max"),
        block_bytes_max=cfg.get("consensus", "block_bytes_max"),
    )
    return ChainFacts.of(genesis, cfg.node_id, limits), cfg.path("node", "data_dir")


@contextmanager
def _home_lock(data_dir: Path) -> Iterator[None]:
    """The lock ``mdtp start`` holds on ``DATA_DIR/node.lock``: no node runs meanwhile."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(data_dir / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SnapshotFailure(
                f"{data_dir}: a node is running on this home; stop it first",
                reason="node_running",
            ) from None
        yield
    finally:
        os.close(fd)


# -- export ---------------------------------------------------------------------------------


def export_snapshot(home: Path, out: Path, *, full: bool = False) -> dict[str, Any]:
    """Write the store of the (stopped) node ``home`` to ``out``; a summary."""
    chain, data_dir = _home(home)
    path = data_dir / "ledger"
    if not (path / "CURRENT").exists():
        raise SnapshotFailure(f"{path}: no store to export", reason="no_store")
    with _home_lock(data_dir):
        store = BlockStore(path)
        try:
            store.bind_chain(chain.genesis.chain_id, chain.genesis.hash(), chain.genesis_root)
            store.check()
            return write_snapshot(chain, store, out, full=full)
        finally:
            store.close()


def _stable_checkpoint(chain: ChainFacts, store: BlockStore) -> CheckpointCertificate:
    raw = store.load_consensus_state()
    cp = None if raw is None else decode_state(raw, chain.limits).stable_checkpoint
    if cp is None or cp.height == 0:
        raise SnapshotFailure(
            f"{store.path}: no stable checkpoint yet (one forms every "
            f"{chain.config.checkpoint_interval} blocks); run the chain further",
            reason="no_stable_checkpoint",
        )
    record = store.record(cp.height)
    if record is None or (record.hash, record.state_root) != (cp.block_hash, cp.state_root):
        raise SnapshotFailure(
            f"{store.path}: the stable checkpoint at height {cp.height} is not this store's "
            "block there",
            reason="checkpoint_mismatch",
        )
    return cp


def write_snapshot(
    chain: ChainFacts, store: BlockStore, out: Path, *, full: bool = False
) -> dict[str, Any]:
    """Write ``store`` (open, of this chain) to ``out``, read from LevelDB snapshots."""
    cp = _stable_checkpoint(chain, store)
    tip, _ = store.tip()
    if full and store.base() > 1:
        raise SnapshotFailure(
            f"{store.path}: restored from a state-only snapshot, it holds blocks from "
            f"{store.base()} only; a full snapshot needs every block",
            reason="blocks_missing",
        )
    base = 1 if full else cp.height
    header = SnapshotHeader(
        chain_id=chain.genesis.chain_id,
        genesis_hash=chain.genesis.hash(),
        height=tip,
        checkpoint_height=cp.height,
        base=base,
        full=full,
        created_ms=int(time.time() * 1000),
    )
    lowest = {BLOCK: base, CERT: base, RECORD: max(1, base - chain.config.pipeline_depth)}
    partial = out.with_name(out.name + ".partial")
    try:
        with open(partial, "wb") as f:
            writer = SnapshotWriter(f, header, pack(cp.to_wire()))
            for space in sorted(DATA_SPACES):
                start = space + lowest[space].to_bytes(8, "big") if space in lowest else None
                for key, value in store.raw_items(space, start):
                    if space in lowest and key_height(key) > tip:
                        break
                    if space == TXINDEX and store.decode_tx_location(value).height < base:
                        continue
                    writer.add(key, value)
            digest = writer.finish()
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return {
        "status": "exported",
        "out": str(out),
        "chain_id": header.chain_id,
        "height": tip,
        "checkpoint_height": cp.height,
        "base": base,
        "full": full,
        "entries": writer.entries,
        "bytes": out.stat().st_size,
        "sha256": digest,
    }


# -- import ---------------------------------------------------------------------------------


def import_snapshot(home: Path, file: Path) -> dict[str, Any]:
    """Verify ``file`` and restore it as the store of the (stopped) node ``home``, which
    must have none (or one without blocks); a summary."""
    chain, data_dir = _home(home)
    with _home_lock(data_dir):
        doc = restore_snapshot(chain, file, data_dir / "ledger")
    return {**doc, "home": str(home)}


def restore_snapshot(chain: ChainFacts, file: Path, target: Path) -> dict[str, Any]:
    """Verify ``file`` and restore it as the store at ``target``; nothing changes at
    ``target`` unless every check passed."""
    _require_empty(target)
    staging = target.with_name(target.name + ".importing")
    shutil.rmtree(staging, ignore_errors=True)  # a crashed import's (the caller locked)
    try:
        with open(file, "rb") as f:
            reader = SnapshotReader(f)
            header, cp = reader.header, _verify_anchor(chain, reader)
            store = BlockStore(staging)
            try:
                for batch in reader.batches():
                    _check_ranges(batch, header, chain.config.pipeline_depth)
                    store.put_raw(batch)
                tip_root = _verify_blocks(chain, store, header, cp)
                persisted = PersistedState(0, False, cp, (), (), None)
                store.restore_meta(
                    chain_id=header.chain_id,
                    genesis_hash=header.genesis_hash,
                    tip=(header.height, tip_root),
                    base=header.base,
                    consensus_state=encode_state(persisted),
                )
                store.check(deep=True)
            finally:
                store.close()
        if target.exists():
            shutil.rmtree(target)  # a store with no block (only genesis state)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {
        "status": "imported",
        "store": str(target),
        "chain_id": header.chain_id,
        "height": header.height,
        "checkpoint_height": header.checkpoint_height,
        "base": header.base,
        "full": header.full,
        "entries": reader.entries,
        "sha256": reader.sha256,
    }


def _require_empty(target: Path) -> None:
    if not target.exists():
        return
    try:
        store = BlockStore(target)
    except StorageError as e:
        raise SnapshotFailure(f"{target}: {e}", reason="store_not_empty") from None
    try:
        empty = store.is_empty() or store.tip()[0] == 0
    except StorageError:
        empty = False
    finally:
        store.close()
    if not empty:
        raise SnapshotFailure(
            f"{target}: the node home already has a store with blocks; import restores only "
            "into an empty one (move the store away first)",
            reason="store_not_empty",
        )


def _fail(reason: str, message: str) -> SnapshotFailure:
    return SnapshotFailure(message, reason=reason)


def _verify_anchor(chain: ChainFacts, reader: SnapshotReader) -> CheckpointCertificate:
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


def _check_ranges(batch: list[tuple[bytes, bytes]], header: SnapshotHeader, depth: int) -> None:
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


def _verify_blocks(
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
