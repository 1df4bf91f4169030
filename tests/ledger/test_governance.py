"""Governance rules: member.propose, member.vote, thresholds, expiry, activation heights."""

from __future__ import annotations

from typing import Any

import pytest

from mdtp.node.identity.genesis import Member
from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.governance.membership import (
    Epoch,
    Policy,
    activation_height,
    history,
    membership_at,
)
from mdtp.node.ledger.governance.rules import MAX_OPEN, MAX_OPEN_PER_MEMBER, effective_status
from mdtp.node.ledger.trading import layout as tlayout
from mdtp.node.ledger.trading.accounts import load_account
from mdtp.node.ledger.trading.queries import audit_trail
from tests.ledger.gov_helpers import HOUR_MS, Gov, NewMember, digest

INTERVAL, WINDOW = 8, 16  # the genesis defaults


def account(gov: Gov, account_id: str) -> dict[str, Any]:
    record = load_account(gov.kv, account_id)
    assert record is not None, account_id
    return record


def member_record(gov: Gov, member_id: str) -> dict[str, Any]:
    record = tlayout.read(gov.kv, tlayout.member_key(member_id))
    assert isinstance(record, dict), member_id
    return record


def member_of(epoch: Epoch, member_id: str) -> Member:
    member = epoch.member(member_id)
    assert member is not None, member_id
    return member


def add_m5(gov: Gov, by: tuple[str, ...] = ("m1", "m2", "m3")) -> NewMember:
    new = NewMember("m5")
    gov.propose(by[0], "p-add", new.change())
    for m in by[1:]:
        gov.vote(m, "p-add")
    return new


def test_three_of_four_add_a_member_at_the_derived_activation_height():
    gov = Gov(4)
    new = NewMember("m5")
    gov.propose("m1", "p-add", new.change())
    assert gov.proposal("p-add")["status"] == "open"
    assert set(gov.proposal("p-add")["votes"]) == {"m1"}  # the proposer counts as approving
    gov.vote("m2", "p-add")
    assert gov.proposal("p-add")["status"] == "open"  # 2 of 4 is not more than 2/3
    passed_at = gov.height + 1
    gov.vote("m3", "p-add")
    proposal = gov.proposal("p-add")
    assert proposal["status"] == "passed"
    expected = activation_height(passed_at, INTERVAL, WINDOW, 0)
    assert (expected - 1) % INTERVAL == 0 and expected >= passed_at + WINDOW
    assert proposal["activation_height"] == expected and proposal["epoch"] == 1
    epochs = history(gov.kv)
    assert [e.number for e in epochs] == [0, 1]
    assert epochs[1].activation_height == expected and epochs[1].proposal_id == "p-add"
    assert "m5" in epochs[1].member_ids
    # not yet in effect: the new admin cannot act, the member record does not exist
    assert membership_at(gov.kv, expected - 1).epoch.number == 0
    assert membership_at(gov.kv, expected).epoch.number == 1
    assert tlayout.read(gov.kv, tlayout.member_key("m5")) is None
    gov.advance_to(expected - 1)
    assert gov.members_now() == ["m1", "m2", "m3", "m4"]
    gov.advance_to(expected)
    assert gov.members_now() == ["m1", "m2", "m3", "m4", "m5"]
    assert member_record(gov, "m5")["name"] == "Member m5"
    admin = account(gov, new.admin_keys[0].account_id)
    assert admin is not None and admin["kind"] == "admin" and admin["member"] == "m5"
    node = account(gov, new.node_key.account_id)
    assert node is not None and node["kind"] == "node"
    # the new admin now proposes and votes; n = 5 needs 4 approvals
    gov.admin_keys["m5"] = new.admin_keys
    gov.propose(
        "m5",
        "p-rot",
        {"kind": "rotate_certificate", "member_id": "m5", "tls_fingerprint": digest("m5 new cert")},
    )
    assert set(gov.proposal("p-rot")["votes"]) == {"m5"}
    # the lock on m5 was released at activation, the audit trail shows the history
    trail = audit_trail(gov.kv, "member", "m5")
    assert [e["type"] for e in trail] == [
        "member.propose",
        "member.vote",
        "member.vote",
        "member.propose",
    ]
    assert "passed with 3/4" in trail[2]["summary"]


