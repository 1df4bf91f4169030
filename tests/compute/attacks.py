"""The clean-room test bed shared by the unit and the cluster tests: a small CNC table, the
analysis rule a supplier would sign for it, and the extraction attempts with the reason
each must be refused with."""

from __future__ import annotations

import csv
import io
from typing import Any

MACHINES = {"M1": 8, "M2": 8, "M3": 8, "M4": 2}  # batches per machine: M4's groups are tiny
ROWS_PER_BATCH = 5
COLUMNS = (
    "machine_id",
    "shift",
    "batch_id",
    "serial",
    "operator_id",
    "spindle_load",
    "temperature_c",
)


def rows() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m, (machine, batches) in enumerate(MACHINES.items()):
        for b in range(batches):
            for _ in range(ROWS_PER_BATCH):
                n = len(out)
                out.append(
                    {
                        "machine_id": machine,
                        "shift": "day" if b % 2 == 0 else "night",
                        "batch_id": f"B{m}{b:02d}",
                        "serial": f"S{n:05d}",
                        "operator_id": f"OP{(n * 7) % 13:02d}",
                        "spindle_load": round(40 + 5 * m + (n * 37 % 17) * 0.5, 2),
                        "temperature_c": round(30 + m + (n * 11 % 7) * 0.25, 2),
                    }
                )
    return out


def csv_bytes() -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows())
    return buf.getvalue().encode()


def rule(**overrides: Any) -> dict[str, Any]:
    """The rule as the terms carry it (``terms.analysis_rule``)."""
    return {
        "aggregations": {"spindle_load": ["AVG", "COUNT", "MAX", "SUM"], "temperature_c": ["AVG"]},
        "dimensions": ["machine_id", "shift"],
        "never_output": ["operator_id"],
        "scalar_functions": ["ROUND"],
        "identity_column": "batch_id",
        "min_distinct": 3,
        "query_budget": 40,
        "max_result_rows": 5,
        **overrides,
    }


def per_machine_average(threshold: int = 3) -> dict[str, float]:
    """The plaintext computation of ``AVG(spindle_load) GROUP BY machine_id``, with the
    threshold applied: what the clean room must answer."""
    sums: dict[str, list[float]] = {}
    batches: dict[str, set[str]] = {}
    for row in rows():
        sums.setdefault(row["machine_id"], []).append(row["spindle_load"])
        batches.setdefault(row["machine_id"], set()).add(row["batch_id"])
    return {m: sum(v) / len(v) for m, v in sums.items() if len(batches[m]) >= threshold}


ALLOWED = [
    "SELECT machine_id, AVG(spindle_load) AS avg_load FROM data GROUP BY machine_id "
    "ORDER BY machine_id",
    "SELECT COUNT(*) AS n, SUM(spindle_load) AS total FROM data WHERE shift = 'day'",
    "SELECT machine_id, ROUND(AVG(temperature_c), 2) AS t FROM data "
    "WHERE machine_id IN ('M1', 'M2') GROUP BY machine_id HAVING COUNT(*) > 1 ORDER BY t DESC",
]

