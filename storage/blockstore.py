"""The node's LevelDB store: blocks, commit certificates, tx index, ledger state, consensus.

One LevelDB per node, key spaces separated by a one-byte prefix and a slash::

    b/<height u64be>   block bytes (encoded by the consensus codec)
    c/<height u64be>   commit certificate bytes
    h/<height u64be>   block record: hash, state root after executing it, time, tx count
    t/<tx id>          tx index: height, index, ok, reason
    s/<key>            ledger state (the keys of node/ledger)
    m/chain            chain id and genesis hash this store belongs to
    m/tip              height and state root of the last executed block
    m/consensus        the consensus core's persisted state: its head record
    p/<height u64be>   the consensus core's persisted state: the record of one height of
                       its window (written and deleted with the head, in one synced batch)
    m/base             lowest block height held, when the store was restored from a
                       state-only snapshot (absent: every block from height 1)

Committing a block writes its block, certificate, record, tx index entries, state writes
and the new tip in **one** write batch with ``sync=True``: after a kill -9 the store holds
either all of block h or none of it. Heights base..tip are contiguous (base is 1 unless a
state-only snapshot restored the store, ``storage/snapshot.py``); :meth:`check` verifies that
and the tip's neighbourhood on open, and names the key space and height of anything missing,
so a damaged store stops the node instead of being guessed around.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import plyvel

from mdtp.storage.errors import InconsistentStore, StorageError, WrongChain

_U64 = struct.Struct(">Q")
BLOCK, CERT, RECORD, TXINDEX, STATE, META = b"b/", b"c/", b"h/", b"t/", b"s/", b"m/"
CONSENSUS_SLOTS = b"p/"
DATA_SPACES = (BLOCK, CERT, RECORD, TXINDEX, STATE)
_KEY_SPACE_NAMES = {BLOCK: "blocks", CERT: "commit certificates", RECORD: "block records"}


# LevelDB's tuning. Every transaction a node admits or executes is looked up in the
# transaction index, almost always absent; without a Bloom filter such a look-up reads an
# index block of every table whose key range covers it, so its cost grows with the chain
# (measured 38 us at 100,000 indexed transactions, 79-270 us at 400,000-1,000,000; with
# 10 bits per key: 4-18 us). The block cache holds the state's hot keys (nonces, accounts).
# Compaction is the other cost that grows with the chain: with LevelDB's defaults (4 MiB
# write buffer, 2 MiB tables, snappy) a node's CPU per transaction rose 141 -> 219 us over
# 1,000,000 transactions at ~3,000 tx/s and throughput fell to 0.66 of the first minute; with
# a 64 MiB write buffer (fewer, larger level-0 tables), 16 MiB tables and no compression
# (blocks are signatures and hashes, which do not compress, and the compression was paid on
# every rewrite) 101 -> 108 us and 0.94 (README "Growth"). The price: up to two write
# buffers in memory (the node's RSS peaked at 286 MB) and a ~2.4 times larger store.
LEVELDB_OPTIONS: dict[str, int | None] = {
    "bloom_filter_bits": 10,
    "lru_cache_size": 32 * 1024 * 1024,
    "write_buffer_size": 64 * 1024 * 1024,
    "max_file_size": 16 * 1024 * 1024,
    "compression": None,
}


def _h(height: int) -> bytes:
    return _U64.pack(height)


def height_key(space: bytes, height: int) -> bytes:
    """The key of ``height`` in a per-height key space (``BLOCK``, ``CERT``, ``RECORD``)."""
    return space + _U64.pack(height)


def key_height(key: bytes) -> int:
    """The height of a per-height key (the inverse of :func:`height_key`)."""
    if len(key) != 2 + _U64.size:
        raise InconsistentStore(f"key {key!r} is not a per-height key")
    return int(_U64.unpack(key[2:])[0])


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False)
    except Exception as e:
        raise InconsistentStore(f"{what} is not decodable ({type(e).__name__})") from None


@dataclass(frozen=True)
class BlockRecord:
    height: int
    hash: bytes
    state_root: bytes
    timestamp_ms: int
    tx_count: int


@dataclass(frozen=True)
class TxLocation:
    height: int
    index: int
    ok: bool
    reason: str


@dataclass(frozen=True)
class CommittedBlock:
    """Everything one block commit writes (the driver fills it, the store persists it)."""

    height: int
    block_bytes: bytes
    certificate_bytes: bytes
    block_hash: bytes
    state_root: bytes
    timestamp_ms: int
    tx_results: tuple[tuple[bytes, int, bool, str], ...]  # (tx id, index, ok, reason)
    state_writes: dict[bytes, bytes | None]


class StateReader:
    """Read access to committed ledger state (``node.ledger.state.ReadableKV``)."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(STATE + key, verify_checksums=True)
        return value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        n = len(STATE)
        for k, v in self._db.iterator(prefix=STATE + prefix, verify_checksums=True):
            yield k[n:], v


