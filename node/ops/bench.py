"""``mdtp bench``: throughput and latency of a local 4-node cluster, and its ceiling.

One run starts a fresh local cluster (separate node processes, mutual TLS, synced LevelDB
commits), then drives a closed loop: each of C clients submits one signed ``note.set``
transaction, waits until it is committed (``POST /v1/tx?wait=1``), and submits the next.
Transactions are signed before the timed phase so the clients measure the cluster, not
their own signing. For C in (1, 16, 64) it reports committed tx/s and commit latency
percentiles.

A batched level follows (``batched``): ``BATCH_CLIENTS`` clients, one per node, each
submitting pre-signed batches of ``BATCH_SIZE`` transactions (``POST /v1/txs?wait=1``, what a
gateway would use) in a closed loop; it reports committed tx/s and the batch latency.

In the same run it measures this machine's Ed25519 verification rate on all cores; since
every node verifies every transaction once, the cluster cannot commit faster than
``rate / nodes`` (``verify_ceiling_tx_per_s``); ``ratio_to_ceiling`` is the 64-client
throughput divided by that, ``batched_ratio_to_ceiling`` the batched level's. All nodes and
the load generator share the machine, so the figures are for the whole consortium on one box.
``*_cpu_ratio_to_ceiling`` is the same ratio from CPU times only (:func:`cpu_ratio`).

CPU cost: for every level, each node process's own CPU time (user + system, all its threads,
from ``/proc/<pid>/stat``) over the timed phase, divided by the transactions committed in
it (``cpu_us_per_tx``: per node and their mean), and the load generator's own
(``loadgen_cpu_us_per_tx``). Unlike tx/s, these stay comparable on a busy machine: a node
that waits for the CPU is not charged for the wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nacl.signing

from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.ledger.trading import bodies as b
from mdtp.node.ledger.tx import sign_tx
from mdtp.node.ops import cluster
from mdtp.node.sdk.client import ApiError, NodeClient

CLIENT_COUNTS = (1, 16, 64)
BATCH_CLIENTS = 4
BATCH_SIZE = 200
# pre-signed transactions per second of the batched level, overall (an upper bound of its
# throughput on a small machine; clients that run out stop early, the rate stays right)
BATCH_SIGNED_PER_S = 3000


def process_cpu_s(pid: int, *, children: bool = False) -> float | None:
    """CPU seconds (user + system, all threads) a process has used, from
    ``/proc/<pid>/stat`` (fields 14 and 15, in clock ticks); None if it is gone.
    ``children``: with its child processes' (a node's signature workers), the running ones'
    and the ended ones' it waited for."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if not children:
        return stat_cpu_s(stat)
    total = stat_cpu_s(stat, with_ended_children=True)
    for child in child_pids(pid):
        total += process_cpu_s(child, children=True) or 0.0
    return total


