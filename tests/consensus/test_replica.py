"""Replica transitions, one behaviour per test, driven with real signed messages."""

from __future__ import annotations

import dataclasses

from mdtp.consensus.actions import (
    Action,
    Broadcast,
    Deliver,
    Persist,
    ProposalWanted,
    ReportEvidence,
    RequestStateTransfer,
    SetTimer,
)
from mdtp.consensus.block import Block
from mdtp.consensus.events import BlockExecuted, TimerFired, TimerKind, TransactionsAvailable
from mdtp.consensus.messages import (
    Checkpoint,
    Commit,
    NewView,
    Prepare,
    PrePrepare,
    Suspect,
    ViewChange,
    sign_message,
)
from mdtp.consensus.replica import Replica
from mdtp.consensus.sim.crypto import make_tx, validate_payload
from mdtp.consensus.state import decode_state, encode_state
from tests.consensus.helpers import (
    KEYS,
    NOW,
    broadcasts,
    commit,
    config,
    feed,
    pre_prepare,
    prepare,
    replica,
    signed,
)


def test_backup_accepts_primary_proposal_and_persists_before_preparing():
    r = replica("n1")
    actions = feed(r, pre_prepare())
    kinds = [type(a) for a in actions]
    assert Persist in kinds and Broadcast in kinds
    assert kinds.index(Persist) < kinds.index(Broadcast)
    (vote,) = broadcasts(actions, Prepare)
    assert vote.height == 1 and vote.sender == "n1"
    persist = actions[kinds.index(Persist)]
    assert isinstance(persist, Persist)
    assert [p.digest for p in persist.state.accepted] == [vote.digest]


def test_replica_refuses_preprepare_from_non_primary():
    r = replica("n1")
    assert feed(r, pre_prepare(sender="n2")) == []
    assert r.rejections == {"wrong_primary": 1}


def test_replica_refuses_preprepare_for_an_older_view_and_buffers_later_views():
    r = replica("n2")
    r.handle(TimerFired(NOW, TimerKind.VIEW_CHANGE, 0))  # stale timer id: ignored
    assert feed(r, pre_prepare(view=1, sender="n1")) == []
    assert r.rejections == {}  # buffered for view 1, not rejected
    _move_to_view_1(r)
    assert feed(r, pre_prepare(view=0)) == []
    assert r.rejections.get("wrong_view") == 1


def test_replica_refuses_heights_outside_the_watermarks():
    r = replica("n1")
    assert feed(r, pre_prepare(height=5)) == []  # window is (0, 4]
    assert r.rejections == {"outside_watermarks": 1}


def test_replica_refuses_bad_signature():
    r = replica("n1")
    pp = dataclasses.replace(pre_prepare(), signature=b"\x00" * 64)
    assert feed(r, pp) == []
    assert r.rejections == {"bad_signature": 1}


def test_replica_refuses_block_whose_payload_does_not_match_its_header():
    r = replica("n1")
    pp = pre_prepare()
    tampered = Block(pp.block.header, (make_tx(0, 99),))
    assert feed(r, signed(dataclasses.replace(pp, block=tampered))) == []
    assert r.rejections == {"digest_mismatch": 1}


def test_replica_counts_duplicates_without_acting_twice():
    r = replica("n1")
    pp = pre_prepare()
    feed(r, pp)
    assert feed(r, pp) == []
    assert r.rejections == {"duplicate": 1}


def test_replica_keeps_evidence_when_primary_equivocates():
    r = replica("n1")
    first = pre_prepare()
    second = pre_prepare(timestamp_ms=NOW + 1)
    feed(r, first)
    actions = feed(r, second)
    (report,) = [a for a in actions if isinstance(a, ReportEvidence)]
    assert report.evidence.offender == "n0"
    assert {report.evidence.first, report.evidence.second} == {first, second}
    assert r.rejections == {"equivocation": 1}
    assert len(r.evidence) == 1


def test_replica_refuses_block_the_application_rejects():
    r = replica("n1")
    bad_tx = b"x" + make_tx(0, 1)[1:]
    assert feed(r, pre_prepare(txs=[bad_tx])) == []
    assert r.rejections == {"invalid_payload": 1}


def test_replica_refuses_timestamp_beyond_clock_skew():
    r = replica("n1")
    assert feed(r, pre_prepare(timestamp_ms=NOW + 60_000)) == []
    assert r.rejections == {"timestamp_skew": 1}


def _commit_height(r: Replica, pp: PrePrepare) -> list[Action]:
    actions = feed(r, pp)
    for sender in ("n1", "n2", "n3"):
        if sender != r.config.my_id:
            actions += feed(r, prepare(pp, sender))
    for sender in ("n0", "n1", "n2", "n3"):
        if sender != r.config.my_id:
            actions += feed(r, commit(pp, sender))
    return actions


