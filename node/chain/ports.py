"""The narrow interfaces the chain runs against: a clock, the disk (blocking store work off
the event loop) and the peer links. The daemon passes the real ones; the simulator
(``mdtp.node.testing.sim``) passes virtual time, a simulated disk and network, and runs this
same code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

SendFn = Callable[[str, str, Any], bool]
BroadcastFn = Callable[[str, Any], None]


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock milliseconds (block timestamps, transaction expiry)."""
        ...

    def monotonic(self) -> float:
        """Seconds of a monotonic clock (latencies, waits)."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.perf_counter()


class Disk(Protocol):
    """Runs blocking store work (synced LevelDB batches) without blocking the event loop."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T: ...

    def close(self) -> None: ...


class ThreadDisk:
    """One writer thread: store writes stay in the order they were issued.

    A write runs on the event loop itself while the disk is fast: when no write waits in the
    thread and the recent writes took less than ``inline_s`` on average (an exponential
    average). A small synced batch then costs its ~0.1 ms, less than the hop to the thread
    and back (its wake-up, the GIL handed over twice, the loop's self-pipe), which at one
    transaction per block, three synced writes each, was a tenth of a node's CPU. A slow
    disk blocks the loop for one write at most: its time moves the average above
    ``inline_s`` and later writes go to the thread until the disk is fast again.
    """

    def __init__(self, inline_s: float = 0.002) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.inline_s = inline_s
        self._recent_s = 0.0  # exponential average of the writes' durations
        self._queued = 0  # writes issued to the thread and not finished

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._queued and self._recent_s < self.inline_s:
            return self._timed(fn, *args)
        self._queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, self._timed, fn, *args
            )
        finally:
            self._queued -= 1

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            took = time.perf_counter() - started
            self._recent_s += (took - self._recent_s) * _RECENT_WEIGHT

    def close(self) -> None:
        self._pool.shutdown(wait=True)


_RECENT_WEIGHT = 0.25  # of the latest write in the average: one slow write moves it
