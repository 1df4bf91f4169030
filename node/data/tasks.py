"""The background tasks of the chunk service: owned in one place, cancelled together.

Not under the node's Supervisor on purpose: these are per-fetch and per-grant tasks driven
by peers' requests, and one that fails ends that fetch or grant (logged), never the node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from mdtp.node.supervisor import cancel_and_wait

log = logging.getLogger("mdtp.data")


class Tasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("chunk service task %s failed", task.get_name(), exc_info=task.exception())

    async def cancel_all(self) -> None:
        await cancel_and_wait(list(self._tasks))
