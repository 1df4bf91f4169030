"""The replicated ledger on a real 4-node cluster: durable commits, crashes, view changes,
state transfer. Every node is a separate ``mdtp`` process with its own LevelDB."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.ops import cluster
from mdtp.node.sdk.client import ApiError
from tests.support.processes import signal_node, wait_until
from tests.support.workload import Workload, apis_of, assert_chains_agree, chains, client

pytestmark = pytest.mark.cluster


@pytest.fixture(autouse=True)
def every_node_runs(running_cluster: Path) -> None:
    """Each test stops nodes of the module's cluster: one that a failed test left stopped is
    started again, so that one failure does not fail the tests after it."""
    cluster.up(running_cluster, timeout_s=120)


async def statuses(cluster_dir: Path, apis: list[str]) -> list[dict[str, Any]]:
    out = []
    for api in apis:
        async with client(cluster_dir, api, timeout_s=5) as c:
            out.append(await c.status())
    return out


async def wait_heights_equal(cluster_dir: Path, apis: list[str], timeout_s: float) -> int:
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: object = None
    while True:
        try:
            heights = [s["height"] for s in await statuses(cluster_dir, apis)]
            last = heights
            if len(set(heights)) == 1 and heights[0] > 0:
                return int(heights[0])
        except OSError as e:
            last = e
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"heights did not converge in {timeout_s} s (last: {last!r})")
        await asyncio.sleep(0.5)


async def assert_each_acked_tx_committed_once(cluster_dir: Path, acked: dict[str, str]) -> None:
    async with client(cluster_dir, apis_of(cluster_dir)[0]) as c:
        for tx_id in acked:
            doc = await c.tx(tx_id)
            assert doc["status"] == "committed", doc


async def test_ten_thousand_transactions_commit_exactly_once_with_identical_chains(
    running_cluster: Path,
) -> None:
    w = Workload(running_cluster, senders=50)
    ids = await w.submit_open_loop(200)
    assert len(ids) == 10_000 and len(set(ids)) == 10_000
    apis = apis_of(running_cluster)
    async with client(running_cluster, apis[1]) as c:

        async def status(tx_id: str) -> dict[str, Any]:
            # a transaction submitted to another node may not have reached this one yet: it
            # is unknown here (404) until gossip or its block brings it
            try:
                doc: dict[str, Any] = await c.tx(tx_id)
            except ApiError as e:
                if e.status != 404:
                    raise
                return {"id": tx_id, "status": "unknown"}
            return doc

        async def all_committed() -> bool:
            for tx_id in ids[-50:]:
                if (await status(tx_id))["status"] != "committed":
                    return False
            return True

        async def stuck(doc: dict[str, Any]) -> str:
            """What every node says of a transaction still not committed, and of itself."""
            seen = []
            for api in apis:
                async with client(running_cluster, api, timeout_s=10) as other:
                    try:
                        there: Any = await other.tx(doc["id"])
                    except ApiError as e:
                        there = e.status
                    s = await other.status()
                    seen.append(f"{api}: tx {there}; node {s}")
            return f"{doc} still not committed:\n" + "\n".join(seen)

        # under pytest's 300 s limit, so that a stuck transaction is reported with every
        # node's view of it rather than by a timeout
        deadline = asyncio.get_running_loop().time() + 200
        while not await all_committed():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(await stuck(await status(ids[-1])))
            await asyncio.sleep(1)
        for tx_id in ids:
            # the last 50 submitted need not be the last 50 to commit: on a loaded machine
            # another sender's earlier transactions may still be on their way
            while (doc := await status(tx_id))["status"] in ("pending", "unknown"):
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(await stuck(doc))
                await asyncio.sleep(0.5)
            assert doc["status"] == "committed", doc
    await wait_heights_equal(running_cluster, apis, 60)
    by_node = await chains(running_cluster)
    assert_chains_agree(by_node)
    total = sum(row[3] for row in next(iter(by_node.values())))
    # nothing applied twice: every block's txs counted once (and the senders' registrations)
    assert total == 10_000 + w.senders


async def test_kill_9_of_a_replica_under_load_loses_nothing_and_it_catches_up(
    running_cluster: Path,
) -> None:
    nodes = cluster.load_cluster(running_cluster)
    victim = nodes[2]
    alive = [n.api for n in nodes if n is not victim]
    w = Workload(running_cluster, senders=8)
    load = asyncio.create_task(w.run_closed_loop(40, alive=alive))
    await asyncio.sleep(2)
    await asyncio.to_thread(signal_node, victim, signal.SIGKILL)
    await load
    assert not w.errors
    cluster.start_node(victim)
    await asyncio.to_thread(wait_until, lambda: cluster.is_ready(victim), 120, "victim ready")
    await wait_heights_equal(running_cluster, apis_of(running_cluster), 120)
    assert_chains_agree(await chains(running_cluster))
    await assert_each_acked_tx_committed_once(running_cluster, w.acked)


async def test_kill_9_of_the_primary_changes_view_and_commits_continue(
    running_cluster: Path,
) -> None:
    nodes = cluster.load_cluster(running_cluster)
    apis = apis_of(running_cluster)
    view = (await statuses(running_cluster, apis[:1]))[0]["view"]
    primary = nodes[view % len(nodes)]
    await asyncio.to_thread(signal_node, primary, signal.SIGKILL)
    alive = [n.api for n in nodes if n is not primary]
    w = Workload(running_cluster, senders=4)
    await asyncio.wait_for(w.run_closed_loop(10, alive=alive), 300)
    assert not w.errors and len(w.acked) == 40
    after = await statuses(running_cluster, alive)
    assert all(s["view"] > view for s in after)
    cluster.start_node(primary)
    await asyncio.to_thread(wait_until, lambda: cluster.is_ready(primary), 120, "old primary back")
    await wait_heights_equal(running_cluster, apis, 120)
    assert_chains_agree(await chains(running_cluster))


async def test_node_with_wiped_data_catches_up_by_state_transfer_while_others_commit(
    running_cluster: Path,
) -> None:
    nodes = cluster.load_cluster(running_cluster)
    victim = nodes[1]
    others = [n.api for n in nodes if n is not victim]
    await asyncio.to_thread(signal_node, victim, signal.SIGTERM)
    shutil.rmtree(victim.home / "data")
    w = Workload(running_cluster, senders=8)
    load = asyncio.create_task(w.run_closed_loop(60, alive=others))
    await asyncio.sleep(1)
    cluster.start_node(victim)
    await load
    await asyncio.to_thread(wait_until, lambda: cluster.is_ready(victim), 180, "wiped node ready")
    await wait_heights_equal(running_cluster, apis_of(running_cluster), 180)
    assert_chains_agree(await chains(running_cluster))
    async with client(running_cluster, victim.api) as c:
        status = await c.status()
        assert status["height"] > 0 and not status["halted"]
