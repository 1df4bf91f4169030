"""``mdtp bench --catch-up``: how fast does a node that was down catch up with the chain?

A fresh local 4-node cluster; one member that is not the primary (the *laggard*) is stopped;
the other three commit ``txs`` transactions of batched load (the gateways of
:mod:`mdtp.node.ops.bench_long`: pre-signed batches of ``BATCH_SIZE`` through ``POST
/v1/txs?wait=1``); the laggard is started again, and the bench times it from the start of
its process until its height equals the others' (its height read from ``/readyz`` on its
metrics port every ``POLL_S``; the counters from ``/metrics`` once it is done). It reports
the catch-up's committed tx/s (the transactions the laggard executed, counted by its own
``mdtp_transactions_committed_total``, over that time) and blocks/s, the same rates from its
first transferred block on (``transfer_*``: without the process start and the time it takes
to learn that it is behind), and the CPU the laggard used (user + system, all threads and
its signature worker processes, from ``/proc/<pid>/stat``) per transaction, and by thread
(``cpu_s_by_thread``: the event loop, which executes the blocks, the other threads: decoding,
the store writer, ..., and the worker processes, which check the signatures).

With ``profile_dir`` the laggard runs under cProfile (``MDTP_PROFILE_DIR``, see ``mdtp
start``) and writes ``<node id>.prof`` when the cluster stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mdtp.node.errors import ClusterError
from mdtp.node.ops import cluster
from mdtp.node.ops.bench import (
    BATCH_CLIENTS,
    BATCH_SIZE,
    child_pids,
    process_cpu_s,
    register_senders,
    stat_cpu_s,
)
from mdtp.node.ops.bench_long import GatewayLoad
from mdtp.node.sdk.client import NodeClient

# the target of issue #18: a node 100,000 transactions behind catches up at 20,000 tx/s
TARGET_TX_PER_S = 20_000
# /readyz is a small JSON document (~0.3 ms of the node's event loop, under 1 % at this rate);
# a /metrics scrape costs ~10 ms, so it is read once at the end
POLL_S = 0.05
_METRIC = re.compile(r"^(mdtp_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", re.MULTILINE)


def scrape(node: cluster.ClusterNode, timeout: float = 2.0) -> dict[str, float]:
    """Height, committed transactions and state-transfer blocks from a node's ``/metrics``."""
    with urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out = {"height": 0.0, "txs": 0.0, "transferred": 0.0}
    names = {
        "mdtp_consensus_height": "height",
        "mdtp_transactions_committed_total": "txs",
        "mdtp_state_transfer_blocks_total": "transferred",
    }
    for name, _labels, value in _METRIC.findall(text):
        if name in names:
            out[names[name]] += float(value)
    return out


