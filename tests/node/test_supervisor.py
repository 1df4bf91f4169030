"""Every task of a node is owned: one that dies is logged, counted and stops the node."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from mdtp.node.supervisor import Supervisor


def failures(registry: CollectorRegistry, task: str) -> float:
    value = registry.get_sample_value("mdtp_task_failures_total", {"task": task})
    return value or 0.0


async def test_a_long_lived_task_that_raises_is_a_failure_that_calls_for_a_stop() -> None:
    registry = CollectorRegistry()
    stopped: list[str] = []
    supervisor = Supervisor(registry, on_failure=stopped.append)

    async def loop() -> None:
        await asyncio.sleep(0)
        raise AssertionError("deliver of 5 after 5")

    supervisor.spawn("consensus", loop(), long_lived=True)
    await asyncio.sleep(0.01)
    assert stopped == ["consensus"]
    assert supervisor.failed == ["consensus"]
    assert failures(registry, "consensus") == 1


async def test_a_long_lived_task_that_returns_is_a_failure_too() -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor(registry)

    async def quits() -> None:
        return None

    supervisor.spawn("ingress", quits(), long_lived=True)
    await asyncio.sleep(0.01)
    assert supervisor.failed == ["ingress"]


async def test_one_shot_tasks_may_finish_but_not_raise() -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor(registry)

    async def ok() -> int:
        return 1

    async def bad() -> None:
        raise ValueError("bug")

    supervisor.spawn("gossip-admission", ok())
    supervisor.spawn("state-transfer", bad())
    await asyncio.sleep(0.01)
    assert supervisor.failed == ["state-transfer"]


async def test_cancelling_on_purpose_and_shutting_down_are_not_failures() -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor(registry)
    forever = supervisor.spawn("a", asyncio.sleep(3600), long_lived=True)
    supervisor.spawn("b", asyncio.sleep(3600), long_lived=True)
    await supervisor.cancel(forever)
    await supervisor.close()
    assert supervisor.failed == []
    assert failures(registry, "a") == failures(registry, "b") == 0


async def test_stopping_ends_a_task_that_lost_its_first_cancel() -> None:
    """Python 3.11's ``wait_for`` can drop a cancel that lands as its inner result does, so a
    task may go on after one cancel: stopping one task, or all, cancels again until it ends."""
    sup = Supervisor(CollectorRegistry())
    cancels: list[str] = []

    async def loses_one_cancel(name: str) -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels.append(name)
                if cancels.count(name) >= 2:
                    raise

    one = sup.spawn("one", loses_one_cancel("one"), long_lived=True)
    sup.spawn("rest", loses_one_cancel("rest"), long_lived=True)
    await asyncio.sleep(0)
    await asyncio.wait_for(sup.cancel(one), 10)
    await asyncio.wait_for(sup.close(), 10)
    assert one.cancelled() and cancels == ["one", "one", "rest", "rest"]
    assert sup.failed == []
