"""Slow and lying peers against a real 4-node cluster (f = 1), issue #11: the two failures
the simulator and the driver tests (``tests/chain``) cover, on real processes.

- A member whose state-transfer server drips one valid block just before the requester's
  timeout, or answers with a tampered block (``MDTP_TEST_STATE_SERVER=drip,lie``), and then
  goes silent: a node restarted far behind a chain under load must strike it, catch up from
  the others, say ready only once caught up, and keep committing with the two others after
  the malicious member is killed (which needs its vote: three of four are left).
- A node whose every store write waits (``MDTP_TEST_DISK_DELAY_MS``), restarted behind a
  chain under load, so that the beacons start a state transfer while the core delivers
  blocks too: once two delivery paths raced there and ``deliver of N after N`` killed the
  consensus task while ``/readyz`` still said ready. It must catch up with no task failure,
  stay alive and healthy, and never say ready while far behind.

Deadlines are generous (the machine is shared); no timing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.ops.cluster import ClusterNode, log_tail
from tests.faults.runner import PARAMS, FaultCluster
from tests.support.processes import metric_value
from tests.support.workload import Workload

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

CATCH_UP_S = 300.0  # generous: the machine is shared and loaded
# blocks committed while the node is down: several checkpoint intervals, so that the others'
# logs are garbage-collected and only state transfer can bring it back
BEHIND_BLOCKS = 4 * PARAMS.window
# A ready node may lag the chain's height it has heard by the driver's lag_blocks_ready_max
# (8) and it hears it from the peers' beacons (every 2 s): so it must never say ready while
# more than READY_LAG blocks below the height the others had HEARD_S seconds before.
READY_LAG = 8 + 4
HEARD_S = 6.0
POLL_S = 0.1  # /readyz is polled this often: a node restarted behind knows it within seconds
CAUGHT_UP = 2  # blocks a caught-up node may trail the others by when it is asked
PACE_S = 0.5  # between the rounds of a paced load (one transaction per sender a round)
# how long a slow-disk node, just restarted behind, takes load as fast as it comes: it falls
# further behind, so beacons start state transfer again and again while the core delivers
RACE_S = 12.0
STRIKES = "mdtp_state_transfer_peer_strikes_total"
# the most blocks one state-transfer answer brings (ConsensusConfig.state_transfer_blocks_max)
STATE_TRANSFER_BLOCKS = 64


@pytest.fixture
def fc(tmp_path: Path) -> Iterator[FaultCluster]:
    c = FaultCluster(tmp_path / "c")
    c.create()
    try:
        yield c
    finally:
        c.close()


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def readyz(node: ClusterNode) -> tuple[int, dict[str, Any]]:
    return _get(f"http://{node.metrics}/readyz")


def healthz(node: ClusterNode) -> tuple[int, dict[str, Any]]:
    return _get(f"http://{node.metrics}/healthz")


def errors(node: ClusterNode) -> str:
    """The node's last error lines (a dead task's traceback among them)."""
    lines = [ln for ln in node.log_file.read_text().splitlines() if " ERROR " in ln]
    return "\n".join(ln.replace("\\n", "\n") for ln in lines[-3:])


def task_failures(node: ClusterNode) -> float:
    """The sum of ``mdtp_task_failures_total`` over every task."""
    with urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    name = "mdtp_task_failures_total"
    return sum(float(ln.split()[-1]) for ln in lines if ln.startswith(name + "{"))


async def height(fc: FaultCluster, node: ClusterNode) -> int:
    status = await fc.status(node)
    return int(status["height"]) if status else -1


async def heights(fc: FaultCluster, nodes: list[ClusterNode]) -> list[int]:
    return [await height(fc, n) for n in nodes]


@dataclass
class Load:
    """A closed-loop workload: as fast as it goes until a condition holds
    (:meth:`run_until`), or in the background until stopped (:meth:`start`), either as fast
    as it goes or paced to a few blocks a second (a rate a node with a 30 ms disk can follow
    and a dripping peer cannot)."""

    fc: FaultCluster
    senders: int = 2
    workload: Workload = field(init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.workload = Workload(self.fc.dir, senders=self.senders)

    async def run_until(
        self, nodes: list[ClusterNode], done: Callable[[], Awaitable[bool]]
    ) -> None:
        apis = [n.api for n in nodes]
        while not await done():
            await self.workload.run_closed_loop(1, alive=apis)

    def start(self, nodes: list[ClusterNode], pace_s: float = PACE_S) -> None:
        apis = [n.api for n in nodes]

        async def loop() -> None:
            while not self._stop.is_set():
                await self.workload.run_closed_loop(1, alive=apis)
                await asyncio.sleep(pace_s)

        self._stop.clear()
        self._task = asyncio.create_task(loop())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, CATCH_UP_S)
            self._task = None
        assert not self.workload.errors, self.workload.errors


async def fall_behind(
    fc: FaultCluster, node: ClusterNode, load: Load, blocks: int = BEHIND_BLOCKS
) -> int:
    """Stop ``node`` and commit ``blocks`` blocks through the others; their lowest height
    then."""
    others = [n for n in fc.nodes if n is not node]
    await asyncio.to_thread(fc.stop, node)
    start = min(await heights(fc, others))

    async def far_enough() -> bool:
        return min(await heights(fc, others)) >= start + blocks

    await asyncio.wait_for(load.run_until(others, far_enough), CATCH_UP_S)
    return min(await heights(fc, others))


async def watch_catch_up(
    fc: FaultCluster,
    node: ClusterNode,
    others: list[ClusterNode],
    slow_disk: bool = False,
    not_before: float = 0.0,
) -> int:
    """Poll ``node`` until it has caught up with ``others`` and says ready (not before
    monotonic time ``not_before``). Meanwhile it must never say ready while far behind: below
    the height the others had :data:`HEARD_S` earlier (or when the watch began) by more than
    :data:`READY_LAG`; and with a slow disk it must stay up and healthy with no task failure.
    Its height when caught up."""
    deadline = max(time.monotonic(), not_before) + CATCH_UP_S
    chain = await heights(fc, others)
    history = [(-math.inf, max(chain))]  # (when, the others' highest)
    last: tuple[list[int], int, dict[str, Any]] = ([], -1, {})
    while time.monotonic() < deadline:
        if not fc.alive(node):
            raise AssertionError(f"{node.id} exited:\n{errors(node) or log_tail(node, 40)}")
        if time.monotonic() - history[-1][0] >= 1.0:  # asked before the node: now higher
            chain = await heights(fc, others)
            history.append((time.monotonic(), max(chain)))
        try:
            if slow_disk:
                failures = await asyncio.to_thread(task_failures, node)
                assert failures == 0, f"{node.id}: a task died:\n{errors(node)}"
                health, body = await asyncio.to_thread(healthz, node)
                assert health == 200, body
            code, doc = await asyncio.to_thread(readyz, node)
        except OSError:
            await asyncio.sleep(POLL_S)  # not listening yet, or just exited (checked above)
            continue
        mine = int(doc.get("height", -1))
        last = (chain, code, doc)
        if code == 200:
            heard = max(h for t, h in history if t <= time.monotonic() - HEARD_S)
            assert heard - mine <= READY_LAG, (
                f"{node.id} said ready at height {mine}, the others were at {heard} "
                f"{HEARD_S:g} s before (now {chain}): {doc}"
            )
        if code == 200 and mine >= min(chain) - CAUGHT_UP and time.monotonic() >= not_before:
            return mine
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"{node.id} did not catch up in {CATCH_UP_S} s: {last}")


async def test_a_restarted_node_catches_up_past_a_dripping_and_lying_peer_then_that_peer_dies(
    fc: FaultCluster,
) -> None:
    """node3 restarts far behind a chain under load while node0 answers its state-transfer
    requests by dripping one block just before the timeout or with a tampered block, in
    turn. node3 asks node0 first (peers in turn, from the first), so it must strike node0
    (for both), rotate to node1 and node2, catch up and say ready only then. node0 is then
    killed: node1, node2 and node3 are exactly a quorum, so new transactions commit only if
    node3 really is a working replica again."""
    liar, lagger = fc.node("node0"), fc.node("node3")
    honest = [fc.node("node1"), fc.node("node2")]
    await asyncio.to_thread(fc.start_all, {liar.id: {"MDTP_TEST_STATE_SERVER": "drip,lie"}})
    load = Load(fc)
    await load.workload.register()
    # far enough that it asks node0 at least twice (first, then after 64 blocks from each
    # of the others), so that both the drip and the lie are tried on it
    await fall_behind(fc, lagger, load, 4 * STATE_TRANSFER_BLOCKS)

    load.start([liar, *honest])  # the chain keeps moving while node3 catches up
    try:
        fc.start(lagger)
        await watch_catch_up(fc, lagger, honest)
    finally:
        await load.stop()
    strikes = {
        reason: metric_value(lagger, STRIKES, {"peer": liar.id, "reason": reason})
        for reason in ("slow", "timeout", "bad_response")
    }
    # the drip is struck as slow, or as a timeout when a loaded machine delays it past the
    # requester's deadline; the lie always as a bad response
    assert strikes["slow"] + strikes["timeout"] >= 1 and strikes["bad_response"] >= 1, strikes

    # the malicious member goes silent for good: the three others keep committing
    await asyncio.to_thread(fc.kill9, liar)
    survivors = [lagger, *honest]
    before = max(await heights(fc, survivors))

    async def all_moved_on() -> bool:
        return min(await heights(fc, survivors)) >= before + 3

    await asyncio.wait_for(load.run_until(survivors, all_moved_on), CATCH_UP_S)
    assert not load.workload.errors, load.workload.errors
    assert fc.alive(lagger) and (await asyncio.to_thread(readyz, lagger))[0] == 200


@pytest.mark.parametrize(
    ("delay_ms", "race_pace_s", "calm_pace_s"),
    [(30, 0.0, PACE_S), (200, PACE_S, None)],
)
async def test_a_node_with_a_slow_disk_catches_up_under_load_without_a_task_failure(
    fc: FaultCluster, delay_ms: int, race_pace_s: float, calm_pace_s: float | None
) -> None:
    """node2's every store write waits ``delay_ms``. For :data:`RACE_S` the others commit
    faster than it can (load as fast as it goes at 30 ms, paced at 200 ms): it drifts
    behind while its core still delivers the blocks it hears committed, so beacons start
    state transfer beside those deliveries. Then the load calms (paced at 30 ms, none at
    200 ms) and it must catch up. The same again after a restart far behind. Throughout it
    must stay up with no task failure (``mdtp_task_failures_total`` 0, ``/healthz`` 200)
    and never say ready while far behind."""
    slow = fc.node("node2")
    others = [n for n in fc.nodes if n is not slow]
    env = {"MDTP_TEST_DISK_DELAY_MS": str(delay_ms)}
    await asyncio.to_thread(fc.start_all, {slow.id: env})
    load = Load(fc)
    await load.workload.register()

    async def race_then_calm() -> None:
        await asyncio.sleep(RACE_S)
        await load.stop()
        if calm_pace_s is not None:
            load.start(others, calm_pace_s)

    for restart in (False, True):
        if restart:
            await fall_behind(fc, slow, load)
            fc.start(slow, env)
        load.start(others, race_pace_s)
        phases = asyncio.create_task(race_then_calm())
        try:
            caught_up = await watch_catch_up(
                fc, slow, others, slow_disk=True, not_before=time.monotonic() + RACE_S
            )
        finally:
            await phases
            await load.stop()
        assert caught_up > 0
        if restart:  # far behind: it caught up by state transfer, not by the core alone
            assert metric_value(slow, "mdtp_state_transfer_blocks_total") >= 1
    assert f"every store write waits {delay_ms} ms" in slow.log_file.read_text()
    assert fc.alive(slow) and task_failures(slow) == 0
