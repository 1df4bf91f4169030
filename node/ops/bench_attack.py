"""``mdtp bench --attack``: throughput under Aardvark's attacks (Clement et al., NSDI 2009).

Each behaviour runs on a fresh local 4-node cluster (f = 1), so every run starts in view 0
from genesis with the same state. The slow primary is ``node0``, the primary of view 0 (the
worst case: it leads from the first block); the flooding replica is ``node3``, a backup (a
flooding primary would queue its own proposals behind its flood, which measures a slow
primary again). The closed loop of :mod:`mdtp.node.ops.bench` then runs at 16 clients for the
same duration in each:

- ``fault_free``: no attacker (the baseline);
- ``slow_primary``: node0 proposes only just under the view-change timeout, one block at a
  time, each holding everything pending (``MDTP_TEST_BYZANTINE=slow-primary``), so no honest
  timer fires although the chain crawls;
- ``flooding_replica``: node3 behaves, plus keeps sending every peer valid-looking consensus
  messages signed with its own key (``MDTP_TEST_BYZANTINE=flood-signed``);
- ``flooding_clients``: no Byzantine member; a separate process holds 16 connections spread
  over the nodes, each with a member's client certificate like the honest clients, and posts
  well-formed but invalid transactions (bad signature of a registered sender, a key that is
  not the sender's, a nonce far ahead, an unknown sender, garbage bytes) back to back.

For each it reports committed tx/s, p50/p99 commit latency, the fraction of the fault-free
throughput, the view changes and suspicions the honest nodes' metrics counted during the timed
phase, and for floods what was refused (frames and messages at the honest nodes; the status
codes the flooding clients got back). Everything (nodes, attacker, load) shares this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from mdtp.node.identity.keys import SigningKey, load_key
from mdtp.node.ledger.tx import sign_tx
from mdtp.node.ops import bench, cluster
from mdtp.node.sdk.client import ApiError, NodeClient

BEHAVIOURS = ("fault_free", "slow_primary", "flooding_replica", "flooding_clients")
CLIENTS = 16
FLOOD_CONNECTIONS = 16
BYZANTINE_ENV = "MDTP_TEST_BYZANTINE"
# (member, switch): the slow primary is the primary of view 0, the worst case; the flooding
# replica is a backup (the last member, primary of view 3), since a flooding primary would
# queue its own proposals behind its flood and measure a slow primary again
NODE_SWITCH = {
    "slow_primary": ("node0", "slow-primary"),
    "flooding_replica": ("node3", "flood-signed"),
}
# the counters read from every honest node before and after the timed phase
_COUNTERS = (
    "mdtp_consensus_view_changes_total",
    "mdtp_consensus_suspicions_total",
    "mdtp_consensus_frames_dropped_total",
    "mdtp_consensus_messages_rejected_total",
    "mdtp_p2p_frames_dropped_total",
    "mdtp_p2p_send_queue_full_total",
    "mdtp_mempool_rejected_total",
    "mdtp_api_refusals_total",
    "mdtp_http_connections_refused_total",
)
ROLES = {"node0": "the primary of view 0", "node3": "a backup, the primary of view 3"}
FLOOD_KINDS = ("bad_signature", "wrong_key", "nonce_gap", "unknown_sender", "garbage")


# -- metrics --------------------------------------------------------------------------------


def scrape(node: cluster.ClusterNode) -> dict[str, float]:
    """The node's counters named in ``_COUNTERS``, one entry per labelled sample."""
    with urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(_COUNTERS):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def _family(deltas: dict[str, float], name: str) -> dict[str, int]:
    """``{label value (or "") : count}`` of one counter family."""
    out: Counter[str] = Counter()
    for key, value in deltas.items():
        if key == name or key.startswith(name + "{"):
            label = key.partition('="')[2].rpartition('"')[0]
            out[label] += int(value)
    return dict(out)


def summarise_metrics(per_node: dict[str, dict[str, float]]) -> dict[str, Any]:
    """View changes, suspicions and refusals at the honest nodes during the timed phase."""
    view_changes = {
        n: sum(_family(d, "mdtp_consensus_view_changes_total").values())
        for n, d in per_node.items()
    }
    total: Counter[str] = Counter()
    for d in per_node.values():
        for key, value in d.items():
            total[key.partition("{")[0]] += int(value)

    def by_label(name: str) -> dict[str, int]:
        c: Counter[str] = Counter()
        for d in per_node.values():
            c.update(_family(d, name))
        return dict(c)

    return {
        "view_changes_max": max(view_changes.values(), default=0),
        "view_changes_by_node": view_changes,
        "suspicions": by_label("mdtp_consensus_suspicions_total"),
        "consensus_refused": total["mdtp_consensus_frames_dropped_total"]
        + total["mdtp_consensus_messages_rejected_total"]
        + total["mdtp_p2p_frames_dropped_total"],
        "consensus_rejected_by_reason": by_label("mdtp_consensus_messages_rejected_total"),
        "frames_dropped_by_reason": by_label("mdtp_consensus_frames_dropped_total"),
        "txs_refused": total["mdtp_mempool_rejected_total"],
        "txs_refused_by_reason": by_label("mdtp_mempool_rejected_total"),
        "api_refusals": total["mdtp_api_refusals_total"],
        "connections_refused": total["mdtp_http_connections_refused_total"],
    }


