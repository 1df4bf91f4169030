"""The clean-room rules on the ledger: the analysis rule in the terms, ``compute.receipt``."""

from typing import Any

import pytest

from mdtp.node.ledger.trading import queries
from mdtp.node.ledger.trading.analysis import rule_hash
from mdtp.node.ledger.trading.bodies import AnalysisRule, Terms
from mdtp.node.ledger.trading.contracts import terms_hash
from tests.ledger.helpers import DAY_MS, T0, Market, digest, terms

END = T0 + 30 * DAY_MS


def rule(**overrides: Any) -> dict[str, Any]:
    return {
        "aggregations": {"spindle_load": ["AVG", "MAX"], "temperature_c": ["AVG"]},
        "dimensions": ["machine_id", "shift"],
        "never_output": ["operator_id"],
        "scalar_functions": ["ROUND"],
        "identity_column": "batch_id",
        "min_distinct": 3,
        "query_budget": 2,
        "max_result_rows": 100,
        **overrides,
    }


CLEAN = {"delivery_method": "clean_room", "analysis_rule": rule()}


@pytest.fixture
def market() -> Market:
    return Market()


def receipt_body(n: int = 1, **overrides: Any) -> dict[str, Any]:
    return {
        "contract_id": "c1",
        "request_id": digest(f"request {n}"),
        "authorised_height": 5,
        "authorised_at_ms": T0 + 1000,
        "query_hash": digest(f"query {n}"),
        "rule_hash": rule_hash(rule()),
        "result_hash": digest(f"result {n}"),
        "rows_scanned": 1000,
        "rows_returned": 4,
        "rows_suppressed": 1,
        "budget_used": 1,
        **overrides,
    }


def test_the_rule_is_part_of_the_signed_terms_hash(market):
    market.activate(**CLEAN)
    assert market.contract()["status"] == "ACTIVE"
    other = {**CLEAN, "analysis_rule": rule(min_distinct=2)}
    assert terms_hash(terms(**CLEAN)) != terms_hash(terms(**other))


def test_the_sdk_builder_hashes_terms_and_rule_as_the_ledger_does():
    built = Terms.from_json({**terms(**CLEAN), "terms_document_hash": digest("x").hex()})
    assert isinstance(built.analysis_rule, AnalysisRule)
    assert built.analysis_rule.hash() == rule_hash(rule())
    assert built.hash() == terms_hash({**terms(**CLEAN), "terms_document_hash": digest("x")})


@pytest.mark.parametrize(
    "overrides",
    [
        {"delivery_method": "clean_room"},  # no rule
        {"delivery_method": "download", "analysis_rule": rule()},  # rule on a download
        {**CLEAN, "analysis_rule": rule(never_output=["spindle_load"])},
        {**CLEAN, "analysis_rule": rule(dimensions=["machine_id", "batch_id"])},
        {**CLEAN, "analysis_rule": rule(never_output=["batch_id"])},
    ],
)
def test_inconsistent_rules_are_refused(market, overrides):
    body = market.offer_body(**overrides)
    market.chain.refused("bad_rule", market.supplier, "contract.offer", body)


@pytest.mark.parametrize(
    "bad",
    [
        rule(min_distinct=1),
        rule(query_budget=0),
        rule(aggregations={}),
        rule(aggregations={"x": ["LIST"]}),
        rule(aggregations={"Bad-Name": ["AVG"]}),
        rule(scalar_functions=["READ_CSV"]),
        rule(extra=1),
    ],
)
def test_malformed_rules_are_refused(market, bad):
    body = market.offer_body(delivery_method="clean_room", analysis_rule=bad)
    market.chain.refused("bad_body", market.supplier, "contract.offer", body)


def test_supplier_node_records_receipts_until_the_budget_is_spent(market):
    market.activate(**CLEAN)
    first = market.chain.ok(market.node, "compute.receipt", receipt_body(1))
    market.chain.ok(market.node, "compute.receipt", receipt_body(2))
    market.chain.refused("budget_exhausted", market.node, "compute.receipt", receipt_body(3))
    view = queries.contract_compute(market.chain.kv, "c1")
    assert view["queries_used"] == 2
    assert [r["n"] for r in view["receipts"]] == [1, 2]
    assert view["receipts"][0]["result_hash"] == digest("result 1").hex()
    assert view["receipts"][0]["tx_id"] == first.tx_id.hex()


def test_a_query_is_recorded_once(market):
    market.activate(**CLEAN)
    market.chain.ok(market.node, "compute.receipt", receipt_body(1))
    again = receipt_body(1, query_hash=digest("other"))
    market.chain.refused("duplicate_receipt", market.node, "compute.receipt", again)


def test_only_the_supplier_node_posts_compute_receipts(market):
    market.activate(**CLEAN)
    for who in (market.chain.node_keys["m2"], market.supplier, market.consumer):
        market.chain.refused("not_supplier_node", who, "compute.receipt", receipt_body())


def test_the_rule_hash_must_be_the_active_rule(market):
    market.activate(**CLEAN)
    body = receipt_body(rule_hash=rule_hash(rule(min_distinct=2)))
    market.chain.refused("rule_mismatch", market.node, "compute.receipt", body)


def test_a_download_contract_takes_no_compute_receipt(market):
    market.activate()
    market.chain.refused("not_clean_room", market.node, "compute.receipt", receipt_body())


def test_receipts_need_a_contract_active_at_authorisation(market):
    market.offer(**CLEAN)
    market.chain.refused("not_active", market.node, "compute.receipt", receipt_body())
    market.sign(market.supplier, **CLEAN)
    market.sign(market.consumer, **CLEAN)
    activated = market.contract()["activated"]["height"]
    market.chain.ok(market.consumer, "contract.terminate", {"contract_id": "c1", "reason": "x"})
    terminated = market.chain.height
    # authorised while active: still recorded after the termination
    market.chain.ok(market.node, "compute.receipt", receipt_body(1, authorised_height=activated))
    late = receipt_body(2, authorised_height=terminated)
    market.chain.refused("not_authorised_while_active", market.node, "compute.receipt", late)
    assert queries.contract_compute(market.chain.kv, "c1")["queries_used"] == 1