def test_an_admin_of_an_unknown_member_or_a_user_cannot_propose():
    gov = Gov(4)
    outsider = SigningKey.generate()
    # not registered at all: refused before any rule
    result = gov.submit(
        outsider, "member.propose", gov.propose_body("p1", NewMember("m5").change())
    )
    assert result.reason == "not_registered"
    user = SigningKey.generate(with_encryption=True)
    gov.ok(
        gov.admin("m1"),
        "account.register",
        {
            "account_id": user.account_id,
            "public_key": user.public_key,
            "encryption_public_key": user.encryption_public_key,
            "roles": ["supplier"],
            "display_name": "u",
        },
    )
    gov.refused(
        "not_member_admin", user, "member.propose", gov.propose_body("p1", NewMember("m5").change())
    )
    gov.refused("not_member_admin", user, "member.vote", {"proposal_id": "p1", "approve": True})


def test_reason_codes_of_proposals():
    gov = Gov(4)
    admin = gov.admin("m1")
    new = NewMember("m5")
    gov.propose("m1", "p1", new.change())
    gov.refused(
        "proposal_exists",
        admin,
        "member.propose",
        gov.propose_body("p1", {"kind": "remove", "member_id": "m4"}),
    )
    gov.refused(
        "change_pending",
        gov.admin("m2"),
        "member.propose",
        gov.propose_body("p2", NewMember("m5").change()),
    )
    gov.refused(
        "member_exists", admin, "member.propose", gov.propose_body("p3", NewMember("m2").change())
    )
    other = NewMember("m6")
    gov.refused(
        "node_key_in_use",
        admin,
        "member.propose",
        gov.propose_body("p3", other.change(node_public_key=gov.node_keys["m2"].public_key)),
    )
    # a key a pending proposal claims is in use too
    gov.refused(
        "node_key_in_use",
        admin,
        "member.propose",
        gov.propose_body("p3", other.change(node_public_key=new.node_key.public_key)),
    )
    gov.refused(
        "fingerprint_in_use",
        admin,
        "member.propose",
        gov.propose_body("p3", other.change(tls_fingerprint=digest("tls m3"))),
    )
    gov.refused(
        "fingerprint_in_use",
        admin,
        "member.propose",
        gov.propose_body("p3", other.change(tls_fingerprint=new.fingerprint)),
    )
    gov.refused(
        "key_in_use",
        admin,
        "member.propose",
        gov.propose_body(
            "p3",
            other.change(
                admins=[
                    {"public_key": gov.admin("m2").public_key, "encryption_public_key": bytes(32)}
                ]
            ),
        ),
    )
    gov.refused(
        "unknown_member",
        admin,
        "member.propose",
        gov.propose_body("p3", {"kind": "remove", "member_id": "m9"}),
    )
    gov.refused(
        "too_few_members",
        admin,
        "member.propose",
        gov.propose_body("p3", {"kind": "remove", "member_id": "m4"}),
    )
    gov.refused(
        "bad_expiry",
        admin,
        "member.propose",
        gov.propose_body(
            "p3",
            {"kind": "rotate_certificate", "member_id": "m4", "tls_fingerprint": digest("x")},
            expires_in_ms=0,
        ),
    )
    gov.refused(
        "bad_expiry",
        admin,
        "member.propose",
        gov.propose_body(
            "p3",
            {"kind": "rotate_certificate", "member_id": "m4", "tls_fingerprint": digest("x")},
            expires_in_ms=31 * 24 * HOUR_MS,
        ),
    )
    gov.refused(
        "bad_policy",
        admin,
        "member.propose",
        gov.propose_body(
            "p3", {"kind": "policy", "threshold_num": 1, "threshold_den": 3, "min_members": 4}
        ),
    )
    gov.refused(
        "bad_body",
        admin,
        "member.propose",
        gov.propose_body(
            "p3", {"kind": "policy", "threshold_num": 1, "threshold_den": 1000, "min_members": 4}
        ),
    )
    gov.refused(
        "bad_body", admin, "member.propose", gov.propose_body("p3", other.change(p2p="no-port"))
    )
    gov.refused(
        "bad_body", admin, "member.propose", gov.propose_body("p3", other.change(admins=[]))
    )
    gov.refused(
        "bad_body",
        admin,
        "member.propose",
        gov.propose_body("p/3", {"kind": "remove", "member_id": "m4"}),
    )
    gov.refused(
        "bad_body",
        admin,
        "member.propose",
        gov.propose_body("p3", {"kind": "remove", "member_id": "M4"}),
    )
    gov.refused("unknown_proposal", admin, "member.vote", {"proposal_id": "nope", "approve": True})