# -- flooding clients (a separate process: its event loop is not the honest clients') -------


def invalid_transactions(
    admin: SigningKey, chain_id: str, admin_nonce: int, count: int, seed: int = 0
) -> list[tuple[str, bytes]]:
    """``count`` well-formed-looking transactions that every node must refuse, by kind."""
    rng = random.Random(seed)
    expires = int(time.time() * 1000) + 3_600_000
    stranger = SigningKey.generate()
    out: list[tuple[str, bytes]] = []
    for i in range(count):
        kind = FLOOD_KINDS[i % len(FLOOD_KINDS)]
        body = {"key": f"flood{i % 64}", "value": rng.randbytes(32)}
        signer, sender, nonce = admin, admin.account_id, admin_nonce + 1 + i % 8
        if kind == "wrong_key":
            signer = stranger
        elif kind == "nonce_gap":
            nonce = admin_nonce + 1_000_000_000 + i
        elif kind == "unknown_sender":
            signer = SigningKey.generate()
            sender, nonce = signer.account_id, 1
        if kind == "garbage":
            out.append((kind, rng.randbytes(rng.randint(16, 400))))
            continue
        raw = sign_tx(
            signer,
            chain_id=chain_id,
            type_="note.set",
            sender=sender,
            nonce=nonce,
            expires_at_ms=expires,
            body=body,
        )
        if kind == "bad_signature":
            raw = raw[:-1] + bytes([raw[-1] ^ 0x01])  # the signature is the last field
        out.append((kind, raw))
    return out


async def _flood_clients(
    cluster_dir: Path,
    chain_id: str,
    connections: int,
    wait_for: Callable[[], str],
) -> dict[str, Any]:
    nodes = cluster.load_cluster(cluster_dir)
    member = nodes[0]
    admin = load_key(member.admin_key_file)
    sessions = [
        NodeClient.of_home(n.api, n.home, connections=connections, timeout_s=10) for n in nodes
    ]
    for s in sessions:
        await s.__aenter__()
    try:
        nonce = int((await sessions[0].get(f"/v1/accounts/{admin.account_id}/nonce"))["nonce"])
        pool = invalid_transactions(admin, chain_id, nonce, 500)
        answers: Counter[str] = Counter()
        sent: Counter[str] = Counter()
        loop = asyncio.get_running_loop()
        print("ready", flush=True)
        if (await loop.run_in_executor(None, wait_for)).strip() != "go":
            return {}

        async def client(i: int) -> None:
            session = sessions[i % len(sessions)]
            k = i * 37
            while True:
                kind, raw = pool[k % len(pool)]
                k += 1
                sent[kind] += 1
                try:
                    await session.submit(raw)
                    answers["accepted"] += 1  # an invalid transaction taken: a bug
                except ApiError as e:
                    answers[f"{e.status} {e.reason}"] += 1
                except (aiohttp.ClientError, OSError, TimeoutError) as e:
                    answers[f"error {type(e).__name__}"] += 1
                    await asyncio.sleep(0.01)

        started = time.perf_counter()
        tasks = [asyncio.create_task(client(i)) for i in range(connections)]
        await loop.run_in_executor(None, wait_for)  # "stop", or the parent went away
        elapsed = time.perf_counter() - started
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        total = sum(answers.values())
        errors = sum(v for k, v in answers.items() if k.startswith("error "))
        return {
            "connections": connections,
            "sent": sum(sent.values()),
            "sent_by_kind": dict(sent),
            "answered": total,
            "answered_per_s": round(total / elapsed, 1) if elapsed > 0 else 0.0,
            # an HTTP refusal (4xx/5xx with a reason); errors: the connection failed or closed
            "refused": total - errors - answers["accepted"],
            "errors": errors,
            "answers": dict(answers.most_common()),
            "accepted": answers["accepted"],
        }
    finally:
        for s in sessions:
            await s.close()


