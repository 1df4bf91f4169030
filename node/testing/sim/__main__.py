"""``python -m mdtp.node.testing.sim``: seeded simulations of the node's real chain code.

Every failing seed is printed with the command that replays it exactly.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from mdtp.node.testing.sim.reconfig import RECONFIG_FAULTS, run_reconfig_job
from mdtp.node.testing.sim.scenario import (
    SimResult,
    parse_faults,
    run_censorship_control,
    run_job,
    run_twins_control,
)


def replay_command(result: SimResult, faults_arg: str) -> str:
    if result.mix.startswith("reconfig"):
        return f"python -m mdtp.node.testing.sim --reconfig --seed {result.seed}"
    return (
        f"python -m mdtp.node.testing.sim --nodes {result.nodes} --faults {faults_arg} "
        f"--seed {result.seed}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdtp.node.testing.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="replay this one seed and print its details")
    parser.add_argument("--nodes", type=int, default=4, help="consortium size (4 or 7, ...)")
    parser.add_argument("--faults", default="all", help="comma list, 'all' or 'none'")
    parser.add_argument("--workers", type=int, default=1, help="processes in parallel")
    parser.add_argument(
        "--control",
        action="store_true",
        help="f+1 twins, and a censoring primary with the request timer off: the checker must "
        "report both (exit 1)",
    )
    parser.add_argument(
        "--reconfig",
        action="store_true",
        help="membership changes (a follower joins, a member leaves) under loss, duplication, "
        "delay, reordering, a crash and a Byzantine member (--nodes and --faults ignored)",
    )
    parser.add_argument("--verbose", action="store_true", help="the nodes' own log lines too")
    args = parser.parse_args(argv)
    # a Byzantine run makes honest nodes log evidence and refusals by the thousand
    logging.getLogger("mdtp").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    try:
        faults = parse_faults(args.faults)
    except ValueError as e:
        parser.error(str(e))
    if args.control:
        caught = 0
        for result in (run_twins_control(), run_censorship_control()):
            print(f"control ({result.mix}): {'; '.join(result.violations[:2]) or 'NO VIOLATION'}")
            caught += bool(result.violations)
        return 1 if caught == 2 else 0
    seeds = (
        [args.seed] if args.seed is not None else list(range(args.first, args.first + args.seeds))
    )
    if args.reconfig:
        faults, args.faults = frozenset(RECONFIG_FAULTS), ",".join(RECONFIG_FAULTS)
    jobs = [(seed, args.nodes, faults) for seed in seeds]
    job = run_reconfig_job if args.reconfig else run_job
    started = time.monotonic()
    if args.workers > 1:
        spawn = multiprocessing.get_context("spawn")  # never fork a process that has threads
        with ProcessPoolExecutor(args.workers, mp_context=spawn) as pool:
            results = list(pool.map(job, jobs))
    else:
        results = [job(j) for j in jobs]
    elapsed = time.monotonic() - started
    failed = [r for r in results if not r.ok]
    for r in results if args.seed is not None else failed:
        print(
            f"seed {r.seed} ({r.mix or 'no faults'}): heights {r.heights}, "
            f"{r.committed_txs} txs committed, {r.messages} messages"
        )
        for v in r.violations:
            print(f"  VIOLATION {v}")
        if not r.ok:
            print(f"  replay: {replay_command(r, args.faults)}")
    print(
        f"{len(results)} seeds, {len(failed)} with violations "
        f"({len(results) / elapsed:.1f} seeds/s, n={args.nodes}, {args.workers} worker(s))"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