def test_too_many_open_proposals():
    gov = Gov(4)
    for i in range(MAX_OPEN):
        gov.propose(f"m{i % 4 + 1}", f"p{i}", NewMember(f"n{i}").change())
    gov.refused(
        "too_many_open_proposals",
        gov.admin("m1"),
        "member.propose",
        gov.propose_body("px", NewMember("nx").change()),
    )


def test_one_member_cannot_hold_every_open_proposal():
    gov = Gov(4)
    for i in range(MAX_OPEN_PER_MEMBER):
        gov.propose("m1", f"p{i}", NewMember(f"n{i}").change())
    result = gov.refused(
        "too_many_open_proposals",
        gov.admin("m1"),
        "member.propose",
        gov.propose_body("px", NewMember("nx").change()),
    )
    assert "per member" in result.detail
    gov.propose("m2", "py", NewMember("ny").change())  # the others still can


def test_too_many_members(monkeypatch: pytest.MonkeyPatch) -> None:
    gov = Gov(4)
    from mdtp.node.ledger.governance import rules

    monkeypatch.setattr(rules, "MAX_MEMBERS", 4)
    gov.refused(
        "too_many_members",
        gov.admin("m1"),
        "member.propose",
        gov.propose_body("p", NewMember("m5").change()),
    )


def test_a_vote_on_a_decided_or_expired_proposal_is_refused():
    gov = Gov(4)
    add_m5(gov)
    gov.refused(
        "proposal_decided",
        gov.admin("m4"),
        "member.vote",
        {"proposal_id": "p-add", "approve": False},
    )
    change = {"kind": "rotate_certificate", "member_id": "m4", "tls_fingerprint": digest("c")}
    gov.propose("m1", "p-exp", change, expires_in_ms=HOUR_MS)
    later = gov.time_ms + 2 * HOUR_MS
    gov.refused(
        "proposal_expired",
        gov.admin("m2"),
        "member.vote",
        {"proposal_id": "p-exp", "approve": True},
        at_ms=later,
    )
    assert effective_status(gov.proposal("p-exp"), later) == "expired"


def test_expiry_is_judged_by_block_time_and_releases_the_lock():
    gov = Gov(4)
    change = {"kind": "rotate_certificate", "member_id": "m4", "tls_fingerprint": digest("c")}
    gov.propose("m1", "p-exp", change, expires_in_ms=HOUR_MS)
    expires = gov.proposal("p-exp")["expires_at_ms"]
    # exactly at expires_at_ms a vote still counts
    gov.ok(gov.admin("m2"), "member.vote", {"proposal_id": "p-exp", "approve": True}, at_ms=expires)
    gov.run(at_ms=expires + 1)
    assert gov.proposal("p-exp")["status"] == "open"  # swept only by a governance tx
    # the next governance transaction sweeps it; the lock and the claim are released
    gov.propose("m2", "p-again", change)
    assert gov.proposal("p-exp")["status"] == "expired"
    assert gov.proposal("p-exp")["decided"]["reason"] == "expired"
    trail = audit_trail(gov.kv, "member", "m4")
    assert "expired undecided" in trail[-2]["summary"]


