"""The snapshot file: a node's store at one height, streamed in bounded memory.

Layout (all integers big-endian)::

    MAGIC                        b"MDTPSNAP" (8 bytes)
    frame*                       u32 length, then that many bytes of one msgpack value
      ["header", {...}]          first: format, chain id, genesis hash, heights, kind
      ["checkpoint", bytes]      second: the checkpoint certificate (consensus wire bytes)
      ["kv", [[key, value]...]]  raw store entries of the data key spaces, keys strictly
                                 increasing across the whole file, about 1 MiB a frame
      ["end", {"entries", "sha256"}]  last: entry count and SHA-256 of every byte before
                                 this frame (magic included); nothing may follow it

Keys are the store's own (``b/``, ``c/``, ``h/``, ``t/``, ``s/``; never ``m/``), so a
snapshot restores into a :class:`~mdtp.storage.blockstore.BlockStore` as is. This module
knows the framing only: what the entries and the certificate mean, and whether they are
certified, is checked above the storage layer (``node/ops/snapshot.py``). A reader never
holds more than one frame (``FRAME_BYTES_MAX``), and reports a short, damaged or re-ordered
file with a reason code before the caller may use anything it wrote from it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

import msgpack

from mdtp.storage.blockstore import DATA_SPACES
from mdtp.storage.errors import StorageError

MAGIC = b"MDTPSNAP"
FORMAT_VERSION = 1
_LEN = struct.Struct(">I")
# a frame holds ~1 MiB of entries plus at most one entry, and an entry is at most a block
FRAME_BYTES_MAX = 96 * 1024 * 1024
BATCH_BYTES = 1024 * 1024


class SnapshotError(StorageError):
    """A snapshot file that cannot be used; ``reason`` says why."""

    reason = "bad_snapshot"


@dataclass(frozen=True)
class SnapshotHeader:
    chain_id: str
    genesis_hash: bytes
    height: int  # the store's tip: state, blocks and records up to here
    checkpoint_height: int  # the stable checkpoint the snapshot is anchored on (<= height)
    base: int  # the lowest block held: 1 for a full snapshot, else checkpoint_height
    full: bool
    created_ms: int
    format: int = FORMAT_VERSION

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, value: Any) -> SnapshotHeader:
        if not isinstance(value, dict):
            raise SnapshotError("the header is not a map", reason="bad_header")
        if value.get("format") != FORMAT_VERSION:
            raise SnapshotError(
                f"snapshot format {value.get('format')!r}; this mdtp reads {FORMAT_VERSION}",
                reason="bad_version",
            )
        try:
            header = cls(**value)
        except TypeError as e:
            raise SnapshotError(f"header fields: {e}", reason="bad_header") from None
        ints = (header.height, header.checkpoint_height, header.base, header.created_ms)
        if (
            not isinstance(header.chain_id, str)
            or not isinstance(header.genesis_hash, bytes)
            or not isinstance(header.full, bool)
            or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ints)
        ):
            raise SnapshotError("header field of the wrong type", reason="bad_header")
        if not 1 <= header.base <= header.checkpoint_height <= header.height:
            raise SnapshotError(
                f"heights base {header.base}, checkpoint {header.checkpoint_height}, "
                f"tip {header.height} are not ordered",
                reason="bad_header",
            )
        return header


class SnapshotWriter:
    """Writes one snapshot to ``out``: the header and certificate at once, entries in
    batches of about :data:`BATCH_BYTES` as :meth:`add` gets them, the trailer on
    :meth:`finish`."""

    def __init__(self, out: BinaryIO, header: SnapshotHeader, checkpoint: bytes) -> None:
        self._out = out
        self._sha = hashlib.sha256()
        self._batch: list[list[bytes]] = []
        self._batch_bytes = 0
        self._last_key = b""
        self.entries = 0
        self._write_raw(MAGIC)
        self._frame(["header", header.to_wire()])
        self._frame(["checkpoint", checkpoint])

    def _write_raw(self, data: bytes) -> None:
        self._out.write(data)
        self._sha.update(data)

    def _frame(self, value: Any) -> None:
        body: bytes = msgpack.packb(value, use_bin_type=True)
        self._write_raw(_LEN.pack(len(body)) + body)

    def add(self, key: bytes, value: bytes) -> None:
        if key <= self._last_key:
            raise SnapshotError(f"key {key[:16]!r} out of order", reason="key_order")
        self._last_key = key
        self._batch.append([key, value])
        self._batch_bytes += len(key) + len(value)
        self.entries += 1
        if self._batch_bytes >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._frame(["kv", self._batch])
            self._batch, self._batch_bytes = [], 0

    def finish(self) -> str:
        """Write the trailer; returns the SHA-256 (hex) it carries."""
        self._flush()
        digest = self._sha.hexdigest()
        body: bytes = msgpack.packb(
            ["end", {"entries": self.entries, "sha256": digest}], use_bin_type=True
        )
        self._out.write(_LEN.pack(len(body)) + body)
        return digest


class SnapshotReader:
    """Reads a snapshot from ``f``: :attr:`header` and :attr:`checkpoint` on construction,
    then :meth:`batches` yields the entries; it raises :class:`SnapshotError` on the first
    damage, and only returns once the trailer's count and checksum matched and nothing
    follows it. A caller must not use the entries before :meth:`batches` has returned."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._sha = hashlib.sha256()
        magic = self._read_exact(len(MAGIC), "the magic")
        if magic != MAGIC:
            raise SnapshotError("not an mdtp snapshot file", reason="not_a_snapshot")
        self._sha.update(magic)
        kind, body = self._next()
        if kind != "header":
            raise SnapshotError("the first frame is not the header", reason="bad_header")
        self.header = SnapshotHeader.from_wire(body)
        kind, body = self._next()
        if kind != "checkpoint" or not isinstance(body, bytes):
            raise SnapshotError("the checkpoint certificate frame is missing", reason="bad_frame")
        self.checkpoint: bytes = body
        self.entries = 0
        self.sha256 = ""

    def _read_exact(self, n: int, what: str) -> bytes:
        data = self._f.read(n)
        if len(data) != n:
            raise SnapshotError(f"the file ends inside {what} (truncated?)", reason="truncated")
        return data

    def _next(self) -> tuple[str, Any]:
        raw_len = self._read_exact(_LEN.size, "a frame length")
        (n,) = _LEN.unpack(raw_len)
        if n > FRAME_BYTES_MAX:
            raise SnapshotError(f"a frame of {n} bytes", reason="frame_too_large")
        body = self._read_exact(n, "a frame")
        try:
            value = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception as e:
            raise SnapshotError(
                f"a frame does not decode ({type(e).__name__})", reason="bad_frame"
            ) from None
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
            raise SnapshotError("a frame is not [kind, body]", reason="bad_frame")
        self._sha.update(raw_len)
        self._sha.update(body)
        return value[0], value[1]

    def batches(self) -> Iterator[list[tuple[bytes, bytes]]]:
        last = b""
        while True:  # the trailer is not part of the checksum it carries
            digest_before = self._sha.copy()
            kind, body = self._next()
            if kind == "end":
                self._check_end(body, digest_before.hexdigest())
                return
            if kind != "kv" or not isinstance(body, list):
                raise SnapshotError(f"unexpected frame {kind!r}", reason="bad_frame")
            batch: list[tuple[bytes, bytes]] = []
            for item in body:
                if not (
                    isinstance(item, list)
                    and len(item) == 2
                    and isinstance(item[0], bytes)
                    and isinstance(item[1], bytes)
                ):
                    raise SnapshotError("an entry is not [key, value]", reason="bad_frame")
                key, value = item[0], item[1]
                if key <= last:
                    raise SnapshotError(f"key {key[:16]!r} out of order", reason="key_order")
                if key[:2] not in DATA_SPACES:
                    raise SnapshotError(
                        f"key {key[:16]!r} outside the data key spaces", reason="bad_key"
                    )
                last = key
                batch.append((key, value))
            self.entries += len(batch)
            yield batch

    def _check_end(self, body: Any, digest: str) -> None:
        if not isinstance(body, dict):
            raise SnapshotError("the trailer is not a map", reason="bad_frame")
        if body.get("entries") != self.entries:
            raise SnapshotError(
                f"the trailer counts {body.get('entries')!r} entries, the file holds "
                f"{self.entries}",
                reason="checksum_mismatch",
            )
        if body.get("sha256") != digest:
            raise SnapshotError(
                f"SHA-256 of the file is {digest}, its trailer says {body.get('sha256')!r}",
                reason="checksum_mismatch",
            )
        if self._f.read(1):
            raise SnapshotError("bytes follow the trailer", reason="trailing_bytes")
        self.sha256 = digest
