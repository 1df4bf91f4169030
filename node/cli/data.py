"""``mdtp data ...``: publish a file, fetch a contract's data, dispose of it, overdue list.

Each command talks to the member's own node: ``--node HOST:PORT --ca ca.pem``, or for a
local cluster ``--cluster DIR --member nodeI``; it signs with ``--key FILE`` (the supplier's
account to publish, the consumer's to fetch and dispose). Progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from mdtp.node.cli import add_command, add_group
from mdtp.node.data.crypto import DEFAULT_CHUNK_BYTES
from mdtp.node.errors import MdtpError
from mdtp.node.identity.keys import SigningKey, load_key, read_passphrase_file
from mdtp.node.sdk.client import ApiError
from mdtp.node.sdk.data import DataClient, DataError, dispose, fetch, publish


class DataUsageError(MdtpError):
    reason = "usage"


def _client(args: argparse.Namespace) -> DataClient:
    if args.cluster:
        from mdtp.node.ops.cluster import load_cluster

        nodes = {n.id: n for n in load_cluster(Path(args.cluster))}
        node = nodes.get(args.member or next(iter(nodes)))
        if node is None:
            raise DataUsageError(f"--member: no node {args.member!r} in {args.cluster}")
        return DataClient(node.api, ca=Path(args.cluster) / "ca" / "ca.pem", timeout_s=600)
    if not args.node or not args.ca:
        raise DataUsageError("name your node: --node HOST:PORT --ca ca.pem, or --cluster DIR")
    return DataClient(args.node, ca=Path(args.ca), timeout_s=600)


def _key(args: argparse.Namespace) -> SigningKey:
    return load_key(Path(args.key), passphrase=read_passphrase_file(args.passphrase_file))


def _run(coro: Any) -> int:
    try:
        result = asyncio.run(coro)
    except DataError as e:
        where = f" (chunk {e.chunk})" if e.chunk is not None else ""
        print(f"error: {e.reason}{where}: {e.message}")
        return 1
    except ApiError as e:
        print(f"error: {e.reason}: {e.message}")
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    quality = json.loads(Path(args.quality).read_text()) if args.quality else None

    async def go() -> dict[str, Any]:
        async with _client(args) as c:
            p = await publish(
                c,
                _key(args),
                Path(args.file),
                dataset_id=args.id,
                title=args.title or args.id,
                description=args.description,
                tags=[t for t in (args.tags or "").split(",") if t],
                schema=args.schema,
                fmt=args.format,
                quality=quality,
                chunk_bytes=args.chunk_size,
                progress=not args.no_progress,
            )
        return {
            "dataset_id": p.dataset_id,
            "chunk_count": p.chunk_count,
            "size_bytes": p.size_bytes,
            "merkle_root": p.merkle_root.hex(),
            "plaintext_digest": p.plaintext_digest.hex(),
            "tx": p.tx_id,
        }

    return _run(go())


def cmd_fetch(args: argparse.Namespace) -> int:
    async def go() -> dict[str, Any]:
        async with _client(args) as c:
            r = await fetch(
                c,
                _key(args),
                args.contract,
                Path(args.out),
                progress=not args.no_progress,
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

    return _run(go())


def cmd_dispose(args: argparse.Namespace) -> int:
    async def go() -> dict[str, Any]:
        async with _client(args) as c:
            return await dispose(c, _key(args), args.contract, method=args.method)

    return _run(go())


def cmd_overdue(args: argparse.Namespace) -> int:
    async def go() -> list[dict[str, Any]]:
        async with _client(args) as c:
            return await c.overdue_disposals()

    return _run(go())


def cmd_bench(args: argparse.Namespace) -> int:
    from mdtp.node.ops.bench_data import run_data_bench

    result = run_data_bench(size_mib=args.size_mib, progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


def _connection(sp: argparse.ArgumentParser, *, signs: bool = True) -> None:
    sp.add_argument("--node", default=os.environ.get("MDTP_NODE"), help="your node's API")
    sp.add_argument("--ca", default=os.environ.get("MDTP_CA"), help="the consortium CA (PEM)")
    sp.add_argument("--cluster", help="a local cluster directory instead of --node/--ca")
    sp.add_argument("--member", help="which node of --cluster (default: the first)")
    if signs:
        sp.add_argument("--key", required=True, help="your account key file")
        sp.add_argument("--passphrase-file", type=Path, help="passphrase of --key")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub: Any) -> None:
    data = add_group(sub, "data", "encrypted datasets: publish, fetch, dispose")
    sp = add_command(data, "publish", cmd_publish, "encrypt, store on your node and publish")
    sp.add_argument("file")
    sp.add_argument("--id", required=True, help="dataset id")
    sp.add_argument("--title")
    sp.add_argument("--description", default="")
    sp.add_argument("--tags", help="comma-separated tags")
    sp.add_argument("--schema", default="")
    sp.add_argument("--format", default="bin")
    sp.add_argument("--quality", help="JSON file with the quality fields")
    sp.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_BYTES, help="bytes")
    _connection(sp)
    sp = add_command(data, "fetch", cmd_fetch, "fetch, verify and decrypt a contract's data")
    sp.add_argument("contract")
    sp.add_argument("--out", required=True, help="output file (resumes OUT.part)")
    sp.add_argument("--grant-timeout", type=float, default=30.0, help="seconds")
    _connection(sp)
    sp = add_command(data, "dispose", cmd_dispose, "delete local copies, attest the disposal")
    sp.add_argument("contract")
    sp.add_argument("--method", help="disposal method (default: the one the terms name)")
    _connection(sp)
    sp = add_command(data, "overdue", cmd_overdue, "contracts whose disposal is overdue")
    _connection(sp, signs=False)
    sp = add_command(data, "bench", cmd_bench, "fetch throughput vs raw mutual TLS")
    sp.add_argument("--size-mib", type=int, default=256)
    sp.add_argument("--json", action="store_true")
