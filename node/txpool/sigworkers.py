"""Signature checks in worker processes, for state transfer's certified blocks.

A node catching up checks every transaction signature of the blocks it fetches (tens of
thousands a second). In threads of the node's own process the checks run in parallel (libsodium
releases the GIL), but each takes the GIL back after every check, and with the event loop
executing blocks beside them two threads spent ~20 us of CPU per transaction more than the
check itself (README "Catch-up"). Here each worker process checks a slice of a batch with a GIL
of its own; the node decodes the transactions (their form and canonical encoding, as
``decode_tx(verify=False)``) while the workers check, and a transaction is valid only if both
pass, so the rules are exactly ``decode_tx``'s: the workers run the same
:func:`~mdtp.node.identity.keys.verify_signature` over the same bytes.

The workers are started with ``spawn`` (never ``fork``: the node has threads) when the verifier
starts, so none is started on a catch-up's critical path. A pool that breaks (a worker killed)
answers ``None``; the verifier then checks that batch on its threads, counts the failure
(``mdtp_sigverify_worker_failures_total``) and starts new workers on a later batch, at most
once per :data:`RESPAWN_S`; workers that give no answer in time are killed and handled
the same way. A worker whose node is gone (killed, so it could not stop its
workers) ends within :data:`PARENT_CHECK_S`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess

import msgpack

from mdtp.node.identity.keys import verify_signature
from mdtp.node.ledger.tx import DOMAIN_TAG

log = logging.getLogger("mdtp.sigverify")

# after a pool broke, batches are checked on threads for this long before new workers start
RESPAWN_S = 30.0
# how often a worker looks whether its node is still there
PARENT_CHECK_S = 1.0
# a batch's answer is awaited at most this long (a check takes ~50 us; a stopped or hung
# worker must not hold a catch-up), then the workers are killed and the threads check it
ANSWER_S_BASE = 10.0
ANSWER_S_PER_TX = 0.001
# how long stopping waits for the workers to end before killing them
CLOSE_S = 5.0


def signatures_valid(raws: Sequence[bytes]) -> bytes:
    """Runs in a worker: one byte per transaction, 1 where its envelope is three byte
    strings ``[unsigned, public_key, signature]`` and the signature verifies over
    ``DOMAIN_TAG + unsigned``, else 0 (what else makes it invalid, the node's decoding
    finds)."""
    out = bytearray(len(raws))
    for i, raw in enumerate(raws):
        try:
            outer = msgpack.unpackb(raw, raw=False, use_list=True)
        except Exception:  # garbage: the node's decoding names it
            continue
        if type(outer) is list and len(outer) == 3 and all(type(p) is bytes for p in outer):
            unsigned, public_key, signature = outer
            out[i] = verify_signature(public_key, DOMAIN_TAG + unsigned, signature)
    return bytes(out)


def _ready() -> bool:
    return True


def _follow_parent(parent: int) -> None:
    """Runs first in every worker: end the worker once its node has gone, however it went (a
    killed node cannot shut its pool down, and a worker holds its own queue's pipe open, so
    it would wait for work forever)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(0)
            time.sleep(PARENT_CHECK_S)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


class SignatureWorkers:
    """``count`` worker processes (see the module docstring); owned by one verifier."""

    def __init__(self, count: int, on_failure: Callable[[], None] = lambda: None) -> None:
        assert count >= 1
        self.count = count
        self._on_failure = on_failure
        self._pool: ProcessPoolExecutor | None = None
        self._broken_at: float | None = None

    def start(self) -> None:
        """Start the workers now (each imports its modules once), not on first use."""
        pool = self._pool = ProcessPoolExecutor(
            max_workers=self.count,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_follow_parent,
            initargs=(os.getpid(),),
        )
        try:
            # a process is started per submission while none is idle, up to ``count``
            for _ in range(self.count):
                pool.submit(_ready).add_done_callback(_ignore)
        except (OSError, RuntimeError) as e:
            self._broke(f"could not start signature workers: {e}")

    async def close(self) -> None:
        """Stop the workers and wait for the pool's own thread: one left running races the
        interpreter's exit (its wake-up pipe written after it was closed). Killed if they do
        not end within :data:`CLOSE_S`."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(CLOSE_S):
                await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        except TimeoutError:
            _kill(pool)

    async def verdicts(self, raws: Sequence[bytes]) -> bytes | None:
        """One byte per transaction (:func:`signatures_valid`), or None if no workers can
        answer now (the caller checks on its threads)."""
        pool = self._usable()
        if pool is None:
            return None
        step = -(-len(raws) // self.count)
        deadline_s = ANSWER_S_BASE + ANSWER_S_PER_TX * len(raws)
        try:
            async with asyncio.timeout(deadline_s):
                parts = await asyncio.gather(
                    *(
                        asyncio.wrap_future(pool.submit(signatures_valid, list(raws[i : i + step])))
                        for i in range(0, len(raws), step)
                    )
                )
        except TimeoutError:
            if self._pool is pool:
                _kill(pool)
                self._broke(f"signature workers gave no answer in {deadline_s:.0f} s")
            return None
        except (BrokenProcessPool, OSError, RuntimeError) as e:
            if self._pool is pool:
                self._broke(f"signature workers failed ({type(e).__name__}: {e})")
            return None
        return b"".join(parts)

    def _usable(self) -> ProcessPoolExecutor | None:
        if self._pool is None:
            if self._broken_at is None or time.monotonic() - self._broken_at < RESPAWN_S:
                return None  # closed, or broken recently
            self._broken_at = None
            self.start()
        return self._pool

    def _broke(self, why: str) -> None:
        self._on_failure()
        self._broken_at = time.monotonic()
        log.error("%s; checking signatures on threads for %.0f s", why, RESPAWN_S)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _kill(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's processes: ``shutdown`` waits for a running task, which a hung worker
    never ends (Python 3.11 has no public way; the pool's own table of them)."""
    processes: dict[int, BaseProcess] = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        process.kill()


def _ignore(fut: Future[bool]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: a failed warm-up shows at the first real batch
