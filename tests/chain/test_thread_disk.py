"""The store's writer (ThreadDisk, not the slow-disk test hook): fast writes on the event
loop, a slow disk's off it, always in order."""

from __future__ import annotations

import asyncio
import threading
import time

from mdtp.node.chain.ports import ThreadDisk


def test_fast_writes_run_on_the_loop_and_a_slow_disk_moves_them_to_the_thread() -> None:
    disk = ThreadDisk(inline_s=0.005)
    loop_thread = threading.get_ident()
    where: list[str] = []

    def write(delay_s: float = 0.0) -> None:
        time.sleep(delay_s)
        where.append("loop" if threading.get_ident() == loop_thread else "thread")

    async def body() -> None:
        for _ in range(3):
            await disk.run(write)
        await disk.run(write, 0.05)  # the disk turns slow: this one still blocks the loop
        for _ in range(3):
            await disk.run(write)  # the average is above inline_s: off the loop
        while disk._recent_s >= disk.inline_s:  # fast again: back on the loop, eventually
            await disk.run(write)
        await disk.run(write)

    try:
        asyncio.run(body())
    finally:
        disk.close()
    assert where[:4] == ["loop"] * 4
    assert where[4:7] == ["thread"] * 3
    assert where[-1] == "loop"


def test_writes_keep_their_order_while_some_wait_in_the_thread() -> None:
    disk = ThreadDisk(inline_s=0.005)
    order: list[int] = []

    def write(i: int, delay_s: float) -> None:
        time.sleep(delay_s)
        order.append(i)

    async def body() -> None:
        disk._recent_s = 1.0  # the disk was slow: the next write goes to the thread
        slow = asyncio.ensure_future(disk.run(write, 1, 0.05))
        await asyncio.sleep(0.01)  # running in the thread
        disk._recent_s = 0.0  # fast again, but a write is still in the thread
        await disk.run(write, 2, 0.0)  # must not overtake it
        await slow

    try:
        asyncio.run(body())
    finally:
        disk.close()
    assert order == [1, 2]
