"""Real-cluster fault runner: node processes on 127.0.0.1, a proxy on every directed link,
perturbations under a workload, and the invariants of :mod:`tests.faults.invariants`.

A :class:`FaultCluster` owns one cluster directory, its node processes (started with
``MDTP_P2P_DIAL`` pointing every peer at its link's proxy) and the proxies. A
:class:`Scenario` injects one fault, holds it for ``fault_s`` seconds while a closed-loop
workload submits transactions to the nodes it did not touch, heals it, and then
:func:`run_scenario` checks recovery and every invariant. ``SCENARIOS`` is the list the CI
profile and the long profile draw from.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdtp.node.identity.genesis import ConsensusParams
from mdtp.node.ops import cluster
from mdtp.node.ops.cluster import ClusterNode
from tests.faults.invariants import Checker, MetricSampler
from tests.faults.proxy import ProxyNet
from tests.support.workload import Workload, client

LAG_BOUND = 2  # blocks a healed node may trail the highest node by
RECOVERY_TIMEOUT_S = 120.0  # generous: the machine is shared and loaded
START_TIMEOUT_S = 90.0
PROBE_INTERVAL_S = 5.0
STOP_TIMEOUT_S = 30.0
# small checkpoint interval so that checkpoints, log garbage collection and state transfer
# all happen inside short scenarios; short idle timeout so black-holed links are noticed
PARAMS = ConsensusParams(checkpoint_interval=8, window=32, view_timeout_ms=2000)
NODE_CONFIG = {
    "p2p.idle_timeout_ms": 3000,
    "p2p.reconnect_backoff_ms_max": 1000,
    "p2p.handshake_timeout_ms": 3000,
}


class FaultCluster:
    def __init__(self, cluster_dir: Path, n: int = 4) -> None:
        self.dir = cluster_dir
        self.n = n
        self.nodes: list[ClusterNode] = []
        self.proxies = ProxyNet()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.node_env: dict[str, dict[str, str]] = {}
        self.paused: set[str] = set()
        self.sampler: MetricSampler | None = None
        self._probe: Workload | None = None  # registered once, probes lagging nodes
        self.checker = Checker(cluster_dir)

    # -- lifecycle ----------------------------------------------------------------------------

    def create(self) -> None:
        self.nodes = cluster.init_cluster(self.dir, self.n, params=PARAMS, extra_config=NODE_CONFIG)
        self.proxies.start()
        for a in self.nodes:
            for b in self.nodes:
                if a is not b:
                    self.proxies.add_link(a.id, b.id, b.p2p)

    def start_all(self, env: dict[str, dict[str, str]] | None = None) -> None:
        for node in self.nodes:
            self.start(node, (env or {}).get(node.id))
        for node in self.nodes:
            self.wait_ready(node)
        self.sampler = MetricSampler(self.nodes)
        self.sampler.start()

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        for node in self.nodes:
            if node.id in self.paused:
                self.resume(node)
            self.stop(node)
        self.proxies.close()

    def node(self, node_id: str) -> ClusterNode:
        return next(n for n in self.nodes if n.id == node_id)

    def env_for(self, node: ClusterNode) -> dict[str, str]:
        return {"MDTP_P2P_DIAL": self.proxies.dial_env(node.id)}

    def start(self, node: ClusterNode, extra_env: dict[str, str] | None = None) -> None:
        env = {**self.env_for(node), **(extra_env or {})}
        self.node_env[node.id] = extra_env or {}
        self.procs[node.id] = cluster.start_node(node, env)

    def wait_ready(self, node: ClusterNode, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not cluster.is_ready(node):
            proc = self.procs.get(node.id)
            if proc is not None and proc.poll() is not None:
                raise AssertionError(
                    f"{node.id} exited with {proc.returncode}:\n{cluster.log_tail(node, 30)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{node.id} not ready in {timeout_s} s")
            time.sleep(0.2)

    def alive(self, node: ClusterNode) -> bool:
        proc = self.procs.get(node.id)
        return proc is not None and proc.poll() is None

    def exit_code(self, node: ClusterNode, timeout_s: float) -> int | None:
        proc = self.procs.get(node.id)
        if proc is None:
            return None
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill9(self, node: ClusterNode) -> None:
        proc = self.procs[node.id]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT_S)
        self.paused.discard(node.id)

    def stop(self, node: ClusterNode) -> None:
        """SIGTERM and wait (a clean stop); kill -9 if it does not exit in time."""
        proc = self.procs.get(node.id)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill9(node)

    def pause(self, node: ClusterNode) -> None:
        os.kill(self.procs[node.id].pid, signal.SIGSTOP)
        self.paused.add(node.id)

    def resume(self, node: ClusterNode) -> None:
        os.kill(self.procs[node.id].pid, signal.SIGCONT)
        self.paused.discard(node.id)

    # -- links --------------------------------------------------------------------------------

    def links_of(self, node: ClusterNode) -> list[tuple[str, str]]:
        return [k for k in self.proxies.links if node.id in k]

    def isolate(self, node: ClusterNode, mode: str = "cut") -> None:
        self.proxies.set_mode(self.links_of(node), mode)

    def split(self, group: list[ClusterNode], mode: str = "cut") -> None:
        ids = {n.id for n in group}
        across = [(a, b) for (a, b) in self.proxies.links if (a in ids) != (b in ids)]
        self.proxies.set_mode(across, mode)

    def heal_links(self) -> None:
        self.proxies.heal()

    # -- observation --------------------------------------------------------------------------

    @property
    def ca(self) -> Path:
        return self.dir / "ca" / "ca.pem"

    async def status(self, node: ClusterNode) -> dict[str, Any] | None:
        try:
            async with client(self.dir, node.api, timeout_s=5) as c:
                return await c.status()
        except (OSError, TimeoutError, ValueError):
            return None

    async def primary(self) -> ClusterNode:
        """The primary of the highest view any node reports."""
        views: list[int] = [s["view"] for s in [await self.status(n) for n in self.nodes] if s]
        assert views, "no node answers"
        return self.nodes[max(views) % self.n]

    async def backup(self) -> ClusterNode:
        primary = await self.primary()
        return self.nodes[(self.nodes.index(primary) + 1) % self.n]

    async def heights(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for n in self.nodes:
            s = await self.status(n)
            out[n.id] = s["height"] if s else None
        return out

    async def wait_within(self, bound: int, timeout_s: float, what: str) -> dict[str, int | None]:
        """Heights of all nodes within ``bound`` of each other, or TimeoutError.

        A node that is behind in an *idle* cluster does not learn that it is (nothing new
        reaches it), so while someone lags, one probe transaction every
        ``PROBE_INTERVAL_S`` gives the cluster a new block to show it."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, int | None] = {}
        next_probe = time.monotonic() + PROBE_INTERVAL_S
        while time.monotonic() < deadline:
            last = await self.heights()
            values = [h for h in last.values() if h is not None]
            if len(values) == self.n and max(values) - min(values) <= bound:
                return last
            if time.monotonic() > next_probe and len(values) == self.n:
                if self._probe is None:  # one registered sender for every probe
                    self._probe = Workload(self.dir, senders=1)
                probe = self._probe
                await asyncio.wait_for(probe.run_closed_loop(1), RECOVERY_TIMEOUT_S)
                self.checker.record_acked(probe.acked)
                next_probe = time.monotonic() + PROBE_INTERVAL_S
            await asyncio.sleep(0.5)
        raise TimeoutError(f"{what}: heights {last} not within {bound} after {timeout_s} s")


