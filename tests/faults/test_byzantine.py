"""One Byzantine node (``MDTP_TEST_BYZANTINE``) in a real 4-node cluster (f = 1): the three
honest nodes keep committing, agree on every block, and record what the bad node did.

node0 is the primary of view 0, so in ``equivocate`` mode its first proposals conflict;
it is then restarted in ``mutate`` and in ``flood`` mode, and finally as an honest node,
which must converge to the honest chain.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdtp.node.ops.cluster import ClusterNode
from tests.faults.runner import RECOVERY_TIMEOUT_S, FaultCluster
from tests.support.workload import Workload, client

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

BYZANTINE = "node0"


@pytest.fixture(scope="module")
def byz_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    fc = FaultCluster(Path(tmp_path_factory.mktemp("byzantine")) / "c")
    fc.create()
    try:
        fc.start_all({BYZANTINE: {"MDTP_TEST_BYZANTINE": "equivocate"}})
        yield fc
    finally:
        fc.close()


def refusals(node: ClusterNode) -> float:
    """Consensus frames dropped before the core plus messages the core rejected."""
    with urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    prefixes = ("mdtp_consensus_frames_dropped_total{", "mdtp_consensus_messages_rejected_total{")
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefixes))


async def honest_commit(fc: FaultCluster, what: str) -> None:
    honest = [n for n in fc.nodes if n.id != BYZANTINE]
    w = Workload(fc.dir, senders=3)
    await asyncio.wait_for(w.run_closed_loop(3, alive=[n.api for n in honest]), 240)
    assert not w.errors and len(w.acked) == 9, f"{what}: {w.errors}"
    fc.checker.record_acked(w.acked)
    apis = [n.api for n in honest]
    await fc.checker.check_chains(apis)
    assert not fc.checker.violations, fc.checker.violations


async def test_equivocating_primary_is_recorded_as_evidence_and_honest_nodes_commit(
    byz_cluster: FaultCluster,
) -> None:
    fc = byz_cluster
    await honest_commit(fc, "equivocate")
    evidence = []
    for node in fc.nodes[1:]:
        async with client(fc.dir, node.api) as c:
            evidence += await c.get("/v1/evidence")
    assert evidence and all(e["offender"] == BYZANTINE for e in evidence), evidence
    assert {e["kind"] for e in evidence}


@pytest.mark.parametrize("mode", ["mutate", "flood"])
async def test_mutating_or_flooding_node_is_refused_and_honest_nodes_commit(
    byz_cluster: FaultCluster, mode: str
) -> None:
    fc = byz_cluster
    honest = [n for n in fc.nodes if n.id != BYZANTINE]
    before = sum(refusals(n) for n in honest)
    fc.stop(fc.node(BYZANTINE))
    fc.start(fc.node(BYZANTINE), {"MDTP_TEST_BYZANTINE": mode})
    await asyncio.sleep(1)
    await honest_commit(fc, mode)
    after = sum(refusals(n) for n in honest)
    assert after > before, f"{mode}: honest nodes counted no refused frames"
    assert all(fc.alive(n) for n in honest)


async def test_the_byzantine_node_restarted_honest_converges_to_the_honest_chain(
    byz_cluster: FaultCluster,
) -> None:
    fc = byz_cluster
    fc.stop(fc.node(BYZANTINE))
    fc.start(fc.node(BYZANTINE))
    await asyncio.to_thread(fc.wait_ready, fc.node(BYZANTINE))
    await honest_commit(fc, "healed")
    await fc.wait_within(0, RECOVERY_TIMEOUT_S, "byzantine node healed")
    await fc.checker.check_acked([n.api for n in fc.nodes], full=True)
    assert fc.sampler is not None
    fc.sampler.sample_once()
    assert not fc.checker.violations and not fc.sampler.violations
