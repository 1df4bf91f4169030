"""The checked query run by DuckDB over the decrypted dataset, inside the supplier's node.

A dataset is loaded once into its own in-memory DuckDB database (table ``data``) from the
plaintext the node decrypted; the plaintext file DuckDB reads lies in the node's owner-only
compute folder only while it loads and is deleted at once. Before any consumer query runs,
the database is locked down: no external access (files, URLs, extensions), the configuration
locked, ``memory_limit`` and ``threads`` set. Each query is interrupted by a timer after
``timeout_s``; an engine error never leaks its message into the answer beyond its class.

The engine runs the checked SQL (:mod:`.check`), which carries a hidden last column with the
number of distinct identity values behind each row: rows below the rule's ``min_distinct``
are suppressed and counted, the hidden column dropped, the noise added
(:mod:`.result`), and the result bounded in rows and bytes. Calls are made from one worker
thread at a time (:class:`Engine` is not thread-safe). DuckDB is imported on the first load,
not with this module, so a node (or a command) that never analyses a dataset never pays for it.
"""

from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdtp.node.compute.reasons import QueryRefused
from mdtp.node.compute.result import add_noise, canonical_result, cell, noise_seed
from mdtp.node.compute.rule import Rule

if TYPE_CHECKING:
    import duckdb

    from mdtp.node.compute.check import Checked

FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class EngineLimits:
    timeout_s: float = 10.0
    memory_limit_mb: int = 256
    threads: int = 1
    result_bytes_max: int = 1024 * 1024
    dataset_bytes_max: int = 256 * 1024 * 1024
    cached_datasets: int = 4


@dataclass(frozen=True)
class Table:
    """One dataset loaded for analysis."""

    key: str
    conn: duckdb.DuckDBPyConnection
    columns: dict[str, str]  # lower-case name -> type
    rows: int


@dataclass(frozen=True)
class Outcome:
    columns: tuple[str, ...]
    rows: list[list[Any]]
    rows_scanned: int
    rows_suppressed: int


class Engine:
    def __init__(self, workdir: Path, limits: EngineLimits) -> None:
        self.workdir = workdir
        self.limits = limits
        self._tables: collections.OrderedDict[str, Table] = collections.OrderedDict()

    def cached(self, key: str) -> Table | None:
        table = self._tables.get(key)
        if table is not None:
            self._tables.move_to_end(key)
        return table

    def load(self, key: str, plaintext: bytes, fmt: str) -> Table:
        """Load a dataset's plaintext (CSV with a header row, or Parquet) as table ``data``."""
        import duckdb  # on first use: a node that never analyses a dataset never loads it

        if fmt not in FORMATS:
            raise QueryRefused("dataset_unavailable", f"format {fmt!r} is not analysable")
        if len(plaintext) > self.limits.dataset_bytes_max:
            raise QueryRefused("dataset_too_large", f"{len(plaintext)} bytes")
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.workdir / f"load-{os.getpid()}-{threading.get_ident()}.{fmt}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        conn = duckdb.connect(":memory:")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(plaintext)
            reader = "read_parquet" if fmt == "parquet" else "read_csv"
            literal = str(path).replace("'", "''")
            conn.execute(f"CREATE TABLE data AS SELECT * FROM {reader}('{literal}')")
        except duckdb.Error as e:
            conn.close()
            # the class only: the message would name a path of this node
            raise QueryRefused(
                "dataset_unavailable", f"not a readable {fmt} table ({type(e).__name__})"
            ) from None
        finally:
            path.unlink(missing_ok=True)
        conn.execute("SET enable_external_access = false")
        conn.execute(f"SET memory_limit = '{int(self.limits.memory_limit_mb)}MB'")
        conn.execute(f"SET threads = {int(self.limits.threads)}")
        conn.execute("SET lock_configuration = true")
        described = conn.execute("DESCRIBE data").fetchall()
        count = conn.execute("SELECT COUNT(*) FROM data").fetchone()
        table = Table(
            key,
            conn,
            {str(r[0]).lower(): str(r[1]) for r in described},
            int(count[0]) if count else 0,
        )
        self._tables[key] = table
        while len(self._tables) > self.limits.cached_datasets:
            _, old = self._tables.popitem(last=False)
            old.conn.close()
        return table

    def run(
        self, table: Table, checked: Checked, rule: Rule, request_id: bytes, rule_hash: bytes
    ) -> Outcome:
        import duckdb  # loaded already by load(): here for its exception classes

        timer = threading.Timer(self.limits.timeout_s, table.conn.interrupt)
        timer.start()
        try:
            cursor = table.conn.execute(checked.sql)
            raw = cursor.fetchmany(rule.max_result_rows + 2)
        except duckdb.InterruptException:
            raise QueryRefused("timeout", f"stopped after {self.limits.timeout_s} s") from None
        except duckdb.OutOfMemoryException:
            raise QueryRefused("memory_limit", f"{self.limits.memory_limit_mb} MB") from None
        except duckdb.Error as e:
            raise QueryRefused("execution_error", type(e).__name__) from None
        finally:
            timer.cancel()
        if len(raw) > rule.max_result_rows:
            # before suppression: a result cut at the limit would be silently incomplete
            raise QueryRefused("result_too_large", f"more than {rule.max_result_rows} rows")
        kept: list[list[Any]] = []
        suppressed = 0
        for row in raw:
            *values, distinct = row
            if int(distinct or 0) < rule.min_distinct:
                suppressed += 1
            else:
                kept.append([cell(v) for v in values])
        rows = add_noise(
            kept, checked.aggregates, noise_seed(request_id, rule_hash), rule.noise_scale
        )
        if len(canonical_result(checked.columns, rows)) > self.limits.result_bytes_max:
            raise QueryRefused("result_too_large", f"over {self.limits.result_bytes_max} bytes")
        return Outcome(checked.columns, rows, table.rows, suppressed)

    def close(self) -> None:
        for table in self._tables.values():
            table.conn.close()
        self._tables.clear()