class BlockStore:
    def __init__(self, path: Path, *, sync: bool = True) -> None:
        """``sync=False`` only where a crash means the process, never the machine: the
        simulator, whose crashes keep what the OS already holds."""
        # owner-only; its files follow the process umask (the daemon's is 077)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._sync = sync
        try:
            self._db = plyvel.DB(
                str(path), create_if_missing=True, paranoid_checks=True, **LEVELDB_OPTIONS
            )
        except plyvel.IOError as e:
            raise StorageError(
                f"{path}: cannot open the store: {e}", reason="store_locked"
            ) from None
        except plyvel.CorruptionError as e:
            raise InconsistentStore(
                f"{path}: LevelDB reports corruption{_corrupt_file(path)}: {_msg(e)}"
            ) from None
        self.path = path
        try:
            # before any read: LevelDB checks table checksums only when asked, and a
            # damaged table would otherwise be read back as data or fail some later read
            self._verify_checksums()
        except InconsistentStore:
            self._db.close()
            raise
        self.state = StateReader(self._db)

    def close(self) -> None:
        self._db.close()

    # -- identity ---------------------------------------------------------------------------

    def bind_chain(self, chain_id: str, genesis_hash: bytes, genesis_root: bytes) -> None:
        """On first open record which chain this store is; later, refuse any other chain."""
        raw = self._db.get(META + b"chain")
        if raw is None:
            if self._db.get(META + b"tip", verify_checksums=True) is not None:
                raise InconsistentStore(f"{self.path}: key space 'meta' has a tip but no chain")
            with self._db.write_batch(sync=self._sync) as wb:
                wb.put(META + b"chain", _pack([chain_id, genesis_hash]))
                wb.put(META + b"tip", _pack([0, genesis_root]))
            return
        stored_chain, stored_hash = _unpack(raw, "meta 'chain'")
        if stored_chain != chain_id or stored_hash != genesis_hash:
            raise WrongChain(
                f"{self.path}: this store belongs to chain {stored_chain!r} with another "
                f"genesis; refusing to start on chain {chain_id!r}"
            )

    def apply_genesis_state(self, writes: dict[bytes, bytes]) -> None:
        """Initial ledger state, written once, before any block."""
        if self.tip()[0] != 0 or next(self._db.iterator(prefix=STATE), None) is not None:
            return
        with self._db.write_batch(sync=self._sync) as wb:
            for k, v in writes.items():
                wb.put(STATE + k, v)

    # -- blocks -----------------------------------------------------------------------------

    def tip(self) -> tuple[int, bytes]:
        raw = self._db.get(META + b"tip", verify_checksums=True)
        if raw is None:
            raise InconsistentStore(f"{self.path}: key space 'meta' has no tip")
        height, root = _unpack(raw, "meta 'tip'")
        return int(height), bytes(root)

    def base(self) -> int:
        """The lowest block height this store holds blocks from (1 unless restored from a
        state-only snapshot; blocks below it are not here, ask a peer or a full backup)."""
        raw = self._db.get(META + b"base", verify_checksums=True)
        return 1 if raw is None else int(_unpack(raw, "meta 'base'"))

    def commit_block(self, blk: CommittedBlock) -> None:
        tip, _ = self.tip()
        assert blk.height == tip + 1, f"commit of height {blk.height} on tip {tip}"
        h = _h(blk.height)
        with self._db.write_batch(sync=self._sync) as wb:
            wb.put(BLOCK + h, blk.block_bytes)
            wb.put(CERT + h, blk.certificate_bytes)
            wb.put(
                RECORD + h,
                _pack([blk.block_hash, blk.state_root, blk.timestamp_ms, len(blk.tx_results)]),
            )
            for tx_id, index, ok, reason in blk.tx_results:
                wb.put(TXINDEX + tx_id, _pack([blk.height, index, ok, reason]))
            for k, v in blk.state_writes.items():
                if v is None:
                    wb.delete(STATE + k)
                else:
                    wb.put(STATE + k, v)
            wb.put(META + b"tip", _pack([blk.height, blk.state_root]))

    def block_bytes(self, height: int) -> bytes | None:
        value: bytes | None = self._db.get(BLOCK + _h(height), verify_checksums=True)
        return value

    def certificate_bytes(self, height: int) -> bytes | None:
        value: bytes | None = self._db.get(CERT + _h(height), verify_checksums=True)
        return value

    def record(self, height: int) -> BlockRecord | None:
        raw = self._db.get(RECORD + _h(height), verify_checksums=True)
        if raw is None:
            return None
        block_hash, root, ts, n = _unpack(raw, f"block record {height}")
        return BlockRecord(height, block_hash, root, ts, n)

    @staticmethod
    def decode_tx_location(raw: bytes) -> TxLocation:
        height, index, ok, reason = _unpack(raw, "tx index entry")
        return TxLocation(height, index, ok, reason)

    def tx_location(self, tx_id: bytes) -> TxLocation | None:
        raw = self._db.get(TXINDEX + tx_id, verify_checksums=True)
        return None if raw is None else self.decode_tx_location(raw)

    def blocks(self, start: int, end: int) -> Iterable[tuple[int, bytes, bytes]]:
        """(height, block bytes, certificate bytes) for start..end inclusive, as stored."""
        for height in range(start, end + 1):
            block, cert = self.block_bytes(height), self.certificate_bytes(height)
            if block is None or cert is None:
                return
            yield height, block, cert

    # -- consensus state --------------------------------------------------------------------

    def save_consensus_state(self, head: bytes | None, slots: Mapping[int, bytes | None]) -> None:
        """Write the consensus core's changed records in one synced batch: the head unless
        None, each height's record, or its deletion where it is None."""
        with self._db.write_batch(sync=self._sync) as wb:
            if head is not None:
                wb.put(META + b"consensus", head)
            for height, record in slots.items():
                key = CONSENSUS_SLOTS + _U64.pack(height)
                if record is None:
                    wb.delete(key)
                else:
                    wb.put(key, record)

    def load_consensus_state(self) -> tuple[bytes, dict[int, bytes]] | None:
        """The consensus core's head record and its records by height; None before the
        first write."""
        head: bytes | None = self._db.get(META + b"consensus", verify_checksums=True)
        if head is None:
            return None
        slots = {
            _U64.unpack(k[len(CONSENSUS_SLOTS) :])[0]: v
            for k, v in self._db.iterator(prefix=CONSENSUS_SLOTS, verify_checksums=True)
        }
        return head, slots

    # -- raw entries (snapshots) -------------------------------------------------------------

    def is_empty(self) -> bool:
        """True if the store holds no key at all (a brand-new store)."""
        return next(self._db.iterator(include_value=False), None) is None

    def raw_items(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) under ``prefix`` (a key space, e.g. ``STATE``), in key order,
        from one LevelDB snapshot taken at the call, so a reader sees one consistent store."""
        snap = self._db.snapshot()
        try:
            it = snap.iterator(prefix=prefix, verify_checksums=True, fill_cache=False)
            if start is not None:
                it.seek(start)
            yield from it
        finally:
            snap.close()

    def put_raw(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Write raw entries of the data key spaces in one batch (restoring a snapshot into a
        new store; the meta key space is written by :meth:`restore_meta` only)."""
        with self._db.write_batch(sync=False) as wb:
            for k, v in items:
                if k[:2] not in DATA_SPACES:
                    raise StorageError(f"key {k[:16]!r} is outside the data key spaces")
                wb.put(k, v)

    def restore_meta(
        self,
        *,
        chain_id: str,
        genesis_hash: bytes,
        tip: tuple[int, bytes],
        base: int,
        consensus_state: bytes,
    ) -> None:
        """The meta key space of a restored store, written last and synced."""
        with self._db.write_batch(sync=True) as wb:
            wb.put(META + b"chain", _pack([chain_id, genesis_hash]))
            wb.put(META + b"tip", _pack([tip[0], tip[1]]))
            wb.put(META + b"base", _pack(base))
            wb.put(META + b"consensus", consensus_state)

    # -- consistency ------------------------------------------------------------------------

    def check(self, deep: bool = False) -> int:
        """Verify the store against its tip; returns the tip height.

        Always: every key space holds the tip's height and nothing above it (every table's
        checksums were verified when the store was opened). With ``deep``: every height
        1..tip is present in every key space (O(chain) reads).
        """
        tip, _ = self.tip()
        base = self.base()
        heights = range(base, tip + 1) if deep else range(max(base, tip - 1), tip + 1)
        for height in heights:
            for space, name in _KEY_SPACE_NAMES.items():
                if self._db.get(space + _h(height)) is None:
                    raise InconsistentStore(
                        f"{self.path}: key space '{name}' has no entry at height {height} "
                        f"but the tip is {tip}"
                    )
        for space, name in _KEY_SPACE_NAMES.items():
            last = next(self._db.iterator(prefix=space, reverse=True, include_value=False), None)
            if last is not None and _U64.unpack(last[len(space) :])[0] > tip:
                raise InconsistentStore(
                    f"{self.path}: key space '{name}' has height "
                    f"{_U64.unpack(last[len(space) :])[0]} above the tip {tip}"
                )
        return tip

    def _verify_checksums(self) -> None:
        """One sequential read of every table block with its checksum verified."""
        last: bytes | None = None
        try:
            for key in self._db.iterator(
                include_value=False, verify_checksums=True, fill_cache=False
            ):
                last = key
        except (plyvel.CorruptionError, plyvel.IOError) as e:
            after = "the first key" if last is None else f"key {last!r}"
            raise InconsistentStore(
                f"{self.path}: LevelDB table {self._tables_after(last)} is damaged "
                f"(reading after {after}): {_msg(e)}"
            ) from None

    def _tables_after(self, last: bytes | None) -> str:
        """The table file(s) whose key range holds the keys right after ``last``."""
        raw = self._db.get_property(b"leveldb.sstables") or b""
        names = []
        for m in _SSTABLE_LINE.finditer(raw.decode("latin-1")):
            number, largest = int(m.group(1)), _unescape(m.group(3))
            if last is None or largest > last:
                names.append(f"{number:06d}.ldb")
        return " or ".join(names[:3]) or "(unknown)"


