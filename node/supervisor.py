"""Ownership of a node's tasks.

Every task a node starts goes through :meth:`Supervisor.spawn`. A long-lived task (a loop
that runs as long as the node does) that ends while the node is running — by an exception
or by returning — is a failure; so is a one-shot task that raises. A failure is logged with
its traceback, counted in ``mdtp_task_failures_total{task}``, makes ``/healthz`` unhealthy, and
calls ``on_failure`` (the daemon stops and exits non-zero, so the service manager restarts it)
— a node never limps on with a dead consensus or intake loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger("mdtp.supervisor")

RECANCEL_S = 1.0  # cancel_and_wait cancels again the tasks still running after this


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended. Those still running after
    :data:`RECANCEL_S` are cancelled again: Python 3.11's ``wait_for`` returns its inner
    result and drops a cancel that lands just as that result does (a handshake finishing as
    the node stops), so a task may go on after one cancel, and waiting for it once would
    wait forever."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)


class Supervisor:
    def __init__(
        self, registry: CollectorRegistry, on_failure: Callable[[str], None] | None = None
    ) -> None:
        self.failures_total = Counter(
            "mdtp_task_failures_total",
            "Node tasks that died unexpectedly (the node then reports unhealthy and exits)",
            ["task"],
            registry=registry,
        )
        self.on_failure = on_failure or (lambda _name: None)
        self.failed: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._long_lived: set[asyncio.Task[Any]] = set()
        self._closing = False

    def spawn(
        self, name: str, coro: Coroutine[Any, Any, Any], *, long_lived: bool = False
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        if long_lived:
            self._long_lived.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        long_lived = task in self._long_lived
        self._long_lived.discard(task)
        if task.cancelled() or self._closing:
            return
        error = task.exception()
        if error is None and not long_lived:
            return
        name = task.get_name()
        if error is not None:
            log.error("task %s died", name, exc_info=error)
        else:
            log.error("task %s ended while the node is running", name)
        self.failures_total.labels(name).inc()
        self.failed.append(name)
        self.on_failure(name)

    async def cancel(self, task: asyncio.Task[Any] | None) -> None:
        """Stop one task on purpose (not a failure) and wait for it."""
        if task is None or task.done():
            return
        self._long_lived.discard(task)
        await cancel_and_wait([task])

    async def close(self) -> None:
        """Cancel every task still running (shutdown: nothing counts as a failure)."""
        self._closing = True
        await cancel_and_wait(list(self._tasks))
