"""Clean-room analysis on the ledger: the analysis rule inside the terms and ``compute.receipt``.

A contract whose terms say ``delivery_method: clean_room`` carries an ``analysis_rule``: what
a consumer may ask of the dataset without ever receiving a row of it, modelled on the
aggregation rules of commercial data clean rooms. The rule is part of the terms map, so the
terms hash every party (and the reviewer) signs covers it; :func:`rule_hash` is the hash the
supplier's node names in each receipt. A download contract must not carry a rule, and a
clean-room contract must.

The rule (every list bounded, names in the column grammar :data:`COLUMN_RE`)::

    aggregations       {column: [function, ...]}   columns that may be aggregated, and how
    dimensions         [column, ...]               may be grouped by and filtered on
    never_output       [column, ...]               may not appear anywhere in a query
    scalar_functions   [function, ...]             e.g. ROUND, DATE_TRUNC
    identity_column    column                      whose distinct values the threshold counts
    min_distinct       k >= 2                      each output row aggregates >= k of them
    query_budget       n >= 1                      queries the consumer may run in all
    max_result_rows    rows a result may hold
    noise_scale_milli  (optional) Laplace scale, in thousandths, added to every aggregate

The ledger checks the rule's shape and its consistency (a never-output column is neither
aggregated, a dimension nor the identity; the identity is not a dimension). What a query may
do under a rule is checked by the supplier's node (``node.compute``), never here: parsing SQL
is not a replica's job, and the receipt is the node's signed statement of what it ran.

``compute.receipt`` is posted by the node account of the contract's ``supplier_node`` (like
``delivery.receipt``) for each query it executed: request id (hash of the consumer's signed
query), query hash, rule hash, result hash, rows scanned, returned and suppressed, and the
budget the query used. The ledger refuses a receipt for a contract that is not a clean-room
contract, whose rule hash is not the active version's, that exceeds the query budget, or
that repeats a request, or that was authorised while access was suspended for an overdue
payment (``payment_overdue``); it is accepted after the contract ended only if the contract was
ACTIVE when the node authorised the query (the same rule as delivery receipts). Terms billed
per ``query`` get a usage line for each accepted receipt (:mod:`.billing`).
"""

from __future__ import annotations

from typing import Any

from mdtp.node.ledger.machine import BlockContext, Ledger
from mdtp.node.ledger.state import Overlay, ReadableKV
from mdtp.node.ledger.trading import audit, billing, layout
from mdtp.node.ledger.trading.accounts import node_account_of, registered_only
from mdtp.node.ledger.trading.analysis import RESULT_ROWS_MAX, rule_hash
from mdtp.node.ledger.trading.contracts import (
    Event,
    Status,
    effective_status,
    event,
    load_version,
    require_contract,
    subjects,
    transition,
)
from mdtp.node.ledger.trading.fulfilment import Authorisation
from mdtp.node.ledger.trading.reasons import refuse
from mdtp.node.ledger.trading.schema import HASH_LEN, INT_MAX, Fields
from mdtp.node.ledger.tx import Tx

BUDGET_PER_QUERY_MAX = 1000


def active_rule(state: ReadableKV, contract: dict[str, Any]) -> dict[str, Any] | None:
    """The analysis rule of the version that activated ``contract`` (None: no clean room)."""
    if contract["activated"] is None:
        return None
    terms = load_version(state, contract["id"], contract["activated"]["version"])["terms"]
    rule: dict[str, Any] | None = terms.get("analysis_rule")
    return rule


def queries_used(state: ReadableKV, contract_id: str) -> int:
    raw = state.get(layout.compute_used_key(contract_id))
    return int.from_bytes(raw, "big") if raw else 0


def compute_receipt(ctx: BlockContext, state: Overlay, tx: Tx) -> None:
    f = Fields(tx.body)
    contract_id = f.ident("contract_id")
    authorisation = Authorisation.read(f)
    query_hash = f.blob("query_hash", size=HASH_LEN)
    signed_rule_hash = f.blob("rule_hash", size=HASH_LEN)
    result_hash = f.blob("result_hash", size=HASH_LEN)
    rows_scanned = f.integer("rows_scanned", hi=INT_MAX)
    rows_returned = f.integer("rows_returned", hi=RESULT_ROWS_MAX)
    rows_suppressed = f.integer("rows_suppressed", hi=INT_MAX)
    budget_used = f.integer("budget_used", lo=1, hi=BUDGET_PER_QUERY_MAX)
    f.finish()
    contract = require_contract(state, contract_id)
    if tx.sender != node_account_of(state, contract["supplier_node"]):
        refuse("not_supplier_node", f"only node {contract['supplier_node']} posts this record")
    status = effective_status(contract, ctx.timestamp_ms)
    if status != Status.ACTIVE and contract["activated"]:
        authorisation.require_while_active(ctx, state, contract)
    else:
        transition(status, Event.RECEIPT)
    rule = active_rule(state, contract)
    if rule is None:
        refuse("not_clean_room", f"contract {contract_id} is not a clean-room contract")
    if signed_rule_hash != rule_hash(rule):
        refuse("rule_mismatch", "rule_hash is not the hash of the active analysis rule")
    request_key = layout.compute_request_key(contract_id, authorisation.request_id)
    if state.get(request_key) is not None:
        refuse("duplicate_receipt", f"query {authorisation.request_id.hex()} is recorded")
    used = queries_used(state, contract_id)
    if used + budget_used > rule["query_budget"]:
        refuse("budget_exhausted", f"{used} of the {rule['query_budget']} queries are used")
    billing.require_not_suspended(state, contract, authorisation.at_ms)
    used += budget_used
    n = int.from_bytes(state.get(layout.compute_count_key(contract_id)) or b"", "big") + 1
    state.put(request_key, tx.id)
    state.put(layout.compute_used_key(contract_id), used.to_bytes(8, "big"))
    state.put(layout.compute_count_key(contract_id), n.to_bytes(8, "big"))
    state.put(layout.contract_compute_key(contract_id, n), tx.id)
    state.put_obj(
        layout.compute_receipt_key(tx.id),
        {
            "id": tx.id,
            "kind": "compute",
            "n": n,
            "contract_id": contract_id,
            "dataset_id": contract["dataset_id"],
            "request_id": authorisation.request_id,
            "authorised_height": authorisation.height,
            "authorised_at_ms": authorisation.at_ms,
            "query_hash": query_hash,
            "rule_hash": signed_rule_hash,
            "result_hash": result_hash,
            "rows_scanned": rows_scanned,
            "rows_returned": rows_returned,
            "rows_suppressed": rows_suppressed,
            "budget_used": budget_used,
            "budget_total_used": used,
            "by": tx.sender,
            **event(ctx, tx),
        },
    )
    billing.add_usage(
        ctx, state, contract, unit="query", quantity=1, receipt_id=tx.id, at_ms=authorisation.at_ms
    )
    audit.record(
        ctx,
        state,
        tx,
        subjects(contract, tx),
        f"ran clean-room query {n} on contract {contract_id}: {rows_returned} rows out, "
        f"{rows_suppressed} suppressed; budget {used} of {rule['query_budget']}",
    )


def register(ledger: Ledger) -> None:
    ledger.register("compute.receipt", registered_only(compute_receipt))