def test_quorum_of_prepares_then_commits_delivers_block_with_certificate():
    r = replica("n1")
    pp = pre_prepare()
    actions = _commit_height(r, pp)
    (commit_vote,) = broadcasts(actions, Commit)
    assert commit_vote.digest == pp.digest
    (deliver,) = [a for a in actions if isinstance(a, Deliver)]
    assert deliver.block == pp.block
    assert len(deliver.certificate.signatures) >= 3
    # Commit vote is protected by a prepared certificate persisted before it.
    persists = [i for i, a in enumerate(actions) if isinstance(a, Persist)]
    sent = [
        i for i, a in enumerate(actions) if isinstance(a, Broadcast) and a.message is commit_vote
    ]
    assert persists and persists[-1] < sent[0]
    assert r.delivered_height == 1


def test_primary_proposes_when_transactions_arrive_and_asks_for_more():
    r = replica("n0")
    assert r.wants_proposal
    actions = r.handle(TransactionsAvailable(NOW, (make_tx(0, 1),)))
    (pp,) = broadcasts(actions, PrePrepare)
    assert pp.height == 1 and pp.block.header.timestamp_ms == NOW
    # Depth 1: block 2 needs the root of block 1, so no proposal until it executes.
    assert not r.wants_proposal
    assert not any(isinstance(a, ProposalWanted) for a in actions)


def _chain(r: Replica, heights: int) -> list[PrePrepare]:
    pps: list[PrePrepare] = []
    prev = None
    for h in range(1, heights + 1):
        pp = pre_prepare(height=h, prev_hash=prev, timestamp_ms=NOW + h)
        _commit_height(r, pp)
        r.handle(BlockExecuted(NOW, h, b"\x00" * 32))
        pps.append(pp)
        prev = pp.digest
    return pps


def test_stable_checkpoint_garbage_collects_the_log_below_it():
    r = replica("n1")
    pps = _chain(r, 2)
    assert r.stable_checkpoint.height == 0
    cp = Checkpoint(2, pps[1].digest, b"\x00" * 32, "")
    for sender in ("n0", "n2"):
        feed(r, signed(dataclasses.replace(cp, sender=sender)))
    assert r.stable_checkpoint.height == 2
    assert len(r.stable_checkpoint.signatures) == 3
    assert r.snapshot().accepted == ()
    # Heights up to 2 + window are now acceptable.
    assert feed(r, pre_prepare(height=7)) == []
    assert r.rejections.get("outside_watermarks") == 1


def test_replica_behind_a_stable_checkpoint_requests_state_transfer():
    r = replica("n1")
    cp = Checkpoint(4, b"\x05" * 32, b"\x06" * 32, "")
    actions = []
    for sender in ("n0", "n2", "n3"):
        actions += feed(r, signed(dataclasses.replace(cp, sender=sender)))
    (request,) = [a for a in actions if isinstance(a, RequestStateTransfer)]
    assert (request.from_height, request.to_height) == (1, 4)
    assert request.to_block_hash == b"\x05" * 32
    assert set(request.peers) == {"n0", "n2", "n3"}


def test_replica_requests_transfer_for_a_certified_block_it_never_saw():
    r = replica("n1")
    pp = pre_prepare()
    actions = feed(r, *(commit(pp, s) for s in ("n0", "n2", "n3")))
    (request,) = [a for a in actions if isinstance(a, RequestStateTransfer)]
    assert request.to_height == 1 and request.to_block_hash == pp.digest


def _view_change(sender: str, view: int = 1) -> ViewChange:
    r = replica(sender)
    return signed(ViewChange(view, r.stable_checkpoint, (), sender))


def _move_to_view_1(r: Replica) -> list[Action]:
    actions = r.handle(TimerFired(NOW, TimerKind.VIEW_CHANGE, 0))
    return actions + feed(r, *(_view_change(s) for s in ("n0", "n2", "n3") if s != r.config.my_id))


def _suspect(sender: str, view: int = 0) -> Suspect:
    return signed(Suspect(view, sender))


def _time_out(r: Replica, timer_id: int, now: int = NOW) -> list[Action]:
    """Our progress timer fires and one more replica suspects the primary: f+1 = 2."""
    other = next(m for m in ("n2", "n3") if m != r.config.my_id)
    actions = r.handle(TimerFired(now, TimerKind.VIEW_CHANGE, timer_id))
    return actions + feed(r, _suspect(other, r.view), now=now)


def test_timeout_on_pending_work_suspects_then_f_plus_one_start_a_view_change_with_backoff():
    r = replica("n2")
    actions = feed(r, pre_prepare())
    (timer,) = [a for a in actions if isinstance(a, SetTimer) and a.kind is TimerKind.VIEW_CHANGE]
    assert timer.at_ms == NOW + 1_000
    actions = r.handle(TimerFired(NOW + 1_000, TimerKind.VIEW_CHANGE, timer.timer_id))
    (own,) = broadcasts(actions, Suspect)
    assert own.view == 0 and not r.in_view_change  # alone it keeps working in view 0
    assert r.suspicions == {"progress": 1}
    actions = feed(r, _suspect("n3"), now=NOW + 1_000)
    assert isinstance(actions[0], Persist) and actions[0].state.view == 1
    (vc,) = broadcasts(actions, ViewChange)
    assert vc.new_view == 1 and len(vc.prepared) == 0
    assert r.in_view_change
    # A quorum of view changes arms the NEW-VIEW timer, twice as long now.
    actions = feed(r, _view_change("n0"), _view_change("n3"), now=NOW + 1_000)
    (timer,) = [a for a in actions if isinstance(a, SetTimer) and a.kind is TimerKind.VIEW_CHANGE]
    assert timer.at_ms == NOW + 1_000 + 2_000


