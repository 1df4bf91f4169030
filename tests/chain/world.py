"""A small simulated consortium running the real chain code, for the driver's unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mdtp.node.chain.driver import DriverLimits
from mdtp.node.testing.sim.loop import VirtualTimeLoop
from mdtp.node.testing.sim.world import SimWorld


@contextmanager
def world(
    tmp_path: Path,
    n: int = 4,
    seed: int = 1,
    byzantine: dict[str, str] | None = None,
    limits: DriverLimits | None = None,
) -> Iterator[SimWorld]:
    loop = VirtualTimeLoop()
    w = SimWorld(
        seed, n, tmp_path / "sim", loop, byzantine or {}, limits=limits or DriverLimits(64)
    )
    try:
        yield w
    finally:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        w.close()
        loop.close()


def run(w: SimWorld, body: Callable[[], Awaitable[Any]]) -> Any:
    return w.loop.run_until_complete(body())


async def load(w: SimWorld, seconds: float, every_s: float = 0.1) -> None:
    """Clients send transactions for ``seconds`` of virtual time."""
    for _ in range(int(seconds / every_s)):
        w.submit_one()
        await asyncio.sleep(every_s)