def child_pids(pid: int) -> list[int]:
    """The running child processes of ``pid`` (``/proc/<pid>/task/*/children``)."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue  # the thread ended
    return out


def stat_cpu_s(stat: str, *, with_ended_children: bool = False) -> float:
    """utime + stime of a ``/proc/<pid>/stat`` line, in seconds (with cutime + cstime:
    the ended children's it waited for)."""
    # the command name (field 2) is in parentheses and may hold spaces or parentheses
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    if with_ended_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by each node process (with its worker processes) and by this process
    between :meth:`start` and :meth:`stop`, reported per committed transaction."""

    def __init__(self, node_pids: Mapping[str, int | None]) -> None:
        self.pids = {node: pid for node, pid in node_pids.items() if pid is not None}
        self._started: dict[str, float | None] = {}
        self._used: dict[str, float | None] = {}

    def _now(self) -> dict[str, float | None]:
        now = {node: process_cpu_s(pid, children=True) for node, pid in self.pids.items()}
        now["loadgen"] = process_cpu_s(os.getpid())
        return now

    def start(self) -> None:
        self._started = self._now()

    def stop(self) -> None:
        ended = self._now()
        self._used = {}
        for k, began in self._started.items():
            end = ended.get(k)
            self._used[k] = None if began is None or end is None else end - began

    def per_tx(self, committed: int) -> dict[str, Any]:
        """``cpu_us_per_tx`` (per node), its mean and ``loadgen_cpu_us_per_tx``."""

        def us(seconds: float | None) -> float | None:
            if seconds is None or committed == 0:
                return None
            return round(seconds * 1e6 / committed, 1)

        per_node = {node: us(self._used.get(node)) for node in self.pids}
        known = [v for v in per_node.values() if v is not None]
        return {
            "cpu_us_per_tx": per_node,
            "cpu_us_per_tx_mean": round(sum(known) / len(known), 1) if known else None,
            "loadgen_cpu_us_per_tx": us(self._used.get("loadgen")),
        }


def _verify_batch(items: list[tuple[bytes, bytes, bytes]]) -> int:
    ok = 0
    for public_key, message, signature in items:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        ok += 1
    return ok


def ed25519_verify_rate(duration_s: float, threads: int | None = None) -> float:
    """Verifications per second on all cores (libsodium releases the GIL)."""
    return ed25519_verify_rate_and_cpu(duration_s, threads)[0]


def ed25519_verify_rate_and_cpu(
    duration_s: float, threads: int | None = None
) -> tuple[float, float]:
    """Verifications per second on all cores, and CPU microseconds per verification (this
    process's CPU time over the run: unlike the rate, it holds on a busy machine)."""
    threads = threads or os.cpu_count() or 1
    key = nacl.signing.SigningKey.generate()
    items = []
    for i in range(256):
        message = b"mdtp bench %d" % i + bytes(200)
        items.append((bytes(key.verify_key), message, key.sign(message).signature))
    done = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        while time.perf_counter() - started < duration_s:
            done += sum(pool.map(_verify_batch, [items] * threads))
    cpu_us = (time.process_time() - cpu_started) * 1e6 / done
    return done / (time.perf_counter() - started), cpu_us


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def register_senders(cluster_dir: Path, chain_id: str, count: int) -> list[SigningKey]:
    """``count`` fresh sender accounts, registered by the first member's admin (the ledger
    takes nothing from keys no member registered): pipelined, then awaited, before any
    timing starts."""
    member = cluster.load_cluster(cluster_dir)[0]
    admin = load_key(member.admin_key_file)
    keys = [SigningKey.generate(with_encryption=True) for _ in range(count)]
    expires = int(time.time() * 1000) + 600_000
    async with NodeClient.of_home(member.api, member.home, timeout_s=120) as c:
        nonce = int((await c.get(f"/v1/accounts/{admin.account_id}/nonce"))["nonce"])
        ids = []
        for i, k in enumerate(keys):
            body = b.AccountRegister.for_key(
                k.public_key, k.encryption_public_key or b"", ["consumer"], f"bench {i}"
            )
            raw = sign_tx(
                admin,
                chain_id=chain_id,
                type_=body.TYPE,
                sender=admin.account_id,
                nonce=nonce + 1 + i,
                expires_at_ms=expires,
                body=body.to_body(),
            )
            ids.append((await c.submit(raw))["id"])
        for tx_id in ids:
            for _ in range(1200):
                doc = await c.tx(tx_id)
                if doc["status"] != "pending":
                    break
                await asyncio.sleep(0.1)
            if doc["status"] != "committed":
                raise RuntimeError(f"registering a bench sender failed: {doc}")
    return keys


async def closed_loop(
    cluster_dir: Path,
    chain_id: str,
    clients: int,
    duration_s: float,
    on_timed_phase: Callable[[], None] | None = None,
    cpu: CpuMeter | None = None,
    serving: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The closed loop of ``clients`` for ``duration_s``; ``on_timed_phase`` is called once
    the senders are registered and their transactions signed, just before timing starts;
    ``cpu`` (if given) measures the timed phase and adds its figures; ``serving``: the ids of
    the nodes the clients talk to (all by default), spread evenly."""
    nodes = [n for n in cluster.load_cluster(cluster_dir) if serving is None or n.id in serving]
    # enough pre-signed transactions per client for a generous upper bound of throughput
    per_client = max(50, int(8000 * duration_s / clients))
    expires = int(time.time() * 1000) + 3_600_000
    keys = await register_senders(cluster_dir, chain_id, clients)
    signed = [
        [
            sign_tx(
                k,
                chain_id=chain_id,
                type_="note.set",
                sender=k.account_id,
                nonce=n,
                expires_at_ms=expires,
                body={"key": f"k{n % 64}", "value": b"x" * 32},
            )
            for n in range(1, per_client + 1)
        ]
        for k in keys
    ]
    latencies: list[float] = []
    failures = 0
    stop_at = float("inf")  # set when timing starts

    async def client(i: int, session: NodeClient) -> None:
        nonlocal failures
        for raw in signed[i]:
            if time.perf_counter() >= stop_at:
                return
            t0 = time.perf_counter()
            try:
                doc = await session.submit(raw, wait=True, timeout_s=30)
            except (ApiError, OSError, TimeoutError):
                failures += 1
                return
            if doc.get("status") != "committed":
                failures += 1
                return
            latencies.append(time.perf_counter() - t0)

    # each node's sessions present that node's member certificate
    sessions = [NodeClient.of_home(n.api, n.home, connections=clients) for n in nodes]
    for s in sessions:
        await s.__aenter__()
    try:
        if on_timed_phase is not None:
            on_timed_phase()
        if cpu is not None:
            cpu.start()
        stop_at = time.perf_counter() + duration_s
        started = time.perf_counter()
        await asyncio.gather(*(client(i, sessions[i % len(sessions)]) for i in range(clients)))
        elapsed = time.perf_counter() - started
        if cpu is not None:
            cpu.stop()
    finally:
        for s in sessions:
            await s.close()
    latencies.sort()
    return {
        "clients": clients,
        "committed": len(latencies),
        "failures": failures,
        "tx_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms_p50": round(_percentile(latencies, 50) * 1000, 2),
        "latency_ms_p99": round(_percentile(latencies, 99) * 1000, 2),
        **(cpu.per_tx(len(latencies)) if cpu is not None else {}),
    }


async def batched_loop(
    cluster_dir: Path,
    chain_id: str,
    duration_s: float,
    *,
    clients: int = BATCH_CLIENTS,
    batch: int = BATCH_SIZE,
    cpu: CpuMeter | None = None,
) -> dict[str, Any]:
    """``clients`` gateways, one sender each, submitting pre-signed batches of ``batch``
    consecutive nonces (``POST /v1/txs?wait=1``) in a closed loop for ``duration_s``:
    committed tx/s and the latency of a whole batch."""
    nodes = cluster.load_cluster(cluster_dir)
    batches = max(2, -(-int(BATCH_SIGNED_PER_S * duration_s) // (clients * batch)))
    expires = int(time.time() * 1000) + 3_600_000
    keys = await register_senders(cluster_dir, chain_id, clients)
    signed = [
        [
            [
                sign_tx(
                    k,
                    chain_id=chain_id,
                    type_="note.set",
                    sender=k.account_id,
                    nonce=n,
                    expires_at_ms=expires,
                    body={"key": f"k{n % 64}", "value": b"x" * 32},
                )
                for n in range(1 + j * batch, 1 + (j + 1) * batch)
            ]
            for j in range(batches)
        ]
        for k in keys
    ]
    latencies: list[float] = []
    committed = 0
    failures = 0
    stop_at = float("inf")

    async def client(i: int, session: NodeClient) -> None:
        nonlocal committed, failures
        for raws in signed[i]:
            if time.perf_counter() >= stop_at:
                return
            t0 = time.perf_counter()
            try:
                results = await session.submit_many(raws, wait=True, timeout_s=30)
            except (ApiError, OSError, TimeoutError):
                failures += len(raws)
                return
            ok = sum(r.get("status") == "committed" for r in results)
            committed += ok
            failures += len(raws) - ok
            if ok < len(raws):
                return  # the sender's later nonces would be refused
            latencies.append(time.perf_counter() - t0)

    sessions = [NodeClient.of_home(n.api, n.home, connections=clients) for n in nodes]
    for s in sessions:
        await s.__aenter__()
    try:
        if cpu is not None:
            cpu.start()
        stop_at = time.perf_counter() + duration_s
        started = time.perf_counter()
        await asyncio.gather(*(client(i, sessions[i % len(sessions)]) for i in range(clients)))
        elapsed = time.perf_counter() - started
        if cpu is not None:
            cpu.stop()
    finally:
        for s in sessions:
            await s.close()
    latencies.sort()
    return {
        "clients": clients,
        "batch": batch,
        "committed": committed,
        "failures": failures,
        "tx_per_s": round(committed / elapsed, 1),
        "batch_latency_ms_p50": round(_percentile(latencies, 50) * 1000, 2),
        "batch_latency_ms_p99": round(_percentile(latencies, 99) * 1000, 2),
        **(cpu.per_tx(committed) if cpu is not None else {}),
    }


def cpu_ratio(level: dict[str, Any], nodes: int, verify_cpu_us: float) -> float | None:
    """The fraction of the verification ceiling a level would reach if CPU were its only
    limit: the CPU the ceiling spends per transaction (one verification per node) over the
    CPU the level spent per committed transaction (every node and the load generator).
    Made of CPU times only, it stays comparable on a busy machine, where tx/s and the
    measured ceiling do not."""
    mean, loadgen = level.get("cpu_us_per_tx_mean"), level.get("loadgen_cpu_us_per_tx")
    if mean is None or loadgen is None:
        return None
    return round(nodes * verify_cpu_us / (nodes * float(mean) + float(loadgen)), 3)


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def run_bench(
    *, quick: bool, nodes: int = 4, workdir: Path | None = None, profile_dir: Path | None = None
) -> dict[str, Any]:
    """``profile_dir``: each node writes a cProfile of its event-loop thread there when it
    stops (``<node id>.prof``; read with ``python -m pstats``)."""
    duration_s = 4.0 if quick else 15.0
    own_dir = workdir is None
    cluster_dir = Path(tempfile.mkdtemp(prefix="mdtp-bench-")) if workdir is None else workdir
    env = None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        env = {"MDTP_PROFILE_DIR": str(profile_dir.resolve())}
    try:
        cluster.init_cluster(cluster_dir, nodes)
        cluster.up(cluster_dir, timeout_s=90, env=env)
        chain_id = json.loads((cluster_dir / cluster.MANIFEST).read_text())["chain_id"]
        results: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "nodes": nodes},
            "duration_s_per_level": duration_s,
        }
        members = cluster.load_cluster(cluster_dir)
        pids = {n.id: cluster.running_pid(n) for n in members}
        for clients in CLIENT_COUNTS:
            results[f"clients_{clients}"] = asyncio.run(
                closed_loop(cluster_dir, chain_id, clients, duration_s, cpu=CpuMeter(pids))
            )
        results["batched"] = asyncio.run(
            batched_loop(cluster_dir, chain_id, duration_s, cpu=CpuMeter(pids))
        )
        rate, verify_cpu_us = ed25519_verify_rate_and_cpu(2.0 if quick else 5.0)
        ceiling = rate / nodes
        results["ed25519_verify_per_s"] = round(rate, 1)
        results["ed25519_verify_cpu_us"] = round(verify_cpu_us, 2)
        results["verify_ceiling_tx_per_s"] = round(ceiling, 1)
        results["ratio_to_ceiling"] = round(results["clients_64"]["tx_per_s"] / ceiling, 3)
        results["batched_ratio_to_ceiling"] = round(results["batched"]["tx_per_s"] / ceiling, 3)
        for level in ("clients_64", "batched"):
            results[f"{level}_cpu_ratio_to_ceiling"] = cpu_ratio(
                results[level], nodes, verify_cpu_us
            )
        results["node_rss_mb"] = {
            n.id: rss_mb(cluster.running_pid(n)) for n in cluster.load_cluster(cluster_dir)
        }
        return results
    finally:
        cluster.down(cluster_dir)
        if own_dir:
            shutil.rmtree(cluster_dir, ignore_errors=True)


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{'clients':>14} {'tx/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'failures':>9} "
        f"{'node CPU us/tx':>15} {'loadgen us/tx':>14}"
    )
    levels = [(str(c), results[f"clients_{c}"]) for c in CLIENT_COUNTS]
    b = results["batched"]
    levels.append((f"{b['clients']}x{b['batch']} batch", b))
    for label, r in levels:
        p50 = r.get("latency_ms_p50", r.get("batch_latency_ms_p50"))
        p99 = r.get("latency_ms_p99", r.get("batch_latency_ms_p99"))
        print(
            f"{label:>14} {r['tx_per_s']:>10} {p50:>9} {p99:>9} {r['failures']:>9} "
            f"{r.get('cpu_us_per_tx_mean')!s:>15} {r.get('loadgen_cpu_us_per_tx')!s:>14}"
        )
    print("(batched: latency of a whole batch; node CPU: mean over nodes, per committed tx)")
    for label, r in levels:
        print(f"node CPU us/tx at {label}: {r.get('cpu_us_per_tx')}")
    print(
        f"Ed25519 verifications/s on {results['machine']['cpus']} cores: "
        f"{results['ed25519_verify_per_s']}; ceiling {results['verify_ceiling_tx_per_s']} tx/s "
        f"for {results['machine']['nodes']} nodes; ratio at 64 clients "
        f"{results['ratio_to_ceiling']}, batched {results['batched_ratio_to_ceiling']}"
    )
    print(
        f"by CPU time ({results['ed25519_verify_cpu_us']} us per verification): ratio at 64 "
        f"clients {results['clients_64_cpu_ratio_to_ceiling']}, batched "
        f"{results['batched_cpu_ratio_to_ceiling']}"
    )
    print(f"node RSS (MB): {results['node_rss_mb']}")
