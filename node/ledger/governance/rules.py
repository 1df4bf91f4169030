"""Governance transactions: ``member.propose`` and ``member.vote``, and the activation of a
passed change at its epoch boundary.

Who: an admin account of a member *in effect at the executing block's height*
(:func:`.membership.membership_at`); the admins of an added member act from its activation
height, those of a removed member stop there (their accounts are revoked at that block).

Rules (the reason codes are in :mod:`mdtp.node.ledger.trading.reasons`):

- ``member.propose`` {proposal_id, change, expires_at_ms}. ``change.kind`` is ``add``,
  ``remove``, ``rotate_node_key``, ``rotate_certificate`` or ``policy``. Each change touches a
  *subject* (the member id, or ``~policy``); a subject with an open or scheduled change is
  locked (``change_pending``) until that change is rejected, expires or takes effect. Keys
  and fingerprints a proposal introduces are claimed when it is made (node and admin keys in
  the accounts' key index, fingerprints under ``gov/tls/``) and released if it fails, so two
  pending proposals never introduce the same key and no account can take a key a pending
  member will use. The proposer's member counts as approving.
- ``member.vote`` {proposal_id, approve}: one vote per *member* (any of its admins); a later
  vote by the same member replaces its earlier one while the proposal is open.
- After every vote (and at the proposal itself) the proposal is judged against the
  membership in effect at that height: it **passes** when approvals of distinct current
  members exceed ``threshold_num/threshold_den`` of them; it is **rejected** as soon as the
  members that did not reject can no longer exceed it (the decision is final: no vote is
  replaced after it). Votes of members no longer current do not count.
- A proposal not decided when the block time passes ``expires_at_ms`` is expired: no vote
  is accepted, its claims and lock are released by the next governance transaction (recorded
  in the audit trail under that transaction), and reads report it expired from that block
  time on.
- A change that passes in block ``H`` is re-checked against the latest membership (a count
  that another change moved) and appended as the next epoch, in effect from
  :func:`.membership.activation_height` (the first checkpoint boundary >= H + window, and
  after any epoch already scheduled). At the first block of that height the ledger applies
  its effects to the accounts (:func:`activate_due`): an added member's record, node account
  and admin accounts; a removed member's record marked removed and its node and admin
  accounts revoked; a rotated node key on the node account.

Every state change is deterministic (block height and time only, maps encoded canonically,
lists sorted) and recorded in the audit trail (kind ``member``, subject the member id or
``~policy``; and the sender's account).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from mdtp.node.encoding import account_id_from_public_key
from mdtp.node.identity.genesis import NODE_ID_RE, Admin, ConsensusParams, Genesis, Member
from mdtp.node.ledger.governance import layout
from mdtp.node.ledger.governance.membership import (
    MAX_ADMINS_PER_MEMBER,
    MAX_MEMBERS,
    Epoch,
    Policy,
    activation_height,
    epoch_at,
    genesis_epoch,
    history,
)
from mdtp.node.ledger.machine import BlockContext, Ledger, Refusal, TxResult
from mdtp.node.ledger.state import Overlay, ReadableKV
from mdtp.node.ledger.trading import audit
from mdtp.node.ledger.trading import layout as tlayout
from mdtp.node.ledger.trading.accounts import DISPLAY_NAME_MAX_LEN
from mdtp.node.ledger.trading.reasons import refuse
from mdtp.node.ledger.trading.schema import PUBLIC_KEY_LEN, Fields, bad
from mdtp.node.ledger.tx import Tx, TxError, canonical

CHANGE_KINDS = (
    "add",
    "remove",
    "rotate_node_key",
    "rotate_certificate",
    "policy",
    "add_observer",
    "remove_observer",
)
# Observers (a regulator, an auditor, a standby) follow the chain and serve reads; they never
# vote and are not counted in any quorum.
MAX_OBSERVERS = 16
STATUSES = ("open", "passed", "rejected", "expired")
# Open proposals are swept for expiry by every governance transaction, so their number is
# bounded; a consortium of at most MAX_MEMBERS rarely has more than a few in flight.
MAX_OPEN = 16
# ... and no member holds more than a quarter of them, so one member's admins cannot fill every
# slot and block the others' proposals until theirs expire.
MAX_OPEN_PER_MEMBER = 4
# A proposal lives at most 30 days: long enough for any organisation's sign-off, short
# enough that stale proposals do not hold locks and claims for ever.
MAX_LIFETIME_MS = 30 * 86_400_000
MEMBER_NAME_MAX_LEN = 100
ADDRESS_MAX_LEN = 255  # a DNS name (253) plus room; host:port
FINGERPRINT_LEN = 32
# Threshold fractions: the denominator bounded so the arithmetic stays small; at least one
# half, so two conflicting proposals cannot both pass with disjoint approvals.
THRESHOLD_DEN_MAX = 100
_PORT_RE = re.compile(r"^[0-9]{1,5}$")


# ---- body parsing ------------------------------------------------------------------------


def _address(f: Fields, field: str) -> str:
    value = f.text(field, min_len=3, max_len=ADDRESS_MAX_LEN)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not _PORT_RE.match(port) or not 0 < int(port) < 65536:
        bad(f.name(field), "must be host:port")
    if any(c.isspace() for c in value):
        bad(f.name(field), "must not contain spaces")
    return value


def _member_id(f: Fields, field: str) -> str:
    value = f.raw(field)
    if not isinstance(value, str) or not NODE_ID_RE.match(value):
        bad(f.name(field), f"must match {NODE_ID_RE.pattern}")
    return value


def parse_change(f: Fields) -> dict[str, Any]:
    """The change of a proposal in its stored form (bytes as lowercase hex, as in genesis)."""
    kind = f.choice("kind", CHANGE_KINDS)
    if kind == "add_observer":
        o = f.nested("observer")
        observer = {
            "id": _member_id(o, "id"),
            "name": o.text("name", min_len=1, max_len=MEMBER_NAME_MAX_LEN),
            "node_public_key": o.blob("node_public_key", size=PUBLIC_KEY_LEN).hex(),
            "tls_fingerprint": o.blob("tls_fingerprint", size=FINGERPRINT_LEN).hex(),
            "p2p": _address(o, "p2p"),
            "api": _address(o, "api"),
        }
        o.finish()
        f.finish()
        return {"kind": kind, "observer": observer}
    if kind == "remove_observer":
        change_ = {"kind": kind, "observer_id": _member_id(f, "observer_id")}
        f.finish()
        return change_
    if kind == "add":
        m = f.nested("member")
        member = {
            "id": _member_id(m, "id"),
            "name": m.text("name", min_len=1, max_len=MEMBER_NAME_MAX_LEN),
            "node_public_key": m.blob("node_public_key", size=PUBLIC_KEY_LEN).hex(),
            "tls_fingerprint": m.blob("tls_fingerprint", size=FINGERPRINT_LEN).hex(),
            "p2p": _address(m, "p2p"),
            "api": _address(m, "api"),
        }
        raw_admins = m.raw("admins")
        if not isinstance(raw_admins, list) or not 1 <= len(raw_admins) <= MAX_ADMINS_PER_MEMBER:
            bad(m.name("admins"), f"must be a list of 1..{MAX_ADMINS_PER_MEMBER} admins")
        admins = []
        for i, raw in enumerate(raw_admins):
            a = Fields(raw, f"{m.name('admins')}[{i}]")
            key = a.blob("public_key", size=PUBLIC_KEY_LEN)
            admins.append(
                {
                    "account_id": account_id_from_public_key(key),
                    "public_key": key.hex(),
                    "encryption_public_key": a.blob(
                        "encryption_public_key", size=PUBLIC_KEY_LEN
                    ).hex(),
                }
            )
            a.finish()
        keys = [a["public_key"] for a in admins] + [member["node_public_key"]]
        if len(set(keys)) != len(keys):
            bad(m.name("admins"), "admin and node keys must all differ")
        m.finish()
        change: dict[str, Any] = {"kind": kind, "member": member, "admins": admins}
    elif kind == "remove":
        change = {"kind": kind, "member_id": _member_id(f, "member_id")}
    elif kind == "rotate_node_key":
        change = {
            "kind": kind,
            "member_id": _member_id(f, "member_id"),
            "node_public_key": f.blob("node_public_key", size=PUBLIC_KEY_LEN).hex(),
        }
    elif kind == "rotate_certificate":
        change = {
            "kind": kind,
            "member_id": _member_id(f, "member_id"),
            "tls_fingerprint": f.blob("tls_fingerprint", size=FINGERPRINT_LEN).hex(),
        }
    else:
        change = {
            "kind": kind,
            "threshold_num": f.integer("threshold_num", lo=1, hi=THRESHOLD_DEN_MAX - 1),
            "threshold_den": f.integer("threshold_den", lo=2, hi=THRESHOLD_DEN_MAX),
            "min_members": f.integer("min_members", lo=1, hi=MAX_MEMBERS),
        }
    f.finish()
    return change


def subject_of(change: dict[str, Any]) -> str:
    if change["kind"] == "add":
        return str(change["member"]["id"])
    if change["kind"] == "add_observer":
        return str(change["observer"]["id"])
    if change["kind"] == "remove_observer":
        return str(change["observer_id"])
    if change["kind"] == "policy":
        return layout.POLICY_SUBJECT
    return str(change["member_id"])


# ---- reading the proposals ---------------------------------------------------------------


def load_proposal(state: ReadableKV, proposal_id: str) -> dict[str, Any] | None:
    record: dict[str, Any] | None = tlayout.read(state, layout.proposal_key(proposal_id))
    return record


def effective_status(proposal: dict[str, Any], block_time_ms: int) -> str:
    """The status as of a block time: an open proposal past its expiry is expired even
    before a governance transaction swept it."""
    status = str(proposal["status"])
    if status == "open" and block_time_ms > int(proposal["expires_at_ms"]):
        return "expired"
    return status


def tally(proposal: dict[str, Any], epoch: Epoch) -> tuple[int, int]:
    """(approvals, rejections) by members of ``epoch``."""
    current = set(epoch.member_ids)
    votes = proposal["votes"]
    approvals = sum(1 for m, v in votes.items() if m in current and v["approve"])
    rejections = sum(1 for m, v in votes.items() if m in current and not v["approve"])
    return approvals, rejections


# ---- the rules ---------------------------------------------------------------------------


def _admin_member(ctx: BlockContext, epochs: list[Epoch], tx: Tx) -> str:
    member = epoch_at(epochs, ctx.height).admin_member(tx.sender)
    if member is None:
        refuse("not_member_admin", f"{tx.sender} is not an admin of a current member")
    return member


def _check_change(
    state: Overlay, change: dict[str, Any], latest: Epoch, *, at_pass: bool = False
) -> None:
    """Refuse a change the latest recorded membership (scheduled epochs included) does not
    allow. ``at_pass``: only what another change could have moved since the proposal."""
    kind = change["kind"]
    n = len(latest.members)
    if kind == "add_observer":
        observer = change["observer"]
        if len(latest.observers) + 1 > MAX_OBSERVERS:
            refuse("too_many_observers", f"a consortium has at most {MAX_OBSERVERS} observers")
        if not at_pass:
            _node_facts_free(state, latest, observer)
        return
    if kind == "remove_observer":
        if latest.observer(change["observer_id"]) is None:
            refuse("unknown_observer", f"{change['observer_id']} is not an observer")
        return
    if kind == "add":
        member = change["member"]
        if n + 1 > MAX_MEMBERS:
            refuse("too_many_members", f"a consortium has at most {MAX_MEMBERS} members")
        if at_pass:
            return
        _node_facts_free(state, latest, member)
        for admin in change["admins"]:
            key = bytes.fromhex(admin["public_key"])
            if state.get(tlayout.account_key_index(key)) is not None:
                refuse("key_in_use", f"admin key {admin['public_key']} is bound to an account")
        return
    if kind == "policy":
        if change["threshold_num"] * 2 < change["threshold_den"] or (
            change["threshold_num"] >= change["threshold_den"]
        ):
            refuse("bad_policy", "the threshold must be in [1/2, 1)")
        return
    member_id = change["member_id"]
    if latest.member(member_id) is None:
        refuse("unknown_member", f"{member_id} is not a member")
    if kind == "remove":
        if n - 1 < latest.policy.min_members:
            refuse(
                "too_few_members",
                f"{n - 1} members would be left; the policy's minimum is "
                f"{latest.policy.min_members}",
            )
    elif kind == "rotate_node_key" and not at_pass:
        key = bytes.fromhex(change["node_public_key"])
        if state.get(tlayout.account_key_index(key)) is not None:
            refuse("node_key_in_use", "node_public_key is bound to an account or member")
    elif kind == "rotate_certificate" and not at_pass:
        _fingerprint_free(state, latest, change["tls_fingerprint"])


def _node_facts_free(state: Overlay, latest: Epoch, node: dict[str, Any]) -> None:
    """A new member's or observer's id, node key and certificate are nobody's yet."""
    if (
        tlayout.read(state, tlayout.member_key(node["id"])) is not None
        or latest.member(node["id"]) is not None
        or latest.observer(node["id"]) is not None
    ):
        refuse("member_exists", f"id {node['id']} is taken")
    node_key = bytes.fromhex(node["node_public_key"])
    if state.get(tlayout.account_key_index(node_key)) is not None or any(
        m.node_public_key == node["node_public_key"] for m in latest.members + latest.observers
    ):
        refuse("node_key_in_use", "node_public_key is bound to an account or node")
    _fingerprint_free(state, latest, node["tls_fingerprint"])