def test_rejected_once_approval_is_out_of_reach_and_releases_claims():
    gov = Gov(4)
    new = NewMember("m5")
    gov.propose("m1", "p-add", new.change())
    gov.vote("m2", "p-add", approve=False)
    assert gov.proposal("p-add")["status"] == "open"  # 3 could still approve
    gov.vote("m3", "p-add", approve=False)
    proposal = gov.proposal("p-add")
    assert proposal["status"] == "rejected" and proposal["decided"]["reason"] == "unreachable"
    assert gov.kv.get(tlayout.account_key_index(new.node_key.public_key)) is None
    # the same facts may be proposed again
    gov.propose("m2", "p-add-2", new.change())


def test_a_later_vote_of_the_same_member_replaces_the_earlier_one():
    gov = Gov(4, admins_per_member=2)
    gov.propose("m1", "p", NewMember("m5").change())
    gov.vote("m2", "p", approve=False)
    gov.vote("m2", "p", approve=True, i=1)  # another admin of m2
    proposal = gov.proposal("p")
    assert proposal["votes"]["m2"]["approve"] is True
    assert proposal["votes"]["m2"]["account"] == gov.admin("m2", 1).account_id
    assert len(proposal["votes"]) == 2 and proposal["status"] == "open"
    # the proposer's member can withdraw its approval too
    gov.vote("m1", "p", approve=False, i=1)
    assert gov.proposal("p")["votes"]["m1"]["approve"] is False
    gov.vote("m3", "p")
    assert gov.proposal("p")["status"] == "open"  # m2 and m3 approve: 2/4
    gov.vote("m4", "p")
    assert gov.proposal("p")["status"] == "passed"  # 3/4


@pytest.mark.parametrize("n", range(4, 11))
def test_threshold_more_than_two_thirds(n):
    gov = Gov(n)
    ids = [f"m{i}" for i in range(1, n + 1)]
    needed = 2 * n // 3 + 1
    assert Policy().needed(n) == needed
    gov.propose("m1", "p", NewMember("new").change())
    for i, m in enumerate(ids[1:needed], start=2):
        assert gov.proposal("p")["status"] == "open", (n, i)
        gov.vote(m, "p")
    assert gov.proposal("p")["status"] == "passed"
    assert 3 * needed > 2 * n and 3 * (needed - 1) <= 2 * n


