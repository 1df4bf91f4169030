"""The client's end of a fetch: verify, decrypt and write chunks beside the event loop.

The event loop only reads the HTTPS stream; every chunk then goes, in order, through two
worker threads (:class:`ChunkSink`). The first hashes the ciphertext once, checks that hash
against the Merkle root the contract pinned, decrypts (OpenSSL releases the GIL, as
``hashlib`` does for large buffers, so this runs on the other core) and feeds the plaintext
digest; the second writes the part file (:mod:`~node.sdk.partfile`, which waits for the disk)
and records progress, so the disk write of one chunk overlaps the checks of the next. At most
:data:`CHUNKS_IN_FLIGHT` chunks are read and not yet written: the client's buffer bound. Once
a chunk fails, the first thread takes no further chunk, so nothing at or after a bad chunk
reaches the part file or the resume state.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdtp.node.data.crypto import ChunkDecryptError, decrypt_chunk, sha256, verify_proof
from mdtp.node.data.owner_only import write_owner_only
from mdtp.node.sdk.partfile import PartWriter

CHUNKS_IN_FLIGHT = 4
STATE_SAVE_EVERY_CHUNKS = 16


class ChunkRejected(Exception):
    """A chunk did not match the Merkle root or did not decrypt (``bad_chunk``)."""

    def __init__(self, message: str, chunk: int) -> None:
        super().__init__(message)
        self.chunk = chunk


@dataclass
class FetchState:
    contract_id: str
    merkle_root: str
    next_chunk: int = 0
    bytes_done: int = 0
    receipts: list[str] = field(default_factory=list)
    chunk_hashes: list[str] = field(default_factory=list)  # ciphertext hashes, in order


def save_state(path: Path, state: FetchState) -> None:
    write_owner_only(path, json.dumps(state.__dict__).encode())


class ChunkSink:
    """Takes the chunks of one transfer in order, on its own thread; see the module doc."""

    def __init__(
        self,
        *,
        key: bytes,
        dataset_id: str,
        root: bytes,
        count: int,
        out: PartWriter,
        plain: Any,
        state: FetchState,
        state_path: Path,
        on_written: Callable[[int], None],
    ) -> None:
        self._key, self._dataset_id, self._root, self._count = key, dataset_id, root, count
        self._out, self._plain, self._state, self._state_path = out, plain, state, state_path
        self._on_written = on_written
        self._checker = ThreadPoolExecutor(1, thread_name_prefix="fetch-check")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="fetch-write")
        self._pending: collections.deque[asyncio.Future[Future[int]]] = collections.deque()
        self._expect = state.next_chunk  # index of the next chunk handed in
        self._failed = False  # read and written on the checking thread only

    async def put(self, index: Any, data: Any, proof: Any) -> None:
        """Hand in the next chunk as the stream record had it; waits while
        :data:`CHUNKS_IN_FLIGHT` are not yet written. :class:`ChunkRejected` (now or from an
        earlier chunk) if a chunk was bad or out of order."""
        if (
            not isinstance(index, int)
            or index != self._expect
            or not isinstance(data, bytes)
            or not isinstance(proof, list)
            or not all(isinstance(step, bytes) for step in proof)
        ):
            await self.drain()
            raise ChunkRejected(
                f"chunk {self._expect} does not match the Merkle root", self._expect
            )
        self._expect += 1
        loop = asyncio.get_running_loop()
        self._pending.append(loop.run_in_executor(self._checker, self._check, index, data, proof))
        while len(self._pending) >= CHUNKS_IN_FLIGHT:
            await self._settle_oldest()

    async def drain(self) -> None:
        """Wait until every chunk handed in is written; the first rejection, if any."""
        first: ChunkRejected | None = None
        while self._pending:
            try:
                await self._settle_oldest()
            except ChunkRejected as e:
                first = first or e
        if first is not None:
            raise first

    async def _settle_oldest(self) -> None:
        write = await self._pending.popleft()
        self._on_written(await asyncio.wrap_future(write))

    def close(self) -> None:
        self._checker.shutdown(wait=True)
        self._writer.shutdown(wait=True)

    def _check(self, index: int, data: bytes, proof: list[Any]) -> Future[int]:
        """On the checking thread: verify and decrypt one chunk, then queue its write."""
        if self._failed:
            raise ChunkRejected(f"chunk {index} follows a rejected chunk", index)
        digest = sha256(data)
        try:
            if not verify_proof(self._root, self._count, index, digest, proof):
                raise ChunkRejected(f"chunk {index} does not match the Merkle root", index)
            try:
                pt = decrypt_chunk(self._key, self._dataset_id, index, data)
            except ChunkDecryptError as e:
                raise ChunkRejected(str(e), index) from None
        except ChunkRejected:
            self._failed = True
            raise
        if self._plain is not None:
            self._plain.update(pt)
        return self._writer.submit(self._write, digest, pt)

    def _write(self, digest: bytes, pt: bytes) -> int:
        """On the writing thread: write one verified chunk, record it; its plaintext length."""
        self._out.write(pt)
        state = self._state
        state.chunk_hashes.append(digest.hex())
        state.next_chunk += 1
        state.bytes_done += len(pt)
        if state.next_chunk % STATE_SAVE_EVERY_CHUNKS == 0:
            self._out.sync()
            save_state(self._state_path, state)
        return len(pt)
