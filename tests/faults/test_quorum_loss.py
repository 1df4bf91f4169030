"""A node that cannot reach a quorum refuses submissions at once (``503 no_quorum`` with
Retry-After) instead of answering ``pending`` for a transaction that can only wait; once
the quorum is back it takes them again. Real 4-node cluster, two members stopped."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mdtp.node.identity.genesis import load_genesis
from mdtp.node.sdk.client import ApiError
from tests.faults.runner import FaultCluster
from tests.support.processes import metric_value, wait_until
from tests.support.workload import client, note_tx, registered_keys

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]


def test_without_a_quorum_submissions_are_refused_at_once_and_taken_again_after(
    tmp_path: Path,
) -> None:
    c = FaultCluster(tmp_path / "c")
    c.create()
    try:
        c.start_all()
        node0 = c.node("node0")
        chain_id = load_genesis(c.dir / "genesis.json").chain_id
        (key,) = asyncio.run(registered_keys(c.dir, 1))

        def tx(nonce: int) -> bytes:
            return note_tx(key, chain_id, nonce)

        c.stop(c.node("node2"))
        c.stop(c.node("node3"))
        wait_until(lambda: metric_value(node0, "mdtp_p2p_peers_connected") <= 1, 60, "links down")

        async def refused() -> tuple[int, str, float]:
            started = time.monotonic()
            async with client(c.dir, node0.api) as api:
                with pytest.raises(ApiError) as e:
                    await api.submit(tx(1), wait=True, timeout_s=30)
            return e.value.status, e.value.reason, time.monotonic() - started

        status, reason, took = asyncio.run(refused())
        assert (status, reason) == (503, "no_quorum")
        assert took < 15, "refused at once, not after the wait ran out"

        c.start(c.node("node2"))
        c.wait_ready(node0)

        async def commits() -> str:
            async with client(c.dir, node0.api) as api:
                doc = await api.submit(tx(1), wait=True, timeout_s=60)
            return str(doc["status"])

        assert asyncio.run(commits()) == "committed"
    finally:
        c.close()
