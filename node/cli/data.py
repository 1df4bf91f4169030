"""``mdtp data ...``: publish a file, fetch a contract's data, dispose of it, overdue list.

Each command talks to the member's own node, named by the shared options of
:mod:`node.cli.options` (``--node``/``--ca`` or ``--cluster``/``--member``); it signs with
``--key FILE`` (the supplier's account to publish, the consumer's to fetch and dispose).
Results are JSON on stdout, with or without ``--json``; progress bars (with ETA) go to stderr,
only when it is a terminal. A refusal prints ``mdtp: error: REASON: message`` on stderr (with
``--json`` also ``{"status": "failed", "reason", ...}`` on stdout) and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from mdtp.node.cli import add_command, add_group
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
from mdtp.node.cli.output import add_json_option, emit, failed
from mdtp.node.cli.trading import parse_time
from mdtp.node.compute.anonymise import Anonymisation
from mdtp.node.data.crypto import DEFAULT_CHUNK_BYTES
from mdtp.node.sdk.client import ApiError
from mdtp.node.sdk.compute import publish_for_analysis
from mdtp.node.sdk.data import (
    Capture,
    DataClient,
    DataError,
    Published,
    dispose,
    fetch,
    publish,
)

# A fetch or publish of a large dataset is one long session.
CLIENT_TIMEOUT_S = 600


def _client(args: argparse.Namespace) -> DataClient:
    address, ca = node_address(args)
    cert, cert_key = member_certificate(args)
    reader = signing_key(args) if getattr(args, "key", None) else None
    return DataClient(
        address, ca=ca, cert=cert, key=cert_key, timeout_s=CLIENT_TIMEOUT_S, reader=reader
    )


def _failed(args: argparse.Namespace, reason: str, message: str, chunk: int | None = None) -> int:
    where = f" (chunk {chunk})" if chunk is not None else ""
    return failed(
        args, reason, message, chunk=chunk, line=f"mdtp: error: {reason}{where}: {message}"
    )


def _run(
    args: argparse.Namespace,
    coro: Coroutine[Any, Any, Any],
    show: Callable[[Any], int] | None = None,
) -> int:
    """Run a client coroutine: failures reported by reason; the result printed as JSON, or
    by ``show``."""
    try:
        result = asyncio.run(coro)
    except DataError as e:
        return _failed(args, e.reason, e.message, e.chunk)
    except ApiError as e:
        return _failed(args, e.reason, e.message)
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        message = f"cannot reach the node ({node_label(args)}): {e or type(e).__name__}"
        return _failed(args, "unreachable", message)
    if show is not None:
        return show(result)
    print_json(result)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    quality = json.loads(Path(args.quality).read_text()) if args.quality else None
    client, key = _client(args), signing_key(args)

    anonymisation = _anonymisation(args)
    if anonymisation is not None and not args.for_analysis:
        raise UsageError("--drop-column, --pseudonymise and --generalise need --for-analysis")
    capture = _capture(args)
    if capture is not None and args.for_analysis:
        raise UsageError(
            "a table prepared for analysis is not the data as captured: publish it, then have "
            "the capturing system vouch for it with `mdtp provenance sign` if it does"
        )

    async def go() -> dict[str, Any]:
        async with client as c:
            if args.for_analysis:
                p, prepared = await publish_for_analysis(
                    c,
                    key,
                    Path(args.file),
                    dataset_id=args.id,
                    title=args.title or args.id,
                    source_format=None if args.format == "bin" else args.format,
                    out_format=args.analysis_format,
                    anonymisation=anonymisation,
                    description=args.description,
                    tags=tags_of(args),
                    quality=quality,
                    progress=progress_bar(args),
                )
                return {**_published(p), "schema": json.loads(prepared.schema_document())}
            p = await publish(
                c,
                key,
                Path(args.file),
                dataset_id=args.id,
                title=args.title or args.id,
                description=args.description,
                tags=tags_of(args),
                schema=args.schema,
                fmt=args.format,
                quality=quality,
                chunk_bytes=args.chunk_size,
                progress=progress_bar(args),
                capture=capture,
            )
        return _published(p)

    return _run(args, go())


_CAPTURE_FLAGS = ("captured_by_key", "site", "line", "capture_start", "capture_end")


def _capture(args: argparse.Namespace) -> Capture | None:
    """The provenance stamp to make while publishing, if the capture flags are given (all)."""
    given = [name for name in _CAPTURE_FLAGS if getattr(args, name)]
    if not given:
        return None
    if len(given) != len(_CAPTURE_FLAGS):
        flags = ", ".join("--" + n.replace("_", "-") for n in _CAPTURE_FLAGS)
        raise UsageError(f"a provenance stamp needs all of {flags}")
    return Capture(
        capturer=signing_key(args, "captured_by_key"),
        site=args.site,
        line=args.line,
        start_ms=parse_time(args.capture_start),
        end_ms=parse_time(args.capture_end),
        captured_by=args.captured_by,
    )


def _published(p: Published) -> dict[str, Any]:
    return {
        "dataset_id": p.dataset_id,
        "chunk_count": p.chunk_count,
        "size_bytes": p.size_bytes,
        "merkle_root": p.merkle_root.hex(),
        "plaintext_digest": p.plaintext_digest.hex(),
        "tx": p.tx_id,
    }


def _anonymisation(args: argparse.Namespace) -> Anonymisation | None:
    generalise: dict[str, float] = {}
    for item in args.generalise:
        column, _, width = item.partition("=")
        try:
            generalise[column] = float(width)
        except ValueError:
            raise UsageError(f"--generalise {item}: give COLUMN=WIDTH, e.g. load=5") from None
    if not (args.drop_column or args.pseudonymise or generalise):
        return None
    return Anonymisation(tuple(args.drop_column), tuple(args.pseudonymise), generalise)


def cmd_fetch(args: argparse.Namespace) -> int:
    client, key = _client(args), signing_key(args)

    async def go() -> dict[str, Any]:
        async with client as c:
            r = await fetch(
                c,
                key,
                args.contract,
                Path(args.out),
                progress=progress_bar(args),
                grant_timeout_s=args.grant_timeout,
            )
        return {
            "contract_id": r.contract_id,
            "out": str(r.path),
            "size_bytes": r.size_bytes,
            "chunks": r.chunks,
            "resumed_from_chunk": r.resumed_from,
            "seconds": round(r.seconds, 3),
            "mib_per_s": round(r.mib_per_s, 1),
            "receipts": r.receipts,
            "confirmed": r.confirmed,
        }

    return _run(args, go())


def cmd_dispose(args: argparse.Namespace) -> int:
    client, key = _client(args), signing_key(args)

    async def go() -> dict[str, Any]:
        async with client as c:
            return await dispose(c, key, args.contract, method=args.method)

    return _run(args, go())


def cmd_overdue(args: argparse.Namespace) -> int:
    client = _client(args)  # first: no node named is the first thing to say
    if not args.key:
        raise UsageError(
            "give --key FILE: overdue disposals are read as an account (any account; the rows "
            "are the contracts it may read)"
        )

    async def go() -> list[dict[str, Any]]:
        async with client as c:
            return await c.overdue_disposals()

    return _run(args, go())


def cmd_bench(args: argparse.Namespace) -> int:
    from mdtp.node.ops.bench_data import run_data_bench

    result = run_data_bench(size_mib=args.size_mib, progress=False if args.json else None)
    return emit(args, result, "\n".join(f"{k}: {v}" for k, v in result.items()))


def progress_bar(args: argparse.Namespace) -> bool | None:
    """``--no-progress``: none; else None: a bar only when stderr is a terminal."""
    return False if args.no_progress else None


def _client_options(sp: argparse.ArgumentParser, *, signs: bool = True) -> None:
    add_client_options(sp, signs=signs)
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub: Any) -> None:
    data = add_group(sub, "data", "encrypted datasets: publish, fetch, dispose")
    sp = add_command(data, "publish", cmd_publish, "encrypt, store on your node and publish")
    sp.add_argument("file")
    sp.add_argument("--id", required=True, help="dataset id")
    sp.add_argument("--title")
    sp.add_argument("--description", default="")
    add_tag_options(sp)
    sp.add_argument("--schema", default="")
    sp.add_argument("--format", default="bin")
    sp.add_argument("--quality", help="JSON file with the quality fields")
    sp.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_BYTES, help="bytes")
    c = sp.add_argument_group(
        "provenance stamp, signed here by the capturing system's key (else: mdtp provenance sign)"
    )
    c.add_argument("--captured-by-key", help="key file of the capturing system's account")
    c.add_argument("--captured-by", help="its account id, if its key was rotated")
    c.add_argument("--site", help="site id")
    c.add_argument("--line", help="machine or line id")
    c.add_argument("--capture-start", help="capture start: 2030-01-31, ms, ...")
    c.add_argument("--capture-end", help="capture end")
    a = sp.add_argument_group("clean-room analysis (the file is CSV or Parquet)")
    a.add_argument(
        "--for-analysis",
        action="store_true",
        help="publish a table for clean-room queries: its schema goes into the metadata",
    )
    a.add_argument("--analysis-format", choices=("csv", "parquet"), default="csv")
    a.add_argument("--drop-column", action="append", default=[], metavar="COLUMN")
    a.add_argument(
        "--pseudonymise", action="append", default=[], metavar="COLUMN", help="keyed HMAC"
    )
    a.add_argument(
        "--generalise",
        action="append",
        default=[],
        metavar="COLUMN=WIDTH",
        help="numbers to the lower bound of their range",
    )
    _client_options(sp)
    sp = add_command(data, "fetch", cmd_fetch, "fetch, verify and decrypt a contract's data")
    sp.add_argument("contract")
    sp.add_argument("--out", required=True, help="output file (resumes OUT.part)")
    sp.add_argument("--grant-timeout", type=float, default=30.0, help="seconds")
    _client_options(sp)
    sp = add_command(data, "dispose", cmd_dispose, "delete local copies, attest the disposal")
    sp.add_argument("contract")
    sp.add_argument("--method", help="disposal method (default: the one the terms name)")
    _client_options(sp)
    sp = add_command(
        data, "overdue", cmd_overdue, "contracts whose disposal is overdue (--key: as whom)"
    )
    _client_options(sp, signs=False)
    sp = add_command(data, "bench", cmd_bench, "fetch throughput vs raw mutual TLS")
    sp.add_argument("--size-mib", type=int, default=256)
    add_json_option(sp)
