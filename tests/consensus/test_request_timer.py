"""PBFT's per-request timer: progress of the chain is not progress for a client.

A backup that holds a transaction the primary leaves out past ``request_timeout_ms``
suspects the primary even while other blocks commit; f+1 suspicions change the view.
"""

from __future__ import annotations

import pytest

from mdtp.consensus.actions import Action, CancelTimer, SetTimer
from mdtp.consensus.codec import transaction_id
from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.errors import ConfigError
from mdtp.consensus.events import (
    BlockExecuted,
    TimerFired,
    TimerKind,
    TransactionsAvailable,
    TransactionsRemoved,
)
from mdtp.consensus.messages import NewView, Suspect, ViewChange
from mdtp.consensus.replica import Replica
from mdtp.consensus.sim.crypto import make_tx
from tests.consensus.helpers import (
    MEMBERS,
    NOW,
    broadcasts,
    commit,
    feed,
    pre_prepare,
    prepare,
    replica,
    signed,
)

TIMEOUT_MS = 5_000
VICTIM = make_tx(7, 1)


def _backup(**overrides: object) -> Replica:
    return replica("n1", request_timeout_ms=TIMEOUT_MS, **overrides)


def _request_timers(actions: list[Action]) -> list[SetTimer]:
    return [a for a in actions if isinstance(a, SetTimer) and a.kind is TimerKind.REQUEST]


def _commit_blocks(r: Replica, payloads: list[list[bytes]], now: int) -> list[Action]:
    """The primary n0 proposes and a quorum commits one block per payload."""
    actions: list[Action] = []
    prev = None
    for i, txs in enumerate(payloads):
        h = r.delivered_height + 1
        pp = pre_prepare(height=h, prev_hash=prev, timestamp_ms=now + i, txs=txs)
        actions += feed(r, pp, now=now)
        actions += feed(r, *(prepare(pp, s) for s in ("n2", "n3")), now=now)
        actions += feed(r, *(commit(pp, s) for s in ("n0", "n2", "n3")), now=now)
        actions += r.handle(BlockExecuted(now, h, b"\x00" * 32))
        prev = pp.digest
    return actions


def test_backup_suspects_a_primary_that_keeps_committing_but_leaves_a_transaction_out():
    r = _backup()
    (timer,) = _request_timers(r.handle(TransactionsAvailable(NOW, (VICTIM,))))
    assert timer.at_ms == NOW + TIMEOUT_MS and r.requests_tracked == 1
    # Other clients' blocks commit: that resets the progress timer, not the request timer.
    actions = _commit_blocks(r, [[make_tx(0, h)] for h in range(1, 4)], NOW + 1_000)
    assert r.delivered_height == 3
    assert not any(isinstance(a, CancelTimer) and a.kind is TimerKind.REQUEST for a in actions)
    actions = r.handle(TimerFired(NOW + TIMEOUT_MS, TimerKind.REQUEST, timer.timer_id))
    (suspect,) = broadcasts(actions, Suspect)
    assert suspect.view == 0 and r.suspicions == {"request": 1}
    vcs = broadcasts(feed(r, signed(Suspect(0, "n2")), now=NOW + TIMEOUT_MS), ViewChange)
    assert [vc.new_view for vc in vcs] == [1]


def test_request_timer_stops_when_the_transaction_commits():
    r = _backup()
    r.handle(TransactionsAvailable(NOW, (VICTIM, make_tx(0, 9))))
    actions = _commit_blocks(r, [[VICTIM, make_tx(0, 9)]], NOW + 100)
    assert r.requests_tracked == 0
    assert any(isinstance(a, CancelTimer) and a.kind is TimerKind.REQUEST for a in actions)


def test_oldest_remaining_transaction_sets_the_deadline():
    r = _backup()
    r.handle(TransactionsAvailable(NOW, (VICTIM,)))
    r.handle(TransactionsAvailable(NOW + 2_000, (make_tx(0, 9), VICTIM)))
    actions = _commit_blocks(r, [[VICTIM]], NOW + 2_500)
    (timer,) = _request_timers(actions)
    assert timer.at_ms == NOW + 2_000 + TIMEOUT_MS
    assert r.tracked_request_ids == (transaction_id(make_tx(0, 9)),)


def test_transactions_the_driver_dropped_stop_their_request_timer():
    r = _backup()
    r.handle(TransactionsAvailable(NOW, (VICTIM,)))
    actions = r.handle(TransactionsRemoved(NOW + 10, (transaction_id(VICTIM),)))
    assert r.requests_tracked == 0
    assert [a.kind for a in actions if isinstance(a, CancelTimer)] == [TimerKind.REQUEST]


def test_new_view_gives_the_new_primary_a_full_request_timeout():
    r = replica("n2", request_timeout_ms=TIMEOUT_MS)
    r.handle(TransactionsAvailable(NOW, (VICTIM,)))
    # View 1 (primary n1) opens at NOW + 3000 after f+1 suspicions and a NEW-VIEW.
    later = NOW + 3_000
    feed(r, signed(Suspect(0, "n0")), signed(Suspect(0, "n3")), now=later)
    assert r.in_view_change
    primary = replica("n1")
    vcs = (signed(ViewChange(1, r.stable_checkpoint, (), s)) for s in ("n0", "n2", "n3"))
    (nv,) = broadcasts(feed(primary, *vcs), NewView)
    actions = feed(r, nv, now=later)
    assert r.view == 1 and not r.in_view_change
    (timer,) = _request_timers(actions)
    assert timer.at_ms == later + TIMEOUT_MS


def test_tracked_requests_are_bounded_and_counted():
    r = _backup(requests_tracked_max=3)
    r.handle(TransactionsAvailable(NOW, tuple(make_tx(0, i) for i in range(5))))
    assert r.requests_tracked == 3
    assert r.rejections == {"requests_full": 1}


def test_request_timer_switched_off_never_suspects():
    r = _backup(request_timer=False)
    actions = r.handle(TransactionsAvailable(NOW, (VICTIM,)))
    assert _request_timers(actions) == []


def test_primary_does_not_time_its_own_proposals():
    r = replica("n0", request_timeout_ms=TIMEOUT_MS)
    actions = r.handle(TransactionsAvailable(NOW, (VICTIM,)))
    assert _request_timers(actions) == [] and r.requests_tracked == 0


def test_request_timeout_must_exceed_the_view_change_timeout():
    with pytest.raises(ConfigError):
        ConsensusConfig("c", MEMBERS, "n0", timeout_ms_base=2_000, request_timeout_ms=2_000)
