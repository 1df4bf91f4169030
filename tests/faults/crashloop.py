"""The crash-point loop: ``MDTP_CRASH_AT=N`` for N = 1, 2, ... on one node under load.

Each round starts the victim with ``MDTP_CRASH_AT=N`` (so it first recovers from the
previous round's crash), drives a workload through the other nodes until the victim exits
with code 86 at its Nth crash point, then — with the process dead — opens its LevelDB store
directly and proves it consistent: ``BlockStore.check(deep=True)`` passes, and every block
record it holds has the hash and state root the live nodes have at that height. After the
last round the victim starts normally and must catch up; then every invariant is checked.

The crash-point names reached are read from the victim's log ("crash point N reached:
NAME"), so the loop covers whatever crash points exist when it runs (consensus-state
persist and block commit batch today; chunk writes once the chunk store calls
``crash_point`` and the workload writes chunks).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

from mdtp.node.ops.cluster import ClusterNode
from mdtp.storage.blockstore import BlockStore
from mdtp.storage.errors import StorageError
from tests.faults.runner import LAG_BOUND, RECOVERY_TIMEOUT_S, FaultCluster
from tests.support.workload import Workload

CRASH_EXIT_CODE = 86
_REACHED = re.compile(r"crash point (\d+) reached: (.+)$")
ROUND_TIMEOUT_S = 90.0


@dataclass
class CrashReport:
    rounds: int = 0
    reached: dict[int, str] = field(default_factory=dict)  # N -> crash point name
    violations: list[str] = field(default_factory=list)


def reached_names(node: ClusterNode) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in node.log_file.read_text(errors="replace").splitlines():
        m = _REACHED.search(line)
        if m:
            out[int(m.group(1))] = m.group(2).strip()
    return out


async def _offline_store_check(fc: FaultCluster, victim: ClusterNode, n: int) -> list[str]:
    """The dead victim's store is whole and agrees with the live chain."""
    problems: list[str] = []
    try:
        store = BlockStore(victim.home / "data" / "ledger")
    except StorageError as e:
        return [f"N={n}: store does not open after the crash: {e}"]
    try:
        tip = store.check(deep=True)
        records = {h: store.record(h) for h in range(1, tip + 1)}
    except StorageError as e:
        return [f"N={n}: store inconsistent after the crash: {e}"]
    finally:
        store.close()
    live = [n_.api for n_ in fc.nodes if n_ is not victim]
    await fc.checker.check_chains(live)
    known = fc.checker.known_chain
    for h, rec in records.items():
        if rec is None:
            problems.append(f"N={n}: no record at height {h} <= tip {tip}")
        elif h <= len(known) and (rec.hash.hex(), rec.state_root.hex()) != known[h - 1]:
            problems.append(f"N={n}: crashed store has another block or root at height {h}")
    return problems


async def crash_loop(
    fc: FaultCluster, victim: ClusterNode, *, n_min: int, n_max: int, want: set[str]
) -> CrashReport:
    """Rounds N = 1.. until at least ``n_min`` rounds ran and every name in ``want`` was
    reached, or ``n_max`` rounds."""
    report = CrashReport()
    others = [n.api for n in fc.nodes if n is not victim]
    await asyncio.to_thread(fc.stop, victim)
    for n in range(1, n_max + 1):
        if n > n_min and want <= set(report.reached.values()):
            break
        fc.start(victim, {"MDTP_CRASH_AT": str(n)})
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        code = None
        while code is None and time.monotonic() < deadline:
            w = Workload(fc.dir, senders=2)
            await w.run_closed_loop(2, alive=others)
            fc.checker.record_acked(w.acked)
            report.violations += [f"N={n}: workload: {e}" for e in w.errors]
            code = fc.exit_code(victim, 0.1)
        report.rounds += 1
        if code != CRASH_EXIT_CODE:
            report.violations.append(f"N={n}: victim exit code {code}, expected {CRASH_EXIT_CODE}")
            await asyncio.to_thread(fc.kill9, victim)
        names = reached_names(victim)
        # the log accumulates over rounds; the newest line for this N is this round's
        if n in names:
            report.reached[n] = names[n]
        report.violations += await _offline_store_check(fc, victim, n)
    fc.start(victim)
    await asyncio.to_thread(fc.wait_ready, victim)
    try:
        await fc.wait_within(LAG_BOUND, RECOVERY_TIMEOUT_S, "crash loop recovery")
        w = Workload(fc.dir, senders=2)
        await w.run_closed_loop(2)  # now through every node, the victim included
        fc.checker.record_acked(w.acked)
        await fc.wait_within(0, RECOVERY_TIMEOUT_S, "crash loop convergence")
    except TimeoutError as e:
        report.violations.append(str(e))
    await fc.checker.check_acked([n.api for n in fc.nodes], full=True)
    await fc.checker.check_no_evidence([n.api for n in fc.nodes])
    report.violations += fc.checker.violations
    if fc.sampler is not None:
        fc.sampler.sample_once()
        report.violations += fc.sampler.violations
    return report
