"""Preparing a table for clean-room publication, on the supplier's machine, before it is
encrypted: read CSV or Parquet, optionally anonymise, write the table the node will analyse,
and describe its schema and what was done to it (the dataset's ``schema`` metadata, so
consumers know the columns they may name and how the values were altered).

Anonymisation steps, in this order:

- ``drop``: columns removed;
- ``pseudonymise``: each value replaced by ``p_`` + the first 16 hex digits of
  HMAC-SHA256(key, value): equal values stay equal (grouping and counting still work), the
  value cannot be recovered without the key, and a fresh key per dataset (the default) makes
  pseudonyms unlinkable across datasets;
- ``generalise``: a numeric value replaced by the lower bound of its range of the given
  width (``floor(v / w) * w``), so the column says "40 to 45", never "42.37".

The metadata (:func:`schema_document`) is JSON: ``{"format", "columns": [{"name", "type"}],
"anonymisation": [{"column", "method", ...}]}``; the pseudonymisation key is never in it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdtp.node.compute.engine import FORMATS
from mdtp.node.ledger.trading.analysis import COLUMN_RE

PSEUDONYM_HEX = 16


class PrepareError(ValueError):
    """The table or the anonymisation asked for cannot be prepared (names the problem)."""


@dataclass(frozen=True)
class Anonymisation:
    drop: tuple[str, ...] = ()
    pseudonymise: tuple[str, ...] = ()
    generalise: Mapping[str, float] = field(default_factory=dict)

    def describe(self) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = [{"column": c, "method": "dropped"} for c in self.drop]
        steps += [
            {"column": c, "method": "pseudonymised", "scheme": "hmac-sha256/16"}
            for c in self.pseudonymise
        ]
        steps += [
            {"column": c, "method": "generalised", "range_width": w}
            for c, w in sorted(self.generalise.items())
        ]
        return steps


def pseudonym(key: bytes, value: str) -> str:
    return "p_" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Prepared:
    data: bytes
    fmt: str
    columns: list[dict[str, str]]
    anonymisation: list[dict[str, Any]]

    def schema_document(self) -> str:
        return json.dumps(
            {"format": self.fmt, "columns": self.columns, "anonymisation": self.anonymisation},
            separators=(",", ":"),
        )


def prepare_table(
    source: Path,
    *,
    source_format: str,
    out_format: str = "csv",
    anonymisation: Anonymisation | None = None,
    key: bytes | None = None,
) -> Prepared:
    """The table in ``source`` as the node will analyse it; :class:`PrepareError`."""
    import duckdb  # on first use: the CLI and the SDK import this module for every command

    if source_format not in FORMATS or out_format not in FORMATS:
        raise PrepareError(f"formats are {', '.join(FORMATS)}")
    anon = anonymisation or Anonymisation()
    key = key if key is not None else os.urandom(32)
    conn = duckdb.connect(":memory:")
    try:
        reader = "read_parquet" if source_format == "parquet" else "read_csv"
        try:
            conn.execute(f"CREATE TABLE t AS SELECT * FROM {reader}(?)", [str(source)])
        except duckdb.Error as e:
            raise PrepareError(f"{source}: not a readable {source_format} table: {e}") from None
        names = [str(r[0]) for r in conn.execute("DESCRIBE t").fetchall()]
        bad = [n for n in names if not COLUMN_RE.match(n)]
        if bad:
            raise PrepareError(f"column names must match {COLUMN_RE.pattern}: {', '.join(bad)}")
        named = [*anon.drop, *anon.pseudonymise, *anon.generalise]
        missing = sorted(set(named) - set(names))
        if missing:
            raise PrepareError(f"no such column: {', '.join(missing)}")
        for column in anon.drop:
            conn.execute(f"ALTER TABLE t DROP COLUMN {_quoted(column)}")
        for column in anon.pseudonymise:
            q = _quoted(column)
            conn.execute(f"ALTER TABLE t ALTER {q} TYPE VARCHAR")
            values = [r[0] for r in conn.execute(f"SELECT DISTINCT {q} FROM t").fetchall()]
            conn.execute("CREATE OR REPLACE TEMP TABLE m (v VARCHAR, p VARCHAR)")
            conn.executemany(
                "INSERT INTO m VALUES (?, ?)",
                [(v, pseudonym(key, v)) for v in values if v is not None],
            )
            conn.execute(f"UPDATE t SET {q} = m.p FROM m WHERE t.{q} = m.v")
        for column, width in sorted(anon.generalise.items()):
            if not width > 0:
                raise PrepareError(f"{column}: the range width must be positive")
            q = _quoted(column)
            try:
                conn.execute(f"ALTER TABLE t ALTER {q} TYPE DOUBLE")
                conn.execute(f"UPDATE t SET {q} = floor({q} / ?) * ?", [width, width])
            except duckdb.Error as e:
                raise PrepareError(f"{column}: cannot generalise: {e}") from None
        columns = [
            {"name": str(r[0]), "type": str(r[1])} for r in conn.execute("DESCRIBE t").fetchall()
        ]
        with tempfile.TemporaryDirectory(prefix="mdtp-prepare-") as tmp:
            out = Path(tmp) / f"table.{out_format}"
            option = "FORMAT parquet" if out_format == "parquet" else "FORMAT csv, HEADER"
            conn.execute(f"COPY t TO '{str(out).replace(chr(39), chr(39) * 2)}' ({option})")
            data = out.read_bytes()
    finally:
        conn.close()
    return Prepared(data, out_format, columns, anon.describe())
