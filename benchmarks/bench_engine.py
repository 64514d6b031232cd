"""Engine throughput: simulated trials per second of engine time on one core (one BLAS/OpenMP
thread, as ``simulate`` runs each chunk: :func:`theradose.simulation.kernel_threads`).

Run with ``make bench`` or ``python benchmarks/bench_engine.py [--trials N] [--designs ...]``.
Prints trials/s per design and scenario and the peak resident memory of the process. Not a test:
numbers go in the README. The model-based designs are slower; give them fewer trials::

    python benchmarks/bench_engine.py --trials 20000 --designs designs/blrm.toml designs/ewoc.toml
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from theradose.config import load_design, load_scenarios
from theradose.scenario import truth_for
from theradose.simulation import chunk_sizes, kernel_threads, run_chunk
from theradose.virtual_patients import chunk_patients

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
    args = parser.parse_args()

    scenarios = [s for s in load_scenarios(args.scenarios) if s.name == args.scenario]
    with kernel_threads():
        _run(args.designs, scenarios[0], args.trials)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mib:,.0f} MiB")


def _run(paths, scenario, trials: int) -> None:
    for path in paths:
        design = load_design(path)
        start = time.perf_counter()
        truth = truth_for(scenario, design)  # once per run, not per trial
        truth_seconds = time.perf_counter() - start
        timed = design.timing is not None
        run_chunk(design, scenario, chunk_patients(0, 0, 1_000, design.max_patients, timed), truth)
        engine_seconds = 0.0
        n_done = 0
        for chunk, size in enumerate(chunk_sizes(trials)):
            patients = chunk_patients(1, chunk, size, design.max_patients, timed)
            start = time.perf_counter()
            run_chunk(design, scenario, patients, truth)
            engine_seconds += time.perf_counter() - start
            n_done += size
        print(
            f"{design.name:<40} {scenario.name:<14} {design.n_levels} levels, "
            f"{design.max_patients} patients: {n_done:>9,} trials in {engine_seconds:6.2f} s "
            f"of engine time = {n_done / engine_seconds:>9,.0f} trials/s "
            f"(truths {truth_seconds:.2f} s, once)"
        )


if __name__ == "__main__":
    main()
