"""Perturbation scenarios on one shared real cluster, each followed by every invariant.

The scenarios run in list order on the same cluster (each heals before the next), so later
scenarios also check that earlier faults left nothing behind: the chain prefix seen so far
must never change, and every transaction acknowledged so far must still be there.
"""

from __future__ import annotations

import pytest

from tests.faults.runner import SCENARIOS, FaultCluster, Scenario, run_scenario

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f"{i:02d}" for i in range(len(SCENARIOS))])
async def test_scenario_keeps_every_invariant(
    fault_cluster: FaultCluster, scenario: Scenario
) -> None:
    outcome = await run_scenario(fault_cluster, scenario)
    print(
        f"{scenario.name}: {outcome.acked} acked, height {outcome.height}, "
        f"{outcome.duration_s:.1f} s"
    )
    assert outcome.acked == scenario.senders * scenario.txs_per_sender, outcome
    assert not outcome.violations, "\n".join(outcome.violations)


async def test_every_acknowledged_transaction_survives_the_whole_sequence(
    fault_cluster: FaultCluster,
) -> None:
    checker = fault_cluster.checker
    assert len(checker.acked) >= 4 * len(SCENARIOS)
    await checker.check_acked([n.api for n in fault_cluster.nodes], full=True)
    assert fault_cluster.sampler is not None and fault_cluster.sampler.samples > 0
    assert not checker.violations, "\n".join(checker.violations)
