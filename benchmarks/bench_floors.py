"""Issue 14's speed floors: each measured on this machine and printed as met or not.

Run with ``python benchmarks/bench_floors.py [--rounds R] [--r-seconds NAME=S ...]``. Not a test:
the figures go in docs/speed.md.

Every figure is the throughput of chunk work — the engine and the reduction of its outcomes to the
operating characteristics' sufficient statistics, what a worker does with each chunk
(:func:`theradose.simulation.simulate_chunk`) — on one core with one BLAS/OpenMP thread, as each
chunk of a run has (:func:`theradose.simulation.kernel_threads`), in CPU seconds of this process
(``time.process_time``), so that other work on the machine slows the figures less than wall time
would; the best of ``--rounds`` rounds is kept, after 3 s of warm-up (:func:`warm_up`). Truths
are computed once, outside the timing, as ``simulate`` does. (Before 2026-11-28 the engine alone
was timed; the organ-dose records are now reduced in the engine, so the two parts are timed
together.)

The floors against R are ratios to the R packages' time per 1,000 trials, measured side by side
on this 2-core machine (R 4.2.2; BOIN 2.7.2 ``get.oc``, dfcrm 0.2-2.1 ``crmsim`` and ``titesim``,
on the same scenarios): R is not installed here, so those seconds are constants below, and
``--r-seconds get.oc=1.1`` replaces one after a new side-by-side run. The two-stage TITE-CRM is
compared in ``titesim``'s conventions (``designs/tite_crm_two_stage.toml``).

The constraint floor is the cost of organ-dose limits: chunk time of a design with its limits
over the same design without them, on the same virtual patients (the two pairs of
``benchmarks/bench_constraints.py``, which alternates the two chunk by chunk).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_constraints import (  # noqa: E402
    FIXED,
    kidney_only,
    no_dosimetry,
    no_limits,
    pair_seconds,
)
from bench_engine import with_settings  # noqa: E402

from theradose.config import design_from_dict, load_design, load_scenarios  # noqa: E402
from theradose.scenario import truth_for  # noqa: E402
from theradose.simulation import chunk_sizes, kernel_threads, simulate_chunk  # noqa: E402
from theradose.validation import read_toml  # noqa: E402
from theradose.virtual_patients import chunk_patients  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"

# R's seconds per 1,000 trials, side by side on this machine (issue 14).
R_SECONDS_PER_1000 = {"get.oc": 1.08, "crmsim": 9.7, "titesim": 24.9}


@dataclass(frozen=True)
class Throughput:
    """A design's floor in trials per second: ``ratio`` × the R function's rate, or a rate."""

    label: str
    design: Path
    scenario: str
    trials: int
    settings: tuple[str, ...] = ()
    r_function: str | None = None
    ratio: float | None = None
    rate: float | None = None

    def floor(self, r_seconds: dict[str, float]) -> float:
        if self.r_function is None:
            return self.rate
        return self.ratio * 1000.0 / r_seconds[self.r_function]


THROUGHPUT = (
    Throughput("BOIN", DESIGNS / "boin.toml", "S1", 200_000, r_function="get.oc", ratio=300),
    Throughput("CRM", DESIGNS / "crm.toml", "S1", 50_000, r_function="crmsim", ratio=300),
    Throughput(
        "two-stage TITE-CRM",
        DESIGNS / "tite_crm_two_stage.toml",
        "S1-late",
        10_000,
        r_function="titesim",
        ratio=100,
    ),
    Throughput(
        "BLRM, vague prior sd (2, 1)",
        DESIGNS / "blrm.toml",
        "S1",
        10_000,
        settings=("blrm.prior_sd=[2.0, 1.0]",),
        rate=10_000,
    ),
    Throughput("EWOC", DESIGNS / "ewoc.toml", "S1", 10_000, rate=5_000),
)
CONSTRAINT_FLOOR = 1.5


def _scenario(name: str):
    for path in ("scenarios.toml", "late_onset.toml", "dosimetry_scenarios.toml"):
        for scenario in load_scenarios(DESIGNS / path):
            if scenario.name == name:
                return scenario
    raise SystemExit(f"no scenario {name!r} in designs/")


def _chunk_seconds(design, scenario, truth, n_trials: int) -> float:
    """CPU seconds of chunk work for ``n_trials`` trials of one design (patients drawn
    untimed)."""
    timed = design.timing is not None
    seconds = 0.0
    for chunk, size in enumerate(chunk_sizes(n_trials)):
        patients = chunk_patients(1, chunk, size, design.max_patients, timed)
        start = time.process_time()
        simulate_chunk(design, scenario, patients, truth)
        seconds += time.process_time() - start
    return seconds


def throughput(case: Throughput, rounds: int) -> float:
    source = with_settings(read_toml(case.design), list(case.settings))
    design = design_from_dict(source, case.design)
    scenario = _scenario(case.scenario)
    truth = truth_for(scenario, design)
    timed = design.timing is not None
    simulate_chunk(design, scenario, chunk_patients(0, 0, 1_000, design.max_patients, timed), truth)
    best = min(_chunk_seconds(design, scenario, truth, case.trials) for _ in range(rounds))
    return case.trials / best


def warm_up(seconds: float = 3.0) -> None:
    """Keep the core busy with the first floor's design for ``seconds`` of CPU time before
    anything is timed: on this VM the first seconds after an idle spell ran 30% slower (BOIN
    244,000–251,000 trials/s in the first of two or three runs in a row, 360,000–377,000 in the
    others)."""
    start = time.process_time()
    while time.process_time() - start < seconds:
        throughput(THROUGHPUT[0], rounds=1)


def constraint_cost(pair, scenario, n_trials: int, rounds: int) -> float:
    """Chunk time with the limits over time without, the two alternating chunk by chunk on the
    same patients; the best round's ratio."""
    ratios = []
    for _ in range(rounds):
        without, with_limits = pair_seconds(pair, scenario, n_trials, time.process_time)
        ratios.append(with_limits / without)
    return min(ratios)


