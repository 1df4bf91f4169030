"""A slow disk for test nodes (``MDTP_TEST_DISK_DELAY_MS``): every piece of store work (the
synced LevelDB batches of block commits and consensus state) waits that long before it runs,
as on a disk whose syncs are slow. The real :class:`~mdtp.node.chain.ports.ThreadDisk` does
the work: the first slow write still runs on the event loop, the later ones in its writer
thread (the disk is slow now), in order."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from mdtp.node.chain.ports import ThreadDisk

T = TypeVar("T")

DELAY_ENV = "MDTP_TEST_DISK_DELAY_MS"
log = logging.getLogger("mdtp.testing")


class SlowDisk:
    def __init__(self, delay_ms: int) -> None:
        self.delay_s = delay_ms / 1000
        self._disk = ThreadDisk()

    def _slowly(self, fn: Callable[..., T], *args: Any) -> T:
        time.sleep(self.delay_s)  # later writes queue behind it
        return fn(*args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._disk.run(self._slowly, fn, *args)

    def close(self) -> None:
        self._disk.close()


def disk_from_env() -> Callable[[], SlowDisk] | None:
    """A factory of slow disks if ``MDTP_TEST_DISK_DELAY_MS`` is set (a positive integer)."""
    raw = os.environ.get(DELAY_ENV, "")
    if not raw:
        return None
    delay_ms = int(raw)
    if delay_ms <= 0:
        raise ValueError(f"{DELAY_ENV} must be a positive number of milliseconds, not {raw!r}")
    log.warning("TEST HOOK: every store write waits %d ms", delay_ms)
    return lambda: SlowDisk(delay_ms)
