"""The snapshot file's framing (``storage/snapshot.py``): a round trip in bounded frames, and
every kind of damage refused with its reason before the entries may be used."""

from __future__ import annotations

import io

import pytest

from mdtp.storage.snapshot import (
    BATCH_BYTES,
    MAGIC,
    SnapshotError,
    SnapshotHeader,
    SnapshotReader,
    SnapshotWriter,
)

HEADER = SnapshotHeader(
    chain_id="c1",
    genesis_hash=b"g" * 32,
    height=20,
    checkpoint_height=16,
    base=16,
    full=False,
    created_ms=1,
)
ENTRIES = [(b"b/" + i.to_bytes(8, "big"), b"block%d" % i) for i in range(16, 21)] + [
    (b"s/key%04d" % i, b"value%d" % i) for i in range(100)
]


def snapshot(
    entries: list[tuple[bytes, bytes]] = ENTRIES, header: SnapshotHeader = HEADER
) -> bytes:
    out = io.BytesIO()
    w = SnapshotWriter(out, header, b"certificate")
    for k, v in entries:
        w.add(k, v)
    w.finish()
    return out.getvalue()


def read_all(data: bytes) -> tuple[SnapshotReader, list[tuple[bytes, bytes]]]:
    r = SnapshotReader(io.BytesIO(data))
    got = [kv for batch in r.batches() for kv in batch]
    return r, got


def reason(data: bytes) -> str:
    with pytest.raises(SnapshotError) as e:
        read_all(data)
    return e.value.reason


def test_round_trip_keeps_header_certificate_and_entries() -> None:
    r, got = read_all(snapshot())
    assert r.header == HEADER and r.checkpoint == b"certificate"
    assert got == ENTRIES and r.entries == len(ENTRIES) and len(r.sha256) == 64


def test_entries_are_framed_in_bounded_batches() -> None:
    big = [(b"s/%06d" % i, b"x" * 100_000) for i in range(40)]  # ~4 MB
    r = SnapshotReader(io.BytesIO(snapshot(big)))
    sizes = [sum(len(v) for _, v in batch) for batch in r.batches()]
    assert len(sizes) >= 3 and max(sizes) <= BATCH_BYTES + 100_000


def test_every_truncation_is_refused() -> None:
    data = snapshot()
    for cut in (0, 4, len(MAGIC) + 2, len(data) // 2, len(data) - 1):
        assert reason(data[:cut]) in ("truncated", "not_a_snapshot"), cut


def test_a_changed_byte_in_an_entry_fails_the_checksum() -> None:
    data = bytearray(snapshot())
    at = bytes(data).index(b"value42")
    data[at + 5] ^= 0x01
    assert reason(bytes(data)) == "checksum_mismatch"


def test_a_changed_checksum_or_trailing_bytes_are_refused() -> None:
    data = snapshot()
    digest = read_all(data)[0].sha256.encode()
    assert reason(data.replace(digest, b"0" * 64)) == "checksum_mismatch"
    assert reason(data + b"\x00") == "trailing_bytes"


def test_not_a_snapshot_and_another_format_version_are_refused() -> None:
    assert reason(b"PK\x03\x04" + snapshot()[4:]) == "not_a_snapshot"
    import dataclasses

    assert reason(snapshot(header=dataclasses.replace(HEADER, format=99))) == "bad_version"


def test_unordered_or_meta_keys_are_refused() -> None:
    with pytest.raises(SnapshotError) as e:
        snapshot([(b"s/b", b"1"), (b"s/a", b"2")])
    assert e.value.reason == "key_order"
    assert reason(snapshot([(b"m/tip", b"x")])) == "bad_key"


def test_a_header_with_unordered_heights_is_refused() -> None:
    import dataclasses

    assert reason(snapshot(header=dataclasses.replace(HEADER, base=18))) == "bad_header"