def _r_seconds(overrides: list[str]) -> dict[str, float]:
    seconds = dict(R_SECONDS_PER_1000)
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in seconds:
            raise SystemExit(f"--r-seconds {item}: name one of {', '.join(seconds)}")
        seconds[name] = float(value)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    parser.add_argument(
        "--r-seconds",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="R's seconds per 1,000 trials (get.oc, crmsim, titesim), from a side-by-side run",
    )
    args = parser.parse_args()
    r_seconds = _r_seconds(args.r_seconds)
    rows = []
    with kernel_threads():
        warm_up()
        for case in THROUGHPUT:
            rate = throughput(case, args.rounds)
            floor = case.floor(r_seconds)
            if case.r_function is None:
                wanted = f"≥ {floor:,.0f} trials/s"
            else:
                ratio = rate * r_seconds[case.r_function] / 1000.0
                wanted = f"≥ {case.ratio:.0f}× {case.r_function} (now {ratio:,.0f}×)"
            rows.append((case.label, f"{rate:,.0f} trials/s", wanted, rate >= floor))
        ntcp = {s.name: s for s in load_scenarios(DESIGNS / "dosimetry_scenarios.toml")}
        pairs = (
            ("kidney limit vs no dosimetry", (no_dosimetry(), kidney_only()), FIXED),
            (
                "3 limits + capping vs none, NTCP patients",
                (no_limits(), load_design(DESIGNS / "boin_psma_dosimetry.toml")),
                ntcp["marrow-driven"],
            ),
        )
        for label, pair, scenario in pairs:
            cost = constraint_cost(pair, scenario, 50_000, args.rounds)
            rows.append((label, f"{cost:.2f}× the time", f"≤ {CONSTRAINT_FLOOR}×", cost <= 1.5))
    width = max(len(row[0]) for row in rows)
    for label, measured, wanted, met in rows:
        print(f"{label:<{width}}  {measured:>18}  {wanted:<34} {'met' if met else 'NOT MET'}")
    print(f"{sum(row[3] for row in rows)} of {len(rows)} floors met")


if __name__ == "__main__":
    main()
