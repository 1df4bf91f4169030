"""Fulfilment records: ``access.grant``, ``delivery.receipt``, ``delivery.confirm`` and
``disposal.attest``.

The records are produced off-chain (the supplier's node seals the dataset key to the
consumer's X25519 key and serves chunks; the consumer disposes of the data); the ledger
checks who may post them and when, and keeps them for the audit.

- ``access.grant`` and ``delivery.receipt`` are posted by the node account of the dataset's
  ``supplier_node`` (the node that holds the chunks), only while the contract is ACTIVE.
  A receipt also needs the block time inside the use period and a download left: each
  receipt counts one of the terms' ``max_downloads``. A receipt's id is the id of the
  transaction that posted it.
- A download may outlive the contract (the consumer terminates mid-stream, the use period
  ends): the supplier's node still records what it served. Such a receipt names the fetch
  request it answered (``request_id``, the hash of the consumer's signed request) and when
  the node authorised it (``authorised_height``, the committed height it checked, and
  ``authorised_at_ms``, the time it checked against). The ledger accepts it after the
  contract ended only if the contract was ACTIVE then: activated at or below that height,
  not terminated at or below it, and the time inside the use period. Every check uses only
  the body and the state, so every replica decides alike. One receipt per request: a node
  that retries a receipt after a crash cannot count a download twice.
- A receipt authorised (``authorised_at_ms``, else the block time) while the contract's
  access was suspended for an overdue payment (:func:`.billing.access_suspended`) is refused
  with ``payment_overdue``; an accepted one is billed if the terms bill per download or per
  chunk (:func:`.billing.add_usage`).
- ``delivery.confirm`` and ``disposal.attest`` are posted by the consumer, also after the
  contract expired or was terminated (disposal comes after use). A disposal attested after
  the deadline is still recorded, flagged ``overdue``: the ledger can only vouch for a
  disposal on time if the attestation reached it by the deadline, so an attestation is
  overdue if either the attested time or the block time is past the deadline. An attestation
  on time clears the contract's ``due/`` entry; what stays there is overdue once the time
  passes, which keeps :func:`queries.overdue_disposals` proportional to the overdue ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mdtp.node.ledger.machine import BlockContext, Ledger
from mdtp.node.ledger.state import Overlay
from mdtp.node.ledger.trading import audit, billing, layout
from mdtp.node.ledger.trading.accounts import node_account_of, registered_only, require_active
from mdtp.node.ledger.trading.catalog import load_dataset
from mdtp.node.ledger.trading.contracts import (
    DISPOSAL_METHOD_MAX_LEN,
    Event,
    Status,
    effective_status,
    event,
    load_version,
    require_contract,
    subjects,
    transition,
)
from mdtp.node.ledger.trading.reasons import refuse
from mdtp.node.ledger.trading.schema import HASH_LEN, Fields
from mdtp.node.ledger.tx import Tx

SEALED_KEY_MAX_LEN = 512
MAX_GRANTS = 16
CHUNK_INDEX_MAX = 2**24


def _require_supplier_node(state: Overlay, contract: dict[str, Any], tx: Tx) -> None:
    if tx.sender != node_account_of(state, contract["supplier_node"]):
        refuse("not_supplier_node", f"only node {contract['supplier_node']} posts this record")


def _require_consumer(contract: dict[str, Any], tx: Tx) -> None:
    if tx.sender != contract["consumer"]:
        refuse("not_contract_consumer", f"only {contract['consumer']} posts this record")


def access_grant(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract_id = f.ident("contract_id")
    sealed_key = f.blob("sealed_key", max_len=SEALED_KEY_MAX_LEN)
    f.finish()
    contract = require_contract(state, contract_id)
    _require_supplier_node(state, contract, tx)
    transition(effective_status(contract, ctx.timestamp_ms), Event.GRANT)
    if contract["grants"] >= MAX_GRANTS:
        refuse("limit_reached", f"a contract has at most {MAX_GRANTS} access grants")
    consumer = require_active(state, contract["consumer"], "contract consumer")
    contract["grants"] += 1
    state.put_obj(
        layout.grant_key(contract_id, contract["grants"]),
        {
            "n": contract["grants"],
            "contract_id": contract_id,
            "sealed_key": sealed_key,
            "sealed_to": consumer["encryption_public_key"],
            "by": tx.sender,
            **event(ctx, tx),
        },
    )
    state.put_obj(layout.contract_key(contract_id), contract)
    audit.record(
        ctx,
        state,
        tx,
        subjects(contract, tx),
        f"granted access to contract {contract_id} (grant {contract['grants']})",
    )


@dataclass(frozen=True)
class Authorisation:
    """Which fetch request a receipt answers, and the committed state that authorised it."""

    request_id: bytes
    height: int
    at_ms: int

    @classmethod
    def read(cls, f: Fields) -> Authorisation:
        return cls(
            f.blob("request_id", size=HASH_LEN),
            f.integer("authorised_height"),
            f.integer("authorised_at_ms"),
        )

    def require_while_active(
        self, ctx: BlockContext, state: Overlay, contract: dict[str, Any]
    ) -> None:
        """Refuse unless the contract was ACTIVE at the authorising height and time."""
        terms = load_version(state, contract["id"], contract["activated"]["version"])["terms"]
        terminated = contract["terminated"]
        if not (
            contract["activated"]["height"] <= self.height < ctx.height
            and (terminated is None or self.height < terminated["height"])
            and terms["use_start_ms"] <= self.at_ms < contract["use_end_ms"]
        ):
            refuse(
                "not_authorised_while_active",
                f"contract {contract['id']} was not active at height {self.height}, "
                f"time {self.at_ms}",
            )


def delivery_receipt(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract_id = f.ident("contract_id")
    dataset_id = f.ident("dataset_id")
    first_chunk = f.integer("first_chunk", hi=CHUNK_INDEX_MAX)
    last_chunk = f.integer("last_chunk", hi=CHUNK_INDEX_MAX)
    byte_count = f.integer("byte_count")
    content_hash = f.blob("content_hash", size=HASH_LEN)
    authorisation = Authorisation.read(f) if f.has("request_id") else None
    f.finish()
    contract = require_contract(state, contract_id)
    _require_supplier_node(state, contract, tx)
    status = effective_status(contract, ctx.timestamp_ms)
    if status != Status.ACTIVE and authorisation is not None and contract["activated"]:
        authorisation.require_while_active(ctx, state, contract)
    else:
        transition(status, Event.RECEIPT)
    if authorisation is not None:
        request_key = layout.receipt_request_key(contract_id, authorisation.request_id)
        if state.get(request_key) is not None:
            refuse("duplicate_receipt", f"request {authorisation.request_id.hex()} is recorded")
        state.put(request_key, tx.id)
    if dataset_id != contract["dataset_id"]:
        refuse("dataset_mismatch", f"contract {contract_id} is for {contract['dataset_id']}")
    dataset = load_dataset(state, dataset_id)
    assert dataset is not None, "a contract's dataset is never removed"
    if not first_chunk <= last_chunk < dataset["chunk_count"]:
        refuse("bad_chunk_range", f"chunks must lie in 0..{dataset['chunk_count'] - 1}")
    terms = load_version(state, contract_id, contract["activated"]["version"])["terms"]
    started_ms = authorisation.at_ms if authorisation is not None else ctx.timestamp_ms
    if started_ms < terms["use_start_ms"]:
        refuse("outside_use_period", f"the use period starts at {terms['use_start_ms']}")
    if contract["downloads"] >= contract["max_downloads"]:
        refuse("quota_exhausted", f"all {contract['max_downloads']} downloads are delivered")
    billing.require_not_suspended(state, contract, started_ms)
    contract["downloads"] += 1
    state.put_obj(
        layout.receipt_key(tx.id),
        {
            "id": tx.id,
            "n": contract["downloads"],
            "contract_id": contract_id,
            "dataset_id": dataset_id,
            "first_chunk": first_chunk,
            "last_chunk": last_chunk,
            "byte_count": byte_count,
            "content_hash": content_hash,
            "request_id": authorisation.request_id if authorisation is not None else None,
            "by": tx.sender,
            **event(ctx, tx),
            "confirmed": None,
        },
    )
    state.put(layout.contract_receipt_key(contract_id, contract["downloads"]), tx.id)
    state.put_obj(layout.contract_key(contract_id), contract)
    for unit, quantity in (("download", 1), ("chunk", last_chunk - first_chunk + 1)):
        billing.add_usage(
            ctx, state, contract, unit=unit, quantity=quantity, receipt_id=tx.id, at_ms=started_ms
        )
    audit.record(
        ctx,
        state,
        tx,
        subjects(contract, tx),
        f"delivered chunks {first_chunk}..{last_chunk} ({byte_count} bytes) of {dataset_id} "
        f"for contract {contract_id}: download {contract['downloads']} of "
        f"{contract['max_downloads']}",
    )


def delivery_confirm(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    receipt_id = f.blob("receipt_id", size=HASH_LEN)
    f.finish()
    receipt = layout.read(state, layout.receipt_key(receipt_id))
    if receipt is None:
        refuse("unknown_receipt", f"receipt_id: no receipt {receipt_id.hex()}")
    contract = require_contract(state, receipt["contract_id"])
    _require_consumer(contract, tx)
    transition(effective_status(contract, ctx.timestamp_ms), Event.CONFIRM)
    if receipt["confirmed"] is not None:
        refuse("already_confirmed", f"receipt {receipt_id.hex()} is already confirmed")
    receipt["confirmed"] = event(ctx, tx)
    state.put_obj(layout.receipt_key(receipt_id), receipt)
    audit.record(
        ctx,
        state,
        tx,
        subjects(contract, tx),
        f"confirmed receipt {receipt_id.hex()[:16]}... of contract {contract['id']}",
    )


def disposal_attest(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract_id = f.ident("contract_id")
    method = f.text("method", min_len=1, max_len=DISPOSAL_METHOD_MAX_LEN)
    disposed_at_ms = f.integer("disposed_at_ms")
    f.finish()
    contract = require_contract(state, contract_id)
    _require_consumer(contract, tx)
    transition(effective_status(contract, ctx.timestamp_ms), Event.DISPOSE)
    if contract["activated"] is None:
        refuse("not_active", f"contract {contract_id} never became active: nothing to dispose")
    if contract["disposal"] is not None:
        refuse("already_disposed", f"disposal of contract {contract_id} is already attested")
    if disposed_at_ms > ctx.timestamp_ms:
        refuse("future_timestamp", "disposed_at_ms is later than the block time")
    deadline = contract["disposal_deadline_ms"]
    terms = load_version(state, contract_id, contract["activated"]["version"])["terms"]
    overdue = max(disposed_at_ms, ctx.timestamp_ms) > deadline
    contract["disposal"] = {
        "method": method,
        "method_matches": method == terms["disposal_method"],
        "disposed_at_ms": disposed_at_ms,
        "deadline_ms": deadline,
        "overdue": overdue,
        **event(ctx, tx),
    }
    if not overdue:
        state.delete(layout.disposal_due_key(deadline, contract_id))
    state.put_obj(layout.contract_key(contract_id), contract)
    audit.record(
        ctx,
        state,
        tx,
        subjects(contract, tx),
        f"attested disposal of contract {contract_id} by {method}"
        + (" (OVERDUE)" if overdue else ""),
    )


def register(ledger: Ledger) -> None:
    ledger.register("access.grant", registered_only(access_grant))
    ledger.register("delivery.receipt", registered_only(delivery_receipt))
    ledger.register("delivery.confirm", registered_only(delivery_confirm))
    ledger.register("disposal.attest", registered_only(disposal_attest))