@pytest.mark.parametrize("n", range(4, 11))
def test_rejection_point(n):
    gov = Gov(n)
    ids = [f"m{i}" for i in range(1, n + 1)]
    # rejected once n - rejections approvals can no longer exceed 2/3
    rejections_needed = n - (2 * n // 3 + 1) + 1
    gov.propose("m1", "p", NewMember("new").change())
    for m in ids[1 : 1 + rejections_needed]:
        assert gov.proposal("p")["status"] == "open"
        gov.vote(m, "p", approve=False)
    assert gov.proposal("p")["status"] == "rejected"


def test_policy_change_and_removal_with_the_minimum():
    gov = Gov(5)
    policy = {"kind": "policy", "threshold_num": 1, "threshold_den": 2, "min_members": 5}
    gov.propose("m1", "p-pol", policy)
    gov.vote("m2", "p-pol")
    assert gov.proposal("p-pol")["status"] == "open"
    gov.vote("m3", "p-pol")
    assert gov.proposal("p-pol")["status"] == "open"  # 3 of 5 is not more than 2/3
    gov.vote("m4", "p-pol")
    assert gov.proposal("p-pol")["status"] == "passed"
    # the scheduled policy already binds new proposals' validity (the latest epoch)
    gov.refused(
        "too_few_members",
        gov.admin("m1"),
        "member.propose",
        gov.propose_body("p-rm", {"kind": "remove", "member_id": "m5"}),
    )
    gov.refused(
        "change_pending",
        gov.admin("m1"),
        "member.propose",
        gov.propose_body(
            "p-pol2", {"kind": "policy", "threshold_num": 2, "threshold_den": 3, "min_members": 4}
        ),
    )
    gov.advance_to(gov.proposal("p-pol")["activation_height"])
    assert membership_at(gov.kv, gov.height).epoch.policy == Policy(1, 2, 5)
    gov.propose(
        "m1", "p-pol2", {"kind": "policy", "threshold_num": 2, "threshold_den": 3, "min_members": 4}
    )
    gov.vote("m2", "p-pol2")
    gov.vote("m3", "p-pol2")  # 3 of 5 > 1/2 under the policy in effect
    assert gov.proposal("p-pol2")["status"] == "passed"


def test_removal_revokes_the_members_accounts_at_activation():
    gov = Gov(5)
    gov.propose("m1", "p-rm", {"kind": "remove", "member_id": "m5"})
    for m in ("m2", "m3", "m4"):
        gov.vote(m, "p-rm")
    activation = gov.proposal("p-rm")["activation_height"]
    # m5's admin still votes before activation
    gov.propose(
        "m5",
        "p-cert",
        {"kind": "rotate_certificate", "member_id": "m1", "tls_fingerprint": digest("m1 new")},
    )
    gov.advance_to(activation)
    assert gov.members_now() == ["m1", "m2", "m3", "m4"]
    assert account(gov, gov.admin("m5").account_id)["status"] == "revoked"
    assert account(gov, gov.node_keys["m5"].account_id)["status"] == "revoked"
    assert member_record(gov, "m5")["status"] == "removed"
    # m5's earlier approval no longer counts: n = 4 now, 3 needed
    gov.vote("m2", "p-cert")
    assert gov.proposal("p-cert")["status"] == "open"
    gov.vote("m3", "p-cert")
    assert gov.proposal("p-cert")["status"] == "open"
    gov.vote("m4", "p-cert")
    assert gov.proposal("p-cert")["status"] == "passed"


def test_rotate_node_key_updates_the_node_account_at_activation():
    gov = Gov(4)
    new_key = SigningKey.generate()
    change = {"kind": "rotate_node_key", "member_id": "m2", "node_public_key": new_key.public_key}
    gov.propose("m1", "p", change)
    gov.vote("m2", "p")
    gov.vote("m3", "p")
    gov.advance_to(gov.proposal("p")["activation_height"])
    node = account(gov, gov.node_keys["m2"].account_id)
    assert node["public_key"] == new_key.public_key and node["key_version"] == 2
    assert member_of(membership_at(gov.kv, gov.height).epoch, "m2").node_public_key == (
        new_key.public_key.hex()
    )
    # the old key cannot be proposed again, nor the new one
    gov.refused(
        "node_key_in_use",
        gov.admin("m1"),
        "member.propose",
        gov.propose_body(
            "p2",
            {"kind": "rotate_node_key", "member_id": "m3", "node_public_key": new_key.public_key},
        ),
    )


def test_a_change_passing_while_another_is_scheduled_takes_the_next_boundary():
    gov = Gov(5)
    c1 = {"kind": "rotate_certificate", "member_id": "m1", "tls_fingerprint": digest("a")}
    c2 = {"kind": "rotate_certificate", "member_id": "m2", "tls_fingerprint": digest("b")}
    gov.propose("m1", "p1", c1)
    gov.propose("m2", "p2", c2)
    for m in ("m2", "m3", "m4"):
        gov.vote(m, "p1")
    for m in ("m1", "m3", "m4"):
        gov.vote(m, "p2")
    a1 = gov.proposal("p1")["activation_height"]
    a2 = gov.proposal("p2")["activation_height"]
    assert a2 == a1 + INTERVAL  # both would round to a1 on their own
    epochs = history(gov.kv)
    assert [e.activation_height for e in epochs] == [0, a1, a2]
    # epoch 2 carries both changes
    assert member_of(epochs[2], "m1").tls_fingerprint == digest("a").hex()
    assert member_of(epochs[2], "m2").tls_fingerprint == digest("b").hex()
    assert membership_at(gov.kv, a1 - 1).epoch.number == 0
    assert membership_at(gov.kv, a1).epoch.number == 1
    assert membership_at(gov.kv, a2 - 1).epoch.number == 1
    assert membership_at(gov.kv, a2 + 1000).epoch.number == 2


def test_a_removal_that_became_invalid_is_rejected_when_it_would_pass():
    gov = Gov(5)
    gov.propose("m1", "p-a", {"kind": "remove", "member_id": "m5"})
    gov.propose("m1", "p-b", {"kind": "remove", "member_id": "m4"})
    for m in ("m2", "m3", "m4"):
        gov.vote(m, "p-a")
    for m in ("m2", "m3"):
        gov.vote(m, "p-b")
    gov.vote("m5", "p-b")
    proposal = gov.proposal("p-b")
    assert proposal["status"] == "rejected" and proposal["decided"]["reason"] == "too_few_members"


def test_execution_is_deterministic_across_replicas():
    gov = Gov(4)
    add_m5(gov)
    gov.advance_to(gov.proposal("p-add")["activation_height"] + 1)
    replica = Gov.__new__(Gov)
    replica.__dict__.update(gov.__dict__)
    assert history(gov.kv) == history(replica.kv)


def test_typed_bodies_are_what_the_rules_accept() -> None:
    from mdtp.node.ledger.governance import bodies as gb

    gov = Gov(5)
    new = NewMember("m6", admins=2)
    doc = {
        "id": "m6",
        "name": "Member m6",
        "node_public_key": new.node_key.public_key.hex(),
        "tls_fingerprint": new.fingerprint.hex(),
        "p2p": "10.0.0.5:26656",
        "api": "10.0.0.5:26601",
        "admins": [
            {
                "member": "m6",
                "account_id": k.account_id,
                "public_key": k.public_key.hex(),
                "encryption_public_key": (k.encryption_public_key or b"").hex(),
            }
            for k in new.admin_keys
        ],
    }
    member = gb.NewMember.from_json(doc)
    body = gb.MemberPropose("p-typed", gb.AddMember(member), gov.time_ms + HOUR_MS).to_body()
    assert body["change"] == {**new.change(), "member": {**new.change()["member"]}}
    gov.ok(gov.admin("m1"), gb.MemberPropose.TYPE, body)
    gov.ok(gov.admin("m2"), gb.MemberVote.TYPE, gb.MemberVote("p-typed", False).to_body())
    for change in (
        gb.RemoveMember("m5"),
        gb.RotateNodeKey("m4", SigningKey.generate().public_key),
        gb.RotateCertificate("m3", digest("c")),
        gb.PolicyChange(3, 4, 4),
    ):
        expires = gov.time_ms + HOUR_MS
        gov.ok(
            gov.admin("m2"),
            "member.propose",
            gb.MemberPropose(f"p-{change.KIND}", change, expires).to_body(),
        )
    with pytest.raises(ValueError, match="admins"):
        gb.NewMember.from_json({**doc, "admins": "x"})
    with pytest.raises(ValueError, match="extra"):
        gb.NewMember.from_json({**doc, "extra": 1})
    # the member.json `mdtp init` writes: one admin, and its request's digests
    single: dict[str, Any] = {k: v for k, v in doc.items() if k != "admins"}
    single.update(admin=doc["admins"][0], tls_csr_sha256="ab", tls_public_key_sha256="cd")
    assert gb.NewMember.from_json(single).admins == member.admins[:1]
    with pytest.raises(ValueError, match="admins"):
        gb.NewMember.from_json({**doc, "admin": doc["admins"][0]})
    with pytest.raises(ValueError, match="tls_fingerprint"):
        gb.NewMember.from_json({k: v for k, v in single.items() if k != "tls_fingerprint"})


def test_queries_list_proposals_by_status_and_page() -> None:
    from mdtp.node.ledger.governance import queries

    gov = Gov(4)
    add_m5(gov)
    change = {"kind": "rotate_certificate", "member_id": "m4", "tls_fingerprint": digest("q")}
    gov.propose("m1", "p-open", change, expires_in_ms=HOUR_MS)
    at = gov.time_ms
    rows = queries.proposals(gov.kv, gov.height, at)
    assert [p["id"] for p in rows] == ["p-add", "p-open"]
    assert rows[0]["status"] == "passed" and [v["member"] for v in rows[0]["votes"]] == [
        "m1",
        "m2",
        "m3",
    ]
    assert rows[1]["tally"] == {"members": 4, "approvals": 1, "rejections": 0, "needed": 3}
    assert [p["id"] for p in queries.proposals(gov.kv, gov.height, at, status="open")] == ["p-open"]
    assert [p["id"] for p in queries.proposals(gov.kv, gov.height, at, after="p-add")] == ["p-open"]
    assert [p["id"] for p in queries.proposals(gov.kv, gov.height, at, limit=1)] == ["p-add"]
    later = at + 2 * HOUR_MS
    expired = queries.proposals(gov.kv, gov.height, later, status="expired")
    assert [p["id"] for p in expired] == ["p-open"] and "tally" not in expired[0]
    with pytest.raises(ValueError):
        queries.proposals(gov.kv, gov.height, at, status="bogus")
    assert queries.proposal(gov.kv, "nope", gov.height, at) is None
    view = queries.members(gov.kv, gov.height)
    assert view["current"]["epoch"] == 0 and [e["epoch"] for e in view["scheduled"]] == [1]
    assert [e["n"] for e in queries.epochs(gov.kv)] == [4, 5]


def _observer_change(observer_id: str, key: SigningKey, **overrides: Any) -> dict[str, Any]:
    observer: dict[str, Any] = {
        "id": observer_id,
        "name": f"Regulator {observer_id}",
        "node_public_key": key.public_key,
        "tls_fingerprint": digest(f"tls {observer_id}"),
        "p2p": "10.0.0.9:26656",
        "api": "10.0.0.9:26601",
        **overrides,
    }
    return {"kind": "add_observer", "observer": observer}


def test_observers_are_added_and_removed_by_vote_and_never_counted() -> None:
    gov = Gov(4)
    key = SigningKey.generate()
    gov.propose("m1", "p-obs", _observer_change("reg1", key))
    gov.vote("m2", "p-obs")
    gov.vote("m3", "p-obs")
    proposal = gov.proposal("p-obs")
    assert proposal["status"] == "passed"
    epoch = history(gov.kv)[1]
    assert [o.id for o in epoch.observers] == ["reg1"]
    assert epoch.member_ids == ("m1", "m2", "m3", "m4")  # n, f and the quorum are unchanged
    assert "observers" in epoch.to_record() and "observers" not in history(gov.kv)[0].to_record()
    gov.advance_to(proposal["activation_height"])
    # its id, key and fingerprint are taken
    gov.refused(
        "member_exists",
        gov.admin("m1"),
        "member.propose",
        gov.propose_body("p-dup", NewMember("reg1").change()),
    )
    gov.refused(
        "node_key_in_use",
        gov.admin("m1"),
        "member.propose",
        gov.propose_body("p-key", _observer_change("reg2", key)),
    )
    gov.refused(
        "unknown_observer",
        gov.admin("m1"),
        "member.propose",
        gov.propose_body("p-rm", {"kind": "remove_observer", "observer_id": "nobody"}),
    )
    gov.propose("m1", "p-rm", {"kind": "remove_observer", "observer_id": "reg1"})
    gov.vote("m2", "p-rm")
    gov.vote("m4", "p-rm")
    assert gov.proposal("p-rm")["status"] == "passed"
    assert history(gov.kv)[2].observers == ()


def test_too_many_observers(monkeypatch: pytest.MonkeyPatch) -> None:
    gov = Gov(4)
    from mdtp.node.ledger.governance import rules

    monkeypatch.setattr(rules, "MAX_OBSERVERS", 0)
    gov.refused(
        "too_many_observers",
        gov.admin("m1"),
        "member.propose",
        gov.propose_body("p", _observer_change("reg1", SigningKey.generate())),
    )
