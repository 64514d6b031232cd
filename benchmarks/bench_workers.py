"""Parallel efficiency of ``--workers``: wall-clock trials per second for each number of workers.

Run with ``python benchmarks/bench_workers.py [--workers 1 2 [16 ...]] [--trials N]
[--designs ...] [--scenario S1] [--repeats R]``. Each number of workers simulates the same
trials (every design under the scenario, :func:`theradose.simulation.simulate`, pool start-up
included) and the table gives

- trials/s: design × scenario trials per second of wall-clock time;
- speed-up: trials/s over the 1-worker figure of the same call;
- efficiency: speed-up / workers (1.0 = perfect scaling).

The kernels run with one BLAS/OpenMP thread per process (:func:`theradose.simulation.simulate`
limits them with threadpoolctl); ``--blas-threads N`` lifts that limit to N threads in every
process instead, to show what unlimited threads cost. The last line says whether every run gave
bit-identical results (it must: results do not depend on the number of workers). Default
trials: 4 chunks of 10,000 per worker of the largest count, so that every worker has work
throughout. Not a test: numbers go in docs/speed.md. On a 16-core machine::

    python benchmarks/bench_workers.py --workers 1 2 4 8 16 --designs designs/crm.toml
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from theradose import simulation
from theradose.config import load_design, load_scenarios
from theradose.limits import cpu_count
from theradose.results import OperatingCharacteristics

ROOT = Path(__file__).resolve().parents[1]


def _fingerprint(sims) -> str:
    return repr([OperatingCharacteristics.from_simulations(s).values for row in sims for s in row])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=None, help="per design (default: 4 chunks "
                        "per worker of the largest --workers)")  # fmt: skip
    parser.add_argument(
        "--designs",
        nargs="+",
        default=[str(ROOT / "designs" / "boin.toml"), str(ROOT / "designs" / "crm.toml")],
    )
    parser.add_argument("--scenarios", default=str(ROOT / "designs" / "scenarios.toml"))
    parser.add_argument("--scenario", default="S1", help="scenario name to run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="best of R runs per worker count")
    parser.add_argument(
        "--blas-threads", type=int, default=None, help="lift the one-thread limit to N threads"
    )
    args = parser.parse_args()

    workers = sorted(set(args.workers) | {1})
    trials = args.trials or 4 * simulation.CHUNK_TRIALS * max(workers)
    designs = [load_design(p) for p in args.designs]
    scenarios = [s for s in load_scenarios(args.scenarios) if s.name == args.scenario]
    if args.blas_threads is not None:
        simulation.KERNEL_THREADS = args.blas_threads
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(
        f"{cpu_count()} CPUs, load average {load[0]:.2f} before the runs; "
        f"{', '.join(d.name for d in designs)} under {args.scenario}: {trials:,} trials each; "
        f"kernel threads per process: {simulation.KERNEL_THREADS}"
    )
    print(f"{'workers':>7} {'seconds':>8} {'trials/s':>10} {'speed-up':>8} {'efficiency':>10}")
    baseline = None
    fingerprints = set()
    total = trials * len(designs) * len(scenarios)
    for n in workers:
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            sims = simulation.simulate(designs, scenarios, trials, args.seed, workers=n)
            best = min(best, time.perf_counter() - start)
            fingerprints.add(_fingerprint(sims))
        rate = total / best
        baseline = baseline or rate
        speedup = rate / baseline
        print(f"{n:>7} {best:>8.2f} {rate:>10,.0f} {speedup:>8.2f} {speedup / n:>10.2f}")
    print(f"results identical for every number of workers: {len(fingerprints) == 1}")


if __name__ == "__main__":
    main()
