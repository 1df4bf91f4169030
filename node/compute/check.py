"""A consumer's SQL checked against the analysis rule, by its parse tree (sqlglot), never by
pattern matching on the text.

Theory of operation
-------------------
The query must be one ``SELECT ... FROM data [WHERE] [GROUP BY] [HAVING] [ORDER BY] [LIMIT]``
over the one table ``data``. The tree is walked once and every node must be of a type in
:data:`_ALLOWED_NODES` (a whitelist: anything the checker does not know is refused,
``disallowed_expression``), every function an aggregate the rule allows for every column it
reads, or a scalar function the rule lists. Then the clauses are checked by role:

- outputs (and HAVING, ORDER BY): each is an aggregate expression, or a dimension expression
  that is grouped on; at least one output is an aggregate (``missing_aggregation``);
- GROUP BY: dimension columns only, never the identity column;
- WHERE: dimension columns only, never the identity column, no negation (``!=``, ``NOT``:
  "everything but X" is the first half of a differencing attack);
- no column the rule names ``never_output`` anywhere, no ``*`` but ``COUNT(*)``, no joins,
  subqueries, CTEs, set operations or window functions.

The checked tree is then extended with one hidden output, ``COUNT(DISTINCT <identity>)``,
and a LIMIT of one row more than the rule's ``max_result_rows``; the engine runs the SQL
generated from that tree (so what runs is exactly what was checked), suppresses every row
whose hidden count is below ``min_distinct`` and drops the hidden column.

What this does not stop, and what bounds it: two allowed queries whose row sets differ by
the rows of one identity value (``machine IN (a, b)`` and ``machine = a``, each group above
the threshold) reveal the difference of their aggregates. The threshold applies to each
query alone; the query budget limits how many such pairs a consumer gets, and the rule's
Laplace noise (fresh per query, seeded from the request) hides a difference of the order of
its scale. A supplier whose data needs more sets a higher ``min_distinct``, fewer
dimensions, a small budget and noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlglot
import sqlglot.errors
from sqlglot import exp

from mdtp.node.compute.protocol import SQL_MAX_BYTES
from mdtp.node.compute.reasons import QueryRefused
from mdtp.node.compute.rule import Rule

TABLE = "data"
HIDDEN_COUNT = "__mdtp_k"

# sqlglot's names of the aggregates and scalars the rule vocabulary names differently
_FUNCTION_NAMES = {
    "TIMESTAMP_TRUNC": "DATE_TRUNC",
    "DATE_TRUNC": "DATE_TRUNC",
    "STDDEV_SAMP": "STDDEV",
    "STDDEV": "STDDEV",
    "VARIANCE_SAMP": "VARIANCE",
    "VARIANCE": "VARIANCE",
    "CEILING": "CEIL",
}

_ALLOWED_NODES: tuple[type[exp.Expr], ...] = (
    exp.Select,
    exp.From,
    exp.Table,
    exp.Identifier,
    exp.Column,
    exp.Alias,
    exp.Where,
    exp.Group,
    exp.Having,
    exp.Order,
    exp.Ordered,
    exp.Limit,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Star,
    exp.Paren,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Neg,
    exp.EQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.And,
    exp.Or,
    exp.In,
    exp.Between,
    exp.Is,
    exp.Like,
    exp.Distinct,
    exp.Var,
    exp.Func,  # every function is then checked by name
)
_NEGATIONS = (exp.NEQ, exp.Not)
_TRUNCATIONS = (exp.TimestampTrunc, exp.DateTrunc)
# operators sqlglot models as functions: allowed, their operands are checked on their own
_OPERATORS: tuple[type[exp.Expr], ...] = (
    exp.Connector,
    exp.Binary,
    exp.Unary,
    exp.Paren,
    exp.In,
    exp.Between,
    exp.Is,
    exp.Like,
)


@dataclass(frozen=True)
class Checked:
    """A query the rule allows: the SQL the engine runs and what its outputs are."""

    sql: str  # generated from the checked tree, with the hidden threshold column last
    columns: tuple[str, ...]  # the consumer's output names
    aggregates: tuple[bool, ...]  # which outputs are aggregates (noise applies to those)


def function_name(node: exp.Func) -> str:
    name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
    return _FUNCTION_NAMES.get(name.upper(), name.upper())


def _parse(sql: str) -> exp.Select:
    if len(sql.encode()) > SQL_MAX_BYTES:
        raise QueryRefused("query_too_long", f"at most {SQL_MAX_BYTES} bytes of SQL")
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except sqlglot.errors.SqlglotError as e:
        raise QueryRefused("parse_error", str(e).splitlines()[0][:200]) from None
    if len(statements) != 1:
        raise QueryRefused("multiple_statements", f"{len(statements)} statements")
    tree = statements[0]
    if isinstance(tree, exp.SetOperation):
        raise QueryRefused("set_operation", type(tree).__name__.upper())
    if not isinstance(tree, exp.Select):
        raise QueryRefused("not_a_select", f"a {type(tree).__name__} statement")
    return tree


def _columns(node: exp.Expr) -> set[str]:
    return {c.name.lower() for c in node.find_all(exp.Column)}


def _aggregates(node: exp.Expr) -> list[exp.AggFunc]:
    return list(node.find_all(exp.AggFunc))


class _Checker:
    def __init__(self, tree: exp.Select, rule: Rule, schema: Mapping[str, str]) -> None:
        self.tree = tree
        self.rule = rule
        self.schema = {name.lower() for name in schema}
        self.aliases = {
            p.alias.lower() for p in tree.expressions if isinstance(p, exp.Alias) and p.alias
        }
        group = tree.args.get("group")
        self.grouped = [] if group is None else list(group.expressions)
        self.grouped_sql = {g.sql(dialect="duckdb") for g in self.grouped}

    def structure(self) -> None:
        """Whole-tree checks: node types, tables, stars, columns, functions."""
        # first what would bypass the threshold, wherever it hides in the tree
        for node in self.tree.walk():
            if isinstance(node, exp.Join):
                raise QueryRefused("join")
            if isinstance(node, exp.Subquery | exp.With | exp.CTE) or (
                isinstance(node, exp.Select) and node is not self.tree
            ):
                raise QueryRefused("subquery")
            if isinstance(node, exp.SetOperation):
                raise QueryRefused("set_operation")
            if isinstance(node, exp.Window):
                raise QueryRefused("window_function")
            if isinstance(node, _NEGATIONS):
                raise QueryRefused("negative_filter", node.sql(dialect="duckdb")[:100])
            if isinstance(node, exp.Column):
                self._column(node)
        for node in self.tree.walk():
            if not isinstance(node, _ALLOWED_NODES):
                raise QueryRefused("disallowed_expression", type(node).__name__)
            if isinstance(node, exp.Table):
                self._table(node)
            elif isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
                raise QueryRefused("select_star")
            elif isinstance(node, exp.Distinct) and not isinstance(node.parent, exp.Count):
                raise QueryRefused("disallowed_expression", "DISTINCT outside COUNT")
            elif isinstance(node, exp.Var) and not isinstance(node.parent, _TRUNCATIONS):
                # a bare word is only ever a date part; anywhere else it could name a column
                # behind the checker's back
                raise QueryRefused("disallowed_expression", f"the word {node.name}")
            elif isinstance(node, exp.AggFunc):
                self._aggregate(node)
            elif isinstance(node, exp.Func) and not isinstance(node, _OPERATORS):
                name = function_name(node)
                if name not in self.rule.scalar_functions:
                    raise QueryRefused("disallowed_function", name)
        from_ = self.tree.args.get("from_") or self.tree.args.get("from")
        if from_ is None:
            raise QueryRefused("unknown_table", f"query FROM {TABLE}")

    def _table(self, node: exp.Table) -> None:
        if node.name.lower() != TABLE or node.args.get("db") or node.args.get("catalog"):
            raise QueryRefused("unknown_table", node.sql(dialect="duckdb")[:100])
        if not isinstance(node.this, exp.Identifier):
            raise QueryRefused("unknown_table", "a table function")

    def _column(self, node: exp.Column) -> None:
        name = node.name.lower()
        if node.table and node.table.lower() != TABLE:
            raise QueryRefused("unknown_table", node.table)
        if name in self.rule.never_output:
            raise QueryRefused("forbidden_column", name)
        if name not in self.schema and name not in self.aliases:
            raise QueryRefused("unknown_column", name)

    def _aggregate(self, node: exp.AggFunc) -> None:
        name = function_name(node)
        if name not in _KNOWN_AGGREGATES:
            raise QueryRefused("disallowed_function", name)
        if any(inner is not node for inner in node.find_all(exp.AggFunc)):
            raise QueryRefused("nested_aggregate", node.sql(dialect="duckdb")[:100])
        columns = _columns(node)
        if not columns:
            if isinstance(node, exp.Count) and any(
                "COUNT" in fs for fs in self.rule.aggregations.values()
            ):
                return  # COUNT(*): rows counted, nothing of their values
            raise QueryRefused("disallowed_aggregate", f"{name} without a column")
        for column in sorted(columns):
            if name not in self.rule.aggregations.get(column, frozenset()):
                raise QueryRefused("disallowed_aggregate", f"{name}({column})")

    def group_by(self) -> None:
        group = self.tree.args.get("group")
        if group is not None and (group.args.get("all") or not self.grouped):
            raise QueryRefused("disallowed_group_by", "GROUP BY ALL")
        for g in self.grouped:
            if _aggregates(g) or isinstance(g, exp.Literal) or not _columns(g):
                raise QueryRefused("disallowed_group_by", g.sql(dialect="duckdb")[:100])
            for column in sorted(_columns(g)):
                if column == self.rule.identity_column:
                    raise QueryRefused("group_by_identity", column)
                if column not in self.rule.dimensions:
                    raise QueryRefused("disallowed_group_by", column)

    def where(self) -> None:
        where = self.tree.args.get("where")
        if where is None:
            return
        if _aggregates(where):
            raise QueryRefused("disallowed_filter", "an aggregate in WHERE")
        for column in sorted(_columns(where)):
            if column == self.rule.identity_column:
                raise QueryRefused("filter_on_identity", column)
            if column not in self.rule.dimensions:
                raise QueryRefused("disallowed_filter", column)

    def _output(self, node: exp.Expr) -> bool:
        """Refused unless ``node`` is an aggregate or grouped expression; True if aggregate."""
        if node.sql(dialect="duckdb") in self.grouped_sql:
            return False
        aggregates = _aggregates(node)
        outside = exp.Paren(this=node.copy())  # a parent, so a root aggregate is replaced
        for agg in list(outside.find_all(exp.AggFunc)):
            agg.replace(exp.Literal.number(0))
        for column in outside.find_all(exp.Column):
            name = column.name.lower()
            if column.sql(dialect="duckdb") in self.grouped_sql or name in self.aliases:
                continue
            raise QueryRefused("missing_aggregation", f"{name} is neither aggregated nor grouped")
        return bool(aggregates)

    def outputs(self) -> tuple[tuple[str, ...], tuple[bool, ...]]:
        names: list[str] = []
        kinds: list[bool] = []
        for projection in self.tree.expressions:
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            kinds.append(self._output(inner))
            alias = projection.alias if isinstance(projection, exp.Alias) else ""
            names.append(alias or projection.sql(dialect="duckdb"))
        if not any(kinds):
            raise QueryRefused("missing_aggregation", "no output is an aggregate")
        having = self.tree.args.get("having")
        if having is not None:
            self._output(having.this)
        order = self.tree.args.get("order")
        for ordered in [] if order is None else order.expressions:
            self._output(ordered.this)
        return tuple(names), tuple(kinds)

    def limit(self) -> int | None:
        limit = self.tree.args.get("limit")
        if limit is None:
            return None
        value = limit.expression
        if not isinstance(value, exp.Literal) or not value.is_int:
            raise QueryRefused("bad_limit", limit.sql(dialect="duckdb")[:100])
        return int(value.this)


_KNOWN_AGGREGATES = frozenset({"AVG", "COUNT", "MAX", "MEDIAN", "MIN", "STDDEV", "SUM", "VARIANCE"})


def check_query(sql: str, rule: Rule, schema: Iterable[str]) -> Checked:
    """The runnable form of ``sql`` if ``rule`` allows it over a table of ``schema``'s
    columns; :class:`QueryRefused` with the first reason found otherwise."""
    tree = _parse(sql)
    checker = _Checker(tree, rule, dict.fromkeys(schema, ""))
    checker.structure()
    checker.group_by()
    checker.where()
    columns, aggregates = checker.outputs()
    limit = checker.limit()
    run = tree.copy()
    identity = exp.column(rule.identity_column)
    hidden = exp.Count(this=exp.Distinct(expressions=[identity]))
    run.select(exp.alias_(hidden, HIDDEN_COUNT), copy=False)
    cap = rule.max_result_rows + 1
    run.limit(cap if limit is None else min(limit, cap), copy=False)
    return Checked(run.sql(dialect="duckdb"), columns, aggregates)
