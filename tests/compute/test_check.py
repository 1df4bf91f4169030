"""The rule checker: every extraction attempt is refused with its reason, before anything runs,
and the allowed queries run with the hidden threshold column."""

from __future__ import annotations

import pytest

from mdtp.node.compute.check import HIDDEN_COUNT, check_query
from mdtp.node.compute.reasons import REFUSALS, QueryRefused
from mdtp.node.compute.rule import Rule
from tests.compute.attacks import ALLOWED, COLUMNS, REFUSED, rule

RULE = Rule.from_terms(rule())


@pytest.mark.parametrize(("name", "sql", "reason"), REFUSED, ids=[a[0] for a in REFUSED])
def test_extraction_attempt_is_refused_with_its_reason(name: str, sql: str, reason: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        check_query(sql, RULE, COLUMNS)
    assert refused.value.reason == reason, (name, refused.value.message)


def test_there_are_at_least_twenty_distinct_extraction_attempts() -> None:
    assert len(REFUSED) >= 20
    assert len({reason for _, _, reason in REFUSED}) >= 15
    assert all(reason in REFUSALS for _, _, reason in REFUSED)


@pytest.mark.parametrize("sql", ALLOWED)
def test_allowed_queries_run_with_the_hidden_distinct_count(sql: str) -> None:
    checked = check_query(sql, RULE, COLUMNS)
    assert f"COUNT(DISTINCT batch_id) AS {HIDDEN_COUNT}" in checked.sql
    assert checked.sql.endswith(f"LIMIT {RULE.max_result_rows + 1}")
    assert any(checked.aggregates)


def test_an_unknown_column_is_refused() -> None:
    with pytest.raises(QueryRefused, match="unknown_column"):
        check_query("SELECT AVG(pressure) FROM data", RULE, COLUMNS)


def test_count_star_needs_count_in_the_rule() -> None:
    strict = Rule.from_terms(rule(aggregations={"spindle_load": ["AVG"]}))
    with pytest.raises(QueryRefused, match="disallowed_aggregate"):
        check_query("SELECT COUNT(*) FROM data", strict, COLUMNS)


def test_a_users_limit_is_kept_when_below_the_rules() -> None:
    sql = "SELECT machine_id, AVG(spindle_load) FROM data GROUP BY machine_id LIMIT 2"
    assert check_query(sql, RULE, COLUMNS).sql.endswith("LIMIT 2")


def test_date_parts_are_words_only_inside_date_trunc() -> None:
    dated = Rule.from_terms(rule(dimensions=["machine_id", "ts"], scalar_functions=["DATE_TRUNC"]))
    columns = (*COLUMNS, "ts")
    sql = (
        "SELECT DATE_TRUNC('day', ts) AS d, AVG(spindle_load) FROM data "
        "GROUP BY DATE_TRUNC('day', ts)"
    )
    assert "DATE_TRUNC" in check_query(sql, dated, columns).sql


def test_the_cli_prints_a_result_as_an_aligned_table_with_its_receipt() -> None:
    from mdtp.node.cli.compute import _table
    from mdtp.node.sdk.compute import QueryResult

    receipt = {"rows_suppressed": 1, "rows_scanned": 130, "tx_id": "ab" * 32, "height": 7}
    result = QueryResult(["machine_id", "avg"], [["M1", 44.5], ["M22", None]], receipt, "")
    lines = _table(result).splitlines()
    assert lines[0] == "machine_id  avg"
    assert lines[1] == "M1          44.5"
    assert lines[2] == "M22"
    assert "1 suppressed below the threshold, 130 scanned" in lines[-1]
    assert result.to_csv() == "machine_id,avg\nM1,44.5\nM22,\n"
