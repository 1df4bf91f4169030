"""Data benchmark: fetch a dataset between two nodes of a local cluster, against the raw
mutual-TLS loopback stream rate measured in the same run.

``fetch_mib_per_s`` is end to end as a consumer sees it: from the signed request to the
last decrypted byte written (supplier disk read and hash check, peer link, Merkle check on
the consumer's node, HTTPS to the client, Merkle check and decryption there, file write).
``raw_tls_mib_per_s`` streams the same number of bytes over one mutual-TLS 1.3 connection
between two processes with the nodes' own certificates and asyncio streams, doing nothing
else with them: the ceiling of one peer-link hop on this machine.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mdtp.node.identity import pki
from mdtp.node.ops import cluster
from mdtp.node.ops.testbed import client_for, make_contract, register_account
from mdtp.node.sdk.data import fetch, publish

MiB = 1024 * 1024
_WRITE_BYTES = MiB


def _p2p_files(home: Path) -> tuple[Path, Path, Path]:
    return home / "ca.pem", home / "node.pem", home / "node.key.pem"


async def _raw_tls_server(home: Path, port: int, total: int) -> None:
    ctx = pki.p2p_server_context(*_p2p_files(home))
    done = asyncio.Event()
    block = os.urandom(_WRITE_BYTES)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = 0
        while sent < total:
            writer.write(block)
            sent += len(block)
            await writer.drain()
        writer.close()
        done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", port, ssl=ctx)
    print("ready", flush=True)
    async with server:
        await asyncio.wait_for(done.wait(), 600)


async def _raw_tls_client(home: Path, port: int, total: int) -> float:
    ctx = pki.p2p_client_context(*_p2p_files(home))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, limit=4 * MiB)
    received = 0
    first = await reader.read(4 * MiB)
    started = time.perf_counter()
    received += len(first)
    while received < total:
        data = await reader.read(4 * MiB)
        if not data:
            break
        received += len(data)
    elapsed = time.perf_counter() - started
    writer.close()
    return (received - len(first)) / MiB / elapsed


def measure_raw_tls(server_home: Path, client_home: Path, size_mib: int) -> float:
    """MiB/s of one mutual-TLS stream between two processes on the loopback."""
    port = cluster.free_ports(1)[0]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mdtp.node.ops.bench_data",
            "raw-tls-server",
            str(server_home),
            str(port),
            str(size_mib * MiB),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        return asyncio.run(_raw_tls_client(client_home, port, size_mib * MiB))
    finally:
        proc.wait(timeout=60)


async def _fetch_between_nodes(
    cluster_dir: Path, size_mib: int, progress: bool | None
) -> dict[str, Any]:
    nodes = cluster.load_cluster(cluster_dir)
    supplier_node, consumer_node = nodes[0], nodes[1]
    supplier = await register_account(cluster_dir, supplier_node, ["supplier"], "bench supplier")
    consumer = await register_account(cluster_dir, consumer_node, ["consumer"], "bench consumer")
    source = cluster_dir / "bench-source.bin"
    with source.open("wb") as f:
        for _ in range(size_mib // 16):
            f.write(os.urandom(16 * MiB))
        f.write(os.urandom((size_mib % 16) * MiB))
    async with client_for(cluster_dir, supplier_node, 600) as sc:
        published = await publish(
            sc, supplier, source, dataset_id="bench-data", title="bench", progress=progress
        )
        contract_id = await make_contract(sc, supplier, consumer, "bench-data")
    out = cluster_dir / "bench-fetched.bin"
    async with client_for(cluster_dir, consumer_node, 600) as cc:
        fetched = await fetch(
            cc, consumer, contract_id, out, progress=progress, registry=cluster_dir / "registry"
        )
    identical = out.stat().st_size == source.stat().st_size and _same(out, source)
    return {
        "fetch_mib_per_s": fetched.mib_per_s,
        "fetch_seconds": fetched.seconds,
        "chunks": published.chunk_count,
        "byte_identical": identical,
    }


def _same(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(8 * MiB), fb.read(8 * MiB)
            if x != y:
                return False
            if not x:
                return True


def run_data_bench(
    size_mib: int = 256, *, cluster_dir: Path | None = None, progress: bool | None = False
) -> dict[str, Any]:
    """Start a 4-node local cluster, fetch ``size_mib`` MiB from node0 to node1, measure the
    raw mutual-TLS rate between the same two homes, stop the cluster; return the figures."""
    with tempfile.TemporaryDirectory(prefix="mdtp-bench-data-") as tmp:
        cdir = cluster_dir or Path(tmp) / "cluster"
        cluster.init_cluster(cdir, 4)
        nodes = cluster.load_cluster(cdir)
        try:
            cluster.up(cdir, timeout_s=120)
            # the raw rate is taken right before and right after the fetch, under the same
            # background (a running cluster), and the better one is the ceiling
            raw_before = measure_raw_tls(nodes[2].home, nodes[3].home, size_mib)
            result = asyncio.run(_fetch_between_nodes(cdir, size_mib, progress))
            raw = max(raw_before, measure_raw_tls(nodes[2].home, nodes[3].home, size_mib))
        finally:
            cluster.down(cdir)
    fetch_rate = float(result["fetch_mib_per_s"])
    return {
        "size_mib": size_mib,
        "fetch_mib_per_s": round(fetch_rate, 1),
        "raw_tls_mib_per_s": round(raw, 1),
        "ratio": round(fetch_rate / raw, 3),
        "fetch_seconds": round(float(result["fetch_seconds"]), 3),
        "chunks": result["chunks"],
        "byte_identical": result["byte_identical"],
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["raw-tls-server"]:
        home, port, total = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        asyncio.run(_raw_tls_server(home, port, total))