@dataclass(frozen=True)
class Scenario:
    """One fault: ``inject`` returns the ids of the nodes it touched; ``heal`` undoes it."""

    name: str
    inject: Callable[[FaultCluster], Any]  # async: (fc) -> set[str]
    heal: Callable[[FaultCluster, set[str]], Any]  # async
    fault_s: float = 2.0
    txs_per_sender: int = 3
    senders: int = 3
    tags: frozenset[str] = field(default_factory=frozenset)


@dataclass
class Outcome:
    name: str
    acked: int
    height: int
    duration_s: float
    violations: list[str]


async def run_scenario(fc: FaultCluster, sc: Scenario) -> Outcome:
    """Inject, hold under load, heal, then check recovery and every invariant."""
    started = time.monotonic()
    before = len(fc.checker.violations)
    w = Workload(fc.dir, senders=sc.senders)
    await w.register()  # before the fault: the load runs while it lasts
    touched: set[str] = await sc.inject(fc)
    untouched = [n.api for n in fc.nodes if n.id not in touched]
    load = asyncio.create_task(w.run_closed_loop(sc.txs_per_sender, alive=untouched))
    await asyncio.sleep(sc.fault_s)
    await sc.heal(fc, touched)
    try:
        await fc.wait_within(LAG_BOUND, RECOVERY_TIMEOUT_S, f"{sc.name}: recovery")
    except TimeoutError as e:
        fc.checker.violation(str(e))
    try:
        await asyncio.wait_for(load, RECOVERY_TIMEOUT_S + 60)
    except TimeoutError:
        fc.checker.violation(f"{sc.name}: the workload did not finish after the fault healed")
    for err in w.errors:
        fc.checker.violation(f"{sc.name}: workload: {err}")
    fc.checker.record_acked(w.acked)
    apis = [n.api for n in fc.nodes]
    try:
        heights = await fc.wait_within(0, RECOVERY_TIMEOUT_S, f"{sc.name}: convergence")
    except TimeoutError as e:
        fc.checker.violation(str(e))
        heights = await fc.heights()
    await fc.checker.check_acked(apis)
    await fc.checker.check_no_evidence(apis)
    committed = {w.keys[i].account_id: w.nonces[i] for i in range(w.senders)}
    if not w.errors:
        await fc.checker.check_nonces(apis, committed)
    if fc.sampler is not None:
        fc.sampler.sample_once()
        fc.checker.violations.extend(fc.sampler.violations)
        fc.sampler.violations.clear()
    new = fc.checker.violations[before:]
    return Outcome(
        sc.name,
        len(w.acked),
        max(h for h in heights.values() if h is not None),
        time.monotonic() - started,
        [f"{sc.name}: {v}" for v in new],
    )


