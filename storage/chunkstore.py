"""The off-chain chunk store: encrypted dataset chunks, content-addressed, with a LevelDB index.

Layout under the store's directory::

    objects/<h[:2]>/<h>    one file per chunk, named by the hex SHA-256 of its bytes
    tmp/                   chunks being written (temp file, fsync, rename into objects/)
    index/                 LevelDB:
        d/<dataset>/<index u32be>  chunk hash (32 bytes)
        m/<dataset>                sealed manifest: chunk_count, merkle_root, byte_count
        k/<dataset>                opaque meta blob (the node's encrypted dataset key)

A chunk file appears under its final name only complete and on disk (write to ``tmp/``,
fsync, rename, fsync the directory), so a crash leaves either the whole chunk or nothing.
The index entry is written after the file, so an index entry never names a missing file
unless the disk lost it. Every read re-hashes the bytes and compares them with the name:
a corrupted or truncated chunk is :class:`ChunkCorrupt`, never returned.

The store only knows bytes and hashes: it does not decrypt or check Merkle roots (the chunk
service does that with the ledger's metadata).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack
import plyvel

from mdtp.storage.crashpoints import crash_point
from mdtp.storage.errors import StorageError

_U32 = struct.Struct(">I")
CHUNK_HASH_LEN = 32
CHUNK_INDEX_MAX = 2**24
_INDEX, _MANIFEST, _META = b"d/", b"m/", b"k/"


class ChunkCorrupt(StorageError):
    """A stored chunk's bytes do not hash to its name (bit rot, truncation, tampering)."""

    reason = "chunk_corrupt"


class ChunkMissing(StorageError):
    reason = "chunk_missing"


@dataclass(frozen=True)
class Manifest:
    """What a sealed dataset holds: its chunk count, Merkle root and total ciphertext bytes."""

    chunk_count: int
    merkle_root: bytes
    byte_count: int


def chunk_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _dataset_prefix(dataset_id: str) -> bytes:
    if not dataset_id or "/" in dataset_id:
        raise StorageError(f"bad dataset id {dataset_id!r}", reason="bad_dataset_id")
    return _INDEX + dataset_id.encode() + b"/"


class ChunkStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.tmp = root / "tmp"
        for d in (root, self.objects, self.tmp):  # owner-only: chunks are customers' data
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Leftovers of writes interrupted by a crash: never renamed, so never indexed.
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        try:
            self.db = plyvel.DB(str(root / "index"), create_if_missing=True, bloom_filter_bits=10)
        except plyvel.Error as e:
            raise StorageError(f"{root / 'index'}: cannot open chunk index ({e})") from None

    def close(self) -> None:
        self.db.close()

    # -- chunks ----------------------------------------------------------------------------

    def path_of(self, digest: bytes) -> Path:
        h = digest.hex()
        return self.objects / h[:2] / h

    def put_chunk(self, dataset_id: str, index: int, data: bytes) -> bytes:
        """Store chunk ``index`` of ``dataset_id`` durably; returns its hash."""
        if not 0 <= index < CHUNK_INDEX_MAX:
            raise StorageError(f"chunk index {index} out of range", reason="bad_chunk_index")
        if self.manifest(dataset_id) is not None:
            raise StorageError(f"dataset {dataset_id} is sealed", reason="dataset_sealed")
        digest = chunk_hash(data)
        path = self.path_of(digest)
        if not path.exists():
            self._write_atomic(path, data)
        self.db.put(_dataset_prefix(dataset_id) + _U32.pack(index), digest, sync=True)
        crash_point("chunk indexed")
        return digest

    def _write_atomic(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = self.tmp / f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        crash_point("chunk written, before rename")
        os.replace(tmp, path)
        crash_point("chunk renamed, before directory sync")
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def chunk_digest(self, dataset_id: str, index: int) -> bytes | None:
        value: bytes | None = self.db.get(_dataset_prefix(dataset_id) + _U32.pack(index))
        return value

    def read_chunk(self, dataset_id: str, index: int) -> bytes:
        """The verified bytes of a chunk: :class:`ChunkCorrupt` if they do not match."""
        digest = self.chunk_digest(dataset_id, index)
        if digest is None:
            raise ChunkMissing(f"dataset {dataset_id} has no chunk {index}")
        try:
            data = self.path_of(digest).read_bytes()
        except FileNotFoundError:
            raise ChunkMissing(f"chunk {index} of {dataset_id}: file missing") from None
        if chunk_hash(data) != digest:
            raise ChunkCorrupt(f"chunk {index} of dataset {dataset_id} is corrupted on disk")
        return data

    def chunk_digests(self, dataset_id: str) -> list[bytes]:
        """Hashes of chunks 0, 1, ... in order; stops at the first gap."""
        out: list[bytes] = []
        prefix = _dataset_prefix(dataset_id)
        for key, value in self._scan(prefix):
            if _U32.unpack(key[len(prefix) :])[0] != len(out):
                break
            out.append(value)
        return out

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self.db.iterator(prefix=prefix) as it:
            yield from it

    # -- manifests and meta ----------------------------------------------------------------

    def seal(self, dataset_id: str, manifest: Manifest) -> None:
        """Mark a dataset complete; its chunks cannot change after this."""
        value = msgpack.packb(
            [manifest.chunk_count, manifest.merkle_root, manifest.byte_count], use_bin_type=True
        )
        self.db.put(_MANIFEST + dataset_id.encode(), value, sync=True)

    def manifest(self, dataset_id: str) -> Manifest | None:
        raw = self.db.get(_MANIFEST + dataset_id.encode())
        if raw is None:
            return None
        count, root, size = msgpack.unpackb(raw, raw=False)
        return Manifest(int(count), bytes(root), int(size))

    def datasets(self) -> list[str]:
        return [k[len(_MANIFEST) :].decode() for k, _ in self._scan(_MANIFEST)]

    def put_meta(self, dataset_id: str, value: bytes) -> None:
        self.db.put(_META + dataset_id.encode(), value, sync=True)

    def get_meta(self, dataset_id: str) -> bytes | None:
        value: bytes | None = self.db.get(_META + dataset_id.encode())
        return value
