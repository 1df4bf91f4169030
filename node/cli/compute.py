"""``mdtp compute ...``: clean-room queries (the consumer) and refusal counts (the supplier).

``mdtp compute query CONTRACT --sql SQL --key consumer.json`` signs the query, sends it to
the member's own node (relayed to the supplier's node), checks the answer against its
committed ``compute.receipt`` and prints the table (text), ``--json`` (columns, rows,
receipt) or ``--csv``. ``mdtp compute refusals CONTRACT --key supplier.json`` prints what
the supplier's node refused of the contract's queries, by reason.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mdtp.node.cli import add_command, add_group
from mdtp.node.cli.data import _client, _run
from mdtp.node.cli.options import add_client_options, signing_key
from mdtp.node.cli.output import emit
from mdtp.node.sdk.compute import QueryResult, query, query_refusals


def _table(result: QueryResult) -> str:
    cells = [result.columns, *[["" if v is None else str(v) for v in r] for r in result.rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(result.columns))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    r = result.receipt
    lines.append(
        f"({len(result.rows)} rows, {r['rows_suppressed']} suppressed below the threshold, "
        f"{r['rows_scanned']} scanned; receipt {r['tx_id']} at height {r['height']})"
    )
    return "\n".join(lines)


def cmd_query(args: argparse.Namespace) -> int:
    client, key = _client(args), signing_key(args)

    async def go() -> QueryResult:
        async with client as c:
            return await query(c, key, args.contract, args.sql)

    def show(result: QueryResult) -> int:
        if args.csv and not args.json:
            sys.stdout.write(result.to_csv())
            return 0
        return emit(args, result.to_json(), _table(result))

    return _run(args, go(), show)


def cmd_refusals(args: argparse.Namespace) -> int:
    client, key = _client(args), signing_key(args)

    async def go() -> dict[str, Any]:
        async with client as c:
            return await query_refusals(c, key, args.contract)

    return _run(args, go())


def register(sub: Any) -> None:
    compute = add_group(sub, "compute", "clean-room analysis: queries without extraction")
    sp = add_command(compute, "query", cmd_query, "run an aggregate SQL query under a contract")
    sp.add_argument("contract")
    sp.add_argument("--sql", required=True, help="SELECT ... FROM data ... (the rule decides)")
    sp.add_argument("--csv", action="store_true", help="print the result as CSV")
    add_client_options(sp, signs=True)
    sp = add_command(
        compute, "refusals", cmd_refusals, "queries the supplier's node refused, by reason"
    )
    sp.add_argument("contract")
    add_client_options(sp, signs=True)