def test_new_primary_sends_new_view_reproposing_prepared_blocks():
    r = replica("n1")  # primary of view 1
    pp = pre_prepare()
    feed(r, pp, prepare(pp, "n2"), prepare(pp, "n3"))  # prepared, no commits yet
    actions = _time_out(r, 1)
    (own_vc,) = broadcasts(actions, ViewChange)
    assert [c.pre_prepare.digest for c in own_vc.prepared] == [pp.digest]
    actions = feed(r, _view_change("n2"), _view_change("n3"))
    (nv,) = broadcasts(actions, NewView)
    assert [p.digest for p in nv.pre_prepares] == [pp.digest]
    assert nv.pre_prepares[0].view == 1 and nv.pre_prepares[0].sender == "n1"
    assert r.view == 1 and not r.in_view_change


def test_backup_enters_view_from_valid_new_view_and_prepares_reproposals():
    primary = replica("n1")
    pp = pre_prepare()
    feed(primary, pp, prepare(pp, "n2"), prepare(pp, "n3"))
    _time_out(primary, 1)
    (nv,) = broadcasts(feed(primary, _view_change("n2"), _view_change("n3")), NewView)
    backup = replica("n2")
    actions = feed(backup, nv)
    assert backup.view == 1
    (vote,) = broadcasts(actions, Prepare)
    assert (vote.view, vote.digest) == (1, pp.digest)


def test_backup_rejects_new_view_that_drops_a_prepared_block():
    primary = replica("n1")
    pp = pre_prepare()
    feed(primary, pp, prepare(pp, "n2"), prepare(pp, "n3"))
    _time_out(primary, 1)
    (nv,) = broadcasts(feed(primary, _view_change("n2"), _view_change("n3")), NewView)
    forged = sign_message(dataclasses.replace(nv, pre_prepares=()), "test", KEYS.signer("n1"))
    backup = replica("n2")
    assert feed(backup, forged) == []
    assert backup.rejections == {"bad_new_view": 1}
    assert backup.view == 0


def test_backup_rejects_new_view_from_wrong_primary_or_without_quorum():
    backup = replica("n3")
    vcs = tuple(_view_change(s) for s in ("n0", "n1", "n2"))
    feed(backup, signed(NewView(1, vcs, (), "n2")))
    feed(backup, signed(NewView(1, vcs[:2], (), "n1")))
    assert backup.rejections == {"wrong_primary": 1, "bad_new_view": 1}
    feed(backup, signed(NewView(1, vcs, (), "n1")))
    assert backup.view == 1 and not backup.in_view_change


def test_f_plus_one_view_changes_make_a_replica_join_the_higher_view():
    r = replica("n3")
    actions = feed(r, _view_change("n0", view=2), _view_change("n1", view=3))
    (vc,) = broadcasts(actions, ViewChange)
    assert vc.new_view == 2 and r.view == 2


def test_restored_replica_never_prepares_a_conflicting_block():
    r = replica("n1")
    actions = feed(r, pre_prepare())
    state = [a for a in actions if isinstance(a, Persist)][-1].state
    restored = Replica.restore(
        config("n1"),
        decode_state(*encode_state(state).stored()),
        0,
        None,
        {},
        KEYS.signer("n1"),
        KEYS.verify,
        validate_payload,
    )
    restored.start(NOW)
    actions = feed(restored, pre_prepare(timestamp_ms=NOW + 1))
    assert broadcasts(actions, Prepare) == []
    assert restored.rejections == {"equivocation": 1}


def test_messages_from_non_members_and_for_other_chains_are_rejected():
    r = replica("n1")
    feed(r, signed(pre_prepare(), chain_id="other"))
    pp = pre_prepare()
    feed(r, dataclasses.replace(pp, sender="mallory"))
    assert r.rejections == {"bad_signature": 1, "unknown_sender": 1}


def test_restored_replica_on_an_idle_chain_has_no_phantom_work():
    r = replica("n1")
    (pp,) = _chain(r, 1)
    state = r.snapshot()
    assert [p.height for p in state.accepted] == [1]  # persisted while pending
    restored = Replica.restore(
        config("n1"),
        decode_state(*encode_state(state).stored()),
        1,
        pp.block.header,
        {0: b"\x00" * 32, 1: b"\x00" * 32},
        KEYS.signer("n1"),
        KEYS.verify,
        validate_payload,
    )
    actions = restored.start(NOW)
    timers = [a.kind for a in actions if isinstance(a, SetTimer)]
    assert TimerKind.VIEW_CHANGE not in timers
    assert broadcasts(actions, Prepare) == []
    assert restored.snapshot().accepted == ()