class FloodProcess:
    """The flooding clients in their own process: ``start`` returns once they are connected
    and holding their invalid transactions; ``go`` starts the flood, ``stop`` ends it and
    returns what the clients got back."""

    def __init__(self, cluster_dir: Path, chain_id: str, connections: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mdtp.node.ops.bench_attack",
                "flood-clients",
                str(cluster_dir),
                chain_id,
                str(connections),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _line(self, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            raise TimeoutError("the flooding clients did not answer")
        return self.proc.stdout.readline()

    def start(self, timeout_s: float = 60) -> None:
        line = self._line(timeout_s)
        if line.strip() != "ready":
            self.kill()
            raise RuntimeError(f"the flooding clients failed to start: {line!r}")

    def _tell(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def go(self) -> None:
        self._tell("go")

    def stop(self, timeout_s: float = 30) -> dict[str, Any]:
        self._tell("stop")
        try:
            line = self._line(timeout_s)
            self.proc.wait(timeout_s)
        finally:
            self.kill()
        doc: dict[str, Any] = json.loads(line)
        return doc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _flood_main(argv: list[str]) -> int:
    cluster_dir, chain_id, connections = Path(argv[0]), argv[1], int(argv[2])
    result = asyncio.run(_flood_clients(cluster_dir, chain_id, connections, sys.stdin.readline))
    print(json.dumps(result), flush=True)
    return 0


# -- the runs -------------------------------------------------------------------------------


def run_behaviour(
    behaviour: str,
    *,
    duration_s: float,
    clients: int = CLIENTS,
    flood_connections: int = FLOOD_CONNECTIONS,
    workdir: Path,
) -> dict[str, Any]:
    """One behaviour on a fresh 4-node cluster in ``workdir`` (stopped before returning)."""
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}; one of {', '.join(BEHAVIOURS)}")
    cluster.init_cluster(workdir, 4)
    attacker, switch = NODE_SWITCH.get(behaviour, (None, None))
    node_env = {attacker: {BYZANTINE_ENV: switch}} if attacker and switch else None
    flood: FloodProcess | None = None
    try:
        cluster.up(workdir, timeout_s=90, node_env=node_env)
        chain_id = json.loads((workdir / cluster.MANIFEST).read_text())["chain_id"]
        nodes = cluster.load_cluster(workdir)
        honest = [n for n in nodes if n.id != attacker]
        if behaviour == "flooding_clients":
            flood = FloodProcess(workdir, chain_id, flood_connections)
            flood.start()
        before: dict[str, dict[str, float]] = {}

        def timed_phase_starts() -> None:
            before.update({n.id: scrape(n) for n in honest})
            if flood is not None:
                flood.go()

        loop = asyncio.run(
            bench.closed_loop(
                workdir,
                chain_id,
                clients,
                duration_s,
                on_timed_phase=timed_phase_starts,
                # clients talk to honest members: what a Byzantine member does with its own
                # clients' transactions is beyond any protocol
                serving=[n.id for n in honest],
            )
        )
        flood_result = flood.stop() if flood is not None else None
        after = {n.id: scrape(n) for n in honest}
        result: dict[str, Any] = {
            **loop,
            "byzantine": f"{attacker} ({switch})" if attacker else None,
            **summarise_metrics({n: _delta(before[n], after[n]) for n in after}),
        }
        if flood_result is not None:
            result["flood_clients"] = flood_result
        return result
    finally:
        if flood is not None:
            flood.kill()
        cluster.down(workdir)


def run_attack_bench(
    *,
    quick: bool,
    duration_s: float | None = None,
    behaviours: tuple[str, ...] = BEHAVIOURS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    duration = duration_s if duration_s is not None else (8.0 if quick else 30.0)
    root = Path(tempfile.mkdtemp(prefix="mdtp-bench-attack-"))
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "nodes": 4},
        "clients": CLIENTS,
        "duration_s_per_behaviour": duration,
        "byzantine_members": {
            b: f"{m} ({ROLES[m]}), MDTP_TEST_BYZANTINE={s}" for b, (m, s) in NODE_SWITCH.items()
        },
        "behaviours": {},
    }
    try:
        for behaviour in behaviours:
            if progress is not None:
                progress(f"{behaviour}: fresh 4-node cluster, {CLIENTS} clients, {duration:g} s")
            results["behaviours"][behaviour] = run_behaviour(
                behaviour, duration_s=duration, workdir=root / behaviour
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = results["behaviours"].get("fault_free", {}).get("tx_per_s")
    for r in results["behaviours"].values():
        r["fraction_of_fault_free"] = round(r["tx_per_s"] / base, 3) if base else None
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{CLIENTS} clients, {results['duration_s_per_behaviour']:g} s per behaviour, "
        "a fresh 4-node cluster each"
    )
    for behaviour, who in results["byzantine_members"].items():
        print(f"  {behaviour}: {who}")
    print(
        f"{'behaviour':<18} {'tx/s':>8} {'fraction':>9} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'views':>6} {'refused':>9}"
    )
    for name, r in results["behaviours"].items():
        refused = r["consensus_refused"]
        if "flood_clients" in r:
            refused = r["flood_clients"]["refused"]
        print(
            f"{name:<18} {r['tx_per_s']:>8} {r['fraction_of_fault_free']!s:>9} "
            f"{r['latency_ms_p50']:>9} {r['latency_ms_p99']:>9} {r['view_changes_max']:>6} "
            f"{refused:>9}"
        )
    print(
        "views: view changes at the honest nodes (most at any one); refused: consensus frames "
        "and messages the honest nodes dropped or rejected (for flooding_clients: invalid "
        "transactions refused to the flooders by an HTTP answer)"
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "flood-clients":
        sys.exit(_flood_main(sys.argv[2:]))
    sys.exit("usage: python -m mdtp.node.ops.bench_attack flood-clients DIR CHAIN_ID N")
