"""The SDK's runnable examples (``python -m mdtp.node.sdk.examples.NAME``), each run as its
own process against a real 4-node cluster exactly as the README shows, and what each prints
checked against the chain (``GET /v1/tx``, ``GET /v1/blocks``)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mdtp.node.identity.keys import SigningKey, save_key
from mdtp.node.ops import cluster
from mdtp.node.sdk.client import ApiError
from tests.support.workload import client

pytestmark = pytest.mark.cluster

EXAMPLE_TIMEOUT_S = 120


def run_example(
    name: str, cluster_dir: Path, member: int = 0, *extra: str
) -> subprocess.CompletedProcess[str]:
    node = cluster.load_cluster(cluster_dir)[member]
    argv = [sys.executable, "-m", f"mdtp.node.sdk.examples.{name}"]
    argv += ["--node", node.api, "--home", str(cluster_dir / f"node{member}")]
    if "--key" not in extra:  # the member's admin key, kept outside its node home
        argv += ["--key", str(cluster.admin_key_path(cluster_dir, node.id))]
    argv += extra
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S, check=False
    )


def on_chain(cluster_dir: Path, tx_id: str, member: int = 1) -> tuple[dict[str, Any], Any]:
    """The transaction's status and its block, as another member's node reports them."""

    async def read() -> tuple[dict[str, Any], Any]:
        api = cluster.load_cluster(cluster_dir)[member].api
        async with client(cluster_dir, api) as node:
            for _ in range(50):  # that node may be a block behind the one that answered
                try:
                    status = await node.tx(tx_id)
                except ApiError as e:
                    if e.status != 404:
                        raise
                else:
                    if status["status"] != "pending":
                        return status, await node.block(int(status["height"]))
                await asyncio.sleep(0.2)
        raise AssertionError(f"{tx_id} never committed on node{member}")

    return asyncio.run(read())


@pytest.mark.parametrize("name", ["submit_and_wait", "sync_client"])
def test_a_single_transaction_commits_and_get_tx_shows_it(running_cluster: Path, name: str) -> None:
    done = run_example(name, running_cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    tx_id = re.search(r"^tx ([0-9a-f]{64})", done.stdout, re.M)
    height = re.search(r"^committed at height (\d+) index (\d+)$", done.stdout, re.M)
    assert tx_id and height, done.stdout
    assert f'"id": "{tx_id[1]}"' in done.stdout and '"status": "committed"' in done.stdout
    status, block = on_chain(running_cluster, tx_id[1])
    assert (status["status"], status["height"], status["index"]) == (
        "committed",
        int(height[1]),
        int(height[2]),
    )
    assert block["transactions"][int(height[2])] == tx_id[1]


def test_an_unregistered_key_is_refused_with_its_reason(
    running_cluster: Path, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger.json"
    save_key(stranger, SigningKey.generate())
    for name in ("submit_and_wait", "sync_client"):
        done = run_example(name, running_cluster, 0, "--key", str(stranger))
        assert done.returncode == 1, done.stdout + done.stderr
        assert "refused: 400 not_registered" in done.stdout or (
            "failed: not_registered" in done.stdout
        ), done.stdout


def test_a_gateway_batch_commits_every_transaction(running_cluster: Path) -> None:
    done = run_example("batch_gateway", running_cluster, 1, "--count", "40")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = re.search(r"^40 of 40 committed at heights (\d+)\.\.(\d+)$", done.stdout, re.M)
    last = re.search(r"^last tx ([0-9a-f]{64})$", done.stdout, re.M)
    assert summary and last, done.stdout
    status, block = on_chain(running_cluster, last[1], member=2)
    assert status["status"] == "committed"
    assert int(summary[1]) <= status["height"] == int(summary[2])
    assert last[1] in block["transactions"]


def test_a_whole_trade_ends_with_an_active_contract(running_cluster: Path) -> None:
    done = run_example("trade", running_cluster, 0)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^contract c-[0-9a-f]{8} ACTIVE$", done.stdout, re.M), done.stdout
    assert "refused as expected: unknown_version" in done.stdout
    offered = re.search(
        r"^offered: contract\.offer ([0-9a-f]{64}) at height (\d+)$", done.stdout, re.M
    )
    assert offered, done.stdout
    status, _ = on_chain(running_cluster, offered[1])
    assert (status["status"], status["height"]) == ("committed", int(offered[2]))


def test_an_example_explains_its_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mdtp.node.sdk.examples.batch_gateway", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for flag in ("--node", "--home", "--key", "--count"):
        assert flag in done.stdout
