"""Engine throughput: simulated trials per second of engine time on one core.

Run with ``make bench`` or ``python benchmarks/bench_engine.py [--trials N] [--designs ...]``.
Prints trials/s per design and scenario and the peak resident memory of the process. Not a test:
numbers go in the README.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from theradose.config import load_design, load_scenarios
from theradose.engine import simulate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=200_000)
    parser.add_argument(
        "--designs",
        nargs="+",
        default=[
            str(ROOT / "designs" / "boin.toml"),
            str(ROOT / "designs" / "three_plus_three.toml"),
        ],
    )
    parser.add_argument("--scenarios", default=str(ROOT / "designs" / "scenarios.toml"))
    parser.add_argument("--scenario", default="S1", help="scenario name to run")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    scenarios = [s for s in load_scenarios(args.scenarios) if s.name == args.scenario]
    for path in args.designs:
        design = load_design(path)
        simulate([design], scenarios, 2_000, seed=0)  # warm-up: imports, table construction
        start = time.perf_counter()
        sims = simulate([design], scenarios, args.trials, seed=1, workers=args.workers)
        elapsed = time.perf_counter() - start
        sim = sims[0][0]
        print(
            f"{design.name:<28} {scenarios[0].name:<4} {design.n_levels} levels, "
            f"{design.max_patients} patients: {args.trials:>10,} trials in {elapsed:7.2f} s = "
            f"{args.trials / elapsed:>10,.0f} trials/s ({args.workers} worker(s); "
            f"mean n {sim.total_n_sum / sim.n_trials:.1f})"
        )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