# ' 5:83664['b/00000000' @ 1 : 1 .. 'b/00001999' @ 2000 : 1]' (leveldb.sstables property)
_SSTABLE_LINE = re.compile(r"(\d+):\d+\['(.*?)' @ \d+ : \d+ \.\. '(.*?)' @ \d+ : \d+\]")


def _unescape(text: str) -> bytes:
    """Undo LevelDB's EscapeString (non-printable bytes written as ``\\xNN``)."""
    raw = text.encode("latin-1")
    return re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)


def _msg(e: Exception) -> str:
    arg = e.args[0] if e.args else e
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


def _corrupt_file(path: Path) -> str:
    """Which file LevelDB was reading when opening failed, from its own LOG (rewritten on
    every open) or, failing that, the descriptor CURRENT names."""
    try:
        text = (path / "LOG").read_text(errors="replace")
    except OSError:
        text = ""
    for line in reversed(text.splitlines()):
        m = re.search(r"(\d{6}\.(?:log|ldb|sst)|MANIFEST-\d+)", line)
        if m and "Corruption" in line:
            return f" in {m.group(1)}"
    try:
        current = (path / "CURRENT").read_text(errors="replace").strip()
    except OSError:
        return " (CURRENT is unreadable)"
    return f" in {current} (the descriptor CURRENT names) or CURRENT" if current else " in CURRENT"
