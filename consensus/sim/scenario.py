"""Seeded scenarios: one seed fixes the fault mix, the network, the clock and every
crash, so a failing run replays exactly from ``(seed, nodes, faults)``.

Timeline of a run: faults are active until ``heal_ms`` (random per seed); then the
network heals, crashed replicas restart, and within ``LIVENESS_BOUND_MS`` of simulated
time every honest replica must reach ``max honest height at heal + PROGRESS_BLOCKS``,
must have committed every transaction submitted before the heal (liveness for clients,
not just for the chain: a censoring primary fails it), and must be back in normal
operation (no honest replica left in a view change).  Byzantine replicas stay Byzantine
throughout.

Controls must be reported as violations: f+1 twins (agreement), and a censoring primary
against replicas whose request timer is switched off (transaction liveness).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from mdtp.consensus.config import ConsensusConfig
from mdtp.consensus.events import TimerKind
from mdtp.consensus.messages import Message, WireLimits, decode_message, encode_message
from mdtp.consensus.sim.byzantine import BEHAVIORS, Behavior
from mdtp.consensus.sim.checker import Checker
from mdtp.consensus.sim.crypto import SimKeys, make_tx, tx_client
from mdtp.consensus.sim.network import LinkFaults, Network
from mdtp.consensus.sim.node import SimNode
from mdtp.consensus.sim.rng import Rng

NETWORK_FAULTS = ("loss", "delay", "dup", "reorder", "partition", "mutate", "replay")
NODE_FAULTS = ("crash",)
BYZANTINE_FAULTS = (
    "equivocate",
    "reuse",
    "alter",
    "silent",
    "withhold",
    "twins",
    "censor-empty",
    "censor-own",
    "censor-client",
    "silent-after",
    "flood",
    "forge",
)
ALL_FAULTS = NETWORK_FAULTS + NODE_FAULTS + BYZANTINE_FAULTS

TICK_MS = 50
TXS_PER_TICK = 2
CLIENTS = 4  # submitted transactions cycle through these client numbers
PROGRESS_BLOCKS = 3
LIVENESS_BOUND_MS = 30_000
EVENTS_MAX = 3_000_000
FIXED_HEAL_MS = 1_500
DECODE_CACHE_MAX = 4_096

_DELIVER, _TIMER, _TICK, _OFFER, _CALL = range(5)


def sim_config(members: tuple[str, ...], me: str, request_timer: bool = True) -> ConsensusConfig:
    return ConsensusConfig(
        chain_id="sim",
        members=members,
        my_id=me,
        checkpoint_interval=4,
        window_size=8,
        pipeline_depth=2,
        timeout_ms_base=400,
        timeout_ms_cap=3_200,
        retransmit_interval_ms=250,
        state_transfer_timeout_ms=500,
        clock_skew_ms_max=1_000,
        block_txs_max=64,
        block_bytes_max=64 * 1024,
        message_bytes_max=4 * 1024 * 1024,
        future_bytes_per_sender_max=256 * 1024,
        checkpoint_horizon=32,
        # A commit takes well under a second here, even with the slowest links; a proposal
        # the network lost is offered again after IN_FLIGHT_MS (node.py): far below this.
        request_timer=request_timer,
        request_timeout_ms=5_000,
    )


@dataclass
class SimResult:
    seed: int
    nodes: int
    faults: tuple[str, ...]
    mix: str
    violations: list[str]
    heights: dict[str, int]
    messages: int
    max_view: int
    rejections: dict[str, int] = field(default_factory=dict)
    evidence: int = 0
    suspicions: dict[str, int] = field(default_factory=dict)  # honest replicas, by cause

    @property
    def ok(self) -> bool:
        return not self.violations


class Simulation:
    def __init__(
        self,
        seed: int,
        n: int,
        byzantine: dict[str, str],
        twins: set[str],
        request_timer: bool = True,
    ) -> None:
        self.seed = seed
        self.rng = Rng(seed)
        self.members = tuple(f"n{i}" for i in range(n))
        self.byzantine_ids = set(byzantine) | twins
        self.keys = SimKeys(self.members, seed)
        self.network = Network(self.rng.fork(1))
        self.now = 0
        self.queue: list[tuple[int, int, int, object]] = []
        self._seq = 0
        self.messages = 0
        self.submitted: dict[int, list[bytes]] = {0: []}
        self.submitted_at: dict[bytes, int] = {}
        self._uncommitted: dict[tuple[str, int], list[bytes]] = {}
        self._tx_seq = 0
        self._decode_cache: dict[bytes, Message] = {}
        self._limits = WireLimits.from_config(sim_config(self.members, self.members[0]))
        self.nodes: list[SimNode] = []
        self.by_id: dict[str, list[SimNode]] = {}
        honest = frozenset(m for m in self.members if m not in self.byzantine_ids)
        self.checker = Checker(sim_config(self.members, self.members[0]), self.keys.verify, honest)
        for member in self.members:
            copies = 2 if member in twins else 1
            for copy in range(copies):
                instance = member if copies == 1 else f"{member}#{copy}"
                config = sim_config(self.members, member, request_timer)
                behavior: Behavior | None = None
                if member in byzantine:
                    behavior = BEHAVIORS[byzantine[member]](config, self.keys.signer(member))
                node = SimNode(self, instance, config, self.keys, behavior, 0)
                self.nodes.append(node)
                self.by_id.setdefault(member, []).append(node)

    def is_byzantine(self, node_id: str) -> bool:
        return node_id in self.byzantine_ids

    # ------------------------------------------------------------------ plumbing

    def _push(self, at_ms: int, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (at_ms, self._seq, kind, payload))

    def schedule_timer(self, node: SimNode, kind: TimerKind, timer_id: int, at_ms: int) -> None:
        self._push(at_ms, _TIMER, (node, kind, timer_id))

    def schedule_offer(self, node: SimNode, at_ms: int) -> None:
        self._push(at_ms, _OFFER, node)

    def at(self, at_ms: int, call: Callable[[], None]) -> None:
        self._push(at_ms, _CALL, call)

    def decode(self, data: bytes) -> Message:
        # A broadcast shares one bytes object among receivers; messages are immutable,
        # so decoding it once is indistinguishable from decoding it per receiver.
        msg = self._decode_cache.get(data)
        if msg is None:
            msg = decode_message(data, self._limits)
            if len(self._decode_cache) >= DECODE_CACHE_MAX:
                self._decode_cache.clear()
            self._decode_cache[data] = msg
        return msg

    def transmit(self, src: SimNode, dst: str | None, msg: Message, now_ms: int) -> None:
        data = encode_message(msg)
        targets = [m for m in self.members if m != src.node_id] if dst is None else [dst]
        for target in targets:
            for node in self.by_id.get(target, []):
                if node is src:
                    continue
                for at_ms, frame in self.network.plan(src.instance, node.instance, data, now_ms):
                    self.messages += 1
                    self._push(at_ms, _DELIVER, (node, frame))

    def submit(self, stream: int, count: int) -> None:
        pool = self.submitted.setdefault(stream, [])
        for _ in range(count):
            self._tx_seq += 1
            tx = make_tx(stream * CLIENTS + self._tx_seq % CLIENTS, self._tx_seq)
            pool.append(tx)
            self.submitted_at[tx] = self.now

    # ------------------------------------------------------------------ running

    def run_until(self, end_ms: int, stop: Callable[[], bool] | None = None) -> None:
        events = 0
        next_check = self.now
        while self.queue and self.queue[0][0] <= end_ms:
            at_ms, _, kind, payload = heapq.heappop(self.queue)
            self.now = at_ms
            events += 1
            if events > EVENTS_MAX:
                self.checker.violation("simulation exceeded its event budget")
                return
            if kind == _DELIVER:
                target, frame = cast(tuple[SimNode, bytes], payload)
                target.on_frame(frame, at_ms)
            elif kind == _TIMER:
                owner, timer_kind, timer_id = cast(tuple[SimNode, TimerKind, int], payload)
                owner.on_timer(timer_kind, timer_id, at_ms)
            elif kind == _OFFER:
                cast(SimNode, payload).offer_transactions(at_ms)
            elif kind == _TICK:
                self._tick(at_ms)
            else:
                assert callable(payload)
                payload()
            if stop is not None and at_ms >= next_check:
                next_check = at_ms + TICK_MS
                if stop():
                    return
        self.now = max(self.now, end_ms)

    def _tick(self, now_ms: int) -> None:
        for stream in sorted(self.submitted):
            self.submit(stream, TXS_PER_TICK)
        for node in self.nodes:
            node.on_tick(now_ms)
        self._push(now_ms + TICK_MS, _TICK, None)

    def start(self) -> None:
        for node in self.nodes:
            node.start(0)
        self._push(TICK_MS, _TICK, None)

    def honest_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes if n.honest]

    def uncommitted(self, node: SimNode, submitted_before_ms: int) -> list[bytes]:
        """Transactions submitted before ``submitted_before_ms`` that ``node`` has not
        committed, oldest first.  Checked every tick, so the answer is kept per node and
        only shrinks (a committed transaction stays committed)."""
        key = (node.instance, submitted_before_ms)
        pending = self._uncommitted.get(key)
        if pending is None:
            pending = [
                tx
                for pool in self.submitted.values()
                for tx in pool
                if self.submitted_at[tx] <= submitted_before_ms
            ]
        pending = [tx for tx in pending if tx not in node.committed_txs]
        self._uncommitted[key] = pending
        return pending


def choose_mix(rng: Rng, n: int, faults: frozenset[str]) -> tuple[dict[str, str], set[str], str]:
    """Which replicas are Byzantine and how; at most f ids in total."""
    f = (n - 1) // 3
    members = [f"n{i}" for i in range(n)]
    kinds = [k for k in BYZANTINE_FAULTS if k in faults]
    byzantine: dict[str, str] = {}
    twins: set[str] = set()
    if kinds:
        count = rng.randint(1, f)
        # The first primary is the most interesting liar; prefer it half of the time.
        pool = members if rng.chance(0.5) else members[1:] + members[:1]
        chosen = (
            pool[:1] + rng.shuffled(pool[1:])[: count - 1]
            if rng.chance(0.5)
            else rng.shuffled(members)[:count]
        )
        for member in chosen:
            kind = rng.choice(kinds)
            if kind == "twins":
                twins.add(member)
            else:
                byzantine[member] = kind
    mix = ",".join(f"{m}={k}" for m, k in sorted(byzantine.items()))
    mix += "".join(f",{m}=twins" for m in sorted(twins))
    return byzantine, twins, mix.strip(",")


def run_seed(seed: int, n: int, faults: frozenset[str]) -> SimResult:
    setup = Rng(seed * 1_000_003 + n)
    byzantine, twins, mix = choose_mix(setup, n, faults)
    sim = Simulation(seed, n, byzantine, twins)
    heal_ms = setup.randint(1_500, 3_000)
    link = LinkFaults(
        loss=setup.random() * 0.15 if "loss" in faults else 0.0,
        duplicate=setup.random() * 0.2 if "dup" in faults else 0.0,
        delay_ms_max=setup.randint(20, 120) if "delay" in faults else 20,
        slow=setup.random() * 0.1 if "reorder" in faults else 0.0,
        mutate=setup.random() * 0.05 if "mutate" in faults else 0.0,
        replay=setup.random() * 0.05 if "replay" in faults else 0.0,
    )
    sim.network.faults = link
    parts: list[str] = [mix] if mix else []
    if "partition" in faults and setup.chance(0.7):
        start = setup.randint(0, heal_ms // 2)
        end = setup.randint(start + 200, heal_ms)
        groups = {node.instance: setup.randint(0, 1) for node in sim.nodes}
        sim.at(start, lambda: sim.network.partition(groups))
        sim.at(end, lambda: sim.network.partition({}))
        parts.append(f"partition@{start}-{end}")
    crashed: list[SimNode] = []
    if "crash" in faults and setup.chance(0.7):
        f = (n - 1) // 3
        candidates = [node for node in sim.honest_nodes()]
        for node in setup.shuffled(candidates)[: setup.randint(1, f)]:
            down = setup.randint(0, heal_ms - 100)
            up = setup.randint(down + 50, heal_ms + 1_000)
            sim.at(down, node.crash)
            sim.at(up, lambda node=node: node.crashed and node.restart(sim.now))  # type: ignore[misc]
            crashed.append(node)
            parts.append(f"crash:{node.instance}@{down}-{up}")

    sim.start()
    sim.run_until(heal_ms)
    sim.network.heal()
    for node in crashed:
        if node.crashed:
            node.restart(sim.now)
    honest = sim.honest_nodes()
    target = max(node.height for node in honest) + PROGRESS_BLOCKS
    deadline = heal_ms + LIVENESS_BOUND_MS

    sim.run_until(deadline, lambda: _settled(sim, heal_ms, target))
    _check_liveness(sim, heal_ms, target)
    return _result(sim, seed, n, faults, "; ".join(parts))


def _settled(sim: Simulation, heal_ms: int, target: int) -> bool:
    """Every honest replica is at ``target``, committed every transaction submitted
    before the heal, and works in a view (none sits in a view change)."""
    if sim.checker.violations:
        return True
    honest = sim.honest_nodes()
    return all(
        node.height >= target
        and not node.replica.in_view_change
        and not sim.uncommitted(node, heal_ms)
        for node in honest
    )


def _check_liveness(sim: Simulation, heal_ms: int, target: int) -> None:
    honest = sim.honest_nodes()
    sim.checker.check_liveness({n.instance: n.height for n in honest}, target, LIVENESS_BOUND_MS)
    for node in honest:
        missing = sim.uncommitted(node, heal_ms)
        if missing:
            sim.checker.check_transactions(
                node.instance, len(missing), tx_client(missing[0]), LIVENESS_BOUND_MS
            )
    sim.checker.check_view_changes(
        {n.instance: (n.replica.in_view_change, n.replica.view) for n in honest},
        LIVENESS_BOUND_MS,
    )


def run_control(seed: int = 0) -> SimResult:
    """f+1 = 2 Byzantine ids out of 4 (two twin pairs), split so that each side holds a
    quorum of ids: the checker must report an agreement violation."""
    n = 4
    sim = Simulation(seed, n, {}, {"n0", "n1"})
    side_of = {"n0#0": 1, "n1#0": 1, "n2": 1, "n0#1": 2, "n1#1": 2, "n3": 2}
    for node in sim.nodes:
        node.stream = side_of[node.instance]
    sim.submitted = {1: [], 2: []}
    sim.network.partition(side_of)
    sim.start()
    sim.run_until(3_000, lambda: bool(sim.checker.violations))
    return _result(sim, seed, n, frozenset({"twins"}), "control: n0,n1=twins split 3/3")


def run_fixed(
    seed: int, n: int, byzantine: dict[str, str], request_timer: bool = True
) -> SimResult:
    """Named Byzantine behaviours at named replicas on a clean network (it heals at
    once): what a behaviour alone does to the liveness of clients."""
    sim = Simulation(seed, n, byzantine, set(), request_timer=request_timer)
    heal_ms = FIXED_HEAL_MS
    sim.start()
    sim.run_until(heal_ms)
    sim.network.heal()
    target = max(node.height for node in sim.honest_nodes()) + PROGRESS_BLOCKS
    sim.run_until(heal_ms + LIVENESS_BOUND_MS, lambda: _settled(sim, heal_ms, target))
    _check_liveness(sim, heal_ms, target)
    mix = ",".join(f"{m}={k}" for m, k in sorted(byzantine.items()))
    mix += "" if request_timer else "; request timer off"
    return _result(sim, seed, n, frozenset(byzantine.values()), mix)


def run_censorship_control(seed: int = 0) -> SimResult:
    """A primary that drops one client's transactions, against replicas built with the
    request timer switched off: the chain keeps growing, so only the checker's
    transaction liveness can tell, and it must."""
    return run_fixed(seed, 4, {"n0": "censor-client"}, request_timer=False)


def _result(sim: Simulation, seed: int, n: int, faults: frozenset[str], mix: str) -> SimResult:
    rejections: dict[str, int] = {}
    for node in sim.nodes:
        for reason, count in node.replica.rejections.items():
            rejections[reason] = rejections.get(reason, 0) + count
    suspicions: dict[str, int] = {}
    for node in sim.honest_nodes():
        for cause, count in node.replica.suspicions.items():
            suspicions[cause] = suspicions.get(cause, 0) + count
    return SimResult(
        suspicions=suspicions,
        seed=seed,
        nodes=n,
        faults=tuple(sorted(faults)),
        mix=mix,
        violations=list(sim.checker.violations),
        heights={node.instance: node.height for node in sim.nodes},
        messages=sim.messages,
        max_view=max(node.replica.view for node in sim.nodes),
        rejections=rejections,
        evidence=sum(node.evidence for node in sim.nodes),
    )


def parse_faults(text: str) -> frozenset[str]:
    if text in ("all", ""):
        return frozenset(ALL_FAULTS) if text == "all" else frozenset()
    chosen = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = chosen - set(ALL_FAULTS)
    if unknown:
        raise ValueError(f"unknown faults: {', '.join(sorted(unknown))}")
    return chosen