def _fingerprint_free(state: Overlay, latest: Epoch, fingerprint: str) -> None:
    if state.get(layout.tls_key(fingerprint)) is not None or any(
        m.tls_fingerprint == fingerprint for m in latest.members + latest.observers
    ):
        refuse("fingerprint_in_use", f"TLS fingerprint {fingerprint} is (or was) claimed")


def _claims(state: ReadableKV, change: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """The index entries a proposal claims while it is open (and keeps if it passes)."""
    kind = change["kind"]
    if kind == "add":
        member = change["member"]
        node_key = bytes.fromhex(member["node_public_key"])
        out = [
            (tlayout.account_key_index(node_key), account_id_from_public_key(node_key).encode()),
            (layout.tls_key(member["tls_fingerprint"]), member["id"].encode()),
        ]
        for admin in change["admins"]:
            key = bytes.fromhex(admin["public_key"])
            out.append((tlayout.account_key_index(key), admin["account_id"].encode()))
        return out
    if kind == "rotate_node_key":
        # the node account keeps its id (the did:key of its first key) across rotations
        member = tlayout.read(state, tlayout.member_key(change["member_id"]))
        assert member is not None, change["member_id"]
        key = bytes.fromhex(change["node_public_key"])
        return [(tlayout.account_key_index(key), str(member["node_account"]).encode())]
    if kind == "rotate_certificate":
        return [(layout.tls_key(change["tls_fingerprint"]), change["member_id"].encode())]
    if kind == "add_observer":
        observer = change["observer"]
        # its node key is claimed like an account's, so no account or member takes it
        node_key = bytes.fromhex(observer["node_public_key"])
        return [
            (tlayout.account_key_index(node_key), b"observer:" + observer["id"].encode()),
            (layout.tls_key(observer["tls_fingerprint"]), observer["id"].encode()),
        ]
    return []


def _release(state: Overlay, proposal: dict[str, Any]) -> None:
    """A failed proposal gives back its claims and its subject's lock."""
    for key, value in _claims(state, proposal["change"]):
        if state.get(key) == value:
            state.delete(key)
    state.delete(layout.lock_key(proposal["subject"]))
    state.delete(layout.open_key(proposal["id"]))


def _stamp(ctx: BlockContext, tx: Tx) -> dict[str, Any]:
    return {"height": ctx.height, "time_ms": ctx.timestamp_ms, "tx_id": tx.id}


def _subjects(proposal: dict[str, Any], tx: Tx) -> list[tuple[audit.Kind, str]]:
    return [("member", str(proposal["subject"])), ("account", tx.sender)]


def _save(state: Overlay, proposal: dict[str, Any]) -> None:
    state.put_obj(layout.proposal_key(proposal["id"]), proposal)


def sweep_expired(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    """Expire every open proposal whose expiry the block time passed (bounded: MAX_OPEN)."""
    for key, _ in list(state.scan(layout.OPEN)):
        proposal = load_proposal(state, tlayout.last_segment(key))
        assert proposal is not None and proposal["status"] == "open", key
        if ctx.timestamp_ms <= proposal["expires_at_ms"]:
            continue
        _release(state, proposal)
        proposal["status"] = "expired"
        proposal["decided"] = {**_stamp(ctx, tx), "reason": "expired"}
        _save(state, proposal)
        audit.record(
            ctx,
            state,
            tx,
            _subjects(proposal, tx),
            f"proposal {proposal['id']} expired undecided "
            f"(expires_at_ms {proposal['expires_at_ms']})",
        )


def apply_change(
    change: dict[str, Any], latest: Epoch
) -> tuple[list[Member], list[Admin], Policy, list[Member]]:
    """The next epoch's members, admins, policy and observers: ``latest`` with ``change``."""
    members, admins, policy = list(latest.members), list(latest.admins), latest.policy
    observers = list(latest.observers)
    kind = change["kind"]
    if kind == "add_observer":
        observers.append(Member(**change["observer"]))
    elif kind == "remove_observer":
        observers = [o for o in observers if o.id != change["observer_id"]]
    elif kind == "add":
        m = change["member"]
        members.append(Member(**m))
        admins += [Admin(member=m["id"], **a) for a in change["admins"]]
    elif kind == "remove":
        members = [m for m in members if m.id != change["member_id"]]
        admins = [a for a in admins if a.member != change["member_id"]]
    elif kind == "rotate_node_key":
        members = [
            replace(m, node_public_key=change["node_public_key"])
            if m.id == change["member_id"]
            else m
            for m in members
        ]
    elif kind == "rotate_certificate":
        members = [
            replace(m, tls_fingerprint=change["tls_fingerprint"])
            if m.id == change["member_id"]
            else m
            for m in members
        ]
    else:
        policy = Policy(change["threshold_num"], change["threshold_den"], change["min_members"])
    return members, admins, policy, observers


def _judge(
    ctx: BlockContext,
    state: Overlay,
    tx: Tx,
    proposal: dict[str, Any],
    epochs: list[Epoch],
    params: ConsensusParams,
) -> str:
    """Decide ``proposal`` if its votes decide it; returns a summary of what happened."""
    current = epoch_at(epochs, ctx.height)
    n = len(current.members)
    approvals, rejections = tally(proposal, current)
    policy = current.policy
    if policy.passes(approvals, n):
        latest = epochs[-1]
        try:
            _check_change(state, proposal["change"], latest, at_pass=True)
        except Refusal as e:
            reason = e.reason
            _release(state, proposal)
            proposal["status"] = "rejected"
            proposal["decided"] = {**_stamp(ctx, tx), "reason": reason}
            return f"approved by {approvals}/{n} but no longer valid ({reason}): rejected"
        members, admins, new_policy, observers = apply_change(proposal["change"], latest)
        height = activation_height(
            ctx.height, params.checkpoint_interval, params.window, latest.activation_height
        )
        epoch = Epoch(
            latest.number + 1,
            height,
            tuple(sorted(members, key=lambda m: m.id)),
            tuple(sorted(admins, key=lambda a: (a.member, a.account_id))),
            new_policy,
            proposal["id"],
            tuple(sorted(observers, key=lambda o: o.id)),
        )
        state.put_obj(layout.epoch_key(epoch.number), epoch.to_record())
        state.delete(layout.open_key(proposal["id"]))
        proposal["status"] = "passed"
        proposal["decided"] = {**_stamp(ctx, tx), "reason": "approved"}
        proposal["activation_height"] = height
        proposal["epoch"] = epoch.number
        return f"passed with {approvals}/{n} approvals; epoch {epoch.number} from height {height}"
    if not policy.passes(n - rejections, n):
        _release(state, proposal)
        proposal["status"] = "rejected"
        proposal["decided"] = {**_stamp(ctx, tx), "reason": "unreachable"}
        return f"rejected: {rejections}/{n} members reject, approval is out of reach"
    return f"{approvals}/{n} approve, {rejections} reject; needs {policy.needed(n)}"


def _vote_record(ctx: BlockContext, tx: Tx, approve: bool) -> dict[str, Any]:
    return {"approve": approve, "account": tx.sender, **_stamp(ctx, tx)}


def _describe(change: dict[str, Any]) -> str:
    kind = change["kind"]
    if kind == "add_observer":
        return f"add observer {change['observer']['id']} ({change['observer']['name']})"
    if kind == "remove_observer":
        return f"remove observer {change['observer_id']}"
    if kind == "add":
        return f"add member {change['member']['id']} ({change['member']['name']})"
    if kind == "policy":
        return (
            f"policy: more than {change['threshold_num']}/{change['threshold_den']} approve, "
            f"at least {change['min_members']} members"
        )
    return f"{kind.replace('_', ' ')} of member {change['member_id']}"


def make_handlers(
    params: ConsensusParams,
) -> tuple[
    Callable[[BlockContext, Overlay, Tx], None], Callable[[BlockContext, Overlay, Tx], None]
]:
    def propose(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
        f = Fields(tx.body)
        proposal_id = f.ident("proposal_id")
        expires_at_ms = f.integer("expires_at_ms")
        change = parse_change(f.nested("change"))
        f.finish()
        sweep_expired(ctx, state, tx)
        epochs = history(state)
        member = _admin_member(ctx, epochs, tx)
        if not ctx.timestamp_ms < expires_at_ms <= ctx.timestamp_ms + MAX_LIFETIME_MS:
            refuse("bad_expiry", f"expires_at_ms must be in the next {MAX_LIFETIME_MS} ms")
        if load_proposal(state, proposal_id) is not None:
            refuse("proposal_exists", f"proposal {proposal_id} exists")
        open_ids = [key[len(layout.OPEN) :].decode() for key, _ in state.scan(layout.OPEN)]
        if len(open_ids) >= MAX_OPEN:
            refuse("too_many_open_proposals", f"at most {MAX_OPEN} proposals may be open")
        mine = 0
        for open_id in open_ids:
            record = load_proposal(state, open_id)
            mine += record is not None and record["proposer_member"] == member
        if mine >= MAX_OPEN_PER_MEMBER:
            refuse(
                "too_many_open_proposals",
                f"{member} has {mine} open proposals; at most {MAX_OPEN_PER_MEMBER} per member",
            )
        subject = subject_of(change)
        holder = state.get(layout.lock_key(subject))
        if holder is not None:
            refuse("change_pending", f"{subject} has a pending change: {holder.decode()}")
        _check_change(state, change, epochs[-1])
        for key, value in _claims(state, change):
            assert state.get(key) is None, key
            state.put(key, value)
        state.put(layout.lock_key(subject), proposal_id.encode())
        state.put(layout.open_key(proposal_id), b"")
        proposal: dict[str, Any] = {
            "id": proposal_id,
            "change": change,
            "subject": subject,
            "proposer": tx.sender,
            "proposer_member": member,
            "created": _stamp(ctx, tx),
            "expires_at_ms": expires_at_ms,
            "status": "open",
            "votes": {member: _vote_record(ctx, tx, True)},
            "decided": None,
            "activation_height": None,
            "epoch": None,
        }
        outcome = _judge(ctx, state, tx, proposal, epochs, params)
        _save(state, proposal)
        audit.record(
            ctx,
            state,
            tx,
            _subjects(proposal, tx),
            f"{member} proposed {proposal_id}: {_describe(change)}; {outcome}",
        )

    def vote(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
        f = Fields(tx.body)
        proposal_id = f.ident("proposal_id")
        approve = f.boolean("approve")
        f.finish()
        sweep_expired(ctx, state, tx)
        epochs = history(state)
        member = _admin_member(ctx, epochs, tx)
        proposal = load_proposal(state, proposal_id)
        if proposal is None:
            refuse("unknown_proposal", f"no proposal {proposal_id}")
        status = effective_status(proposal, ctx.timestamp_ms)
        if status == "expired":
            refuse("proposal_expired", f"proposal {proposal_id} expired")
        if status != "open":
            refuse("proposal_decided", f"proposal {proposal_id} is {status}")
        replaced = member in proposal["votes"]
        proposal["votes"][member] = _vote_record(ctx, tx, approve)
        outcome = _judge(ctx, state, tx, proposal, epochs, params)
        _save(state, proposal)
        audit.record(
            ctx,
            state,
            tx,
            _subjects(proposal, tx),
            f"{member} {'approved' if approve else 'rejected'} {proposal_id}"
            f"{' (replacing its vote)' if replaced else ''}; {outcome}",
        )

    return propose, vote


# ---- activation at the epoch boundary ----------------------------------------------------


def _account(
    account_id: str, kind: str, member: str, public_key: bytes, encryption_key: bytes
) -> dict[str, Any]:
    return {
        "id": account_id,
        "kind": kind,
        "member": member,
        "roles": [],
        "display_name": (f"node {member}" if kind == "node" else f"admin of {member}")[
            :DISPLAY_NAME_MAX_LEN
        ],
        "public_key": public_key,
        "encryption_public_key": encryption_key,
        "key_version": 1,
        "status": "active",
        "registered": None,
        "revoked": None,
    }


def _revoke(state: Overlay, account_id: str, stamp: dict[str, Any], reason: str) -> None:
    record = tlayout.read(state, tlayout.account_key(account_id))
    if record is None or record["status"] != "active":
        return
    record["status"] = "revoked"
    record["revoked"] = {**stamp, "by": "governance", "reason": reason}
    state.put_obj(tlayout.account_key(account_id), record)


def activate_due(ctx: BlockContext, state: Overlay) -> None:
    """Apply to the accounts every epoch whose activation height this block reached."""
    raw = state.get(layout.APPLIED)
    applied = int.from_bytes(raw, "big") if raw else 0
    while True:
        doc = tlayout.read(state, layout.epoch_key(applied + 1))
        if doc is None or doc["activation_height"] > ctx.height:
            return
        before = Epoch.from_record(tlayout.read(state, layout.epoch_key(applied)))
        epoch = Epoch.from_record(doc)
        assert epoch.proposal_id is not None
        proposal = load_proposal(state, epoch.proposal_id)
        assert proposal is not None and proposal["status"] == "passed"
        stamp = {**proposal["decided"]}
        stamp.pop("reason", None)
        old = {m.id: m for m in before.members}
        new = {m.id: m for m in epoch.members}
        for member_id in sorted(set(new) - set(old)):
            m = new[member_id]
            node_key = bytes.fromhex(m.node_public_key)
            node_account = account_id_from_public_key(node_key)
            state.put_obj(
                tlayout.member_key(member_id),
                {"id": member_id, "name": m.name, "node_account": node_account},
            )
            state.put_obj(
                tlayout.account_key(node_account),
                _account(node_account, "node", member_id, node_key, b""),
            )
            for a in epoch.admins:
                if a.member == member_id:
                    state.put_obj(
                        tlayout.account_key(a.account_id),
                        _account(
                            a.account_id,
                            "admin",
                            member_id,
                            bytes.fromhex(a.public_key),
                            bytes.fromhex(a.encryption_public_key),
                        ),
                    )
        for member_id in sorted(set(old) - set(new)):
            record = tlayout.read(state, tlayout.member_key(member_id))
            assert record is not None, member_id
            record["status"] = "removed"
            record["removed"] = {**stamp, "proposal_id": epoch.proposal_id}
            state.put_obj(tlayout.member_key(member_id), record)
            reason = f"member {member_id} removed by proposal {epoch.proposal_id}"
            _revoke(state, str(record["node_account"]), stamp, reason)
            for a in before.admins:
                if a.member == member_id:
                    _revoke(state, a.account_id, stamp, reason)
        for member_id in sorted(set(old) & set(new)):
            if old[member_id].node_public_key == new[member_id].node_public_key:
                continue
            record = tlayout.read(state, tlayout.member_key(member_id))
            assert record is not None, member_id
            account = tlayout.read(state, tlayout.account_key(str(record["node_account"])))
            assert account is not None
            account["public_key"] = bytes.fromhex(new[member_id].node_public_key)
            account["key_version"] += 1
            state.put_obj(tlayout.account_key(str(record["node_account"])), account)
        state.delete(layout.lock_key(str(proposal["subject"])))
        applied += 1
        state.put(layout.APPLIED, applied.to_bytes(8, "big"))


# ---- installing --------------------------------------------------------------------------


class GovernedLedger(Ledger):
    """The ledger with the epoch boundary: before a block's transactions run, the effects of
    every epoch that takes effect at (or before) its height are applied to the accounts."""

    def execute_block(
        self,
        ctx: BlockContext,
        state: Overlay,
        txs: tuple[bytes, ...],
        decoded: Sequence[Tx | TxError | None] | None = None,
    ) -> list[TxResult]:
        if state.get(layout.epoch_key(0)) is not None:
            activate_due(ctx, state)
        return super().execute_block(ctx, state, txs, decoded)


def register(ledger: Ledger, genesis: Genesis) -> None:
    propose, vote = make_handlers(genesis.consensus)
    ledger.register("member.propose", propose)
    ledger.register("member.vote", vote)


def genesis_writes(genesis: Genesis) -> dict[bytes, bytes]:
    """Epoch 0 (the genesis membership and the default policy) and its claims."""
    epoch = genesis_epoch(genesis)
    writes = {
        layout.epoch_key(0): canonical(epoch.to_record()),
        layout.APPLIED: (0).to_bytes(8, "big"),
    }
    for m in epoch.members:
        writes[layout.tls_key(m.tls_fingerprint)] = m.id.encode()
    return writes
