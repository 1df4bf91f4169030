"""The chunk store: atomic content-addressed writes, LevelDB index, corruption on read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mdtp.storage.chunkstore import ChunkCorrupt, ChunkMissing, ChunkStore, Manifest, chunk_hash
from mdtp.storage.errors import StorageError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChunkStore]:
    s = ChunkStore(tmp_path / "chunks")
    yield s
    s.close()


def test_stored_chunk_reads_back_and_is_named_by_its_hash(store: ChunkStore) -> None:
    digest = store.put_chunk("ds1", 0, b"hello")
    assert digest == chunk_hash(b"hello")
    assert store.path_of(digest).read_bytes() == b"hello"
    assert store.read_chunk("ds1", 0) == b"hello"


def test_chunk_flipped_on_disk_is_detected_on_read_and_never_returned(store: ChunkStore) -> None:
    digest = store.put_chunk("ds1", 0, b"x" * 1000)
    path = store.path_of(digest)
    data = bytearray(path.read_bytes())
    data[500] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChunkCorrupt):
        store.read_chunk("ds1", 0)


def test_truncated_chunk_is_corrupt_and_deleted_chunk_is_missing(store: ChunkStore) -> None:
    d0 = store.put_chunk("ds1", 0, b"a" * 100)
    d1 = store.put_chunk("ds1", 1, b"b" * 100)
    store.path_of(d0).write_bytes(b"a" * 50)
    store.path_of(d1).unlink()
    with pytest.raises(ChunkCorrupt):
        store.read_chunk("ds1", 0)
    with pytest.raises(ChunkMissing):
        store.read_chunk("ds1", 1)


def test_interrupted_write_leaves_no_chunk_and_its_temp_file_is_cleared(tmp_path: Path) -> None:
    s = ChunkStore(tmp_path / "c")
    (s.tmp / "deadbeef.123.0").write_bytes(b"half a chunk")
    s.close()
    s = ChunkStore(tmp_path / "c")
    assert list(s.tmp.iterdir()) == []
    assert list(s.objects.rglob("*")) == []
    s.close()


def test_index_survives_reopen_and_lists_chunk_hashes_in_order(tmp_path: Path) -> None:
    s = ChunkStore(tmp_path / "c")
    digests = [s.put_chunk("ds", i, bytes([i]) * 10) for i in range(5)]
    s.seal("ds", Manifest(5, b"r" * 32, 50))
    s.close()
    s = ChunkStore(tmp_path / "c")
    assert s.chunk_digests("ds") == digests
    assert s.manifest("ds") == Manifest(5, b"r" * 32, 50)
    assert s.datasets() == ["ds"]
    s.close()


def test_sealed_dataset_refuses_new_chunks(store: ChunkStore) -> None:
    store.put_chunk("ds", 0, b"a")
    store.seal("ds", Manifest(1, b"r" * 32, 1))
    with pytest.raises(StorageError) as e:
        store.put_chunk("ds", 0, b"b")
    assert e.value.reason == "dataset_sealed"
