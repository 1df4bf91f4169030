"""``mdtp account|dataset|contract|audit|verify-receipt|reasons``: the trading ledger for people.

Every command talks to one node's API, named by the shared options of
:mod:`node.cli.options` (``--node``/``--ca`` or ``--cluster``/``--member``). Commands that
change the ledger sign with ``--key FILE`` and wait until the transaction executed. Output is
a readable table or summary; ``--json`` prints the API's JSON instead. A refused transaction
prints its reason code, what the code means and what to do, and exits 1 (with ``--json``:
``{"status": "failed", "reason", ...}`` on stdout). Bad local input (a missing term, an
unreadable file) exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from mdtp.node.cli import _print_table, add_command, add_group
from mdtp.node.cli.options import (
    UsageError,
    add_client_options,
    add_tag_options,
    member_certificate,
    node_address,
    node_label,
    print_json,
    signing_key,
    tags_of,
)
from mdtp.node.cli.output import emit, failed
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ledger.trading.accounts import ROLES
from mdtp.node.ledger.trading.audit import KINDS
from mdtp.node.ledger.trading.contracts import DELIVERY_METHODS, PRICE_MODELS
from mdtp.node.ledger.trading.queries import SEARCH_FIELDS
from mdtp.node.sdk.client import ApiError, NodeClient
from mdtp.node.sdk.trading import (
    HINTS,
    REASONS,
    Committed,
    TradingClient,
    TradingError,
    TxFailed,
    terms_from_json,
)

Body = Callable[[TradingClient], Awaitable[int]]

_REQUIRED_TERMS = (
    ("purpose", "--purpose"),
    ("use_end_ms", "--end"),
    ("max_downloads", "--max-downloads"),
    ("disposal_method", "--disposal-method"),
    ("disposal_deadline_ms", "--disposal-deadline"),
    ("price_minor", "--price-minor"),
    ("terms_document_hash", "--terms-document or --terms-document-hash"),
)
_OFFER_DEFAULTS: dict[str, Any] = {
    "delivery_method": "download",
    "redistribution_banned": True,
    "currency": "EUR",
    "price_model": "one_time",
}
_REQUIRED_METADATA = (
    ("title", "--title"),
    ("format", "--format"),
    ("size_bytes", "--size-bytes"),
    ("chunk_count", "--chunk-count"),
    ("merkle_root", "--merkle-root"),
    ("plaintext_digest", "--plaintext-digest"),
)
_REQUIRED_QUALITY = (
    ("machine_type", "--machine-type"),
    ("sampling_rate_millihz", "--sampling-rate-millihz"),
    ("collection_start_ms", "--collected-from"),
    ("collection_end_ms", "--collected-to"),
)
_RELATIVE_RE = re.compile(r"^\+(\d+)([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


# -- small helpers ----------------------------------------------------------------------------


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from ``now``, ``+30d`` (s/m/h/d from now), an ISO 8601
    date or time (UTC unless it names a zone) or a plain integer of milliseconds."""
    if text == "now":
        return int(time.time() * 1000)
    m = _RELATIVE_RE.match(text)
    if m:
        return int(time.time() * 1000) + int(m.group(1)) * _UNIT_MS[m.group(2)]
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"cannot read time {text!r}: give now, +30d, 2030-01-31, 2030-01-31T12:00 or ms"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def fmt_time(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def short(account: Any) -> str:
    """An account id short enough for a table (``--json`` shows the whole id)."""
    text = str(account)
    return text if len(text) <= 28 else f"{text[:18]}...{text[-6:]}"


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: cannot read {what} ({e})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: {what} must be a JSON object")
    return doc


def _fail(args: argparse.Namespace, e: TxFailed) -> int:
    if args.json:
        print_json(
            {
                "status": "failed",
                "type": e.tx_type,
                "id": e.tx_id,
                "height": e.height,
                "reason": e.reason,
                "description": e.description,
                "hint": e.hint,
            }
        )
    print(f"mdtp: {e.tx_type} failed: {e.reason}: {e.description}", file=sys.stderr)
    if e.hint:
        subject = getattr(args, "id", None)
        hint = e.hint.replace(" ID`", f" {subject}`") if isinstance(subject, str) else e.hint
        print(f"  what to do: {hint}", file=sys.stderr)
    if e.height is None:
        print(f"  (tx {e.tx_id}, refused by the node before any block)", file=sys.stderr)
    else:
        print(f"  (tx {e.tx_id}, recorded at height {e.height})", file=sys.stderr)
    return 1


def run(args: argparse.Namespace, body: Body) -> int:
    """Run ``body`` against the node; turn every expected failure into a clear message."""
    try:
        address, ca = node_address(args)
        cert, cert_key = member_certificate(args)
        # confidential reads (contracts, receipts, audit trails) are signed with --key
        reader = signing_key(args) if getattr(args, "key", None) else None

        async def go() -> int:
            async with NodeClient(
                address, ca=ca, cert=cert, key=cert_key, timeout_s=60, reader=reader
            ) as node:
                return await body(TradingClient(node))

        return asyncio.run(go())
    except TxFailed as e:
        return _fail(args, e)
    except ApiError as e:
        if e.status == 404:
            return failed(args, e.reason, e.message, line=f"mdtp: not found: {e.message}")
        line = f"mdtp: the node refused the request: {e.reason}: {e.message}"
        return failed(args, e.reason, e.message, line=line)
    except TradingError as e:
        return failed(args, "error", e.message, line=f"mdtp: {e.message}")
    except UsageError as e:
        return _usage(args, e)
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        message = f"cannot reach the node ({node_label(args)}): {e or type(e).__name__}"
        line = f"mdtp: {message}; is it running? (`mdtp cluster status --dir DIR`)"
        return failed(args, "unreachable", message, line=line)


def _committed(args: argparse.Namespace, c: Committed, what: str, extra: Any = None) -> int:
    if args.json:
        doc = {"status": "committed", **c.__dict__}
        if extra is not None:
            doc["result"] = extra
        print_json(doc)
    else:
        print(f"{what} (tx {c.id[:16]}..., height {c.height})")
    return 0


# -- accounts ---------------------------------------------------------------------------------


def _public_parts(args: argparse.Namespace) -> tuple[bytes, bytes]:
    if args.account_key:
        doc = _read_json(Path(args.account_key), "account key file")
        public_hex, enc_hex = doc.get("public_key"), doc.get("encryption_public_key")
    else:
        public_hex, enc_hex = args.public_key, args.encryption_public_key
    if not public_hex or not enc_hex:
        raise UsageError(
            "give the new account's public keys: --account-key FILE (a key file or the output "
            "of `mdtp keys show`), or --public-key HEX --encryption-public-key HEX"
        )
    try:
        return bytes.fromhex(public_hex), bytes.fromhex(enc_hex)
    except ValueError:
        raise UsageError("public keys must be hex") from None


def cmd_account_register(args: argparse.Namespace) -> int:
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]

    async def body(t: TradingClient) -> int:
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise UsageError(f"unknown role {unknown[0]!r}; roles: {', '.join(ROLES)}")
        admin = signing_key(args)
        public_key, enc_key = _public_parts(args)
        c = await t.register_account(
            admin,
            public_key=public_key,
            encryption_public_key=enc_key,
            roles=roles,
            display_name=args.name,
        )
        from mdtp.node.encoding import account_id_from_public_key

        account_id = account_id_from_public_key(public_key)
        if not args.json:
            print(account_id)
        return _committed(args, c, f"registered {account_id} as {', '.join(roles)}", account_id)

    return run(args, body)


