"""The long fault profile: scenarios and crash-point rounds on one real cluster, in a
seeded random order, until the time is up; prints every scenario run and every violation.

    python -m tests.faults.long --duration 3600 [--seed 7] [--dir DIR] [--nodes 4]

Exit status 0 when no invariant was violated, 1 otherwise. The cluster directory (node
logs in DIR/nodeI/node.log) is kept when there were violations.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.faults.crashloop import crash_loop
from tests.faults.runner import FaultCluster, run_scenario, shuffled


async def _run(fc: FaultCluster, duration_s: float, seed: int) -> tuple[int, list[str]]:
    deadline = time.monotonic() + duration_s
    ran, round_ = 0, 0
    violations: list[str] = []
    while time.monotonic() < deadline:
        for sc in shuffled(seed + round_):
            if time.monotonic() >= deadline:
                break
            outcome = await run_scenario(fc, sc)
            ran += 1
            status = "ok" if not outcome.violations else f"{len(outcome.violations)} VIOLATIONS"
            print(
                f"[{ran:4d}] {sc.name}: {outcome.acked} acked, height {outcome.height}, "
                f"{outcome.duration_s:.1f} s, {status}",
                flush=True,
            )
            for v in outcome.violations:
                print(f"       {v}", flush=True)
            violations += outcome.violations
        if time.monotonic() < deadline:
            victim = fc.nodes[round_ % fc.n]
            report = await crash_loop(fc, victim, n_min=8, n_max=8, want=set())
            ran += report.rounds
            fc.checker.violations.clear()  # crash_loop reports them; do not count twice
            print(
                f"[{ran:4d}] crash-point loop on {victim.id}: {report.rounds} rounds, "
                f"reached {sorted(set(report.reached.values()))}, "
                f"{len(report.violations)} violations",
                flush=True,
            )
            for v in report.violations:
                print(f"       {v}", flush=True)
            violations += report.violations
        round_ += 1
    return ran, violations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, required=True, help="seconds to run")
    parser.add_argument("--seed", type=int, default=1, help="scenario order seed")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None, help="cluster directory (new)")
    args = parser.parse_args(argv)
    base = args.dir or Path(tempfile.mkdtemp(prefix="mdtp-faults-")) / "cluster"
    fc = FaultCluster(base, args.nodes)
    fc.create()
    print(f"cluster in {base}, seed {args.seed}, {args.duration:g} s", flush=True)
    ran, violations = 0, list[str]()
    try:
        fc.start_all()
        ran, violations = asyncio.run(_run(fc, args.duration, args.seed))
        asyncio.run(fc.checker.check_acked([n.api for n in fc.nodes], full=True))
        violations += fc.checker.violations
    finally:
        fc.close()
    print(
        f"{ran} scenarios run, {len(fc.checker.acked)} transactions acknowledged, "
        f"{len(violations)} violations"
    )
    if violations:
        print(f"logs kept in {base}")
        return 1
    if args.dir is None:
        shutil.rmtree(base.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
