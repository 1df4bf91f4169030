"""An asyncio event loop on virtual time, for running real node code deterministically.

``VirtualTimeLoop.time()`` is a number the loop advances itself: whenever nothing is ready to
run, the loop jumps to the next timer instead of waiting. Nothing may wait on real I/O (the
simulated network, disk and executors schedule callbacks on this loop), so a run is a pure
function of its inputs — the seed — and a minute of consensus takes milliseconds.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Mapping
from concurrent.futures import Executor, Future
from typing import Any


class Deadlock(RuntimeError):
    """Nothing is ready, no timer is due, and something is still awaited."""


class _NoWaitSelector(selectors.BaseSelector):
    """A selector that never waits: ``select(t)`` moves the loop's clock forward by ``t``."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._keys: dict[int, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return self._keys.pop(fd)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Deadlock("the simulated world has nothing left to do but something waits")
        self._loop.advance(timeout)
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._keys

    def close(self) -> None:
        self._keys.clear()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual_s = 0.0
        super().__init__(selector=_NoWaitSelector(self))

    def time(self) -> float:
        return self._virtual_s

    def advance(self, seconds: float) -> None:
        self._virtual_s += max(0.0, seconds)


class InlineExecutor(Executor):
    """Runs submitted work at once, on the loop's thread (no threads in a simulation)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to the awaiting coroutine, as a thread pool would
            fut.set_exception(e)
        return fut
