"""``mdtp block|tx|chain|evidence``: read the ledger of a node through its API.

``block HEIGHT`` (header, transaction ids, commit certificate), ``tx ID`` (committed, failed
with its reason, pending, or not found), ``chain [--from H] [--to H]`` (height, hash, state
root, transaction count per block; ``--to`` defaults to the node's height) and ``evidence``
(conflicting signed consensus messages the node recorded). They name the node with the shared
options of :mod:`node.cli.options` (a member's certificate: these are member reads) and take
``--json``; a missing block or transaction is ``not_found`` and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from mdtp.node.cli import _print_table, add_command
from mdtp.node.cli.options import add_client_options, member_certificate, node_address, node_label
from mdtp.node.cli.output import emit, failed
from mdtp.node.sdk.client import ApiError, NodeClient

Read = Callable[[NodeClient], Awaitable[Any]]


def _read(args: argparse.Namespace, read: Read) -> Any:
    """What ``read`` returns from the node the options name (errors propagate)."""
    address, ca = node_address(args)
    cert, cert_key = member_certificate(args)

    async def go() -> Any:
        async with NodeClient(address, ca=ca, cert=cert, key=cert_key, timeout_s=30) as node:
            return await read(node)

    return asyncio.run(go())


def _run(
    args: argparse.Namespace, read: Read, text: Callable[[Any], Callable[[], None] | str]
) -> int:
    try:
        doc = _read(args, read)
    except ApiError as e:
        reason = "not_found" if e.status == 404 else e.reason
        return failed(args, reason, e.message or f"HTTP {e.status}")
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        message = f"cannot reach the node ({node_label(args)}): {e or type(e).__name__}"
        return failed(args, "unreachable", message)
    return emit(args, doc, text(doc))


def _time(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _lines(rows: list[tuple[str, Any]]) -> str:
    return "\n".join(f"{k:>12}: {'-' if v is None else v}" for k, v in rows)


def cmd_block(args: argparse.Namespace) -> int:
    def text(b: dict[str, Any]) -> str:
        cert = b.get("certificate") or {}
        signers = [s[0] for s in cert.get("signatures", [])]
        txs = b.get("transactions", [])
        rows = [
            ("height", b.get("height")),
            ("hash", b.get("hash")),
            ("prev hash", b.get("prev_hash")),
            ("state root", b.get("state_root")),
            ("time", _time(b.get("timestamp_ms"))),
            ("proposer", b.get("proposer")),
            ("certificate", f"view {cert.get('view')}, signed by {', '.join(signers) or '-'}"),
            ("txs", len(txs)),
            *((("" if i else "tx ids"), tx) for i, tx in enumerate(txs)),
        ]
        return _lines(rows)

    return _run(args, lambda n: n.block(args.height), text)


def cmd_tx(args: argparse.Namespace) -> int:
    async def read(node: NodeClient) -> dict[str, Any]:
        try:
            doc = await node.tx(args.id)
        except ApiError as e:
            if e.status == 404:
                raise ApiError(404, "not_found", f"no transaction {args.id}") from None
            raise
        if doc.get("status") == "unknown":
            raise ApiError(404, "not_found", f"no transaction {args.id}")
        return doc

    def text(t: dict[str, Any]) -> str:
        keys = ("id", "status", "height", "index", "reason")
        return _lines([(k, t.get(k)) for k in keys if k in t])

    return _run(args, read, text)


def cmd_chain(args: argparse.Namespace) -> int:
    async def read(node: NodeClient) -> list[dict[str, Any]]:
        end = args.to if args.to is not None else int((await node.status())["height"])
        rows = await node.chain(args.start, end)
        return [{"height": r[0], "hash": r[1], "state_root": r[2], "tx_count": r[3]} for r in rows]

    def text(rows: list[dict[str, Any]]) -> Callable[[], None]:
        if not rows:
            return lambda: print("no blocks in that range")
        return lambda: _print_table(rows, ["height", "hash", "state_root", "tx_count"])

    return _run(args, read, text)


def cmd_evidence(args: argparse.Namespace) -> int:
    def text(rows: list[dict[str, Any]]) -> Callable[[], None]:
        if not rows:
            return lambda: print("no evidence recorded")
        shown = [{"offender": r.get("offender"), "kind": r.get("kind")} for r in rows]
        return lambda: _print_table(shown, ["offender", "kind"])

    return _run(args, lambda n: n.get("/v1/evidence"), text)


def _height(value: str) -> int:
    try:
        height = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a block height") from None
    if height < 0:
        raise argparse.ArgumentTypeError("a height is 0 or more")
    return height


def register(sub: Any) -> None:
    sp = add_command(sub, "block", cmd_block, "a committed block: header, txs, certificate")
    sp.add_argument("height", type=_height)
    add_client_options(sp, signs=False)
    sp = add_command(sub, "tx", cmd_tx, "a transaction's status: committed, failed, pending")
    sp.add_argument("id", help="transaction id (hex)")
    add_client_options(sp, signs=False)
    sp = add_command(sub, "chain", cmd_chain, "the chain's blocks: height, hash, state root, txs")
    sp.add_argument("--from", dest="start", type=_height, default=1, help="first height (1)")
    sp.add_argument("--to", type=_height, help="last height (default: the node's height)")
    add_client_options(sp, signs=False)
    sp = add_command(sub, "evidence", cmd_evidence, "conflicting messages the node recorded")
    add_client_options(sp, signs=False)
