"""A data trade on a real 4-node cluster for the data attacks, and the checks every attack
ends with: the refusal counted, the node still commits and serves, descriptors and memory
come back, and the ledger records every byte the supplier served."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ops import cluster
from mdtp.node.ops.cluster import ClusterNode
from mdtp.node.ops.testbed import client_for, make_contract, register_account
from mdtp.node.sdk.data import DataClient, publish
from tests.cluster.test_data import MiB, Trade, raw_fetch, served_bytes, signed
from tests.support.processes import metric_value, signal_node, wait_until

BIG_CHUNKS = 64
SERVE_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def sec_cluster(running_cluster: Path) -> Path:
    return running_cluster


@pytest.fixture(scope="module")
def trade(sec_cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> Trade:
    nodes = cluster.load_cluster(sec_cluster)
    files = tmp_path_factory.mktemp("sec-files")

    async def setup() -> Trade:
        supplier = await register_account(sec_cluster, nodes[0], ["supplier"], "supplier")
        consumer = await register_account(sec_cluster, nodes[1], ["consumer"], "consumer")
        other = await register_account(sec_cluster, nodes[1], ["consumer"], "outsider")
        source = files / "big.bin"
        source.write_bytes(os.urandom(BIG_CHUNKS * MiB))
        small = files / "small.bin"
        small.write_bytes(os.urandom(3000))
        t = Trade(sec_cluster, nodes[0], nodes[1], supplier, consumer, other, source, small)
        async with t.supplier_client() as c:
            await publish(c, supplier, source, dataset_id="big-ds", title="big", progress=False)
            await publish(
                c,
                supplier,
                small,
                dataset_id="small-ds",
                title="s",
                chunk_bytes=1024,
                progress=False,
            )
        return t

    return asyncio.run(setup())


async def contract_for(t: Trade, consumer: SigningKey, dataset: str = "small-ds", **kw: Any) -> str:
    async with t.supplier_client() as c:
        return await make_contract(c, t.supplier, consumer, dataset, **kw)


def ledger_view(t: Trade) -> DataClient:
    """The consumer's node, read as the supplier: a party of every contract these attacks
    make, whichever consumer signed it (and whether or not that consumer was since revoked
    or rotated its key)."""
    return client_for(t.dir, t.consumer_node, reader=t.supplier)


async def wait_granted(t: Trade, contract_id: str, grants: int = 1) -> list[dict[str, Any]]:
    async with ledger_view(t) as c:
        deadline = time.monotonic() + SERVE_DEADLINE_S
        while time.monotonic() < deadline:
            found: list[dict[str, Any]] = (await c.contract_view(contract_id))["contract"][
                "access_grants"
            ]
            if len(found) >= grants:
                return found
            await asyncio.sleep(0.2)
    raise AssertionError(f"{contract_id} has fewer than {grants} grants")


async def receipts_of(t: Trade, contract_ids: list[str]) -> list[dict[str, Any]]:
    async with ledger_view(t) as c:
        found: list[dict[str, Any]] = []
        for cid in contract_ids:
            found += (await c.contract_view(cid))["receipts"]
        return found


async def assert_ledger_records(t: Trade, contract_ids: list[str], served: float) -> None:
    """Within the deadline, the receipts of ``contract_ids`` add up to ``served`` bytes."""
    deadline = time.monotonic() + SERVE_DEADLINE_S
    total = -1
    while time.monotonic() < deadline:
        total = sum(r["byte_count"] for r in await receipts_of(t, contract_ids))
        if total == served:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"the ledger records {total} bytes, the supplier served {served}")


async def assert_still_serves(t: Trade) -> None:
    """The supplier's node still commits (a new contract) and serves (a whole fetch), and the
    ledger records that fetch."""
    cid = await contract_for(t, t.consumer)
    before = served_bytes(t)
    records = await asyncio.wait_for(
        raw_fetch(t, await signed(t, cid, first=0, last=2)), SERVE_DEADLINE_S
    )
    assert records[-1]["t"] == "end" and [r["i"] for r in records[:-1]] == [0, 1, 2]
    await assert_ledger_records(t, [cid], served_bytes(t) - before)


def refusals(node: ClusterNode, reason: str) -> float:
    return metric_value(node, "mdtp_data_refusals_total", {"reason": reason})


def pid_of(node: ClusterNode) -> int:
    pid = cluster.running_pid(node)
    assert pid is not None, f"{node.id} is not running"
    return pid


def open_fds(node: ClusterNode) -> int:
    return len(os.listdir(f"/proc/{pid_of(node)}/fd"))


def rss_mib(node: ClusterNode) -> float:
    for line in Path(f"/proc/{pid_of(node)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def assert_resources_back(node: ClusterNode, fds: int, rss: float) -> None:
    """Descriptors return to where they were (a few for links and files may move) and memory
    does not keep what the attack made the node hold."""
    wait_until(lambda: open_fds(node) <= fds + 8, 60, f"{node.id} descriptors back to {fds}")
    assert rss_mib(node) < rss + 64, (rss, rss_mib(node))


def restart(node: ClusterNode, sig: signal.Signals = signal.SIGTERM) -> None:
    signal_node(node, sig)
    cluster.start_node(node)
    wait_until(lambda: cluster.is_ready(node), 120, f"{node.id} ready again")