# -- the scenarios --------------------------------------------------------------------------


async def _nothing(fc: FaultCluster, touched: set[str]) -> None:
    pass


def _kill9(pick: str) -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        node = await _pick(fc, pick)
        fc.kill9(node)
        return {node.id}

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        for node_id in touched:
            fc.start(fc.node(node_id))

    return Scenario(f"kill -9 {pick}, restart", inject, heal, tags=frozenset({"crash"}))


def _clean_restart(pick: str) -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        node = await _pick(fc, pick)
        await asyncio.to_thread(fc.stop, node)
        return {node.id}

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        for node_id in touched:
            fc.start(fc.node(node_id))

    return Scenario(f"clean restart of {pick}", inject, heal, fault_s=2.0)


def _pause(pick: str, fault_s: float = 2.0) -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        node = await _pick(fc, pick)
        fc.pause(node)
        return {node.id}

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        for node_id in touched:
            fc.resume(fc.node(node_id))

    return Scenario(f"SIGSTOP {pick} {fault_s:g} s, SIGCONT", inject, heal, fault_s=fault_s)


def _isolate(pick: str, mode: str, fault_s: float = 2.0) -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        node = await _pick(fc, pick)
        fc.isolate(node, mode)
        return {node.id}

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        fc.heal_links()

    verb = {"cut": "cut all links of", "drop": "black-hole all links of"}[mode]
    return Scenario(f"{verb} {pick}", inject, heal, fault_s=fault_s)


def _split(pairing: str) -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        primary = await fc.primary()
        i = fc.nodes.index(primary)
        if pairing == "primary+next":
            group = [primary, fc.nodes[(i + 1) % fc.n]]
        else:
            group = [primary, fc.nodes[(i + 2) % fc.n]]
        fc.split(group)
        return set()  # neither half can commit; every node keeps its transactions

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        fc.heal_links()

    return Scenario(f"split in halves ({pairing} | rest)", inject, heal, fault_s=2.0)