def ready_height(node: cluster.ClusterNode, timeout: float = 1.0) -> int:
    """A node's height from its ``/readyz`` (answered with 503 while it catches up)."""
    try:
        with urllib.request.urlopen(f"http://{node.metrics}/readyz", timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        body = e.read()
    return int(json.loads(body)["height"])


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of a process's main thread (``event_loop``: the node's event loop, block
    execution included), of its other threads together (``other_threads``: decoding, store
    writes, ...; Python does not name them for ``/proc``), from ``/proc/<pid>/task``, and of
    its child processes (``worker_processes``: the signature checks)."""
    out = {"event_loop": 0.0, "other_threads": 0.0, "worker_processes": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        group = "event_loop" if task.name == str(pid) else "other_threads"
        out[group] += stat_cpu_s(stat)
    out["worker_processes"] = sum(process_cpu_s(c, children=True) or 0.0 for c in child_pids(pid))
    return {k: round(v, 2) for k, v in out.items()}


def _pick_laggard(cluster_dir: Path, nodes: list[cluster.ClusterNode]) -> cluster.ClusterNode:
    """The last member that is not the primary of the current view."""
    views = [int(r["view"]) for r in cluster.status(cluster_dir) if r.get("view") is not None]
    primary = (views[0] if views else 0) % len(nodes)
    return next(n for i, n in reversed(list(enumerate(nodes))) if i != primary)


async def _load(cluster_dir: Path, serving: list[cluster.ClusterNode], txs: int) -> int:
    """Commit ``txs`` transactions through the running nodes ``serving``; returns how many."""
    chain_id = json.loads((cluster_dir / cluster.MANIFEST).read_text())["chain_id"]
    keys = await register_senders(cluster_dir, chain_id, BATCH_CLIENTS)
    load = GatewayLoad(cluster_dir, chain_id, txs, BATCH_SIZE)
    sessions = [NodeClient.of_home(n.api, n.home, connections=2) for n in serving]
    try:
        for s in sessions:
            await s.__aenter__()
        tasks = [
            asyncio.create_task(load.gateway(k, sessions[i % len(sessions)]))
            for i, k in enumerate(keys)
        ]
        await asyncio.gather(*tasks)
    finally:
        for s in sessions:
            await s.close()
    if load.error is not None:
        raise ClusterError(f"the load on the running nodes failed: {load.error}")
    return load.committed


def _settled_height(nodes: list[cluster.ClusterNode], timeout_s: float = 60.0) -> int:
    """The height the running nodes agree on once the load ended (all equal)."""
    deadline = time.monotonic() + timeout_s
    while True:
        heights = {int(scrape(n)["height"]) for n in nodes}
        if len(heights) == 1:
            return heights.pop()
        if time.monotonic() > deadline:
            raise ClusterError(f"the running nodes do not agree on a height: {sorted(heights)}")
        time.sleep(0.2)


def _catch_up(
    laggard: cluster.ClusterNode,
    stopped_at: int,
    target: int,
    env: dict[str, str] | None,
    timeout_s: float,
) -> dict[str, Any]:
    """Start the laggard (stopped at height ``stopped_at``) and time it until its height
    reaches ``target``."""
    started = time.perf_counter()
    proc = cluster.start_node(laggard, env)
    first_block: float | None = None
    height = 0
    while True:
        if proc.poll() is not None:
            raise ClusterError(
                f"{laggard.id} exited with code {proc.returncode} while catching up:\n"
                f"{cluster.log_tail(laggard)}"
            )
        with contextlib.suppress(OSError, ValueError, KeyError):  # not listening yet
            height = ready_height(laggard)
        if height >= target:
            break
        if first_block is None and height > stopped_at:
            first_block = time.perf_counter()
        if time.perf_counter() - started > timeout_s:
            raise ClusterError(
                f"{laggard.id} at height {height} of {target} after {timeout_s:.0f} s"
            )
        time.sleep(POLL_S)
    ended = time.perf_counter()
    cpu_s = process_cpu_s(proc.pid, children=True)
    threads = thread_cpu_s(proc.pid)
    seen = scrape(laggard)
    return {
        "pid": proc.pid,
        "start_height": stopped_at,
        "seconds": ended - started,
        # a catch-up that ends by the poll that saw its first new block has no measurable
        # transfer phase of its own: its whole time stands for it (``run_catchup_bench``)
        "transfer_seconds": None if first_block is None else ended - first_block,
        "txs": int(seen["txs"]),
        "blocks": int(seen["height"]) - stopped_at,
        "transferred_blocks": int(seen["transferred"]),
        "cpu_s": cpu_s,
        "threads": threads,
    }


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def run_catchup_bench(
    *, txs: int = 100_000, nodes: int = 4, profile_dir: Path | None = None
) -> dict[str, Any]:
    """Start a fresh local cluster, leave one member behind by ``txs`` transactions, time its
    catch-up, take the cluster down."""
    cluster_dir = Path(tempfile.mkdtemp(prefix="mdtp-bench-catchup-"))
    env = None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        env = {"MDTP_PROFILE_DIR": str(profile_dir.resolve())}
    try:
        cluster.init_cluster(cluster_dir, nodes)
        cluster.up(cluster_dir, timeout_s=90)
        members = cluster.load_cluster(cluster_dir)
        laggard = _pick_laggard(cluster_dir, members)
        stopped_at = int(scrape(laggard)["height"])
        cluster.stop(cluster_dir, laggard.id)
        running = [n for n in members if n.id != laggard.id]
        load_started = time.perf_counter()
        committed = asyncio.run(_load(cluster_dir, running, txs))
        load_s = time.perf_counter() - load_started
        target = _settled_height(running)
        run = _catch_up(laggard, stopped_at, target, env, timeout_s=max(120.0, txs / 200))
        cpu_us = None if run["cpu_s"] is None or not run["txs"] else run["cpu_s"] * 1e6 / run["txs"]
        rate = _rate(run["txs"], run["seconds"])
        transfer_s = run["transfer_seconds"] or run["seconds"]
        return {
            "machine": {"cpus": os.cpu_count(), "nodes": nodes},
            "laggard": laggard.id,
            "load_committed": committed,
            "load_tx_per_s": _rate(committed, load_s),
            "target_height": target,
            "start_height": run["start_height"],
            "caught_up_txs": run["txs"],
            "caught_up_blocks": run["blocks"],
            "state_transfer_blocks": run["transferred_blocks"],
            "seconds": round(run["seconds"], 3),
            "tx_per_s": rate,
            "blocks_per_s": _rate(run["blocks"], run["seconds"]),
            "transfer_seconds": round(transfer_s, 3),
            "transfer_tx_per_s": _rate(run["txs"], transfer_s),
            "transfer_blocks_per_s": _rate(run["blocks"], transfer_s),
            "cpu_s": None if run["cpu_s"] is None else round(run["cpu_s"], 2),
            "cpu_us_per_tx": None if cpu_us is None else round(cpu_us, 1),
            "cpu_s_by_thread": run["threads"],
            "target_tx_per_s": TARGET_TX_PER_S,
            "target_met": rate >= TARGET_TX_PER_S,
        }
    finally:
        cluster.down(cluster_dir)
        shutil.rmtree(cluster_dir, ignore_errors=True)


def print_summary(r: dict[str, Any]) -> None:
    print(
        f"{r['laggard']} caught up {r['caught_up_txs']:,} transactions in "
        f"{r['caught_up_blocks']:,} blocks (heights {r['start_height']}..{r['target_height']}) "
        f"in {r['seconds']:.2f} s: {r['tx_per_s']:,.0f} tx/s, {r['blocks_per_s']:,.1f} blocks/s"
    )
    print(
        f"from its first transferred block: {r['transfer_seconds']:.2f} s, "
        f"{r['transfer_tx_per_s']:,.0f} tx/s; its CPU {r['cpu_s']} s, "
        f"{r['cpu_us_per_tx']} us/tx; target {r['target_tx_per_s']:,} tx/s "
        f"{'met' if r['target_met'] else 'NOT met'}"
    )
    threads = ", ".join(f"{k} {v} s" for k, v in sorted(r["cpu_s_by_thread"].items()))
    print(f"its CPU by thread: {threads}")