# (name, sql, reason): refused by the checker before anything runs
REFUSED: list[tuple[str, str, str]] = [
    ("select star", "SELECT * FROM data", "select_star"),
    ("raw column", "SELECT spindle_load FROM data", "missing_aggregation"),
    (
        "raw column beside a group",
        "SELECT machine_id, serial, AVG(spindle_load) FROM data GROUP BY machine_id",
        "missing_aggregation",
    ),
    (
        "group by the identity",
        "SELECT batch_id, AVG(spindle_load) FROM data GROUP BY batch_id",
        "group_by_identity",
    ),
    (
        "group by a unique id",
        "SELECT serial, AVG(spindle_load) FROM data GROUP BY serial",
        "disallowed_group_by",
    ),
    (
        "filter on the identity",
        "SELECT AVG(spindle_load) FROM data WHERE batch_id = 'B000'",
        "filter_on_identity",
    ),
    (
        "filter isolating one row",
        "SELECT AVG(spindle_load) FROM data WHERE serial = 'S00017'",
        "disallowed_filter",
    ),
    (
        "filter on a measured value",
        "SELECT COUNT(*) FROM data WHERE spindle_load > 49.5",
        "disallowed_filter",
    ),
    (
        "differencing: all but one",
        "SELECT SUM(spindle_load) FROM data WHERE machine_id != 'M4'",
        "negative_filter",
    ),
    (
        "differencing: NOT IN",
        "SELECT SUM(spindle_load) FROM data WHERE machine_id NOT IN ('M4')",
        "negative_filter",
    ),
    ("never-output column", "SELECT COUNT(operator_id) FROM data", "forbidden_column"),
    (
        "list of raw values",
        "SELECT machine_id, LIST(spindle_load) FROM data GROUP BY machine_id",
        "disallowed_function",
    ),
    (
        "string_agg of serials",
        "SELECT machine_id, STRING_AGG(serial, ',') FROM data GROUP BY machine_id",
        "disallowed_function",
    ),
    (
        "first value",
        "SELECT machine_id, FIRST(spindle_load) FROM data GROUP BY machine_id",
        "disallowed_function",
    ),
    (
        "arg_max reveals a serial",
        "SELECT ARG_MAX(serial, spindle_load) FROM data",
        "disallowed_function",
    ),
    (
        "aggregate the rule does not allow",
        "SELECT machine_id, MIN(spindle_load) FROM data GROUP BY machine_id",
        "disallowed_aggregate",
    ),
    (
        "count distinct identities",
        "SELECT machine_id, COUNT(DISTINCT batch_id) FROM data GROUP BY machine_id",
        "disallowed_aggregate",
    ),
    (
        "scalar function revealing a value",
        "SELECT SUBSTR(serial, 1, 5), COUNT(*) FROM data GROUP BY SUBSTR(serial, 1, 5)",
        "disallowed_function",
    ),
    (
        "self join",
        "SELECT AVG(a.spindle_load) FROM data AS a JOIN data AS b ON a.serial = b.serial",
        "join",
    ),
    (
        "subquery in FROM",
        "SELECT AVG(spindle_load) FROM (SELECT * FROM data WHERE serial = 'S00001')",
        "subquery",
    ),
    (
        "subquery in WHERE",
        "SELECT AVG(spindle_load) FROM data WHERE machine_id IN "
        "(SELECT machine_id FROM data WHERE serial = 'S00001')",
        "subquery",
    ),
    (
        "common table expression",
        "WITH t AS (SELECT * FROM data) SELECT AVG(spindle_load) FROM t",
        "subquery",
    ),
    (
        "union of aggregates",
        "SELECT AVG(spindle_load) FROM data UNION ALL SELECT AVG(temperature_c) FROM data",
        "set_operation",
    ),
    (
        "window function",
        "SELECT machine_id, AVG(spindle_load) OVER (PARTITION BY serial) FROM data",
        "window_function",
    ),
    ("table function", "SELECT COUNT(*) FROM read_csv('/etc/passwd')", "unknown_table"),
    (
        "second statement",
        "SELECT AVG(spindle_load) FROM data; DROP TABLE data",
        "multiple_statements",
    ),
    ("export", "COPY data TO 'out.csv'", "not_a_select"),
    ("nested aggregate", "SELECT AVG(SUM(spindle_load)) FROM data", "nested_aggregate"),
    (
        "conditional on a row",
        "SELECT AVG(CASE WHEN serial = 'S00001' THEN spindle_load END) FROM data",
        "disallowed_aggregate",
    ),
    ("not SQL", "SELECT AVG(spindle_load FROM data", "parse_error"),
    (
        "oversized text",
        "SELECT COUNT(*) FROM data WHERE " + "shift = 'day' OR " * 200 + "1=1",
        "query_too_long",
    ),
]

# (name, sql, rows returned, rows suppressed): allowed, and the threshold hides small groups
SUPPRESSED: list[tuple[str, str, int, int]] = [
    (
        "tiny group",
        "SELECT machine_id, AVG(spindle_load) FROM data GROUP BY machine_id ORDER BY machine_id",
        3,
        1,
    ),
    (
        "filter isolating one batch by dimensions",
        "SELECT AVG(spindle_load) FROM data WHERE machine_id = 'M4' AND shift = 'night'",
        0,
        1,
    ),
]

# grouped by every dimension: 6 groups pass the threshold, the rule allows 5 rows
OVERSIZED = "SELECT machine_id, shift, COUNT(*) FROM data GROUP BY machine_id, shift"