def _delay(pick: str, delay_ms: int) -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        if pick == "all":
            fc.proxies.set_mode(None, "delay", delay_ms)
            return set()
        node = await _pick(fc, pick)
        fc.proxies.set_mode(fc.links_of(node), "delay", delay_ms)
        return set()  # slow, not failed: it keeps taking load

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        fc.heal_links()

    return Scenario(f"delay links of {pick} by {delay_ms} ms", inject, heal, fault_s=2.0)


def _one_way_cut() -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        primary = await fc.primary()
        others = [(primary.id, n.id) for n in fc.nodes if n is not primary]
        fc.proxies.set_mode(others[:2], "cut")  # the primary reaches only one backup
        return set()

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        fc.heal_links()

    return Scenario("cut two of the primary's outbound links", inject, heal, fault_s=2.0)


def _flapping() -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        node = await fc.backup()
        for _ in range(4):
            fc.isolate(node)
            await asyncio.sleep(0.5)
            fc.heal_links()
            await asyncio.sleep(0.5)
        fc.isolate(node)
        return {node.id}

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        fc.heal_links()

    return Scenario("flapping links of a backup", inject, heal, fault_s=1.0)


def _kill_all() -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        for node in fc.nodes:
            fc.kill9(node)
        return {n.id for n in fc.nodes}

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        for node in fc.nodes:
            fc.start(node)

    # nobody takes load while all are down: the workload starts on the restarted cluster
    return Scenario("kill -9 every node, restart all", inject, heal, fault_s=1.0)


def _kill_primary_twice() -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        first = await fc.primary()
        fc.kill9(first)
        return {first.id}

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        (first,) = touched
        fc.start(fc.node(first))
        await asyncio.to_thread(fc.wait_ready, fc.node(first))
        second = await fc.primary()
        if second.id != first:
            fc.kill9(second)
            await asyncio.sleep(2)
            fc.start(second)

    return Scenario("kill -9 the primary, then the next primary", inject, heal, fault_s=4.0)


def _pause_past_checkpoint() -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        node = await fc.backup()
        fc.pause(node)
        return {node.id}

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        for node_id in touched:
            fc.resume(fc.node(node_id))

    # enough transactions for a few checkpoints (interval 8): the paused node is then
    # behind the others' garbage-collected log and must catch up by state transfer
    return Scenario(
        "SIGSTOP a backup past two checkpoints", inject, heal, fault_s=4.0, txs_per_sender=6
    )


def _kill_and_isolate() -> Scenario:
    async def inject(fc: FaultCluster) -> set[str]:
        backup = await fc.backup()
        fc.kill9(backup)
        other = fc.nodes[(fc.nodes.index(backup) + 1) % fc.n]
        fc.isolate(other)
        return {backup.id, other.id}

    async def heal(fc: FaultCluster, touched: set[str]) -> None:
        fc.heal_links()
        for node_id in touched:
            node = fc.node(node_id)
            if not fc.alive(node):
                fc.start(node)

    # two faults with f = 1: no quorum until healed; safety must hold, liveness resume
    return Scenario("kill -9 one node and cut another (beyond f)", inject, heal, fault_s=2.0)


async def _pick(fc: FaultCluster, pick: str) -> ClusterNode:
    if pick == "primary":
        node: ClusterNode = await fc.primary()
        return node
    if pick == "backup":
        return await fc.backup()
    raise ValueError(pick)


SCENARIOS: list[Scenario] = [
    _kill9("backup"),
    _kill9("primary"),
    _pause("backup"),
    _pause("primary"),
    _clean_restart("backup"),
    _clean_restart("primary"),
    _isolate("backup", "cut"),
    _isolate("primary", "cut"),
    _isolate("backup", "drop"),
    _isolate("primary", "drop", fault_s=5.0),
    _split("primary+next"),
    _split("primary+opposite"),
    _delay("all", 50),
    _delay("primary", 200),
    _one_way_cut(),
    _flapping(),
    _kill_all(),
    _kill_primary_twice(),
    _pause_past_checkpoint(),
    _kill_and_isolate(),
]


def shuffled(seed: int) -> list[Scenario]:
    order = list(SCENARIOS)
    random.Random(seed).shuffle(order)
    return order
