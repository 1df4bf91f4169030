"""The fetch stream's chunk record is written as a head and the chunk's own bytes."""

from __future__ import annotations

import os

import msgpack
import pytest

from mdtp.node.api.data import chunk_record_head, record


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65_535, 65_536, 1024 * 1024])
def test_chunk_record_head_and_data_are_the_packed_record(size: int) -> None:
    data, proof = os.urandom(size), [os.urandom(32) for _ in range(5)]
    wire = chunk_record_head(7, proof, len(data)) + data
    assert wire == record({"t": "chunk", "i": 7, "proof": proof, "data": data})
    assert int.from_bytes(wire[:4], "big") == len(wire) - 4
    assert msgpack.unpackb(wire[4:], raw=False) == {
        "t": "chunk",
        "i": 7,
        "proof": proof,
        "data": data,
    }
