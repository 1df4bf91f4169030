"""Backup and restore of a node's store: ``mdtp snapshot export|import``.

Export (node stopped: LevelDB lets one process open a store, and export takes the home's
lock, so export on a running node fails with ``node_running``) writes the store at its tip
``T``, anchored on its latest stable checkpoint ``h <= T`` (the checkpoint certificate from
the consensus state: 2f+1 member signatures over height, block hash and state root). The
store keeps the state at its tip only (no history of values), so the state is the tip's, and
blocks ``h..T`` with their commit certificates link it to the checkpoint. A state-only
snapshot (the default) holds: ledger state, blocks, commit certificates and records
``h..T``, records from ``h - pipeline_depth`` (the roots the next blocks commit to), and the
transaction index of heights ``>= h``. ``--full`` holds every block from height 1 (audit
proofs of old entries). The framing (header, checksum, bounded frames) is ``storage/snapshot.py``.

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
``--replay`` closes the gap for a full snapshot: it re-executes every block from genesis in a
scratch store and requires the record's state root at every height and the file's state,
entry for entry (``state_mismatch``), at the cost of a replay.

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
from pathlib import Path
from typing import Any

from mdtp.consensus.codec import pack
from mdtp.consensus.messages import CheckpointCertificate
from mdtp.consensus.state import PersistedState, decode_state, encode_head
from mdtp.node.chain.driver import DriverLimits
from mdtp.node.identity.config import load_config
from mdtp.node.identity.genesis import load_genesis
from mdtp.node.ops.snapshot_verify import (
    ChainFacts,
    SnapshotFailure,
    check_ranges,
    replay_chain,
    verify_anchor,
    verify_blocks,
)
from mdtp.storage.blockstore import (
    BLOCK,
    CERT,
    DATA_SPACES,
    RECORD,
    TXINDEX,
    BlockStore,
    height_key,
    key_height,
)
from mdtp.storage.errors import StorageError
from mdtp.storage.snapshot import SnapshotHeader, SnapshotReader, SnapshotWriter

__all__ = [
    "ChainFacts",
    "SnapshotFailure",
    "export_snapshot",
    "import_snapshot",
    "restore_snapshot",
    "write_snapshot",
]


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
    cp = None if raw is None else decode_state(*raw, chain.limits).stable_checkpoint
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
                start = height_key(space, lowest[space]) if space in lowest else None
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


def import_snapshot(home: Path, file: Path, *, replay: bool = False) -> dict[str, Any]:
    """Verify ``file`` and restore it as the store of the (stopped) node ``home``, which
    must have none (or one without blocks); a summary."""
    chain, data_dir = _home(home)
    with _home_lock(data_dir):
        doc = restore_snapshot(chain, file, data_dir / "ledger", replay=replay)
    return {**doc, "home": str(home)}


def restore_snapshot(
    chain: ChainFacts, file: Path, target: Path, *, replay: bool = False
) -> dict[str, Any]:
    """Verify ``file`` and restore it as the store at ``target``; nothing changes at
    ``target`` unless every check passed. ``replay`` (full snapshots only) re-executes every
    block from genesis and requires the file's state roots and state entries."""
    _require_empty(target)
    staging = target.with_name(target.name + ".importing")
    shutil.rmtree(staging, ignore_errors=True)  # a crashed import's (the caller locked)
    try:
        with open(file, "rb") as f:
            reader = SnapshotReader(f)
            header, cp = reader.header, verify_anchor(chain, reader)
            if replay and not header.full:
                raise SnapshotFailure(
                    "only a full snapshot (export --full) holds the blocks to re-execute",
                    reason="replay_needs_full",
                )
            store = BlockStore(staging)
            try:
                for batch in reader.batches():
                    check_ranges(batch, header, chain.config.pipeline_depth)
                    store.put_raw(batch)
                tip_root = verify_blocks(chain, store, header, cp)
                if replay:
                    replay_chain(chain, store, header, target.with_name(target.name + ".replay"))
                persisted = PersistedState(0, False, cp, (), (), None)
                store.restore_meta(
                    chain_id=header.chain_id,
                    genesis_hash=header.genesis_hash,
                    tip=(header.height, tip_root),
                    base=header.base,
                    consensus_state=encode_head(persisted),
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
        "replayed": replay,
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
