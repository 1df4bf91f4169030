"""The engine: correct aggregates (checked against the plaintext), the threshold, the bounds,
the noise and the result hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from mdtp.node.compute.check import check_query
from mdtp.node.compute.engine import Engine, EngineLimits
from mdtp.node.compute.reasons import QueryRefused
from mdtp.node.compute.result import result_hash
from mdtp.node.compute.rule import Rule
from tests.compute.attacks import (
    ALLOWED,
    COLUMNS,
    OVERSIZED,
    SUPPRESSED,
    csv_bytes,
    per_machine_average,
    rule,
)

RULE = Rule.from_terms(rule())
RID, RHASH = hashlib.sha256(b"request").digest(), hashlib.sha256(b"rule").digest()


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(tmp_path / "compute", EngineLimits())


def run(engine: Engine, sql: str, r: Rule = RULE, rid: bytes = RID):  # type: ignore[no-untyped-def]
    table = engine.cached("ds") or engine.load("ds", csv_bytes(), "csv")
    return engine.run(table, check_query(sql, r, table.columns), r, rid, RHASH)


def test_per_machine_averages_match_the_plaintext(engine: Engine) -> None:
    out = run(engine, ALLOWED[0])
    assert out.columns == ("machine_id", "avg_load")
    assert {m: pytest.approx(v) for m, v in per_machine_average().items()} == dict(
        (m, v) for m, v in out.rows
    )
    assert out.rows_scanned == 130
    assert out.rows_suppressed == 1  # M4 has 2 batches, below the threshold of 3
    assert not list((engine.workdir).iterdir()), "the plaintext file is gone after loading"


@pytest.mark.parametrize(("name", "sql", "returned", "suppressed"), SUPPRESSED)
def test_rows_below_the_threshold_are_suppressed(
    engine: Engine, name: str, sql: str, returned: int, suppressed: int
) -> None:
    out = run(engine, sql)
    assert (len(out.rows), out.rows_suppressed) == (returned, suppressed), name


def test_a_result_larger_than_the_rule_allows_is_refused(engine: Engine) -> None:
    with pytest.raises(QueryRefused, match="result_too_large"):
        run(engine, OVERSIZED)


def test_the_engine_cannot_read_files_after_loading(engine: Engine) -> None:
    table = engine.load("ds", csv_bytes(), "csv")
    with pytest.raises(duckdb.Error):
        table.conn.execute("SELECT * FROM read_csv('/etc/hostname')")
    with pytest.raises(duckdb.Error):
        table.conn.execute("SET enable_external_access = true")


def test_a_slow_query_is_interrupted(tmp_path: Path) -> None:
    engine = Engine(tmp_path, EngineLimits(timeout_s=0.02))
    table = engine.load("big", csv_bytes(), "csv")
    table.conn.execute(  # millions of rows, made inside the engine (no file access needed)
        "INSERT INTO data SELECT 'M' || (i % 50), 'day', 'B' || (i % 997), 'S', 'OP', "
        "i % 101, 20 FROM range(1500000) t(i)"
    )
    slow = Rule.from_terms(rule(aggregations={"spindle_load": ["MEDIAN"]}))
    sql = "SELECT machine_id, MEDIAN(spindle_load * spindle_load) FROM data GROUP BY machine_id"
    with pytest.raises(QueryRefused, match="timeout"):
        engine.run(table, check_query(sql, slow, table.columns), slow, RID, RHASH)


def test_noise_is_deterministic_per_request_and_hides_the_exact_value(engine: Engine) -> None:
    noisy = Rule.from_terms(rule(noise_scale_milli=2000))
    a = run(engine, ALLOWED[0], noisy)
    b = run(engine, ALLOWED[0], noisy)
    c = run(engine, ALLOWED[0], noisy, rid=hashlib.sha256(b"another request").digest())
    exact = run(engine, ALLOWED[0])
    assert a.rows == b.rows
    assert a.rows != c.rows
    assert a.rows != exact.rows
    assert [r[0] for r in a.rows] == [r[0] for r in exact.rows], "dimensions get no noise"


def test_parquet_datasets_load_too(engine: Engine, tmp_path: Path) -> None:
    source = tmp_path / "t.csv"
    source.write_bytes(csv_bytes())
    out = tmp_path / "t.parquet"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{source}')) TO '{out}' (FORMAT parquet)")
    table = engine.load("pq", out.read_bytes(), "parquet")
    assert set(table.columns) == set(COLUMNS)
    result = engine.run(table, check_query(ALLOWED[0], RULE, table.columns), RULE, RID, RHASH)
    assert len(result.rows) == 3


def test_the_result_hash_is_over_the_canonical_table() -> None:
    assert result_hash(["a"], [[1.5]]) == result_hash(("a",), [(1.5,)])
    assert result_hash(["a"], [[1.5]]) != result_hash(["a"], [[1.50001]])
