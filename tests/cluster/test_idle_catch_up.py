"""A replica that missed the last blocks of a chain that then goes idle still catches up.

Two mechanisms cover this: the core's retransmission of the latest votes (enough when the
laggard is in the current view, as here) and the driver's status beacons (for a laggard left
in an older view, which the fault suite's scenarios produce)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from mdtp.node.ops import cluster
from tests.support.workload import Workload, assert_chains_agree, chains, client

pytestmark = pytest.mark.cluster


async def test_paused_replica_catches_up_on_an_idle_chain(running_cluster: Path) -> None:
    nodes = cluster.load_cluster(running_cluster)
    laggard = nodes[3]
    others = [n.api for n in nodes[:3]]
    pid = cluster.running_pid(laggard)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        w = Workload(running_cluster, senders=4)
        await asyncio.wait_for(w.run_closed_loop(5, alive=others), 120)
        assert len(w.acked) == 20
    finally:
        os.kill(pid, signal.SIGCONT)
    async with client(running_cluster, others[0]) as c:
        target = (await c.status())["height"]
    # no more transactions from here on
    async with client(running_cluster, laggard.api, timeout_s=10) as c:
        deadline = asyncio.get_running_loop().time() + 90
        while (await c.status())["height"] < target:
            assert asyncio.get_running_loop().time() < deadline, "laggard stayed behind"
            await asyncio.sleep(0.5)
    assert_chains_agree(await chains(running_cluster))