def cmd_account_rotate(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        current, new = signing_key(args), signing_key(args, "new_key")
        c = await t.rotate_key(current, new, account_id=args.account)
        return _committed(args, c, f"rotated {args.account or current.account_id} to a new key")

    return run(args, body)


def cmd_account_revoke(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        signer = signing_key(args)
        target = args.account_id or signer.account_id
        c = await t.revoke_account(signer, target, reason=args.reason, sender=args.sender)
        return _committed(args, c, f"revoked {target}")

    return run(args, body)


def cmd_account_show(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        account_id = args.account_id or (signing_key(args).account_id if args.key else None)
        if account_id is None:
            raise UsageError("give an ACCOUNT_ID or --key FILE")
        account = await t.account(account_id)
        if args.json:
            print_json(account)
            return 0
        rows = [
            ("account", account["id"]),
            ("name", account["display_name"]),
            ("kind", account["kind"]),
            ("member", account["member"]),
            ("roles", ", ".join(account["roles"]) or "-"),
            ("status", account["status"]),
            ("key version", account["key_version"]),
            ("public key", account["public_key"]),
        ]
        if account["registered"]:
            reg = account["registered"]
            rows.append(("registered", f"height {reg['height']}, {fmt_time(reg['time_ms'])}"))
        if account["revoked"]:
            rev = account["revoked"]
            rows.append(("revoked", f"height {rev['height']}: {rev['reason'] or '-'}"))
        for label, value in rows:
            print(f"{label:<12} {value}")
        return 0

    return run(args, body)


# -- datasets ---------------------------------------------------------------------------------


def _metadata(args: argparse.Namespace, *, publish: bool) -> dict[str, Any]:
    doc = _read_json(Path(args.metadata), "metadata file") if args.metadata else {}
    quality = dict(doc.pop("quality", {}) or {})
    flags = {
        "title": args.title,
        "description": args.description,
        "tags": tags_of(args),
        "schema": args.schema,
        "format": args.format,
        "size_bytes": args.size_bytes,
        "chunk_count": args.chunk_count,
        "merkle_root": args.merkle_root,
        "plaintext_digest": args.plaintext_digest,
    }
    doc.update({k: v for k, v in flags.items() if v is not None})
    if args.provenance:
        doc["provenance"] = _read_json(Path(args.provenance), "provenance stamp")
    quality_flags = {
        "completeness_permille": args.completeness_permille,
        "calibration": args.calibration,
        "machine_type": args.machine_type,
        "sampling_rate_millihz": args.sampling_rate_millihz,
        "validation_method": args.validation_method,
        "collection_start_ms": parse_time(args.collected_from) if args.collected_from else None,
        "collection_end_ms": parse_time(args.collected_to) if args.collected_to else None,
    }
    quality.update({k: v for k, v in quality_flags.items() if v is not None})
    if publish:
        doc.setdefault("description", "")
        doc.setdefault("tags", [])
        doc.setdefault("schema", "")
        quality.setdefault("validation_method", "")
        missing = [flag for name, flag in _REQUIRED_METADATA if name not in doc]
        missing += [flag for name, flag in _REQUIRED_QUALITY if name not in quality]
        if missing:
            raise UsageError(
                f"missing dataset metadata: {', '.join(missing)} (or give them in --metadata "
                "FILE.json)"
            )
    if quality:
        doc["quality"] = quality
    return doc


def cmd_dataset_publish(args: argparse.Namespace) -> int:
    try:
        metadata = _metadata(args, publish=True)
    except UsageError as e:
        return _usage(args, e)

    async def body(t: TradingClient) -> int:
        supplier = signing_key(args)
        if args.supplier_node:
            metadata["supplier_node"] = args.supplier_node
        elif "supplier_node" not in metadata:
            metadata["supplier_node"] = (await t.account(supplier.account_id))["member"]
        c = await t.publish_dataset(supplier, args.id, metadata)
        return _committed(args, c, f"published dataset {args.id}")

    return run(args, body)


def cmd_dataset_update(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        supplier = signing_key(args)
        changes = _metadata(args, publish=False)
        if not changes:
            raise UsageError("name at least one field to change (e.g. --title, --tag)")
        c = await t.update_dataset(supplier, args.id, changes)
        return _committed(args, c, f"updated dataset {args.id}")

    return run(args, body)


def cmd_dataset_withdraw(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        c = await t.withdraw_dataset(signing_key(args), args.id, reason=args.reason)
        return _committed(args, c, f"withdrew dataset {args.id}")

    return run(args, body)


def _field_filters(items: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in SEARCH_FIELDS:
            raise UsageError(
                f"--field takes NAME=VALUE with NAME one of {', '.join(SEARCH_FIELDS)}"
            )
        fields[name] = value
    return fields


def provenance_filters(args: argparse.Namespace) -> dict[str, Any]:
    """The provenance and quality filters of a catalog search (``add_provenance_filters``)."""
    return {
        "site": args.site,
        "line": args.line,
        "captured_by": args.captured_by,
        "captured_after_ms": parse_time(args.captured_after) if args.captured_after else None,
        "captured_before_ms": parse_time(args.captured_before) if args.captured_before else None,
        "min_completeness_permille": args.min_completeness,
    }


def add_provenance_filters(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("provenance and quality filters")
    g.add_argument("--site", help="stamped site")
    g.add_argument("--line", help="stamped machine or line")
    g.add_argument("--captured-by", help="account of the capturing system")
    g.add_argument("--captured-after", help="capture period ends at or after (time)")
    g.add_argument("--captured-before", help="capture period starts at or before (time)")
    g.add_argument("--min-completeness", type=int, help="claimed completeness >= permille")


def cmd_dataset_search(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        doc = await t.search_datasets(
            text=" ".join(args.text) or None,
            tag=args.tag,
            supplier=args.supplier,
            fields=_field_filters(args.field),
            **provenance_filters(args),
            include_withdrawn=args.withdrawn,
            after=args.after,
            limit=args.limit,
        )
        if args.json:
            print_json(doc)
            return 0
        rows = [
            {
                "id": d["id"],
                "title": d["title"],
                "tags": ",".join(d["tags"]),
                "format": d["format"],
                "size_bytes": d["size_bytes"],
                "supplier": short(d["supplier"]),
                "status": d["status"],
            }
            for d in doc["datasets"]
        ]
        if not rows:
            print("no dataset matches")
        else:
            _print_table(
                rows, ["id", "title", "tags", "format", "size_bytes", "supplier", "status"]
            )
        if doc["next_after"]:
            print(f"more: --after {doc['next_after']}")
        return 0

    return run(args, body)


def _quality_claims(q: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    if "completeness_permille" in q:
        p = q["completeness_permille"]
        rows.append(("complete", f"{p // 10}.{p % 10}% (claimed)"))
    if "calibration" in q:
        rows.append(("calibration", q["calibration"]))
    for gap in q.get("known_gaps", ()):
        span = f"{fmt_time(gap['start_ms'])} .. {fmt_time(gap['end_ms'])}"
        rows.append(("known gap", f"{span}: {gap['reason']}"))
    return rows


def _provenance_rows(stamp: dict[str, Any] | None) -> list[tuple[str, Any]]:
    if stamp is None:
        return [("provenance", "- (not stamped)")]
    period = f"{fmt_time(stamp['capture_start_ms'])} .. {fmt_time(stamp['capture_end_ms'])}"
    return [
        ("provenance", f"site {stamp['site']}, line {stamp['line']}, captured {period}"),
        ("captured by", f"{stamp['captured_by']} (key version {stamp['key_version']}, verified)"),
    ]


def _record_line(record: dict[str, Any]) -> str:
    counts = record["contracts_by_status"]
    busy = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
    more = "" if record["contracts_by_status_complete"] else " (at least)"
    return f"{sum(counts.values())}{more} as supplier" + (f": {busy}" if busy else "")


def cmd_dataset_show(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        entry = await t.catalog_entry(args.id)
        d, record = entry["dataset"], entry["supplier_record"]
        if args.json:
            print_json({**d, "supplier_record": record})
            return 0
        q = d["quality"]
        rows = [
            ("dataset", f"{d['id']} (version {d['version']}, {d['status']})"),
            ("title", d["title"]),
            ("supplier", f"{d['supplier']} on node {d['supplier_node']}"),
            (
                "track record",
                f"{record['contracts']} contracts, {record['disputes_opened']} disputes "
                f"({record['disputes_upheld']} upheld, {record['disputes_settled']} settled, "
                f"{record['disputes_rejected']} rejected)",
            ),
            ("tags", ", ".join(d["tags"]) or "-"),
            ("format", d["format"]),
            ("size", f"{d['size_bytes']} bytes in {d['chunk_count']} chunks"),
            ("schema", d["schema"] or "-"),
            ("machine", q["machine_type"]),
            ("sampling", f"{q['sampling_rate_millihz']} mHz"),
            (
                "collected",
                f"{fmt_time(q['collection_start_ms'])} .. {fmt_time(q['collection_end_ms'])}",
            ),
            ("validation", q["validation_method"] or "-"),
            *_quality_claims(q),
            *_provenance_rows(d.get("provenance")),
            ("contracts", _record_line(record)),
            ("merkle root", d["merkle_root"]),
            ("plaintext", d["plaintext_digest"]),
            (
                "published",
                f"height {d['published']['height']}, {fmt_time(d['published']['time_ms'])}",
            ),
        ]
        if d["withdrawn"]:
            rows.append(
                (
                    "withdrawn",
                    f"height {d['withdrawn']['height']}: {d['withdrawn']['reason'] or '-'}",
                )
            )
        for label, value in rows:
            print(f"{label:<12} {value}")
        if d["description"]:
            print()
            print(d["description"])
        return 0

    return run(args, body)


# -- contracts --------------------------------------------------------------------------------


def _terms(args: argparse.Namespace, base: dict[str, Any]) -> b.Terms:
    terms = dict(base)
    if args.terms:
        terms.update(_read_json(Path(args.terms), "terms file"))
    doc_hash = args.terms_document_hash
    if args.terms_document:
        try:
            doc_hash = hashlib.sha256(Path(args.terms_document).read_bytes()).hexdigest()
        except OSError as e:
            raise UsageError(f"{args.terms_document}: cannot read ({e.strerror})") from None
    flags: dict[str, Any] = {
        "delivery_method": args.delivery,
        "purpose": args.purpose,
        "use_start_ms": parse_time(args.start) if args.start else None,
        "use_end_ms": parse_time(args.end) if args.end else None,
        "max_downloads": args.max_downloads,
        "redistribution_banned": (
            None if args.redistribution is None else args.redistribution == "banned"
        ),
        "disposal_method": args.disposal_method,
        "disposal_deadline_ms": (
            parse_time(args.disposal_deadline) if args.disposal_deadline else None
        ),
        "price_minor": args.price_minor,
        "currency": args.currency,
        "price_model": args.price_model,
        "terms_document_hash": doc_hash,
    }
    terms.update({k: v for k, v in flags.items() if v is not None})
    if args.reviewer == "none":
        terms.pop("reviewer", None)
    elif args.reviewer:
        terms["reviewer"] = args.reviewer
    if args.arbiter == "none":
        terms.pop("arbiter", None)
    elif args.arbiter:
        terms["arbiter"] = args.arbiter
    billing = _billing(args, terms.get("billing"))
    if billing is not None:
        terms["billing"] = billing
    terms.setdefault("use_start_ms", int(time.time() * 1000))
    missing = [flag for name, flag in _REQUIRED_TERMS if name not in terms]
    if missing:
        raise UsageError(f"missing terms: {', '.join(missing)} (or give them in --terms FILE.json)")
    try:
        return terms_from_json(terms)
    except TradingError as e:
        raise UsageError(e.message) from None


def parse_duration(text: str) -> int:
    """Milliseconds from ``30d``, ``12h``, ``15m``, ``10s`` or a plain integer of ms."""
    m = re.fullmatch(r"(\d+)([smhd]?)", text)
    if m is None:
        raise UsageError(f"cannot read duration {text!r}: give 30d, 12h, 15m, 10s or ms")
    return int(m.group(1)) * (_UNIT_MS[m.group(2)] if m.group(2) else 1)


def _billing(args: argparse.Namespace, base: Any) -> dict[str, Any] | None:
    """The terms' ``billing`` map: ``base`` (from --terms) with the billing flags over it."""
    flags: dict[str, Any] = {
        "unit": args.billing_unit,
        "period_ms": parse_duration(args.billing_period) if args.billing_period else None,
        "payment_due_ms": parse_duration(args.payment_due) if args.payment_due else None,
        "suspend_when_overdue": args.suspend_when_overdue,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return None if base is None else dict(base)
    billing = {"suspend_when_overdue": False, **(base or {}), **given}
    if "payment_due_ms" not in billing:
        raise UsageError("billing terms need --payment-due (e.g. 14d)")
    return billing


def _usage(args: argparse.Namespace, e: UsageError) -> int:
    return failed(args, e.reason, str(e), status=2, line=f"mdtp: {e}")


def cmd_contract_offer(args: argparse.Namespace) -> int:
    try:  # before connecting: a missing term is the user's to fix, whatever the node
        terms = _terms(args, _OFFER_DEFAULTS)
    except UsageError as e:
        return _usage(args, e)

    async def body(t: TradingClient) -> int:
        signer = signing_key(args)
        c = await t.offer(
            signer,
            contract_id=args.id,
            dataset_id=args.dataset,
            consumer=args.consumer,
            terms=terms,
        )
        return _committed(args, c, f"offered contract {args.id} (version 1)")

    return run(args, body)


def cmd_contract_counter(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        signer = signing_key(args)
        contract = await t.contract(args.id)
        answered = args.version or contract["version"]
        base = contract["versions"][min(answered, len(contract["versions"])) - 1]["terms"]
        c = await t.counter(signer, args.id, terms=_terms(args, base), version=answered)
        return _committed(args, c, f"countered contract {args.id}: version {answered + 1}")

    return run(args, body)


def cmd_contract_sign(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        c = await t.sign_contract(signing_key(args), args.id, version=args.version)
        status = (await t.contract(args.id))["effective_status"]
        return _committed(args, c, f"signed contract {args.id}; it is now {status}", status)

    return run(args, body)


def cmd_contract_review(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        c = await t.review(
            signing_key(args),
            args.id,
            approve=args.approve,
            comment=args.comment,
            version=args.version,
        )
        status = (await t.contract(args.id))["effective_status"]
        verb = "approved" if args.approve else "rejected"
        return _committed(args, c, f"{verb} contract {args.id}; it is now {status}", status)

    return run(args, body)


def cmd_contract_delete(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        c = await t.delete_contract(signing_key(args), args.id)
        return _committed(args, c, f"deleted contract {args.id}")

    return run(args, body)


def cmd_contract_terminate(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        c = await t.terminate_contract(signing_key(args), args.id, reason=args.reason)
        return _committed(args, c, f"terminated contract {args.id}")

    return run(args, body)


def _version_rows(contract: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for v in contract["versions"]:
        terms = v["terms"]
        review = v["review"]
        rows.append(
            {
                "version": v["version"],
                "author": short(v["author"]),
                "height": v["created"]["height"],
                "price": f"{terms['price_minor']} {terms['currency']} {terms['price_model']}",
                "use_until": fmt_time(terms["use_end_ms"]),
                "signed_by": ", ".join(short(s["account"]) for s in v["signatures"]) or "-",
                "review": f"{review['decision']}d" if review else "-",
                "state": "superseded" if v["superseded"] else "current",
            }
        )
    return rows


def cmd_contract_show(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        ct = await t.contract(args.id)
        if args.json:
            print_json(ct)
            return 0
        current = ct["versions"][-1]
        terms = current["terms"]
        lines = [
            ("contract", f"{ct['id']}  {ct['effective_status']}  (version {ct['version']})"),
            ("dataset", ct["dataset_id"]),
            ("supplier", ct["supplier"]),
            ("consumer", ct["consumer"]),
            ("created", f"height {ct['created']['height']}, {fmt_time(ct['created']['time_ms'])}"),
        ]
        if ct["activated"]:
            act = ct["activated"]
            lines.append(("activated", f"height {act['height']} (version {act['version']})"))
        if ct["terminated"]:
            term = ct["terminated"]
            lines.append(("terminated", f"height {term['height']}: {term['reason']}"))
        if ct["deleted"]:
            lines.append(("deleted", f"height {ct['deleted']['height']}"))
        for label, value in lines:
            print(f"{label:<11} {value}")
        print()
        _print_table(
            _version_rows(ct),
            ["version", "author", "height", "price", "use_until", "signed_by", "review", "state"],
        )
        print()
        print(f"terms of version {current['version']} (terms hash {current['terms_hash']}):")
        for name in sorted(terms):
            value = terms[name]
            shown = fmt_time(value) if name.endswith("_ms") else value
            print(f"  {name:<22} {shown}")
        return 0

    return run(args, body)


def write_document(doc: Any, out: str | None) -> None:
    """A JSON-LD document to ``out`` (or stdout), indented for people and diffs."""
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    if out:
        Path(out).write_text(text)
    else:
        sys.stdout.write(text)


def cmd_contract_odrl(args: argparse.Namespace) -> int:
    policy: Any = None
    if args.check:
        try:
            policy = json.loads(Path(args.check).read_text())
        except (OSError, ValueError) as e:
            return _usage(args, UsageError(f"{args.check}: cannot read the policy ({e})"))

    async def body(t: TradingClient) -> int:
        if policy is None:
            doc = await t.contract_odrl(args.id, version=args.version)
            write_document(doc, args.out)
            return 0
        try:
            result = await t.check_odrl(policy, args.id, version=args.version)
        except ValueError as e:
            return failed(args, "bad_policy", str(e), line=f"mdtp: {args.check}: {e}")
        if args.json:
            print_json(result)
        elif result["matches"]:
            print(
                f"{args.check} carries the terms of {args.id} version {result['version']} "
                f"(terms hash {result['terms_hash']})"
            )
        elif not result["terms_match"]:
            print(
                f"mdtp: {args.check} does not carry the terms of {args.id} version "
                f"{result['version']}: terms hash {result['terms_hash']}, the ledger's "
                f"{result['ledger_terms_hash']}",
                file=sys.stderr,
            )
        else:
            print(
                f"mdtp: {args.check} carries the terms of {args.id} version "
                f"{result['version']} but names another assigner, assignee or target",
                file=sys.stderr,
            )
        return 0 if result["matches"] else 1

    return run(args, body)


def cmd_contract_list(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        account = args.account
        if account is None and args.dataset is None:
            if not args.key:
                raise UsageError("give --account ID, --dataset ID or --key FILE")
            account = signing_key(args).account_id
        doc = await t.contracts(
            account=account, dataset=args.dataset, status=args.status, after=args.after
        )
        if args.json:
            print_json(doc)
            return 0
        rows = [
            {
                "id": ct["id"],
                "status": ct["effective_status"],
                "version": ct["version"],
                "dataset": ct["dataset_id"],
                "supplier": short(ct["supplier"]),
                "consumer": short(ct["consumer"]),
                "use_until": fmt_time(ct["use_end_ms"]),
            }
            for ct in doc["contracts"]
        ]
        if not rows:
            print("no contracts")
        else:
            _print_table(
                rows, ["id", "status", "version", "dataset", "supplier", "consumer", "use_until"]
            )
        if doc["next_after"]:
            print(f"more: --after {doc['next_after']}")
        return 0

    return run(args, body)


# -- audit ------------------------------------------------------------------------------------


def cmd_audit_show(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        entries = await t.audit_trail(args.kind, args.id, proof=args.proof)
        if args.json:
            print_json(entries)
            return 0
        if not entries:
            print(f"no audit entries for {args.kind} {args.id}")
            return 0
        rows = [
            {
                "seq": e["seq"],
                "height": e["height"],
                "index": e["index"],
                "time": fmt_time(e["time_ms"]),
                "type": e["type"],
                "actor": short(e["actor"]),
                "tx": e["tx_id"][:16],
                "summary": e["summary"],
            }
            for e in entries
        ]
        _print_table(rows, ["seq", "height", "index", "time", "type", "actor", "tx", "summary"])
        return 0

    return run(args, body)


def cmd_audit_export(args: argparse.Namespace) -> int:
    lines: list[str] = []

    async def body(t: TradingClient) -> int:
        lines.extend(await t.audit_export(args.kind, args.id))
        return 0

    code = run(args, body)
    if code:
        return code
    text = "".join(line + "\n" for line in lines)
    if args.out:
        Path(args.out).write_text(text)
        print(f"{len(lines)} entries of {args.kind} {args.id} written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_verify_receipt(args: argparse.Namespace) -> int:
    from mdtp.node.identity.genesis import load_genesis
    from mdtp.node.sdk.audit_verify import VerifyError, parse_entry, verify_entry

    genesis = load_genesis(Path(args.genesis))
    epochs = None
    if args.history:
        from mdtp.node.ledger.governance.proofs import HistoryError, verify_history

        try:
            epochs = verify_history(json.loads(Path(args.history).read_text()), genesis)
        except (OSError, ValueError) as e:
            print(f"mdtp: {args.history}: cannot read the history ({e})", file=sys.stderr)
            return 2
        except HistoryError as e:
            print(f"mdtp: {args.history}: the history does not verify: {e}", file=sys.stderr)
            return 1
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except OSError as e:
        print(f"mdtp: {args.file}: cannot read ({e.strerror})", file=sys.stderr)
        return 2
    numbered = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if args.line is not None:
        numbered = [(i, line) for i, line in numbered if i == args.line]
    if not numbered:
        print(f"mdtp: {args.file}: no entry to verify", file=sys.stderr)
        return 2
    failures = 0
    results: list[dict[str, Any]] = []
    for i, line in numbered:
        try:
            proven = verify_entry(parse_entry(line), genesis, epochs)
        except VerifyError as e:
            failures += 1
            results.append({"line": i, "verified": False, "reason": e.reason, "message": e.message})
            if not args.json:
                print(f"line {i}: NOT VERIFIED: {e.reason}: {e.message}")
            continue
        results.append({"line": i, "verified": True, **proven.__dict__})
        if not args.json:
            print(f"line {i}: verified: {proven.summary}")
            for text_line in proven.lines():
                print(f"  {text_line}")
    if args.json:
        print_json(results)
    return 1 if failures else 0


def cmd_reasons(args: argparse.Namespace) -> int:
    rows = [
        {"code": code, "description": description, "what_to_do": HINTS.get(code, "")}
        for code, description in REASONS.items()
    ]
    return emit(args, rows, lambda: _print_table(rows, ["code", "description"]))


# -- parser -----------------------------------------------------------------------------------


def _terms_flags(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("terms (flags override --terms FILE.json)")
    g.add_argument("--terms", help="JSON file with the terms (hashes as hex, times in ms)")
    g.add_argument("--delivery", choices=DELIVERY_METHODS)
    g.add_argument("--purpose")
    g.add_argument("--start", help="use period start: now, +1d, 2030-01-31 or ms")
    g.add_argument("--end", help="use period end (same forms as --start)")
    g.add_argument("--max-downloads", type=int)
    g.add_argument("--redistribution", choices=("banned", "allowed"))
    g.add_argument("--disposal-method", help="e.g. crypto-erase")
    g.add_argument("--disposal-deadline", help="when the data must be disposed of")
    g.add_argument("--price-minor", type=int, help="price in minor units (cents)")
    g.add_argument("--currency", help="ISO 4217 code, e.g. EUR")
    g.add_argument("--price-model", choices=PRICE_MODELS)
    g.add_argument("--terms-document", help="file of the natural-language terms (hashed)")
    g.add_argument("--terms-document-hash", help="SHA-256 hex of that document")
    g.add_argument("--reviewer", help="reviewer account id who must approve ('none' to drop)")
    g.add_argument("--arbiter", help="reviewer-role account who resolves disputes ('none' to drop)")
    g.add_argument("--billing-unit", choices=("download", "chunk", "query"), help="pay_per_use")
    g.add_argument("--billing-period", help="invoice period, e.g. 30d (subscription, per use)")
    g.add_argument("--payment-due", help="time to pay after a period closes, e.g. 14d")
    g.add_argument(
        "--suspend-when-overdue",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="no downloads or queries while an invoice is overdue",
    )


def _metadata_flags(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("metadata (flags override --metadata FILE.json)")
    g.add_argument("--metadata", help="JSON file with the metadata (hashes as hex)")
    g.add_argument("--title")
    g.add_argument("--description")
    add_tag_options(g)
    g.add_argument("--schema")
    g.add_argument("--format", help="e.g. csv, parquet")
    g.add_argument("--size-bytes", type=int)
    g.add_argument("--chunk-count", type=int)
    g.add_argument("--merkle-root", help="hex Merkle root over the encrypted chunks")
    g.add_argument("--plaintext-digest", help="hex SHA-256 of the plaintext")
    g.add_argument("--machine-type")
    g.add_argument("--sampling-rate-millihz", type=int)
    g.add_argument("--validation-method")
    g.add_argument("--collected-from", help="collection start: 2024-01-01, ms, ...")
    g.add_argument("--collected-to", help="collection end")
    g.add_argument("--completeness-permille", type=int, help="quality claim: 0..1000")
    g.add_argument("--calibration", help="quality claim: calibration method, date, certificate")
    g.add_argument(
        "--provenance",
        help="provenance stamp JSON from the capturing system (`mdtp provenance sign`)",
    )


def register(sub: Any) -> None:
    def cmd(
        parent: Any, name: str, fn: Callable[[argparse.Namespace], int], help: str, signs: bool
    ) -> argparse.ArgumentParser:
        sp = add_command(parent, name, fn, help)
        add_client_options(sp, signs=signs)
        return sp

    acct = add_group(sub, "account", "trading accounts (registered by a member admin)")
    sp = cmd(acct, "register", cmd_account_register, "register an account (member admin)", True)
    sp.add_argument("--account-key", help="the new account's key file or `mdtp keys show` JSON")
    sp.add_argument("--public-key", help="the new account's Ed25519 public key (hex)")
    sp.add_argument("--encryption-public-key", help="its X25519 public key (hex)")
    sp.add_argument("--roles", required=True, help=f"comma-separated: {','.join(ROLES)}")
    sp.add_argument("--name", required=True, help="display name")
    sp = cmd(acct, "rotate", cmd_account_rotate, "rotate an account to a new key", True)
    sp.add_argument("--new-key", required=True, help="key file of the new key")
    sp.add_argument("--account", help="account to rotate (default: the --key's own)")
    sp = cmd(acct, "revoke", cmd_account_revoke, "revoke an account (itself or its admin)", True)
    sp.add_argument("account_id", nargs="?", help="default: the --key's own account")
    sp.add_argument("--reason", default="")
    sp.add_argument(
        "--sender",
        help="the account the --key signs for (default: the key's own; after a rotation, "
        "the account's id, which stays that of its first key)",
    )
    sp = cmd(acct, "show", cmd_account_show, "show an account", False)
    sp.add_argument("account_id", nargs="?", help="default: the --key's own account")

    ds = add_group(sub, "dataset", "the dataset catalog")
    sp = cmd(ds, "publish", cmd_dataset_publish, "publish a dataset's metadata", True)
    sp.add_argument("--id", required=True, help="dataset id")
    sp.add_argument("--supplier-node", help="member storing the data (default: your member)")
    _metadata_flags(sp)
    sp = cmd(ds, "update", cmd_dataset_update, "change a dataset's metadata", True)
    sp.add_argument("id")
    _metadata_flags(sp)
    sp = cmd(ds, "withdraw", cmd_dataset_withdraw, "withdraw a dataset from the catalog", True)
    sp.add_argument("id")
    sp.add_argument("--reason", default="")
    sp = cmd(ds, "search", cmd_dataset_search, "search the catalog", False)
    sp.add_argument("text", nargs="*", help="words that must all occur")
    sp.add_argument("--tag")
    sp.add_argument("--supplier", help="supplier account id")
    sp.add_argument("--field", action="append", default=[], metavar="NAME=VALUE")
    sp.add_argument("--withdrawn", action="store_true", help="include withdrawn datasets")
    sp.add_argument("--after", help="continue after this dataset id")
    sp.add_argument("--limit", type=int)
    add_provenance_filters(sp)
    sp = cmd(ds, "show", cmd_dataset_show, "show a dataset", False)
    sp.add_argument("id")

    ct = add_group(sub, "contract", "contracts: negotiate, sign, review, end")
    sp = cmd(ct, "offer", cmd_contract_offer, "offer a contract on a dataset (version 1)", True)
    sp.add_argument("--id", required=True, help="contract id")
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--consumer", required=True, help="consumer account id")
    _terms_flags(sp)
    sp = cmd(ct, "counter", cmd_contract_counter, "answer with a new version of the terms", True)
    sp.add_argument("id")
    sp.add_argument("--version", type=int, help="version answered (default: current)")
    _terms_flags(sp)
    sp = cmd(ct, "sign", cmd_contract_sign, "sign a version's terms", True)
    sp.add_argument("id")
    sp.add_argument("--version", type=int, help="default: the current version")
    sp = cmd(ct, "review", cmd_contract_review, "approve or reject (named reviewer)", True)
    sp.add_argument("id")
    decision = sp.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", action="store_true")
    decision.add_argument("--reject", action="store_true")
    sp.add_argument("--comment", default="")
    sp.add_argument("--version", type=int, help="default: the current version")
    sp = cmd(ct, "delete", cmd_contract_delete, "delete an unsigned offer (its author)", True)
    sp.add_argument("id")
    sp = cmd(ct, "terminate", cmd_contract_terminate, "end a contract (a party)", True)
    sp.add_argument("id")
    sp.add_argument("--reason", required=True)
    sp = cmd(ct, "show", cmd_contract_show, "a contract with its versions and signatures", False)
    sp.add_argument("id")
    sp = cmd(
        ct,
        "odrl",
        cmd_contract_odrl,
        "a version's terms as an ODRL 2.2 JSON-LD policy, or --check a policy against them",
        False,
    )
    sp.add_argument("id")
    sp.add_argument("--version", type=int, help="default: the current version")
    sp.add_argument("--out", help="file to write (default: stdout)")
    sp.add_argument(
        "--check",
        metavar="FILE",
        help="a policy (any JSON-LD form): exit 0 if its terms hash is the version's",
    )
    sp = cmd(ct, "list", cmd_contract_list, "contracts of an account or a dataset", False)
    sp.add_argument("--account")
    sp.add_argument("--dataset")
    sp.add_argument("--status", help="effective status, e.g. ACTIVE")
    sp.add_argument("--after")

    au = add_group(sub, "audit", "audit trails with commit certificates")
    sp = cmd(au, "show", cmd_audit_show, "the audit trail of a subject, in order", False)
    sp.add_argument("kind", choices=KINDS)
    sp.add_argument("id")
    sp.add_argument("--proof", action="store_true", help="with --json: include block proofs")
    sp = cmd(au, "export", cmd_audit_export, "export a trail as JSON lines (with proofs)", False)
    sp.add_argument("kind", choices=KINDS)
    sp.add_argument("id")
    sp.add_argument("--out", help="file to write (default: stdout)")

    sp = add_command(
        sub, "verify-receipt", cmd_verify_receipt, "verify exported audit entries offline"
    )
    sp.add_argument("file", help="JSON lines from `mdtp audit export` ('-' for stdin)")
    sp.add_argument("--genesis", required=True, help="the chain's genesis.json")
    sp.add_argument(
        "--history",
        help="the membership history with proofs (`mdtp member history --proofs`): checked "
        "from genesis, then entries of any epoch verify against their epoch's members",
    )
    sp.add_argument("--line", type=int, help="verify only this line")
    sp.add_argument("--json", action="store_true")

    sp = add_command(sub, "reasons", cmd_reasons, "every reason a transaction can fail with")
    sp.add_argument("--json", action="store_true")
