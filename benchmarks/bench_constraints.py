"""What organ-dose constraints cost: chunk time of a design with and without its limits.

Run with ``python benchmarks/bench_constraints.py [--trials N] [--repeats R]``. Each pair runs the
same chunks of virtual patients (truths computed once, outside the timing) and prints trials per
second of chunk work (the engine and the reduction of its outcomes to the operating
characteristics' sufficient statistics, as a worker does it) for both designs and their ratio;
the two designs of a pair alternate chunk by chunk, so a change in the machine's load hits both.
Not a test: numbers go in docs/speed.md.

Pairs (the 177Lu-PSMA-like BOIN of ``designs/``, 5 levels, 30 patients, 4 cycles):

- a fixed-probability scenario: no dosimetry vs the kidney limit alone (measurement CV 0.15);
- the NTCP scenario "marrow-driven": 4 cycles with no organs vs kidney, red-marrow and parotid
  limits with patient capping (``designs/boin_psma_dosimetry.toml``).
"""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path

from theradose.config import design_from_dict, load_design, load_scenarios
from theradose.scenario import Scenario, truth_for
from theradose.simulation import chunk_sizes, simulate_chunk
from theradose.virtual_patients import chunk_patients

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
FIXED = Scenario("fixed", (0.05, 0.12, 0.25, 0.4, 0.55))


def _source(path: Path) -> dict:
    """A design file as the dict it parses to (fresh each call, to edit)."""
    with open(path, "rb") as f:
        return tomllib.load(f)


def kidney_only():
    """designs/boin_psma_dosimetry.toml with its kidney limit alone."""
    path = DESIGNS / "boin_psma_dosimetry.toml"
    source = _source(path)
    source["dosimetry"]["organ"] = [
        o for o in source["dosimetry"]["organ"] if o["name"] == "kidney"
    ]
    source["name"] = "BOIN + kidney limit"
    return design_from_dict(source, path)


def no_dosimetry():
    source = _source(DESIGNS / "boin_psma.toml")
    del source["dosimetry"]
    source["name"] = "BOIN, no dosimetry"
    return design_from_dict(source, DESIGNS / "boin_psma.toml")


def no_limits():
    """designs/boin_psma.toml (4 cycles) without the organs it tracks."""
    source = _source(DESIGNS / "boin_psma.toml")
    del source["dosimetry"]["organ"]
    source["name"] = "BOIN, no organ limits"
    return design_from_dict(source, DESIGNS / "boin_psma.toml")


def pair_seconds(pair, scenario, n_trials: int, clock=time.perf_counter) -> list[float]:
    """Seconds of chunk work (:func:`theradose.simulation.simulate_chunk`: the engine and the
    reduction of its outcomes to sufficient statistics) of the two designs of ``pair`` on the
    same ``n_trials`` patients, the two alternating chunk by chunk (a change in the machine's
    load hits both); truths outside."""
    truths = [truth_for(scenario, design) for design in pair]
    for design, truth in zip(pair, truths, strict=True):  # warm-up
        warm = chunk_patients(0, 0, 500, design.max_patients, False)
        simulate_chunk(design, scenario, warm, truth)
    seconds = [0.0, 0.0]
    for chunk, size in enumerate(chunk_sizes(n_trials)):
        patients = chunk_patients(1, chunk, size, pair[0].max_patients, False)
        for i, (design, truth) in enumerate(zip(pair, truths, strict=True)):
            start = clock()
            simulate_chunk(design, scenario, patients, truth)
            seconds[i] += clock() - start
    return seconds


def compare(pair, scenario, n_trials: int, repeats: int) -> None:
    seconds = [0.0, 0.0]
    for _ in range(repeats):
        more = pair_seconds(pair, scenario, n_trials)
        seconds = [a + b for a, b in zip(seconds, more, strict=True)]
    rates = [repeats * n_trials / s for s in seconds]
    print(
        f"{scenario.name:<14} {pair[0].name:<34} {rates[0]:>9,.0f} trials/s | "
        f"{pair[1].name:<42} {rates[1]:>9,.0f} trials/s | cost {seconds[1] / seconds[0]:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    ntcp = {s.name: s for s in load_scenarios(DESIGNS / "dosimetry_scenarios.toml")}
    compare((no_dosimetry(), kidney_only()), FIXED, args.trials, args.repeats)
    pair = (no_limits(), load_design(DESIGNS / "boin_psma_dosimetry.toml"))
    compare(pair, ntcp["marrow-driven"], args.trials, args.repeats)


if __name__ == "__main__":
    main()
