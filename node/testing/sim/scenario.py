"""Seeded scenarios: a consortium of real nodes under network, disk, clock and Byzantine
faults, then a healed network; the checker judges safety *and* usefulness.

Invariants checked for every seed:

- agreement, contiguity and certificates of every committed block (``consensus.sim.checker``);
- liveness: after the network heals, every honest node reaches the target height and every
  transaction a client got accepted by an honest node commits on every honest node;
- every long-lived task of every honest node is alive (a dead task is a violation);
- readiness: at the end no honest node reports itself catching up, and none sits alone in a
  view change.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mdtp.consensus.sim.byzantine import BEHAVIORS
from mdtp.consensus.sim.network import LinkFaults
from mdtp.consensus.sim.rng import Rng
from mdtp.node.identity.genesis import ConsensusParams
from mdtp.node.testing.sim.loop import VirtualTimeLoop
from mdtp.node.testing.sim.world import CENSORS, SLOW_PRIMARY, DiskFaults, SimNode, SimWorld

BYZANTINE_FAULTS = (*sorted(set(BEHAVIORS) | set(CENSORS) | {SLOW_PRIMARY}), "twins")
NETWORK_FAULTS = ("loss", "dup", "delay", "reorder", "mutate", "replay", "partition")
NODE_FAULTS = ("crash", "slowdisk")
ALL_FAULTS = frozenset(NETWORK_FAULTS + NODE_FAULTS + BYZANTINE_FAULTS)
PROGRESS_BLOCKS = 3
LIVENESS_BOUND_MS = 60_000
SUBMIT_EVERY_MS = 150
RESEND_EVERY_TICKS = 20  # a client resends what has not committed after about 3 s


@dataclass
class SimResult:
    seed: int
    nodes: int
    faults: frozenset[str]
    mix: str
    violations: list[str] = field(default_factory=list)
    heights: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    committed_txs: int = 0
    virtual_ms: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


def choose_mix(rng: Rng, n: int, faults: frozenset[str]) -> tuple[dict[str, str], set[str], str]:
    """Which members are Byzantine and how; at most f of them."""
    f = (n - 1) // 3
    members = [f"n{i}" for i in range(n)]
    kinds = [k for k in BYZANTINE_FAULTS if k in faults]
    byzantine: dict[str, str] = {}
    twins: set[str] = set()
    if kinds:
        count = rng.randint(1, f)
        # The first primary is the most interesting liar; prefer it half of the time.
        chosen = (
            members[:1] + rng.shuffled(members[1:])[: count - 1]
            if rng.chance(0.5)
            else (rng.shuffled(members)[:count])
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


def run_seed(
    seed: int,
    n: int,
    faults: frozenset[str],
    *,
    byzantine: dict[str, str] | None = None,
    primary_checks: bool = True,
) -> SimResult:
    """One seeded run; ``byzantine`` (member -> behaviour) overrides the seed's choice."""
    setup = Rng(seed * 1_000_003 + n)
    chosen, twins, mix = choose_mix(setup, n, faults)
    if byzantine is not None:
        chosen, twins = byzantine, set()
        mix = ",".join(f"{m}={k}" for m, k in sorted(byzantine.items()))
    loop = VirtualTimeLoop()
    root = _scratch_dir()
    # odd seeds pipeline (block h commits to the root of h-2), even ones do not (the
    # default, h-1): both depths a genesis may choose are checked
    depth = 1 + seed % 2
    params = ConsensusParams(pipeline_depth=depth)
    world = SimWorld(
        seed, n, root, loop, chosen, twins, primary_checks=primary_checks, params=params
    )
    result = SimResult(seed, n, faults, f"{mix} depth={depth}".strip())
    try:
        loop.run_until_complete(_run(world, setup, faults, result))
    finally:
        _stop(world, loop)
        world.close()
        loop.close()
    result.violations = list(world.checker.violations)
    result.messages = world.messages
    return result


