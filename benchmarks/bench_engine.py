"""Engine throughput: simulated trials per second of engine time on one core (one BLAS/OpenMP
thread, as ``simulate`` runs each chunk: :func:`theradose.simulation.kernel_threads`).

Run with ``make bench`` or ``python benchmarks/bench_engine.py [--trials N] [--designs ...]``.
Prints trials/s per design and scenario and the peak resident memory of the process. Not a test:
numbers go in docs/speed.md. The model-based designs are slower; give them fewer trials::

    python benchmarks/bench_engine.py --trials 20000 --designs designs/blrm.toml designs/ewoc.toml

``--set KEY=VALUE`` changes a key of every design file (TOML syntax, dotted keys for tables), for
instance the BLRM with the vague prior of issue 14::

    python benchmarks/bench_engine.py --trials 20000 --designs designs/blrm.toml \\
        --set 'blrm.prior_sd=[2.0, 1.0]'

Designs with timing (TITE-CRM, TITE-BOIN) run under ``--timed-scenario`` when it is given (from
``--timed-scenarios``, late-onset toxicity by default), the others under ``--scenario``::

    python benchmarks/bench_engine.py --trials 20000 --designs designs/tite_crm.toml \\
        --timed-scenario S1-late
"""

from __future__ import annotations

import argparse
import copy
import resource
import time
import tomllib
from pathlib import Path

from theradose.config import design_from_dict, load_scenarios
from theradose.scenario import truth_for
from theradose.simulation import chunk_sizes, kernel_threads, run_chunk
from theradose.validation import read_toml
from theradose.virtual_patients import chunk_patients

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    parser.add_argument(
        "--timed-scenarios", default=str(ROOT / "designs" / "late_onset.toml")
    )
    parser.add_argument(
        "--timed-scenario",
        default=None,
        help="scenario for designs with timing (default: --scenario from --scenarios)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a key of every design (TOML value; dotted key for a table), repeatable",
    )
    args = parser.parse_args()

    scenario = _scenario(args.scenarios, args.scenario)
    timed = _scenario(args.timed_scenarios, args.timed_scenario) if args.timed_scenario else None
    with kernel_threads():
        _run(args.designs, scenario, timed, args.trials, args.set)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mib:,.0f} MiB")


def _scenario(path: str, name: str):
    found = [s for s in load_scenarios(path) if s.name == name]
    if not found:
        raise SystemExit(f"no scenario {name!r} in {path}")
    return found[0]


def with_settings(data: dict, settings: list[str]) -> dict:
    """The design file's contents with each ``KEY=VALUE`` of ``--set`` applied."""
    data = copy.deepcopy(data)
    for setting in settings:
        key, _, value = setting.partition("=")
        *tables, name = key.strip().split(".")
        table = data
        for part in tables:
            table = table.setdefault(part, {})
        table[name] = tomllib.loads(f"v = {value}")["v"]
    return data


def _run(paths, scenario, timed_scenario, trials: int, settings: list[str]) -> None:
    for path in paths:
        design = design_from_dict(with_settings(read_toml(path), settings), path)
        timed = design.timing is not None
        run_scenario = timed_scenario if timed and timed_scenario is not None else scenario
        start = time.perf_counter()
        truth = truth_for(run_scenario, design)  # once per run, not per trial
        truth_seconds = time.perf_counter() - start
        warm_up = chunk_patients(0, 0, 1_000, design.max_patients, timed)
        run_chunk(design, run_scenario, warm_up, truth)
        engine_seconds = 0.0
        n_done = 0
        for chunk, size in enumerate(chunk_sizes(trials)):
            patients = chunk_patients(1, chunk, size, design.max_patients, timed)
            start = time.perf_counter()
            run_chunk(design, run_scenario, patients, truth)
            engine_seconds += time.perf_counter() - start
            n_done += size
        changed = f" [{', '.join(settings)}]" if settings else ""
        print(
            f"{design.name + changed:<40} {run_scenario.name:<14} {design.n_levels} levels, "
            f"{design.max_patients} patients: {n_done:>9,} trials in {engine_seconds:6.2f} s "
            f"of engine time = {n_done / engine_seconds:>9,.0f} trials/s "
            f"(truths {truth_seconds:.2f} s, once)"
        )


if __name__ == "__main__":
    main()
