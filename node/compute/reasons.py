"""Every reason a clean-room query is refused, in one table.

The API returns the code, ``mdtp_compute_queries_refused_total{reason}`` counts it, the
supplier's node keeps a count per contract (``GET /v1/compute/contracts/{id}/refusals``) and
the audit log line names it. A refused query returns no data and uses no budget.
"""

from __future__ import annotations

# the request: who asks, under which contract (checked before the SQL is even parsed)
REQUEST_REFUSALS: dict[str, str] = {
    "malformed": "the request does not decode",
    "wrong_chain": "the request is for another chain",
    "bad_id": "an id does not match the ledger's id grammar",
    "request_expired": "the request's expires_at_ms has passed",
    "expiry_too_far": "the request expires further ahead than the node accepts",
    "bad_signature": "the signature is not by the requester account's current key",
    "replayed_nonce": "the request's nonce was already used",
    "nonce_quota": "the account has too many unexpired requests remembered; retry later",
    "foreign_relay": "the request was relayed by a member other than the account's own",
    "not_member_account": "the account is not an account of this node's member",
    "unknown_contract": "no such contract",
    "not_consumer": "the requester is not the contract's consumer",
    "not_active": "the contract is not active yet (or never became active)",
    "contract_expired": "the contract's use period has ended",
    "contract_terminated": "the contract was terminated",
    "outside_use_period": "the use period has not started yet",
    "payment_overdue": "an invoice is overdue and the terms suspend access until it is paid",
    "not_clean_room": "the contract's delivery method is not clean_room",
    "budget_exhausted": "every query the contract's budget allows has been run",
    "busy": "too many queries in progress; retry later",
    "dataset_unavailable": "this node does not hold the dataset, its key, or a readable table",
    "supplier_unreachable": "the supplier's node did not answer in time",
}

# the SQL: what the analysis rule forbids (node.compute.check)
QUERY_REFUSALS: dict[str, str] = {
    "query_too_long": "the SQL text is longer than the node accepts",
    "parse_error": "the SQL does not parse",
    "multiple_statements": "the request holds more than one statement",
    "not_a_select": "only a SELECT may run",
    "set_operation": "UNION, INTERSECT and EXCEPT are not allowed",
    "subquery": "subqueries and common table expressions are not allowed",
    "join": "joins are not allowed",
    "unknown_table": "the only table is data",
    "select_star": "raw row selection (*) is not allowed; only COUNT(*)",
    "unknown_column": "the dataset has no such column",
    "forbidden_column": "the rule says this column may never appear in a query",
    "disallowed_function": "the function is not allowed by the rule",
    "disallowed_aggregate": "the rule does not allow this aggregate on this column",
    "nested_aggregate": "an aggregate inside an aggregate is not allowed",
    "disallowed_expression": "this SQL construct is not allowed in a clean-room query",
    "window_function": "window functions are not allowed",
    "missing_aggregation": "every output must be an aggregate or a grouped dimension",
    "disallowed_group_by": "only dimension columns may be grouped on",
    "group_by_identity": "grouping by the identity column would isolate rows",
    "disallowed_filter": "only dimension columns may be filtered on",
    "filter_on_identity": "filtering on the identity column would isolate rows",
    "negative_filter": "negated filters (!=, NOT) are not allowed: they enable differencing",
    "bad_limit": "LIMIT must be a plain number",
}

# the run: what the engine stopped (node.compute.engine) and the receipt
RUN_REFUSALS: dict[str, str] = {
    "timeout": "the query ran longer than the node allows",
    "memory_limit": "the query needed more memory than the node allows",
    "execution_error": "the engine could not run the query",
    "result_too_large": "the result has more rows or bytes than the rule or node allow",
    "dataset_too_large": "the dataset is larger than the node analyses",
    "receipt_failed": "the query's receipt did not commit, so no result is returned",
    "bad_result": "the supplier's result is malformed or does not match its receipt",
}

REFUSALS: dict[str, str] = {**REQUEST_REFUSALS, **QUERY_REFUSALS, **RUN_REFUSALS}


class QueryRefused(Exception):
    """A query the node will not run, or whose result it will not return."""

    def __init__(self, reason: str, message: str = "") -> None:
        assert reason in REFUSALS, f"undocumented compute refusal {reason!r}"
        super().__init__(f"{reason}: {message or REFUSALS[reason]}")
        self.reason = reason
        self.message = message or REFUSALS[reason]