async def _run(world: SimWorld, setup: Rng, faults: frozenset[str], result: SimResult) -> None:
    heal_ms = setup.randint(2_000, 5_000)
    world.network.faults = LinkFaults(
        loss=setup.random() * 0.15 if "loss" in faults else 0.0,
        duplicate=setup.random() * 0.2 if "dup" in faults else 0.0,
        delay_ms_max=setup.randint(20, 120) if "delay" in faults else 20,
        slow=setup.random() * 0.1 if "reorder" in faults else 0.0,
        mutate=setup.random() * 0.05 if "mutate" in faults else 0.0,
        replay=setup.random() * 0.05 if "replay" in faults else 0.0,
    )
    parts: list[str] = [result.mix] if result.mix else []
    if "slowdisk" in faults:
        for node in world.nodes:
            if setup.chance(0.5):
                node.disk.faults = DiskFaults(latency_ms_max=3, slow=setup.random(), slow_ms=30)
                parts.append(f"slowdisk:{node.instance}")
    if "partition" in faults and setup.chance(0.7):
        start = setup.randint(0, heal_ms // 2)
        end = setup.randint(start + 200, heal_ms)
        groups = {node.instance: setup.randint(0, 1) for node in world.nodes}
        world.at(start, lambda: world.network.partition(groups))
        world.at(end, lambda: world.network.partition({}))
        parts.append(f"partition@{start}-{end}")
    crashed: list[SimNode] = []
    if "crash" in faults and setup.chance(0.7):
        f = (world.n - 1) // 3
        for node in setup.shuffled(world.honest_nodes())[: setup.randint(1, f)]:
            down = setup.randint(0, heal_ms - 100)
            up = setup.randint(down + 50, heal_ms + 1_000)
            world.at(down, node.crash)
            world.at(up, node.restart)
            crashed.append(node)
            parts.append(f"crash:{node.instance}@{down}-{up}")
    result.mix = "; ".join(parts)

    for node in world.nodes:
        node.start()
    submitting = True

    async def clients() -> None:
        ticks = 0
        while True:
            if submitting:
                world.submit_one()
            ticks += 1
            if ticks % RESEND_EVERY_TICKS == 0:
                world.resend_uncommitted()
            await asyncio.sleep(SUBMIT_EVERY_MS / 1000)

    world.spawn(clients())
    await asyncio.sleep(heal_ms / 1000)
    world.network.heal()
    for node in world.nodes:
        node.disk.faults = DiskFaults()
    for node in crashed:
        node.restart()
    await asyncio.sleep(1.0)
    submitting = False
    honest = world.honest_nodes()
    target = max(n.height for n in honest) + PROGRESS_BLOCKS
    deadline = world.now_ms + LIVENESS_BOUND_MS

    def settled() -> bool:
        return all(n.height >= target for n in honest) and all(
            world.committed_everywhere(s.tx_id) for s in world.submitted
        )

    # a little load keeps blocks coming until the target, as clients would
    while world.now_ms < deadline and not settled() and not world.checker.violations:
        world.submit_one()
        await asyncio.sleep(0.2)
    await asyncio.sleep(3.0)  # beacons and view timers settle
    _final_checks(world, target, heal_ms, result)
    result.virtual_ms = world.now_ms


def _final_checks(world: SimWorld, target: int, heal_ms: int, result: SimResult) -> None:
    checker = world.checker
    honest = world.honest_nodes()
    result.heights = {n.instance: n.height for n in world.nodes}
    checker.check_liveness({n.instance: n.height for n in honest}, target, LIVENESS_BOUND_MS)
    missing = [s for s in world.submitted if not world.committed_everywhere(s.tx_id)]
    for s in missing[:3]:
        checker.violation(
            f"censorship/liveness: tx {s.tx_id.hex()[:12]} sent at {s.at_ms} ms is not "
            "committed on every honest node"
        )
    late = [
        (s, world.committed_at[s.tx_id] - max(s.at_ms, heal_ms))
        for s in world.submitted
        if s.tx_id in world.committed_at
        and world.committed_at[s.tx_id] - max(s.at_ms, heal_ms) > LIVENESS_BOUND_MS
    ]
    for s, waited in late[:3]:
        checker.violation(
            f"censorship/liveness: tx {s.tx_id.hex()[:12]} sent at {s.at_ms} ms committed "
            f"{waited} ms after the network healed (bound {LIVENESS_BOUND_MS} ms)"
        )
    result.committed_txs = len(world.submitted) - len(missing)
    for n in honest:
        if not n.alive or n._parts is None:
            continue
        blamed = sorted({ev["offender"] for ev in n.driver.evidence} & world.honest)
        if blamed:
            # an honest replica never signs two conflicting messages
            checker.violation(f"equivocation: {n.instance} holds evidence against honest {blamed}")
    views = {n.instance: n.driver.replica.view for n in honest}
    for n in honest:
        if n.driver.lagging:
            checker.violation(f"readiness: {n.instance} still reports catching up")
        same = sum(1 for v in views.values() if v == views[n.instance])
        if n.driver.replica.in_view_change and same == 1:
            checker.violation(f"{n.instance} is alone in a view change (view {views[n.instance]})")


def _scratch_dir() -> Path:
    """Where the nodes' LevelDB stores live for one run (memory-backed where there is one)."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="mdtp-sim-", dir=shm if shm.is_dir() else None))


def _stop(world: SimWorld, loop: VirtualTimeLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def run_twins_control(seed: int = 0) -> SimResult:
    """f+1 = 2 Byzantine ids out of 4 (two twin pairs), split so that each side holds a quorum
    of ids: the checker must report an agreement violation."""
    loop = VirtualTimeLoop()
    world = SimWorld(seed, 4, _scratch_dir(), loop, {}, {"n0", "n1"})
    result = SimResult(seed, 4, frozenset({"twins"}), "control: n0,n1=twins split 3/3")
    side = {"n0#0": 1, "n1#0": 1, "n2": 1, "n0#1": 2, "n1#1": 2, "n3": 2}

    async def run() -> None:
        world.network.partition(side)
        for node in world.nodes:
            node.start()
        while world.now_ms < 20_000 and not world.checker.violations:
            world.submit_one()
            await asyncio.sleep(0.1)

    try:
        loop.run_until_complete(run())
    finally:
        _stop(world, loop)
        world.close()
        loop.close()
    result.violations = list(world.checker.violations)
    return result


def run_job(job: tuple[int, int, frozenset[str]]) -> SimResult:
    """``run_seed(seed, n, faults)`` for a process pool: a function of an importable module,
    since a spawned worker cannot find one defined in ``__main__``."""
    return run_seed(*job)


def run_censorship_control(seed: int = 0, n: int = 4) -> SimResult:
    """The first primary drops one client's transactions while blocks keep committing, and
    the request timer is switched off: the checker must report the censored transactions."""
    return run_seed(seed, n, frozenset(), byzantine={"n0": "censor-client"}, primary_checks=False)


def parse_faults(text: str) -> frozenset[str]:
    if text == "all":
        return ALL_FAULTS
    if text == "none":
        return frozenset()
    faults = frozenset(f.strip() for f in text.split(",") if f.strip())
    unknown = faults - ALL_FAULTS
    if unknown:
        raise ValueError(
            f"unknown fault(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(ALL_FAULTS))}"
        )
    return faults
