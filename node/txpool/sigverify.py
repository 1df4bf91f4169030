"""Batched transaction decoding and signature checks, off the event loop.

Callers ``await verifier.check(raw)``; requests are queued (bounded) and a single worker task
takes up to ``batch_max`` at a time and verifies them in a thread pool, split across the
pool's threads (libsodium releases the GIL, so two threads use two cores). One executor hop
per batch keeps the per-transaction overhead small and the event loop responsive. A batch of
at most ``INLINE_MAX`` is checked on the event loop itself: one check (~45 us) costs less
than the hop to a thread and back (the queue's wake-up, the GIL handed over twice, the loop's
self-pipe), which on a busy 2-core machine was a tenth of a node's event-loop time at one
transaction per block; a load large enough to need both cores comes in larger batches.

State transfer's certified blocks (:meth:`BatchVerifier.check_certified`) are checked in worker
processes when the verifier has them (``workers``, :mod:`.sigworkers`): tens of thousands of
transactions a second, where the threads' GIL hand-overs cost a third again of the checks.
Client and gossip batches stay on the threads: there the event loop is the busier side, and
decoding on it what a worker checked would load it more than the hand-overs cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor

from prometheus_client import CollectorRegistry, Counter

from mdtp.node.ledger.tx import Tx, TxError, decode_tx, signature_error
from mdtp.node.supervisor import Supervisor, cancel_and_wait
from mdtp.node.txpool.sigworkers import SignatureWorkers

INLINE_MAX = 2


class VerifierBusy(TxError):
    reason = "verifier_busy"


def _check_many(raws: Sequence[bytes], chain_id: str, max_bytes: int) -> list[Tx | TxError]:
    out: list[Tx | TxError] = []
    for raw in raws:
        try:
            out.append(decode_tx(raw, chain_id=chain_id, max_bytes=max_bytes))
        except TxError as e:
            out.append(e)
        except Exception as e:  # a decoder bug must refuse one input, never stop the verifier
            out.append(TxError(f"transaction cannot be decoded ({type(e).__name__})"))
    return out


def _check_certified(
    raws: Sequence[bytes], chain_id: str, verify: bool = True
) -> list[Tx | TxError]:
    out: list[Tx | TxError] = []
    for raw in raws:
        try:
            # bounded by the block's limits, which the response's decoder checked already
            out.append(decode_tx(raw, chain_id=chain_id, max_bytes=len(raw), verify=verify))
        except TxError as e:
            out.append(e)
        except Exception as e:  # a decoder bug must refuse one input, never stop the node
            out.append(TxError(f"transaction cannot be decoded ({type(e).__name__})"))
    return out


class BatchVerifier:
    def __init__(
        self,
        chain_id: str,
        max_tx_bytes: int,
        *,
        threads: int = 2,
        batch_max: int = 512,
        queue_max: int = 20_000,
        executor: Executor | None = None,
        workers: int = 0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """``workers``: processes for state transfer's checks (0: its threads check them)."""
        self.chain_id = chain_id
        self.max_tx_bytes = max_tx_bytes
        self.batch_max = batch_max
        self.threads = threads
        self.queue_max = queue_max
        self._client_batches = 0  # transactions of client batches being checked now
        # where signature checks run: threads by default (the simulator runs them inline)
        self._pool = executor or ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="sigverify"
        )
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[Tx]]] = asyncio.Queue(queue_max)
        self._task: asyncio.Task[None] | None = None
        self.worker_failures = Counter(
            "mdtp_sigverify_worker_failures_total",
            "Times the signature worker processes failed (their batch was checked on threads)",
            registry=registry,
        )
        self._workers = (
            SignatureWorkers(workers, on_failure=self.worker_failures.inc) if workers else None
        )

    def start(self, supervisor: Supervisor) -> None:
        self._task = supervisor.spawn("sigverify", self._run(), long_lived=True)
        if self._workers is not None:
            self._workers.start()

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._workers is not None:
            await self._workers.close()

    async def check(self, raw: bytes) -> Tx:
        """Decoded, signature-checked transaction, or :class:`TxError` with its reason."""
        if len(raw) > self.max_tx_bytes:
            raise TxError(
                f"transaction is {len(raw)} bytes, above {self.max_tx_bytes}", reason="oversized"
            )
        fut: asyncio.Future[Tx] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((raw, fut))
        except asyncio.QueueFull:
            raise VerifierBusy("signature verification queue is full; retry later") from None
        return await fut

    async def check_many(self, raws: Sequence[bytes]) -> list[Tx | TxError]:
        """Verify a whole batch directly (block validation): one executor hop per thread,
        or here for a batch of at most ``INLINE_MAX``."""
        loop = asyncio.get_running_loop()
        if len(raws) <= INLINE_MAX:
            return _check_many(raws, self.chain_id, self.max_tx_bytes) if raws else []
        step = max(1, -(-len(raws) // self.threads))
        parts = [raws[i : i + step] for i in range(0, len(raws), step)]
        results = await asyncio.gather(
            *(
                loop.run_in_executor(self._pool, _check_many, p, self.chain_id, self.max_tx_bytes)
                for p in parts
            )
        )
        return [r for part in results for r in part]

    async def check_certified(self, raws: Sequence[bytes]) -> list[Tx | TxError]:
        """The transactions of certified blocks a peer sent (state transfer): decoded and
        signature-checked at once like :meth:`check_many`, on the same threads, but as the
        ledger decodes a block's transactions (bounded by the block's limits, not the
        mempool's ``max_tx_bytes``), so each is decoded once and handed to the ledger."""
        loop = asyncio.get_running_loop()
        if len(raws) <= INLINE_MAX:
            return _check_certified(raws, self.chain_id) if raws else []
        if self._workers is not None:
            # decoded on a thread while the workers check the signatures
            decoding = loop.run_in_executor(
                self._pool, _check_certified, raws, self.chain_id, False
            )
            verdicts = await self._workers.verdicts(raws)
            decoded = await decoding
            if verdicts is not None:
                return [
                    tx if isinstance(tx, TxError) or ok else signature_error()
                    for tx, ok in zip(decoded, verdicts, strict=True)
                ]
        step = max(1, -(-len(raws) // self.threads))
        parts = [raws[i : i + step] for i in range(0, len(raws), step)]
        results = await asyncio.gather(
            *(loop.run_in_executor(self._pool, _check_certified, p, self.chain_id) for p in parts)
        )
        return [r for part in results for r in part]

    async def check_batch(self, raws: Sequence[bytes]) -> list[Tx | TxError]:
        """A client's batch (``POST /v1/txs``): checked at once like :meth:`check_many`, but
        bounded like :meth:`check`: if the client batches being checked plus this one would
        exceed ``queue_max`` transactions, the whole batch is refused with
        :class:`VerifierBusy` before any work is done for it."""
        if self._client_batches + len(raws) > self.queue_max:
            raise VerifierBusy("signature verification queue is full; retry later")
        self._client_batches += len(raws)
        try:
            return await self.check_many(raws)
        finally:
            self._client_batches -= len(raws)

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            results = await self.check_many([raw for raw, _ in batch])
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, TxError):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
