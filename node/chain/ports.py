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
    """One writer thread: store writes stay in the order they were issued."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
