"""Order of checks and bounded memory under hostile input (issue #11, DESIGN §3).

Size and nesting are bounded by the decoder (test_codec.py); here: a message is worth any
work, bookkeeping or buffering only once its sender is a member and its signature
verifies, and what members may legitimately make us keep is bounded per sender.
"""

from __future__ import annotations

import dataclasses

from mdtp.consensus.actions import RequestStateTransfer, Send, SetTimer
from mdtp.consensus.events import MessageReceived, TimerFired, TimerKind
from mdtp.consensus.messages import (
    Checkpoint,
    Commit,
    NewView,
    Prepare,
    PrePrepare,
    Suspect,
    ViewChange,
)
from mdtp.consensus.replica import Replica
from mdtp.consensus.sim.crypto import validate_payload
from tests.consensus.helpers import (
    KEYS,
    NOW,
    block,
    broadcasts,
    config,
    feed,
    pre_prepare,
    prepare,
    replica,
    signed,
)

BAD_SIGNATURE = b"\x00" * 64


def _spoofed(msg, sender):
    return dataclasses.replace(msg, sender=sender, signature=BAD_SIGNATURE)


def test_unsigned_future_view_messages_are_refused_not_buffered():
    r = replica("n1")
    future = [
        _spoofed(pre_prepare(view=5, sender="n1"), "n1"),
        _spoofed(Prepare(5, 1, bytes(32), "n2"), "n2"),
        _spoofed(Commit(9, 1, bytes(32), "n3"), "n3"),
    ]
    assert feed(r, *future) == []
    assert r.rejections == {"own_message": 1, "bad_signature": 2}
    assert r._future == {}


def test_spoofed_senders_cannot_evict_an_honest_peers_buffered_message():
    r = replica("n1")
    honest = signed(Prepare(1, 1, bytes(32), "n2"))
    feed(r, honest)
    flood = [_spoofed(Prepare(1, h, bytes(32), "n2"), "n2") for h in range(1, 600)]
    feed(r, *flood)
    assert r.rejections == {"bad_signature": len(flood)}
    assert [m for m, _ in r._future["n2"]] == [honest]


def test_future_buffer_is_bounded_per_sender_in_bytes_and_count():
    r = replica("n1", block_bytes_max=8_000, future_bytes_per_sender_max=20_000)
    big_tx = b"x" * 7_000
    proposals = [
        signed(PrePrepare(4, 1, block(proposer="n0", txs=[big_tx + bytes([i])]), "n0"))
        for i in range(10)
    ]
    feed(r, *proposals)
    assert r._future_bytes["n0"] <= 20_000
    assert [m for m, _ in r._future["n0"]] == proposals[-2:]  # the newest are kept
    assert r.rejections == {"future_buffer_full": 8}
    # A flooding member only ever spends its own budget.
    honest = signed(Prepare(1, 1, bytes(32), "n2"))
    feed(r, honest)
    many = [signed(Commit(2, 1, bytes([i % 256]) * 32, "n3")) for i in range(400)]
    feed(r, *many)
    assert len(r._future["n3"]) == 20_000 // 512  # votes count at their fixed overhead
    assert [m for m, _ in r._future["n2"]] == [honest]


def test_stale_view_change_without_valid_signature_gets_no_reply():
    r = replica("n1")
    forged = ViewChange(0, r.stable_checkpoint, (), "n3", BAD_SIGNATURE)
    suspect = Suspect(0, "n2", BAD_SIGNATURE)
    actions = feed(r, forged, suspect)
    assert [a for a in actions if isinstance(a, Send)] == []
    assert r.rejections == {"bad_signature": 2}
    assert r._helped_at == {}


def test_forged_proposal_for_a_huge_height_leaves_no_trace():
    r = replica("n1")
    forged = _spoofed(pre_prepare(height=1, sender="n0"), "n0")
    forged = dataclasses.replace(forged, height=10**9)
    feed(r, forged)
    assert r.rejections == {"bad_signature": 1}
    assert r._slots == {} and r._transfer is None


def _checkpoint(sender: str, height: int) -> Checkpoint:
    return signed(Checkpoint(height, bytes([height % 251]) * 32, b"\x07" * 32, sender))


