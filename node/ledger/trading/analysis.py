"""The analysis rule of a clean-room contract's terms: its shape, bounds and hash.

See :mod:`.compute` for what the rule means and how receipts use it. This module only reads
and checks the rule, so the contract rules (``contracts.read_terms``) can include it in the
terms without importing the receipt rules.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from mdtp.node.ledger.trading.reasons import refuse
from mdtp.node.ledger.trading.schema import Fields, bad
from mdtp.node.ledger.tx import canonical

COLUMN_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
AGGREGATE_FUNCTIONS = ("AVG", "COUNT", "MAX", "MEDIAN", "MIN", "STDDEV", "SUM", "VARIANCE")
SCALAR_FUNCTIONS = (
    "ABS",
    "CEIL",
    "COALESCE",
    "DATE_TRUNC",
    "FLOOR",
    "LOWER",
    "ROUND",
    "UPPER",
)
COLUMNS_MAX = 64
MIN_DISTINCT_MAX = 1_000_000
QUERY_BUDGET_MAX = 1_000_000
RESULT_ROWS_MAX = 10_000
NOISE_SCALE_MILLI_MAX = 1_000_000_000


def rule_hash(rule: dict[str, Any]) -> bytes:
    """SHA-256 of the canonical msgpack of an analysis rule: what each receipt names."""
    return hashlib.sha256(canonical(rule)).digest()


def _columns(f: Fields, field: str) -> list[str]:
    return f.string_list(field, max_items=COLUMNS_MAX, pattern=COLUMN_RE)


def read_rule(f: Fields) -> dict[str, Any]:
    """The ``analysis_rule`` of a terms map, validated (``f`` is the terms' fields)."""
    r = f.nested("analysis_rule")
    raw = r.raw("aggregations")
    where = r.name("aggregations")
    if not isinstance(raw, dict) or not 0 < len(raw) <= COLUMNS_MAX:
        bad(where, f"must be a map of 1..{COLUMNS_MAX} columns to functions")
    aggregations: dict[str, list[str]] = {}
    agg = Fields(raw, where)
    for column in sorted(raw):
        if not isinstance(column, str) or not COLUMN_RE.match(column):
            bad(where, f"column names must match {COLUMN_RE.pattern}")
        functions = agg.string_list(
            column, min_items=1, max_items=len(AGGREGATE_FUNCTIONS), options=AGGREGATE_FUNCTIONS
        )
        aggregations[column] = functions
    rule: dict[str, Any] = {
        "aggregations": aggregations,
        "dimensions": _columns(r, "dimensions"),
        "never_output": _columns(r, "never_output"),
        "scalar_functions": r.string_list(
            "scalar_functions", max_items=len(SCALAR_FUNCTIONS), options=SCALAR_FUNCTIONS
        ),
        "identity_column": r.text("identity_column", min_len=1, max_len=63),
        "min_distinct": r.integer("min_distinct", lo=2, hi=MIN_DISTINCT_MAX),
        "query_budget": r.integer("query_budget", lo=1, hi=QUERY_BUDGET_MAX),
        "max_result_rows": r.integer("max_result_rows", lo=1, hi=RESULT_ROWS_MAX),
    }
    if r.has("noise_scale_milli"):
        rule["noise_scale_milli"] = r.integer("noise_scale_milli", hi=NOISE_SCALE_MILLI_MAX)
    r.finish()
    identity = rule["identity_column"]
    if not COLUMN_RE.match(identity):
        bad("terms.analysis_rule.identity_column", f"must match {COLUMN_RE.pattern}")
    hidden = set(rule["never_output"])
    if hidden & (set(aggregations) | set(rule["dimensions"]) | {identity}):
        refuse("bad_rule", "a never_output column is aggregated, a dimension or the identity")
    if identity in rule["dimensions"]:
        refuse("bad_rule", "the identity column may not be a dimension (it would isolate rows)")
    return rule


def check_terms(f: Fields, terms: dict[str, Any]) -> None:
    """Read ``analysis_rule`` into ``terms``: required for clean-room delivery, else refused."""
    clean_room = terms["delivery_method"] == "clean_room"
    if clean_room and not f.has("analysis_rule"):
        refuse("bad_rule", "a clean_room contract needs terms.analysis_rule")
    if not clean_room and f.has("analysis_rule"):
        refuse("bad_rule", "terms.analysis_rule is only for delivery_method clean_room")
    if clean_room:
        terms["analysis_rule"] = read_rule(f)
