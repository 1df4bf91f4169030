"""membership_at and history, the functions the consensus driver will read: properties."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from mdtp.node.ledger.governance import layout
from mdtp.node.ledger.governance.membership import (
    Epoch,
    Policy,
    activation_height,
    fault_tolerance,
    genesis_epoch,
    history,
    membership_at,
    quorum_size,
    scheduled,
)
from mdtp.node.ledger.state import MemoryKV
from mdtp.node.ledger.tx import canonical
from tests.ledger.gov_helpers import Gov, digest


@given(
    passed=st.integers(0, 10**9),
    interval=st.integers(1, 1000),
    window_factor=st.integers(2, 10),
    previous=st.integers(0, 10**9),
)
def test_activation_height_follows_the_first_boundary_past_window_and_previous(
    passed: int, interval: int, window_factor: int, previous: int
) -> None:
    window = window_factor * interval
    a = activation_height(passed, interval, window, previous)
    assert (a - 1) % interval == 0  # right after a checkpoint boundary
    assert a >= passed + window
    assert a > previous
    # the first such boundary
    assert not (a - interval >= passed + window and a - interval > previous)


@given(st.integers(1, 500))
def test_quorums_intersect_in_a_correct_member_and_stay_live(n: int) -> None:
    f = fault_tolerance(n)
    q = quorum_size(n)
    assert f == (n - 1) // 3
    assert q == -(-(n + f + 1) // 2)  # ceil((n + f + 1) / 2)
    assert 2 * q - n >= f + 1  # two quorums share at least one correct member
    assert q <= n - f  # the correct members alone form a quorum
    if n == 3 * f + 1:
        assert q == 2 * f + 1


@given(st.integers(1, 100), st.integers(1, 99), st.integers(2, 100))
def test_policy_passes_is_strictly_more_than_the_fraction(n: int, num: int, den: int) -> None:
    policy = Policy(num, den, 4)
    needed = policy.needed(n)
    assert policy.passes(needed, n)
    assert not policy.passes(needed - 1, n)
    assert needed * den > num * n >= (needed - 1) * den


def _kv_with_epochs(activations: list[int]) -> tuple[MemoryKV, list[Epoch]]:
    gov = Gov(4)
    base = genesis_epoch(gov.genesis)
    epochs = [base]
    for i, a in enumerate(activations, start=1):
        members = base.members[: 4 - (i % 2)]  # vary n so the epochs differ
        epochs.append(Epoch(i, a, members, base.admins, Policy(), f"p{i}"))
    kv = MemoryKV({layout.epoch_key(e.number): canonical(e.to_record()) for e in epochs})
    return kv, epochs


@settings(max_examples=60)
@given(
    gaps=st.lists(st.integers(1, 5), max_size=12),
    probes=st.lists(st.integers(0, 600), max_size=20),
)
def test_membership_at_is_the_last_epoch_in_effect(gaps: list[int], probes: list[int]) -> None:
    activations, a = [], 0
    for g in gaps:
        a += 8 * g
        activations.append(a)
    kv, epochs = _kv_with_epochs(activations)
    assert history(kv) == epochs
    for h in probes + activations + [x - 1 for x in activations] + [0]:
        m = membership_at(kv, h)
        expected = max((e for e in epochs if e.activation_height <= h), key=lambda e: e.number)
        assert m.epoch == expected
        assert m.n == len(expected.members)
        assert m.f == (m.n - 1) // 3 and m.quorum == quorum_size(m.n)
        assert [e.number for e in scheduled(kv, h)] == [
            e.number for e in epochs if e.activation_height > h
        ]


def test_membership_before_at_and_after_activation() -> None:
    kv, _ = _kv_with_epochs([32, 40])
    assert membership_at(kv, 0).epoch.number == 0
    assert membership_at(kv, 31).epoch.number == 0
    assert membership_at(kv, 32).epoch.number == 1 and membership_at(kv, 32).n == 3
    assert membership_at(kv, 39).epoch.number == 1 and membership_at(kv, 39).f == 0
    assert membership_at(kv, 40).epoch.number == 2 and membership_at(kv, 40).quorum == 3
    assert membership_at(kv, 10**12).epoch.number == 2


def test_genesis_is_epoch_zero() -> None:
    gov = Gov(4)
    (epoch,) = history(gov.kv)
    assert epoch.number == 0 and epoch.activation_height == 0 and epoch.proposal_id is None
    assert epoch.member_ids == ("m1", "m2", "m3", "m4")
    assert {a.account_id for a in epoch.admins} == {
        k[0].account_id for k in gov.admin_keys.values()
    }
    assert epoch.policy == Policy(2, 3, 4)
    m = membership_at(gov.kv, 0)
    assert (m.n, m.f, m.quorum) == (4, 1, 3)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.sets(st.integers(1, 5), max_size=5), st.integers(0, 12)),
        min_size=1,
        max_size=6,
    )
)
def test_random_votes_keep_the_history_consistent(
    rounds: list[tuple[int, set[int], int]],
) -> None:
    """Certificate rotations proposed and voted at random, blocks in between: epochs are
    numbered in order, activate at strictly increasing checkpoint boundaries at least a window
    after they passed, and membership_at agrees with the accounts the ledger activated."""
    gov = Gov(5)
    for i, (proposer, voters, idle) in enumerate(rounds):
        target = f"m{proposer}"
        change = {
            "kind": "rotate_certificate",
            "member_id": target,
            "tls_fingerprint": digest(f"cert {i}"),
        }
        result = gov.submit(
            gov.admin(f"m{proposer}"), "member.propose", gov.propose_body(f"p{i}", change)
        )
        if not result.ok:
            assert result.reason == "change_pending"
            continue
        for v in sorted(voters):
            if gov.proposal(f"p{i}")["status"] != "open":
                break
            gov.vote(f"m{v}", f"p{i}")
        for _ in range(idle):
            gov.run()
    epochs = history(gov.kv)
    assert [e.number for e in epochs] == list(range(len(epochs)))
    for prev, e in itertools.pairwise(epochs):
        assert e.activation_height % 8 == 1 and e.activation_height > prev.activation_height
        proposal = gov.proposal(str(e.proposal_id))
        assert proposal["status"] == "passed" and proposal["epoch"] == e.number
        assert e.activation_height >= proposal["decided"]["height"] + 16
    last = epochs[-1]
    gov.advance_to(last.activation_height)
    assert membership_at(gov.kv, gov.height).epoch == last
    raw = gov.kv.get(layout.APPLIED)
    assert raw is not None and int.from_bytes(raw, "big") == last.number


_KINDS = ("add", "remove", "rotate_node_key", "rotate_certificate", "policy")


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_KINDS),
            st.integers(0, 9),  # proposer / target picks
            st.integers(0, 9),
            st.lists(st.tuples(st.integers(0, 9), st.booleans()), max_size=8),
            st.integers(0, 20),  # idle blocks after
            st.booleans(),  # short expiry
        ),
        min_size=1,
        max_size=10,
    )
)
def test_random_governance_never_crashes_and_keeps_its_invariants(
    steps: list[tuple[str, int, int, list[tuple[int, bool]], int, bool]],
) -> None:
    """Mixed proposals and votes at random: every transaction is ok or refused with a listed
    reason (a handler never raises), and after every block the history's invariants hold and
    the accounts agree with the membership in effect."""
    from mdtp.node.ledger.governance.membership import MAX_MEMBERS, epoch_at
    from mdtp.node.ledger.trading import layout as tlayout
    from mdtp.node.ledger.trading.accounts import load_account
    from mdtp.node.ledger.trading.reasons import REASON_CODES
    from tests.ledger.gov_helpers import HOUR_MS, NewMember

    gov = Gov(5)
    keys = {m: ks[0] for m, ks in gov.admin_keys.items()}
    joined: dict[str, NewMember] = {}
    for n, (kind, a, b, votes, idle, short) in enumerate(steps):
        current = epoch_at(history(gov.kv), gov.height + 1)
        ids = list(current.member_ids)
        proposer = ids[a % len(ids)]
        target = ids[b % len(ids)]
        if kind == "add":
            new = NewMember(f"x{n}")
            joined[new.id] = new
            change = new.change()
        elif kind == "remove":
            change = {"kind": "remove", "member_id": target}
        elif kind == "rotate_node_key":
            change = {
                "kind": kind,
                "member_id": target,
                "node_public_key": digest(f"node key {n}"),
            }
        elif kind == "rotate_certificate":
            change = {"kind": kind, "member_id": target, "tls_fingerprint": digest(f"fp {n}")}
        else:
            change = {
                "kind": "policy",
                "threshold_num": 1 + a % 3,
                "threshold_den": 2 + a % 3,
                "min_members": 3 + b % 3,
            }
        body = gov.propose_body(f"p{n}", change, expires_in_ms=10_000 if short else HOUR_MS)
        results = [gov.submit(keys[proposer], "member.propose", body)]
        for who, approve in votes:
            voter = ids[who % len(ids)]
            results.append(
                gov.submit(keys[voter], "member.vote", {"proposal_id": f"p{n}", "approve": approve})
            )
        for _ in range(idle):
            gov.run()
        assert all(r.ok or r.reason in REASON_CODES for r in results)
        # the admins of members that joined since act with their own keys
        for member_id, new in joined.items():
            keys.setdefault(member_id, new.admin_keys[0])

        epochs = history(gov.kv)
        for prev, e in itertools.pairwise(epochs):
            assert e.activation_height > prev.activation_height
            assert e.activation_height % 8 == 1
            assert len(e.members) <= MAX_MEMBERS
            assert len(e.members) >= min(prev.policy.min_members, len(prev.members))
        in_effect = epoch_at(epochs, gov.height)
        for m in in_effect.members:
            record = tlayout.read(gov.kv, tlayout.member_key(m.id))
            assert record is not None and record.get("status") != "removed"
        for admin in in_effect.admins:
            account = load_account(gov.kv, admin.account_id)
            assert account is not None and account["status"] == "active"
            assert account["member"] == admin.member
