"""Contracts: every rule of the contract lifecycle, with its transitions in one table.

Theory of operation
-------------------
A contract binds one dataset's supplier (the account that published it) and one consumer to
a version of *terms*. The parties negotiate by versions: ``contract.offer`` creates version
1, ``contract.counter`` (by either party, naming the version it answers) creates version
n+1 and voids every signature on earlier versions. ``contract.sign`` names a version and its
terms hash (:func:`terms_hash`); the transaction's own signature is the party's signature
over that hash. When both parties have signed the current version the contract is ACTIVE,
or PENDING_REVIEW if the terms name a ``reviewer``: that account (it must hold the reviewer
role and not be a party) then approves (ACTIVE) or rejects (REJECTED, from where the parties
may counter again or terminate). Terms may also name an ``arbiter`` (same conditions) who
resolves disputes (:mod:`.disputes`), and a ``billing`` map (:mod:`.billing`) by which the
ledger derives the contract's invoices; activation and termination re-index its billing.
The author of the current version may delete it while nobody has signed it. A party may
terminate at any time before the contract ends.

States::

    OFFERED         current version has no signature
    SIGNING         some but not all parties signed the current version
    PENDING_REVIEW  all parties signed; the named reviewer has not decided
    ACTIVE          all parties signed (and the reviewer approved): fulfilment may run
    REJECTED        the reviewer rejected the current version
    TERMINATED      a party ended it (final)
    DELETED         the offerer withdrew it unsigned (final; the id stays taken)
    EXPIRED         derived, never stored: the block time reached the current terms'
                    use_end_ms while the contract was in any non-final state

Time never writes state: EXPIRED is computed from the stored status and the block time
(:func:`effective_status`), so a contract expires at the same instant on every replica with
no transaction. Every rule below looks up the *effective* status in :data:`TRANSITIONS`; a
pair not in the table is refused with the reason :func:`refusal_reason` gives, so every
refused transition has a specific, stable code. Fulfilment events (grant, receipt, confirm,
dispose: ``fulfilment.py``) appear in the table as self-loops that only check the status.

Invariants: the current version is the highest one; signatures are only ever added to the
current version; ``activated`` is set exactly once, when the contract first becomes ACTIVE,
together with its disposal-deadline index entry; a final status is never left.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Any

from mdtp.node.ledger.machine import BlockContext, Ledger
from mdtp.node.ledger.state import Overlay, ReadableKV
from mdtp.node.ledger.trading import audit, billing, layout, record
from mdtp.node.ledger.trading.accounts import has_role, registered_only, require_active
from mdtp.node.ledger.trading.analysis import check_terms
from mdtp.node.ledger.trading.audit import event as event
from mdtp.node.ledger.trading.catalog import require_published
from mdtp.node.ledger.trading.reasons import refuse
from mdtp.node.ledger.trading.schema import HASH_LEN, INT_MAX, Fields, bad
from mdtp.node.ledger.tx import Tx, canonical

subjects = audit.contract_subjects  # the audit subjects of every contract event


class Status(StrEnum):
    OFFERED = "OFFERED"
    SIGNING = "SIGNING"
    PENDING_REVIEW = "PENDING_REVIEW"
    ACTIVE = "ACTIVE"
    REJECTED = "REJECTED"
    TERMINATED = "TERMINATED"
    DELETED = "DELETED"
    EXPIRED = "EXPIRED"


class Event(StrEnum):
    COUNTER = "counter"
    SIGN = "sign"
    SIGNED_ALL = "signed_all"  # internal: the last signature, no review required
    SIGNED_ALL_REVIEW = "signed_all_review"  # internal: the last signature, review required
    APPROVE = "approve"
    REJECT = "reject"
    DELETE = "delete"
    TERMINATE = "terminate"
    GRANT = "grant"
    RECEIPT = "receipt"
    CONFIRM = "confirm"
    DISPOSE = "dispose"


S, E = Status, Event
TRANSITIONS: dict[tuple[Status, Event], Status] = {
    # negotiation
    (S.OFFERED, E.COUNTER): S.OFFERED,
    (S.SIGNING, E.COUNTER): S.OFFERED,
    (S.PENDING_REVIEW, E.COUNTER): S.OFFERED,
    (S.REJECTED, E.COUNTER): S.OFFERED,
    (S.OFFERED, E.SIGN): S.SIGNING,
    (S.SIGNING, E.SIGN): S.SIGNING,
    (S.SIGNING, E.SIGNED_ALL): S.ACTIVE,
    (S.SIGNING, E.SIGNED_ALL_REVIEW): S.PENDING_REVIEW,
    (S.PENDING_REVIEW, E.APPROVE): S.ACTIVE,
    (S.PENDING_REVIEW, E.REJECT): S.REJECTED,
    (S.OFFERED, E.DELETE): S.DELETED,
    # ending
    (S.OFFERED, E.TERMINATE): S.TERMINATED,
    (S.SIGNING, E.TERMINATE): S.TERMINATED,
    (S.PENDING_REVIEW, E.TERMINATE): S.TERMINATED,
    (S.REJECTED, E.TERMINATE): S.TERMINATED,
    (S.ACTIVE, E.TERMINATE): S.TERMINATED,
    # fulfilment (self-loops: these events never change the stored status)
    (S.ACTIVE, E.GRANT): S.ACTIVE,
    (S.ACTIVE, E.RECEIPT): S.ACTIVE,
    (S.ACTIVE, E.CONFIRM): S.ACTIVE,
    (S.EXPIRED, E.CONFIRM): S.EXPIRED,
    (S.TERMINATED, E.CONFIRM): S.TERMINATED,
    (S.ACTIVE, E.DISPOSE): S.ACTIVE,
    (S.EXPIRED, E.DISPOSE): S.EXPIRED,
    (S.TERMINATED, E.DISPOSE): S.TERMINATED,
}

FINAL = frozenset({S.TERMINATED, S.DELETED})
LAPSING = frozenset({S.OFFERED, S.SIGNING, S.PENDING_REVIEW, S.ACTIVE, S.REJECTED})
FULFILMENT_EVENTS = frozenset({E.GRANT, E.RECEIPT, E.CONFIRM, E.DISPOSE})
INTERNAL_EVENTS = frozenset({E.SIGNED_ALL, E.SIGNED_ALL_REVIEW})

# Refusals: fulfilment is "not_active" whatever the status; otherwise a final or expired
# status names itself, and in a live status the event names what is in the way.
_REFUSED_IN: dict[Status, str] = {
    S.TERMINATED: "already_terminated",
    S.DELETED: "contract_deleted",
    S.EXPIRED: "contract_expired",
}
_REFUSED_FOR: dict[Event, str] = {
    E.COUNTER: "contract_active",  # only ACTIVE is live and refuses a counter
    E.SIGN: "already_signed",  # PENDING_REVIEW, ACTIVE, REJECTED: every party signed
    E.APPROVE: "not_pending_review",
    E.REJECT: "not_pending_review",
    E.DELETE: "contract_signed",  # SIGNING, PENDING_REVIEW, ACTIVE, REJECTED
}


def refusal_reason(status: Status, event: Event) -> str:
    assert (status, event) not in TRANSITIONS and event not in INTERNAL_EVENTS
    if event in FULFILMENT_EVENTS:
        return "not_active"
    return _REFUSED_IN.get(status) or _REFUSED_FOR[event]


def transition(status: Status, event: Event) -> Status:
    target = TRANSITIONS.get((status, event))
    if target is None:
        refuse(refusal_reason(status, event), f"cannot {event} a contract that is {status}")
    return target


def effective_status(contract: dict[str, Any], now_ms: int) -> Status:
    stored = Status(contract["status"])
    assert stored != S.EXPIRED, "EXPIRED is derived, never stored"
    if stored in LAPSING and now_ms >= contract["use_end_ms"]:
        return S.EXPIRED
    return stored


# ---- terms -----------------------------------------------------------------------------

DELIVERY_METHODS = ("download", "clean_room")
PRICE_MODELS = ("one_time", "pay_per_use", "subscription")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
PURPOSE_MAX_LEN = 500
DISPOSAL_METHOD_MAX_LEN = 64
MAX_DOWNLOADS_MAX = 1_000_000
MAX_VERSIONS = 32
COMMENT_MAX_LEN = 1000
TERMINATE_REASON_MAX_LEN = 500


def terms_hash(terms: dict[str, Any]) -> bytes:
    """SHA-256 of the canonical msgpack of a terms map: what ``contract.sign`` names."""
    return hashlib.sha256(canonical(terms)).digest()


def read_terms(f: Fields, now_ms: int) -> dict[str, Any]:
    t = f.nested("terms")
    terms: dict[str, Any] = {
        "delivery_method": t.choice("delivery_method", DELIVERY_METHODS),
        "purpose": t.text("purpose", min_len=1, max_len=PURPOSE_MAX_LEN, multiline=True),
        "use_start_ms": t.integer("use_start_ms"),
        "use_end_ms": t.integer("use_end_ms"),
        "max_downloads": t.integer("max_downloads", lo=1, hi=MAX_DOWNLOADS_MAX),
        "redistribution_banned": t.boolean("redistribution_banned"),
        "disposal_method": t.text("disposal_method", min_len=1, max_len=DISPOSAL_METHOD_MAX_LEN),
        "disposal_deadline_ms": t.integer("disposal_deadline_ms"),
        "price_minor": t.integer("price_minor", lo=0, hi=INT_MAX),
        "currency": t.text("currency", min_len=3, max_len=3),
        "price_model": t.choice("price_model", PRICE_MODELS),
        "terms_document_hash": t.blob("terms_document_hash", size=HASH_LEN),
    }
    if t.has("reviewer"):
        terms["reviewer"] = t.account_id("reviewer")
    if t.has("arbiter"):
        terms["arbiter"] = t.account_id("arbiter")
    check_terms(t, terms)
    billing.read_billing(t, terms)
    t.finish()
    if not CURRENCY_RE.match(terms["currency"]):
        bad("terms.currency", "must be an ISO 4217 code such as EUR")
    if terms["use_end_ms"] <= terms["use_start_ms"]:
        refuse("bad_period", "terms.use_end_ms must be after terms.use_start_ms")
    if terms["use_end_ms"] <= now_ms:
        refuse("bad_period", "terms.use_end_ms is not after the block time")
    if terms["disposal_deadline_ms"] < terms["use_end_ms"]:
        refuse("bad_period", "terms.disposal_deadline_ms must not be before terms.use_end_ms")
    return terms


# ---- reads shared with fulfilment and queries -------------------------------------------


def load_contract(state: ReadableKV, contract_id: str) -> dict[str, Any] | None:
    record: dict[str, Any] | None = layout.read(state, layout.contract_key(contract_id))
    return record


def load_version(state: ReadableKV, contract_id: str, version: int) -> dict[str, Any]:
    record: dict[str, Any] | None = layout.read(state, layout.version_key(contract_id, version))
    assert record is not None, (contract_id, version)
    return record


def require_contract(state: ReadableKV, contract_id: str) -> dict[str, Any]:
    contract = load_contract(state, contract_id)
    if contract is None:
        refuse("unknown_contract", f"contract_id: no contract {contract_id}")
    return contract


def parties(contract: dict[str, Any]) -> tuple[str, str]:
    return contract["supplier"], contract["consumer"]


# ---- handlers --------------------------------------------------------------------------


def _require_party(contract: dict[str, Any], tx: Tx) -> None:
    if tx.sender not in parties(contract):
        refuse("not_a_party", f"{tx.sender} is not a party of contract {contract['id']}")


def _check_version(contract: dict[str, Any], version: int) -> None:
    if version < contract["version"]:
        refuse("superseded_version", f"version {version} is superseded by {contract['version']}")
    if version > contract["version"]:
        refuse("unknown_version", f"the current version is {contract['version']}")


def _check_reviewer(state: Overlay, terms: dict[str, Any], both: tuple[str, str]) -> None:
    """The reviewer and the arbiter the terms name (if any): not a party, active, with the
    reviewer role (an arbiter who fails this is ``arbiter_is_party`` / ``not_arbiter``)."""
    for field, is_party, lacks_role in (
        ("reviewer", "reviewer_is_party", "not_reviewer"),
        ("arbiter", "arbiter_is_party", "not_arbiter"),
    ):
        account = terms.get(field)
        if account is None:
            continue
        if account in both:
            refuse(is_party, f"terms.{field} is a party of the contract")
        found = require_active(state, account, f"terms.{field}")
        if not has_role(found, "reviewer"):
            refuse(lacks_role, f"terms.{field} {account} does not have the reviewer role")


def _new_version(
    ctx: BlockContext, tx: Tx, number: int, terms: dict[str, Any], dataset: dict[str, Any]
) -> dict[str, Any]:
    return {
        "version": number,
        "author": tx.sender,
        "terms": terms,
        "terms_hash": terms_hash(terms),
        "dataset_version": dataset["version"],
        "dataset_merkle_root": dataset["merkle_root"],
        "dataset_chunk_count": dataset["chunk_count"],
        "created": event(ctx, tx),
        "superseded": None,
        "signatures": [],
        "review": None,
    }


def _store(state: Overlay, contract: dict[str, Any]) -> None:
    assert contract["status"] != S.EXPIRED
    state.put_obj(layout.contract_key(contract["id"]), contract)


def _activate(ctx: BlockContext, state: Overlay, contract: dict[str, Any], tx: Tx) -> None:
    assert contract["activated"] is None, "a contract becomes ACTIVE once"
    version = load_version(state, contract["id"], contract["version"])
    contract["activated"] = {**event(ctx, tx), "version": contract["version"]}
    contract["disposal_deadline_ms"] = version["terms"]["disposal_deadline_ms"]
    contract["max_downloads"] = version["terms"]["max_downloads"]
    state.put(
        layout.disposal_due_key(contract["disposal_deadline_ms"], contract["id"]), layout.EMPTY
    )
    record.bump(state, contract["supplier"], "contracts")
    billing.reindex(state, contract)


def contract_offer(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract_id = f.ident("contract_id")
    dataset_id = f.ident("dataset_id")
    consumer = f.account_id("consumer")
    terms = read_terms(f, ctx.timestamp_ms)
    f.finish()
    if load_contract(state, contract_id) is not None:
        refuse("contract_exists", f"contract {contract_id} already exists")
    dataset = require_published(state, dataset_id)
    supplier = dataset["supplier"]
    if consumer == supplier:
        refuse("same_party", "the consumer is the dataset's own supplier")
    if tx.sender not in (supplier, consumer):
        refuse("not_a_party", "only the dataset's supplier or the consumer makes an offer")
    require_active(state, supplier, "dataset supplier")
    if not has_role(require_active(state, consumer, "consumer"), "consumer"):
        refuse("not_consumer", f"consumer {consumer} does not have the consumer role")
    _check_reviewer(state, terms, (supplier, consumer))
    contract: dict[str, Any] = {
        "id": contract_id,
        "dataset_id": dataset_id,
        "supplier": supplier,
        "consumer": consumer,
        "supplier_node": dataset["supplier_node"],
        "offerer": tx.sender,
        "status": S.OFFERED.value,
        "version": 1,
        "use_end_ms": terms["use_end_ms"],
        "created": event(ctx, tx),
        "activated": None,
        "terminated": None,
        "deleted": None,
        "disposal_deadline_ms": None,
        "max_downloads": None,
        "downloads": 0,
        "grants": 0,
        "disposal": None,
    }
    _store(state, contract)
    state.put_obj(layout.version_key(contract_id, 1), _new_version(ctx, tx, 1, terms, dataset))
    for account in (supplier, consumer):
        state.put(layout.contract_by_account_key(account, contract_id), layout.EMPTY)
    state.put(layout.contract_by_dataset_key(dataset_id, contract_id), layout.EMPTY)
    audit.record(
        ctx,
        state,
        tx,
        subjects(contract, tx),
        f"offered contract {contract_id} v1 on dataset {dataset_id} to {consumer}",
    )


def contract_counter(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract_id = f.ident("contract_id")
    answered = f.integer("version", lo=1, hi=MAX_VERSIONS)
    terms = read_terms(f, ctx.timestamp_ms)
    f.finish()
    contract = require_contract(state, contract_id)
    _require_party(contract, tx)
    status = transition(effective_status(contract, ctx.timestamp_ms), E.COUNTER)
    _check_version(contract, answered)
    if contract["version"] >= MAX_VERSIONS:
        refuse("too_many_versions", f"a contract has at most {MAX_VERSIONS} versions")
    dataset = require_published(state, contract["dataset_id"])
    _check_reviewer(state, terms, parties(contract))
    previous = load_version(state, contract_id, answered)
    previous["superseded"] = event(ctx, tx)
    state.put_obj(layout.version_key(contract_id, answered), previous)
    number = answered + 1
    state.put_obj(
        layout.version_key(contract_id, number), _new_version(ctx, tx, number, terms, dataset)
    )
    contract.update(status=status.value, version=number, use_end_ms=terms["use_end_ms"])
    _store(state, contract)
    audit.record(
        ctx, state, tx, subjects(contract, tx), f"countered contract {contract_id}: v{number}"
    )


def contract_sign(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract_id = f.ident("contract_id")
    number = f.integer("version", lo=1, hi=MAX_VERSIONS)
    signed_hash = f.blob("terms_hash", size=HASH_LEN)
    f.finish()
    contract = require_contract(state, contract_id)
    _require_party(contract, tx)
    status = transition(effective_status(contract, ctx.timestamp_ms), E.SIGN)
    _check_version(contract, number)
    version = load_version(state, contract_id, number)
    if signed_hash != version["terms_hash"]:
        refuse("terms_hash_mismatch", f"terms_hash is not the hash of version {number}'s terms")
    if any(s["account"] == tx.sender for s in version["signatures"]):
        refuse("already_signed", f"{tx.sender} already signed version {number}")
    dataset = require_published(state, contract["dataset_id"])
    if dataset["merkle_root"] != version["dataset_merkle_root"]:
        refuse("dataset_changed", "the dataset content changed; counter with a new version")
    version["signatures"].append({"account": tx.sender, **event(ctx, tx)})
    signers = {s["account"] for s in version["signatures"]}
    if signers == set(parties(contract)):
        review = "reviewer" in version["terms"]
        status = transition(status, E.SIGNED_ALL_REVIEW if review else E.SIGNED_ALL)
    _save_step(
        ctx, state, tx, contract, version, status, f"signed contract {contract_id} v{number}"
    )


def _save_step(
    ctx: BlockContext,
    state: Overlay,
    tx: Tx,
    contract: dict[str, Any],
    version: dict[str, Any],
    status: Status,
    what: str,
) -> None:
    """Store a signature's or review's version and the contract's new status (activating it
    when every condition is met) and record the step in the audit trail."""
    state.put_obj(layout.version_key(contract["id"], version["version"]), version)
    contract["status"] = status.value
    if status == S.ACTIVE:
        _activate(ctx, state, contract, tx)
    _store(state, contract)
    audit.record(ctx, state, tx, subjects(contract, tx), f"{what}; now {status}")


def contract_review(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract_id = f.ident("contract_id")
    number = f.integer("version", lo=1, hi=MAX_VERSIONS)
    decision = f.choice("decision", ("approve", "reject"))
    comment = f.text("comment", max_len=COMMENT_MAX_LEN, multiline=True)
    f.finish()
    contract = require_contract(state, contract_id)
    current = effective_status(contract, ctx.timestamp_ms)
    status = transition(current, E.APPROVE if decision == "approve" else E.REJECT)
    _check_version(contract, number)
    version = load_version(state, contract_id, number)
    if tx.sender != version["terms"].get("reviewer"):
        refuse("not_reviewer", f"{tx.sender} is not the reviewer the terms name")
    if not has_role(require_active(state, tx.sender, "reviewer"), "reviewer"):
        refuse("not_reviewer", f"{tx.sender} does not have the reviewer role")
    version["review"] = {
        "reviewer": tx.sender,
        "decision": decision,
        "comment": comment,
        **event(ctx, tx),
    }
    _save_step(
        ctx, state, tx, contract, version, status, f"{decision}d contract {contract_id} v{number}"
    )


def contract_delete(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract_id = f.ident("contract_id")
    f.finish()
    contract = require_contract(state, contract_id)
    _require_party(contract, tx)
    status = transition(effective_status(contract, ctx.timestamp_ms), E.DELETE)
    version = load_version(state, contract_id, contract["version"])
    if version["author"] != tx.sender:
        refuse("not_offerer", f"version {contract['version']} was offered by {version['author']}")
    contract["status"] = status.value
    contract["deleted"] = event(ctx, tx)
    _store(state, contract)
    audit.record(ctx, state, tx, subjects(contract, tx), f"deleted contract {contract_id}")


def contract_terminate(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract_id = f.ident("contract_id")
    reason = f.text("reason", min_len=1, max_len=TERMINATE_REASON_MAX_LEN)
    f.finish()
    contract = require_contract(state, contract_id)
    _require_party(contract, tx)
    status = transition(effective_status(contract, ctx.timestamp_ms), E.TERMINATE)
    contract["status"] = status.value
    contract["terminated"] = {**event(ctx, tx), "by": tx.sender, "reason": reason}
    _store(state, contract)
    billing.reindex(state, contract)
    audit.record(
        ctx, state, tx, subjects(contract, tx), f"terminated contract {contract_id}: {reason}"
    )


def register(ledger: Ledger) -> None:
    ledger.register("contract.offer", registered_only(contract_offer))
    ledger.register("contract.counter", registered_only(contract_counter))
    ledger.register("contract.sign", registered_only(contract_sign))
    ledger.register("contract.review", registered_only(contract_review))
    ledger.register("contract.delete", registered_only(contract_delete))
    ledger.register("contract.terminate", registered_only(contract_terminate))
