"""Membership changes under faults, on the node's real chain code (``reconfig.py``): a
follower joins by governance and votes from its epoch; a member (Byzantine in half the seeds)
is removed and votes no more; with message loss, duplication, delay, reordering and a crash
and restart, every block is certified by the quorum of its own epoch and honest nodes agree.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from mdtp.node.testing.sim.__main__ import main
from mdtp.node.testing.sim.reconfig import RECONFIG_FAULTS, run_reconfig_seed
from mdtp.node.testing.sim.scenario import SimResult

pytestmark = pytest.mark.sim
ALL = frozenset(RECONFIG_FAULTS)
# seeds per CI run, in two processes (about 1 s of CPU each); more with
# ``python -m mdtp.node.testing.sim --reconfig --seeds N``
SEEDS = 200


def _job(seed: int) -> SimResult:
    return run_reconfig_seed(seed, ALL)


def test_join_and_removal_under_faults_keep_safety_and_liveness() -> None:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        failed = [r for r in pool.map(_job, range(SEEDS)) if not r.ok]
    assert not failed, "\n".join(
        f"seed {r.seed} ({r.mix}): {r.violations[:3]}  replay: python -m "
        f"mdtp.node.testing.sim --reconfig --seed {r.seed}"
        for r in failed
    )


def test_a_reconfiguration_without_faults_reaches_both_epochs() -> None:
    result = run_reconfig_seed(0, frozenset())
    assert result.ok, result.violations
    assert result.virtual_ms > 0


def test_the_command_replays_a_reconfiguration_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--reconfig", "--seed", "3"]) == 0
    assert "1 seeds, 0 with violations" in capsys.readouterr().out
