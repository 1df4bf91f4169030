"""The client's chunk sink: verifies and decrypts on its own thread, in order, with at most
CHUNKS_IN_FLIGHT chunks held, and writes nothing at or after a bad chunk."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.data.crypto import MerkleTree, encrypt_chunk, new_dataset_key, sha256
from mdtp.node.data.owner_only import open_owner_only
from mdtp.node.sdk.fetchsink import (
    CHUNKS_IN_FLIGHT,
    STATE_SAVE_EVERY_CHUNKS,
    ChunkRejected,
    ChunkSink,
    FetchState,
)
from mdtp.node.sdk.partfile import PartWriter

COUNT = STATE_SAVE_EVERY_CHUNKS + 4
PLAIN = [bytes([i]) * (1000 + i) for i in range(COUNT)]


class _SlowWriter(PartWriter):
    """A part file whose writes wait for the test, so chunks pile up before the sink."""

    gate = threading.Event()

    def write(self, data: bytes) -> None:
        self.gate.wait(10)
        super().write(data)


@pytest.fixture
def dataset() -> tuple[bytes, list[bytes], MerkleTree]:
    key = new_dataset_key()
    stored = [encrypt_chunk(key, "ds", i, p) for i, p in enumerate(PLAIN)]
    return key, stored, MerkleTree([sha256(s) for s in stored])


def _sink(
    tmp_path: Path, key: bytes, tree: MerkleTree, writer: type[PartWriter] = PartWriter
) -> tuple[ChunkSink, FetchState, Any, list[int]]:
    part = tmp_path / "out.part"
    fd = open_owner_only(part, truncate=True)
    out = writer(part, fd, 0)
    state = FetchState("c1", tree.root.hex())
    plain = hashlib.sha256()
    written: list[int] = []
    sink = ChunkSink(
        key=key,
        dataset_id="ds",
        root=tree.root,
        count=COUNT,
        out=out,
        plain=plain,
        state=state,
        state_path=tmp_path / "out.part.json",
        on_written=written.append,
    )
    return sink, state, plain, written


def _part(tmp_path: Path) -> bytes:
    return (tmp_path / "out.part").read_bytes()


async def test_every_chunk_is_verified_decrypted_and_written_in_order(
    tmp_path: Path, dataset: tuple[bytes, list[bytes], MerkleTree]
) -> None:
    key, stored, tree = dataset
    sink, state, plain, written = _sink(tmp_path, key, tree)
    try:
        for i, s in enumerate(stored):
            await sink.put(i, s, tree.proof(i))
        await sink.drain()
    finally:
        sink.close()
    assert _part(tmp_path) == b"".join(PLAIN)
    assert plain.digest() == hashlib.sha256(b"".join(PLAIN)).digest()
    assert written == [len(p) for p in PLAIN]
    assert state.next_chunk == COUNT and state.bytes_done == len(_part(tmp_path))
    assert state.chunk_hashes == [sha256(s).hex() for s in stored]
    saved = json.loads((tmp_path / "out.part.json").read_text())
    assert saved["next_chunk"] == STATE_SAVE_EVERY_CHUNKS  # saved at the last multiple


@pytest.mark.parametrize("how", ["tampered", "wrong_proof"])
async def test_a_bad_chunk_stops_the_sink_and_nothing_after_it_is_written(
    tmp_path: Path,
    dataset: tuple[bytes, list[bytes], MerkleTree],
    how: str,
) -> None:
    key, stored, tree = dataset
    bad = 3
    sink, state, _, _ = _sink(tmp_path, key, tree)
    try:
        with pytest.raises(ChunkRejected) as caught:
            for i, s in enumerate(stored[: bad + 3]):
                if i == bad and how == "tampered":
                    s = s[:-1] + bytes([s[-1] ^ 1])
                proof = tree.proof(i + 1 if i == bad and how == "wrong_proof" else i)
                await sink.put(i, s, proof)
            await sink.drain()
    finally:
        sink.close()
    assert caught.value.chunk == bad
    assert _part(tmp_path) == b"".join(PLAIN[:bad])
    assert state.next_chunk == bad and len(state.chunk_hashes) == bad


async def test_a_chunk_that_decrypts_to_nothing_under_the_key_is_rejected(
    tmp_path: Path, dataset: tuple[bytes, list[bytes], MerkleTree]
) -> None:
    _, stored, tree = dataset  # right hashes and proofs, wrong key
    sink, state, _, _ = _sink(tmp_path, new_dataset_key(), tree)
    try:
        with pytest.raises(ChunkRejected) as caught:
            await sink.put(0, stored[0], tree.proof(0))
            await sink.drain()
    finally:
        sink.close()
    assert caught.value.chunk == 0 and _part(tmp_path) == b"" and state.next_chunk == 0


@pytest.mark.parametrize(
    ("index", "data", "proof"),
    [(1, None, None), ("0", None, None), (0, "text", None), (0, None, "x"), (0, None, [1])],
)
async def test_an_out_of_order_or_malformed_record_is_rejected(
    tmp_path: Path,
    dataset: tuple[bytes, list[bytes], MerkleTree],
    index: Any,
    data: Any,
    proof: Any,
) -> None:
    key, stored, tree = dataset
    sink, state, _, _ = _sink(tmp_path, key, tree)
    try:
        with pytest.raises(ChunkRejected) as caught:
            await sink.put(
                index,
                stored[0] if data is None else data,
                tree.proof(0) if proof is None else proof,
            )
    finally:
        sink.close()
    assert caught.value.chunk == 0 and state.next_chunk == 0


async def test_no_more_than_chunks_in_flight_are_held(
    tmp_path: Path, dataset: tuple[bytes, list[bytes], MerkleTree]
) -> None:
    key, stored, tree = dataset
    gate = _SlowWriter.gate
    gate.clear()
    sink, _, _, written = _sink(tmp_path, key, tree, _SlowWriter)
    try:
        for i in range(CHUNKS_IN_FLIGHT - 1):
            await sink.put(i, stored[i], tree.proof(i))
        assert written == []  # all held, none written: the writes wait at the gate
        held = CHUNKS_IN_FLIGHT - 1
        threading.Timer(0.2, gate.set).start()
        await sink.put(held, stored[held], tree.proof(held))  # the bound: waits for a write
        assert len(written) >= 1
        await sink.drain()
    finally:
        gate.set()
        sink.close()
    assert _part(tmp_path) == b"".join(PLAIN[:CHUNKS_IN_FLIGHT])