def test_checkpoints_for_far_future_heights_do_not_grow_memory():
    r = replica("n1")  # checkpoint interval 2, window 4
    horizon = r.config.checkpoint_horizon
    for i in range(1, 1_000):
        feed(r, _checkpoint("n3", 2 * i))
    n, per_sender = r.config.n, r.config.checkpoints_per_sender_max
    assert len(r._checkpoint_votes) <= per_sender <= n * per_sender
    assert r._far_checkpoints == {"n3": 2 * 999}
    assert r.rejections["checkpoint_beyond_horizon"] == 999 - horizon // 2
    # One member far ahead is not evidence that we are behind.
    assert r._transfer is None


def test_f_plus_one_members_far_ahead_make_a_replica_catch_up():
    r = replica("n1")
    far = r.config.checkpoint_horizon + 100
    feed(r, _checkpoint("n3", far + 50))
    actions = feed(r, _checkpoint("n2", far))
    (request,) = [a for a in actions if isinstance(a, RequestStateTransfer)]
    # The (f+1)-th highest: at least one honest member holds it.
    assert (request.from_height, request.to_height) == (1, far)
    assert set(request.peers) == {"n2", "n3"}


def test_suspicions_of_f_members_alone_do_not_change_the_view():
    r = replica("n1")
    feed(r, signed(Suspect(0, "n3")), signed(Suspect(7, "n3")))
    assert r.view == 0 and not r.in_view_change
    assert broadcasts(feed(r, signed(Suspect(0, "n2"))), ViewChange)  # f+1 = 2
    assert r.view == 1 and r.in_view_change


def test_late_new_view_is_still_accepted_after_the_wait_for_it_expired():
    r = replica("n2")
    vcs = [signed(ViewChange(1, r.stable_checkpoint, (), s)) for s in ("n0", "n3")]
    actions = feed(r, *vcs)
    (own_vc,) = broadcasts(actions, ViewChange)
    (timer,) = [a for a in actions if isinstance(a, SetTimer) and a.kind is TimerKind.VIEW_CHANGE]
    actions = r.handle(TimerFired(timer.at_ms, TimerKind.VIEW_CHANGE, timer.timer_id))
    # Alone, it does not climb to view 2 (where no one else may ever go): it suspects.
    assert broadcasts(actions, ViewChange) == []
    assert [s.view for s in broadcasts(actions, Suspect)] == [1]
    assert (r.view, r.in_view_change) == (1, True)
    primary = replica("n1")
    (nv,) = broadcasts(feed(primary, *vcs, own_vc), NewView)
    feed(r, nv, now=timer.at_ms + 500)
    assert (r.view, r.in_view_change) == (1, False)
    # A peer still waiting for that NEW-VIEW and suspecting view 1 is shown it.
    actions = feed(r, signed(Suspect(1, "n3")), now=timer.at_ms + 600)
    assert [(a.to, a.message) for a in actions if isinstance(a, Send)] == [("n3", nv)]


def test_a_signature_the_driver_verified_in_this_domain_is_not_checked_again() -> None:
    """The driver's ingress verifies each message before queueing it and says in which
    domain (``MessageReceived.verified_in``); the core trusts that only for its own domain,
    so a message verified under another epoch's domain is checked again and refused."""
    calls: list[str] = []

    def counting(node_id: str, data: bytes, signature: bytes) -> bool:
        calls.append(node_id)
        return KEYS.verify(node_id, data, signature)

    r = Replica(config("n1"), KEYS.signer("n1"), counting, validate_payload)
    r.start(0)
    pp = pre_prepare()
    r.handle(MessageReceived(NOW, pp, verified_in="test"))
    assert calls == []
    assert r.rejected_total == 0

    forged = dataclasses.replace(prepare(pp, "n2"), signature=b"\x01" * 64)
    r.handle(MessageReceived(NOW, forged, verified_in="test#1"))
    assert calls == ["n2"]
    assert r.rejections.get("bad_signature") == 1
    r.handle(MessageReceived(NOW, forged))
    assert calls == ["n2", "n2"]
    assert r.rejections.get("bad_signature") == 2
