"""``mdtp invoice|dispute|supplier``: billing, payments and disputes on the ledger for people.

Invoices are derived by the ledger from the terms, the committed receipts and the block time
(README "Billing and disputes"); nobody posts a charge, so these commands only read them and
confirm or acknowledge payments. Disputes bind to what was delivered: ``mdtp dispute open
--file OUT`` builds the Merkle evidence of the chunks named from the chunk hashes ``mdtp data
fetch`` kept beside ``OUT`` (``OUT.chunks.json``). Options, output and failures are those of
:mod:`node.cli.trading`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mdtp.node.cli import _print_table, add_command, add_group
from mdtp.node.cli.options import UsageError, add_client_options, print_json, signing_key
from mdtp.node.cli.trading import _committed, _usage, fmt_time, run, short
from mdtp.node.ledger.trading.disputes import DECISIONS
from mdtp.node.sdk.data import DataError, dispute_chunks, file_sha256
from mdtp.node.sdk.trading import TradingClient


def _evidence_hash(args: argparse.Namespace) -> bytes:
    """SHA-256 of ``--evidence FILE``, or ``--evidence-hash HEX``."""
    if args.evidence:
        try:
            return file_sha256(Path(args.evidence))
        except OSError as e:
            raise UsageError(f"{args.evidence}: cannot read ({e.strerror})") from None
    try:
        value = bytes.fromhex(args.evidence_hash or "")
    except ValueError:
        value = b""
    if len(value) != 32:
        raise UsageError("give --evidence FILE (hashed) or --evidence-hash HEX (SHA-256)")
    return value


def _chunk_indices(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--chunks: give chunk indices like 0,3,7, not {text!r}") from None


# -- invoices ------------------------------------------------------------------------------


def _invoice_rows(invoices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "invoice": i["id"],
            "period": f"{fmt_time(i['period_start_ms'])} .. {fmt_time(i['period_end_ms'])}",
            "status": i["status"],
            "total": f"{i['total_minor']} {i['currency']}",
            "outstanding": i["outstanding_minor"],
            "due": fmt_time(i["due_ms"]),
        }
        for i in invoices
    ]


def cmd_invoice_list(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        doc = await t.invoices(args.contract)
        if args.json:
            print_json(doc)
            return 0
        summary = doc["billing"]
        if not summary["billed"]:
            print(f"contract {args.contract} has no billing terms: it is billed off-ledger")
            return 0
        print(
            f"contract {args.contract}: {summary['price_model']}, charged "
            f"{summary['charged_minor']}, paid {summary['paid_minor']}, refunded "
            f"{summary['refunded_minor']} {summary['currency']} (minor units)"
            + ("; ACCESS SUSPENDED" if summary["access_suspended"] else "")
        )
        columns = ("invoice", "period", "status", "total", "outstanding", "due")
        _print_table(_invoice_rows(doc["invoices"]), columns)
        return 0

    return run(args, body)


def cmd_invoice_show(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        invoice = await t.invoice(args.invoice)
        if args.json:
            print_json(invoice)
            return 0
        _print_table(_invoice_rows([invoice]), ("invoice", "period", "status", "total", "due"))
        print()
        lines = [
            {
                "kind": ln["kind"],
                "quantity": ln["quantity"],
                "unit_price": ln["unit_price_minor"],
                "amount": ln["amount_minor"],
                "from": ln.get("receipt_id") or ln.get("dispute_id"),
            }
            for ln in invoice["lines"]
        ]
        _print_table(lines, ("kind", "quantity", "unit_price", "amount", "from"))
        for p in invoice["payments"]:
            ack = "acknowledged" if p["acknowledged"] else "not acknowledged"
            print(f"paid {p['amount_minor']} {p['currency']} ({p['reference']}), {ack}")
        return 0

    return run(args, body)


def cmd_invoice_pay(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        signer = signing_key(args)
        if args.amount is None:
            c = await t.pay_invoice(signer, args.invoice, reference=args.reference)
        else:
            currency = args.currency or (await t.invoice(args.invoice))["currency"]
            c = await t.confirm_payment(
                signer,
                args.invoice,
                amount_minor=args.amount,
                currency=currency,
                reference=args.reference,
            )
        return _committed(args, c, f"confirmed payment of invoice {args.invoice}")

    return run(args, body)


def cmd_invoice_ack(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        c = await t.acknowledge_payment(signing_key(args), args.invoice)
        return _committed(args, c, f"acknowledged the payments of invoice {args.invoice}")

    return run(args, body)


def cmd_invoice_overdue(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        doc = await t.overdue_invoices(limit=args.limit)
        if args.json:
            print_json(doc)
            return 0
        rows = [
            {**row, "consumer": short(i["consumer"]), "overdue_by_s": i["overdue_by_ms"] // 1000}
            for row, i in zip(_invoice_rows(doc["overdue"]), doc["overdue"], strict=True)
        ]
        _print_table(rows, ("invoice", "consumer", "outstanding", "due", "overdue_by_s"))
        return 0

    return run(args, body)


# -- disputes ------------------------------------------------------------------------------


def cmd_dispute_open(args: argparse.Namespace) -> int:
    try:  # local input first: the evidence is the user's to fix, whatever the node
        evidence = _evidence_hash(args)
        chunks = dispute_chunks(Path(args.file), _chunk_indices(args.chunks)) if args.file else ()
        receipt = bytes.fromhex(args.receipt) if args.receipt else None
    except (UsageError, DataError, ValueError) as e:
        return _usage(args, UsageError(e.message if isinstance(e, DataError) else str(e)))
    if not chunks and receipt is None:
        return _usage(args, UsageError("give --file OUT --chunks 0,3, or --receipt HEX"))

    async def body(t: TradingClient) -> int:
        c = await t.open_dispute(
            signing_key(args),
            args.id,
            args.contract,
            statement=args.statement,
            evidence_hash=evidence,
            chunks=chunks,
            receipt_id=receipt,
        )
        return _committed(args, c, f"opened dispute {args.id} on contract {args.contract}")

    return run(args, body)


def cmd_dispute_answer(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        c = await t.answer_dispute(
            signing_key(args), args.id, statement=args.statement, evidence_hash=_evidence_hash(args)
        )
        return _committed(args, c, f"answered dispute {args.id}")

    return run(args, body)


def cmd_dispute_resolve(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        c = await t.resolve_dispute(
            signing_key(args),
            args.id,
            decision=args.decision,
            refund_minor=args.refund,
            comment=args.comment,
        )
        refund = f", refund {args.refund}" if args.refund else ""
        return _committed(args, c, f"resolved dispute {args.id}: {args.decision}{refund}")

    return run(args, body)


def _dispute_row(d: dict[str, Any]) -> dict[str, Any]:
    resolution = d["resolution"] or {}
    return {
        "dispute": d["id"],
        "status": d["status"],
        "opened": fmt_time(d["opened"]["time_ms"]),
        "chunks": ",".join(str(c["index"]) for c in d["chunks"]) or "-",
        "decision": resolution.get("decision"),
        "refund": resolution.get("refund_minor"),
    }


_DISPUTE_COLUMNS = ("dispute", "status", "opened", "chunks", "decision", "refund")


def cmd_dispute_list(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        found = await t.disputes(args.contract)
        if args.json:
            print_json(found)
            return 0
        _print_table([_dispute_row(d) for d in found], _DISPUTE_COLUMNS)
        return 0

    return run(args, body)


def cmd_dispute_show(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        d = await t.dispute(args.id)
        if args.json:
            print_json(d)
            return 0
        _print_table([_dispute_row(d)], _DISPUTE_COLUMNS)
        print(f"consumer: {d['statement']}")
        if d["answer"]:
            print(f"supplier: {d['answer']['statement']}")
        if d["resolution"]:
            print(f"resolver ({short(d['resolver'])}): {d['resolution']['comment']}")
        return 0

    return run(args, body)


def cmd_supplier_record(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        record = await t.supplier_record(args.account)
        if args.json:
            print_json(record)
            return 0
        print(
            f"{short(record['account'])}: {record['contracts']} contracts, "
            f"{record['disputes_opened']} disputes opened ({record['disputes_upheld']} upheld, "
            f"{record['disputes_settled']} settled, {record['disputes_rejected']} rejected)"
        )
        return 0

    return run(args, body)


def register(sub: Any) -> None:
    def cmd(parent: Any, name: str, fn: Any, help: str, signs: bool) -> argparse.ArgumentParser:
        sp = add_command(parent, name, fn, help)
        add_client_options(sp, signs=signs)
        return sp

    inv = add_group(sub, "invoice", "invoices the ledger derives; payments")
    sp = cmd(inv, "list", cmd_invoice_list, "a contract's invoices and billing summary", False)
    sp.add_argument("contract")
    sp = cmd(inv, "show", cmd_invoice_show, "one invoice with its lines and payments", False)
    sp.add_argument("invoice", help="<contract id>/<period>")
    sp = cmd(inv, "pay", cmd_invoice_pay, "confirm a payment of an invoice (consumer)", True)
    sp.add_argument("invoice", help="<contract id>/<period>")
    sp.add_argument("--amount", type=int, help="minor units (default: the amount outstanding)")
    sp.add_argument("--currency", help="ISO 4217 code (default: the invoice's)")
    sp.add_argument("--reference", required=True, help="the transfer's reference")
    sp = cmd(inv, "ack", cmd_invoice_ack, "acknowledge an invoice's payments (supplier)", True)
    sp.add_argument("invoice", help="<contract id>/<period>")
    sp = cmd(inv, "overdue", cmd_invoice_overdue, "overdue invoices you may read", False)
    sp.add_argument("--limit", type=int)

    dsp = add_group(sub, "dispute", "disputes about what was delivered")
    sp = cmd(dsp, "open", cmd_dispute_open, "open a dispute on a contract (consumer)", True)
    sp.add_argument("contract")
    sp.add_argument("--id", required=True, help="dispute id")
    sp.add_argument("--file", help="the fetched copy (`mdtp data fetch --out`)")
    sp.add_argument("--chunks", default="", help="disputed chunk indices, e.g. 0,3")
    sp.add_argument("--receipt", help="clean room: the compute receipt id (hex)")
    sp.add_argument("--statement", required=True)
    sp.add_argument("--evidence", help="supporting material (its SHA-256 goes on the ledger)")
    sp.add_argument("--evidence-hash", help="or its SHA-256 (hex)")
    sp = cmd(dsp, "answer", cmd_dispute_answer, "answer a dispute (supplier)", True)
    sp.add_argument("id")
    sp.add_argument("--statement", required=True)
    sp.add_argument("--evidence", help="supporting material (its SHA-256 goes on the ledger)")
    sp.add_argument("--evidence-hash", help="or its SHA-256 (hex)")
    sp = cmd(dsp, "resolve", cmd_dispute_resolve, "decide a dispute (arbiter/reviewer)", True)
    sp.add_argument("id")
    sp.add_argument("--decision", required=True, choices=DECISIONS)
    sp.add_argument("--refund", type=int, default=0, help="minor units credited to the consumer")
    sp.add_argument("--comment", default="")
    sp = cmd(dsp, "list", cmd_dispute_list, "a contract's disputes", False)
    sp.add_argument("contract")
    sp = cmd(dsp, "show", cmd_dispute_show, "one dispute with its statements", False)
    sp.add_argument("id")

    sup = add_group(sub, "supplier", "suppliers")
    sp = cmd(sup, "record", cmd_supplier_record, "a supplier's track record", False)
    sp.add_argument("account")
