"""Aardvark's defence against a slow primary: a backup expects each view to deliver a
share of what recent views delivered under the same load, and until f+1 different
primaries have been measured it rotates a view under load after ``rotation_ms``, so there
is an honest view to compare with. A primary that proposes just under every timeout is
replaced; an honest primary whose clients simply send less is not, and once measured,
views no longer rotate (which would hand a crashed member a turn every n views)."""

from __future__ import annotations

from mdtp.consensus.actions import Action
from mdtp.consensus.events import BlockExecuted, TimerFired, TimerKind, TransactionsAvailable
from mdtp.consensus.messages import Suspect
from mdtp.consensus.primary_monitor import PrimaryMonitor
from mdtp.consensus.replica import Replica
from mdtp.consensus.sim.crypto import make_tx
from tests.consensus.helpers import broadcasts, commit, feed, pre_prepare, prepare, replica


def _monitor(**overrides: int) -> PrimaryMonitor:
    params = {"grace_ms": 1_000, "floor_pct": 50, "rotation_ms": 0, "history": 4, "f": 1}
    params.update(overrides)
    return PrimaryMonitor(**params)


def _run_view(
    m: PrimaryMonitor, start: int, *, backlog: int, txs_per_s: int, ms: int, view: int = 9
) -> int:
    """A view of ``ms`` under a constant backlog committing ``txs_per_s``; returns its end."""
    m.view_started(start, view=view, judging=True)
    m.advance(start, backlog)
    for t in range(start + 100, start + ms + 1, 100):
        m.advance(t, backlog)
        m.committed(txs_per_s // 10, 100 * (txs_per_s // 10))
    return start + ms


def test_no_history_no_throughput_verdict_but_rotation_under_load() -> None:
    m = _monitor(rotation_ms=5_000)
    end = _run_view(m, 0, backlog=16, txs_per_s=10, ms=4_000, view=0)
    assert m.verdict(end) is None  # nothing to compare with yet
    _run_view_more = end + 1_000
    m.advance(_run_view_more, 16)
    assert m.verdict(_run_view_more) == "rotation"


def test_an_idle_view_is_never_rotated_or_judged() -> None:
    m = _monitor(rotation_ms=5_000)
    _run_view(m, 0, backlog=16, txs_per_s=300, ms=3_000)
    m.view_started(3_000, view=0, judging=True)
    m.advance(60_000, 0)
    assert m.verdict(60_000) is None


def test_a_slow_view_is_judged_against_the_best_recent_one() -> None:
    m = _monitor()
    end = _run_view(m, 0, backlog=16, txs_per_s=300, ms=3_000)
    end = _run_view(m, end, backlog=16, txs_per_s=8, ms=1_500)
    assert m.verdict(end) == "throughput"


def test_a_view_just_above_the_floor_stands() -> None:
    m = _monitor()
    end = _run_view(m, 0, backlog=16, txs_per_s=300, ms=3_000)
    end = _run_view(m, end, backlog=16, txs_per_s=160, ms=3_000)
    assert m.verdict(end) is None


def test_lighter_load_lowers_the_expectation() -> None:
    """Sixteen clients gave 300 tx/s; one client gives 30 tx/s under any primary."""
    m = _monitor()
    end = _run_view(m, 0, backlog=16, txs_per_s=300, ms=3_000)
    end = _run_view(m, end, backlog=1, txs_per_s=30, ms=3_000)
    assert m.verdict(end) is None
    # but the same 30 tx/s with sixteen clients waiting is a slow primary
    end = _run_view(m, end, backlog=16, txs_per_s=30, ms=3_000)
    assert m.verdict(end) == "throughput"


def test_bigger_transactions_are_judged_by_bytes_too() -> None:
    m = _monitor()
    end = _run_view(m, 0, backlog=16, txs_per_s=300, ms=3_000)
    m.view_started(end, view=9, judging=True)
    m.advance(end, 16)
    for t in range(end + 100, end + 3_001, 100):
        m.advance(t, 16)
        m.committed(3, 30 * 100 * 5)  # a tenth of the transactions, five times the bytes
    assert m.verdict(end + 3_000) is None


def test_views_without_measurement_leave_no_history() -> None:
    m = _monitor()
    _run_view(m, 0, backlog=16, txs_per_s=300, ms=200)  # too short to measure
    m.view_started(200, view=9, judging=True)
    assert not m.history


# -- in the replica ---------------------------------------------------------------------


def _commit_one(
    r: Replica, h: int, prev: bytes | None, now: int, tx: bytes
) -> tuple[bytes, list[Action]]:
    pp = pre_prepare(height=h, prev_hash=prev, timestamp_ms=now, txs=[tx])
    actions = feed(r, pp, now=now)
    actions += feed(r, *(prepare(pp, s) for s in ("n2", "n3")), now=now)
    actions += feed(r, *(commit(pp, s) for s in ("n0", "n2", "n3")), now=now)
    actions += r.handle(BlockExecuted(now, h, b"\x00" * 32))
    return pp.digest, actions


def test_a_backup_rotates_a_primary_whose_turn_under_load_is_over() -> None:
    r = replica("n1", rotation_ms=5_000, throughput_floor_pct=50, window_size=64)
    r.handle(TransactionsAvailable(100, tuple(make_tx(9, i) for i in range(1, 17))))
    prev: bytes | None = None
    for h in range(1, 5):  # a slow primary: one transaction per ~1.2 s
        prev, actions = _commit_one(r, h, prev, 1_200 * h, make_tx(9, h))
        assert not broadcasts(actions, Suspect)
    actions = r.handle(TimerFired(5_100, TimerKind.RETRANSMIT, 1))
    (suspect,) = broadcasts(actions, Suspect)
    assert suspect.view == 0 and r.suspicions == {"rotation": 1}


def test_an_idle_backup_never_rotates() -> None:
    r = replica("n1", rotation_ms=5_000, throughput_floor_pct=50)
    actions = r.handle(TimerFired(60_000, TimerKind.RETRANSMIT, 1))
    assert not broadcasts(actions, Suspect) and r.suspicions == {}


def test_rotation_counts_time_under_load_not_age() -> None:
    """A transaction now and then (busy a tenth of the time) does not churn views."""
    m = _monitor(rotation_ms=5_000)
    m.view_started(0, view=0, judging=True)
    for t in range(0, 30_000, 1_000):
        m.advance(t, 1)
        m.advance(t + 100, 0)
        m.committed(1, 100)
    m.advance(30_000, 1)
    assert m.verdict(30_000) is None


def test_only_views_0_to_f_rotate() -> None:
    """f = 1: views 0 and 1 (two members, one of them honest) rotate; from view 2 on a view
    stays while it meets the floor, so a crashed member never gets another turn."""
    m = _monitor(rotation_ms=5_000)
    end = _run_view(m, 0, backlog=16, txs_per_s=10, ms=5_000, view=0)
    assert m.verdict(end) == "rotation"
    end = _run_view(m, end, backlog=16, txs_per_s=300, ms=5_000, view=1)
    assert m.verdict(end) == "rotation"
    end = _run_view(m, end, backlog=16, txs_per_s=300, ms=60_000, view=2)
    assert m.verdict(end) is None
