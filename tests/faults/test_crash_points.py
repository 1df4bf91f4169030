"""The crash-point loop on a real cluster: a node dies at its Nth durable-write boundary,
N = 1, 2, ..., restarting each time; its store must be whole and agree with the others."""

from __future__ import annotations

import pytest

from tests.faults.crashloop import crash_loop
from tests.faults.runner import FaultCluster

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

DURABLE_WRITES = {
    "before consensus-state persist",
    "after consensus-state persist",
    "before block commit batch",
    "after block commit batch",
}


async def test_node_dying_at_each_crash_point_recovers_with_every_invariant(
    fault_cluster: FaultCluster,
) -> None:
    victim = fault_cluster.nodes[2]
    # which write is the Nth depends on how votes and blocks interleave; 14 rounds once
    # missed one boundary in CI, so the loop may run up to 30 (it stops once all are reached)
    report = await crash_loop(fault_cluster, victim, n_min=8, n_max=30, want=DURABLE_WRITES)
    print(f"crash loop: {report.rounds} rounds, reached {report.reached}")
    assert not report.violations, "\n".join(report.violations)
    assert set(report.reached.values()) >= DURABLE_WRITES, report.reached
    assert len(report.reached) == report.rounds
