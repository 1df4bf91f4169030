"""Seeded simulations of the real core under every fault mix (marked ``sim``).

Seed counts: 14 single-fault mixes x (12 seeds at n=4 + 6 at n=7) + all faults
(260 at n=4, 90 at n=7) = 602 seeds.
"""

from __future__ import annotations

import pytest

from mdtp.consensus.sim.__main__ import main
from mdtp.consensus.sim.scenario import ALL_FAULTS, run_control, run_seed

pytestmark = pytest.mark.sim


def _run(seeds: range, n: int, faults: frozenset[str]) -> None:
    failures = []
    for seed in seeds:
        result = run_seed(seed, n, faults)
        if not result.ok:
            failures.append((seed, result.mix, result.violations))
    assert failures == []


@pytest.mark.parametrize("fault", ALL_FAULTS)
def test_single_fault_mix_keeps_safety_and_liveness_n4(fault):
    _run(range(12), 4, frozenset({fault}))


@pytest.mark.parametrize("fault", ALL_FAULTS)
def test_single_fault_mix_keeps_safety_and_liveness_n7(fault):
    _run(range(1000, 1006), 7, frozenset({fault}))


@pytest.mark.parametrize("batch", range(4))
def test_all_faults_together_keep_safety_and_liveness_n4(batch):
    _run(range(5000 + batch * 65, 5000 + (batch + 1) * 65), 4, frozenset(ALL_FAULTS))


@pytest.mark.parametrize("batch", range(3))
def test_all_faults_together_keep_safety_and_liveness_n7(batch):
    _run(range(7000 + batch * 30, 7000 + (batch + 1) * 30), 7, frozenset(ALL_FAULTS))


def test_control_with_f_plus_one_twins_is_reported_as_a_violation():
    result = run_control()
    assert any(v.startswith("agreement:") for v in result.violations)


def test_control_cli_exits_with_status_1(capsys):
    assert main(["--control"]) == 1
    assert "violation detected" in capsys.readouterr().out


def test_a_seed_replays_identically():
    first = run_seed(5003, 4, frozenset(ALL_FAULTS))
    second = run_seed(5003, 4, frozenset(ALL_FAULTS))
    assert (first.heights, first.messages, first.rejections) == (
        second.heights,
        second.messages,
        second.rejections,
    )


def test_cli_prints_seeds_per_second_and_summary_line(capsys):
    assert main(["--seeds", "3", "--nodes", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "seeds/s" in lines[-2]
    assert lines[-1] == "3 seeds, 0 violations"
