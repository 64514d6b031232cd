"""Invariants of simulated trials that hold for every design, scenario and seed.

Checked on the per-patient records (``state.patient_level``, ``state.patient_dlt``), which the
engine writes independently of the count arrays it decides on: no skipped levels, no patient
treated at or above a level already eliminated (BOIN) or found too toxic (3+3), counts that
agree with the patients, sample-size caps, a selected MTD that was treated; plus reproducibility
across workers and common random numbers across designs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta

import theradose.simulation as simulation
from factories import boin_design, scenario, three_plus_three_design, true_probabilities
from theradose.engine import run_trials
from theradose.pipeline import select_mtd
from theradose.results import OperatingCharacteristics
from theradose.simulation import simulate
from theradose.state import NO_LEVEL, StopReason

N_TRIALS = 60


@st.composite
def cases(draw):
    """A design (3+3 or BOIN, as a dict of its options) and non-decreasing true probabilities."""
    n_levels = draw(st.integers(2, 7))
    p_true = draw(true_probabilities(n_levels))
    if draw(st.booleans()):
        cap = draw(st.one_of(st.none(), st.integers(3, 6 * n_levels)))  # >= the cohort
        options = {
            "method": "3+3",
            "n_levels": n_levels,
            "deescalate": draw(st.booleans()),
            "max_patients": cap,
        }
    else:
        target = draw(st.floats(0.1, 0.5))
        options = {
            "method": "boin",
            "target": target,
            "n_levels": n_levels,
            "cohort_size": (cohort_size := draw(st.integers(1, 4))),
            "max_patients": draw(st.integers(cohort_size, 45)),
            "start_level": draw(st.integers(0, n_levels - 1)),
            "max_at_dose": draw(st.sampled_from([100]) | st.integers(4, 12)),
            "extra_safe": draw(st.booleans()),
        }
        if draw(st.booleans()):
            options["p_saf"] = draw(st.floats(0.2, 0.9)) * target
            options["p_tox"] = min(draw(st.floats(1.1, 2.5)) * target, 0.95)
    return options, p_true


def make_design(options: dict):
    options = dict(options)
    if options.pop("method") == "3+3":
        return three_plus_three_design(**options)
    return boin_design(**options)


def counts_before_cohort(state, cohort_size: int):
    """n and y per level from the patients enrolled before each patient's cohort,
    [trial, patient, level]."""
    n_levels = state.n.shape[1]
    at = state.patient_level[:, :, None] == np.arange(n_levels)  # [trial, patient, level]
    n_before = np.cumsum(at, axis=1) - at
    y_before = np.cumsum(at & state.patient_dlt[:, :, None], axis=1) - (
        at & state.patient_dlt[:, :, None]
    )
    cohort_start = (np.arange(at.shape[1]) // cohort_size) * cohort_size
    return n_before[:, cohort_start], y_before[:, cohort_start]


def assert_invariants(design, state, mtd) -> None:
    levels = state.patient_level.astype(int)  # [trial, patient]
    enrolled = levels != NO_LEVEL
    n_levels = design.n_levels

    # Patients are enrolled in order, without gaps, and the counts agree with them.
    n_enrolled = enrolled.sum(axis=1)
    assert (enrolled == (np.arange(levels.shape[1]) < n_enrolled[:, None])).all()
    assert (state.n_enrolled == n_enrolled).all()
    assert (state.n.sum(axis=1) == n_enrolled).all()
    assert (n_enrolled <= design.max_patients).all()
    assert (n_enrolled >= 1).all()
    at = levels[:, :, None] == np.arange(n_levels)
    assert (state.n == at.sum(axis=1)).all()
    assert (state.y == (at & state.patient_dlt[:, :, None]).sum(axis=1)).all()
    assert not (state.patient_dlt & ~enrolled).any()
    assert ((0 <= state.y) & (state.y <= state.n)).all()

    # Every trial has ended, for a reason.
    assert not state.active.any()
    assert (state.stop_reason != StopReason.RUNNING).all()
    capped = state.stop_reason == StopReason.MAX_PATIENTS
    assert (n_enrolled[capped] == design.max_patients).all()

    # The first cohort is at the start level; no level is skipped on the way up.
    assert (levels[:, 0] == design.start_level).all()
    highest_before = np.maximum.accumulate(levels, axis=1)[:, :-1]
    assert (levels[:, 1:][enrolled[:, 1:]] <= highest_before[enrolled[:, 1:]] + 1).all()

    # Nobody is treated at or above a level ruled out by the cohorts before theirs.
    n_before, y_before = counts_before_cohort(state, design.cohort_size)
    if design.method_key == "3+3":
        ruled_out = y_before >= 2
    else:
        method = design.method
        prob = beta.sf(method.target, y_before + 1, n_before - y_before + 1)
        ruled_out = (n_before >= 3) & (prob > method.elimination_cutoff)
    lowest_out = np.where(ruled_out.any(axis=2), ruled_out.argmax(axis=2), n_levels)
    assert (levels[enrolled] < lowest_out[enrolled]).all()

    # The MTD is none or a level that was treated; none after a safety stop.
    treated = np.take_along_axis(state.n, np.maximum(mtd, 0)[:, None], axis=1)[:, 0] > 0
    assert ((mtd == NO_LEVEL) | ((mtd >= 0) & (mtd < n_levels) & treated)).all()
    assert (mtd[state.stop_reason == StopReason.TOO_TOXIC] == NO_LEVEL).all()


@settings(max_examples=400, deadline=None)
@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_trials_respect_invariants(case, seed):
    options, p_true = case
    design = make_design(options)
    u = np.random.default_rng(seed).random((N_TRIALS, design.max_patients))
    state = run_trials(design, p_true, u)
    assert_invariants(design, state, select_mtd(design, state))


@settings(max_examples=60, deadline=None)
@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_boin_without_dlts_reaches_the_top(case, seed):
    options, p_true = case
    if options["method"] != "boin":
        options = {
            "method": "boin",
            "target": 0.3,
            "n_levels": len(p_true),
            "cohort_size": 3,
            "max_patients": 30,
            "start_level": 0,
            "max_at_dose": 100,
            "extra_safe": False,
        }
    n_levels, cohort = options["n_levels"], options["cohort_size"]
    needed = cohort * (n_levels - 1 - options["start_level"]) + 1
    options["max_patients"] = max(options["max_patients"], needed)
    design = make_design(options)
    u = np.random.default_rng(seed).random((N_TRIALS, design.max_patients))
    state = run_trials(design, [0.0] * n_levels, u)
    mtd = select_mtd(design, state)
    assert (state.y == 0).all()
    assert (state.n[:, -1] > 0).all()
    assert (mtd != NO_LEVEL).all()


@settings(max_examples=60, deadline=None)
@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_all_toxic_stops_without_mtd(case, seed):
    options, p_true = case
    n_levels = options["n_levels"]
    if options["method"] == "3+3":
        options["max_patients"] = None
    else:
        # Enough patients to walk down to level 1 and treat four there, where 4/4 eliminates
        # it for any target ≤ 0.5 at the 0.95 cutoff.
        cohort = options["cohort_size"]
        options["max_patients"] = cohort * (options["start_level"] + math.ceil(4 / cohort))
    design = make_design(options)
    u = np.random.default_rng(seed).random((N_TRIALS, design.max_patients))
    state = run_trials(design, [1.0] * n_levels, u)
    mtd = select_mtd(design, state)
    assert (mtd == NO_LEVEL).all()
    assert (state.stop_reason == StopReason.TOO_TOXIC).all()
    assert (state.n[:, 0] > 0).all()


DESIGNS = (
    three_plus_three_design(3),
    three_plus_three_design(3, deescalate=False, max_patients=7),
    boin_design(target=0.25, n_levels=3, max_patients=12, cohort_size=3),
    boin_design(
        target=0.3,
        n_levels=3,
        max_patients=5,
        cohort_size=1,
        start_level=2,
        max_at_dose=4,
        extra_safe=True,
    ),
)
EXTREME_SCENARIOS = (
    scenario(0.0, 0.0, 0.0, name="none toxic"),
    scenario(1.0, 1.0, 1.0, name="all toxic"),
    scenario(0.0, 1.0, 1.0, name="cliff"),
    scenario(0.0, 0.0, 1.0, name="top toxic"),
    scenario(0.3, 0.3, 0.3, name="flat at target"),
)


@pytest.mark.parametrize("n_trials", [1, 2, 200])
def test_operating_characteristics_have_no_nan(n_trials):
    sims = simulate(DESIGNS, EXTREME_SCENARIOS, n_trials=n_trials, seed=3)
    for row in sims:
        for sim in row:
            oc = OperatingCharacteristics.from_simulations(sim)
            for label, numbers in (("values", oc.values), ("se", oc.se)):
                flat = _numbers(numbers)
                where = f"{sim.design} / {sim.scenario} {label}"
                assert flat and all(math.isfinite(x) for x in flat), where


def _numbers(value) -> list[float]:
    """Every number in an OC figure; None (a figure that does not apply, e.g. duration without
    timing) is skipped."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in _numbers(v)]
    return [float(value)]


def assert_same_simulations(a, b) -> None:
    for f in dataclasses.fields(a):
        _assert_same(getattr(a, f.name), getattr(b, f.name), f.name)


def _assert_same(x, y, where: str) -> None:
    """Equal to the bit, through dicts, lists and arrays (dtype too)."""
    if isinstance(x, np.ndarray):
        assert isinstance(y, np.ndarray) and x.dtype == y.dtype, where
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), where
    elif isinstance(x, dict):
        assert isinstance(y, dict) and x.keys() == y.keys(), where
        for key in x:
            _assert_same(x[key], y[key], f"{where}[{key!r}]")
    elif isinstance(x, list | tuple):
        assert type(x) is type(y) and len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            _assert_same(u, v, f"{where}[{i}]")
    else:
        assert x == y, where


SCENARIOS = (scenario(0.05, 0.25, 0.5, name="A"), scenario(0.3, 0.45, 0.6, name="B"))


def test_same_seed_same_results_for_any_number_of_workers(monkeypatch):
    monkeypatch.setattr(simulation, "CHUNK_TRIALS", 300)
    assert len(simulation.chunk_sizes(1000)) == 4
    one = simulate(DESIGNS, SCENARIOS, n_trials=1000, seed=11, workers=1)
    two = simulate(DESIGNS, SCENARIOS, n_trials=1000, seed=11, workers=2)
    for row_one, row_two in zip(one, two, strict=True):
        for a, b in zip(row_one, row_two, strict=True):
            assert a.n_trials == 1000
            assert_same_simulations(a, b)
    other_seed = simulate(DESIGNS[:1], SCENARIOS[:1], n_trials=1000, seed=12)
    assert not np.array_equal(one[0][0].n_sum, other_seed[0][0].n_sum)


@pytest.mark.parametrize("alone", range(len(DESIGNS)))
def test_results_do_not_depend_on_the_designs_alongside(alone, monkeypatch):
    """Common random numbers: a design sees the same patients whatever it is compared with."""
    monkeypatch.setattr(simulation, "CHUNK_TRIALS", 300)
    design = DESIGNS[alone]
    bigger = boin_design(target=0.3, n_levels=3, max_patients=45, cohort_size=1)
    assert bigger.max_patients > max(d.max_patients for d in DESIGNS)
    by_itself = simulate([design], SCENARIOS, n_trials=700, seed=5)[0]
    together = simulate([bigger, *DESIGNS], SCENARIOS, n_trials=700, seed=5)[1 + alone]
    for a, b in zip(by_itself, together, strict=True):
        assert_same_simulations(a, b)


def test_benchmark_breaks_ties_by_the_true_probabilities():
    """O'Quigley et al.'s complete-information benchmark: levels with equal rates are equally
    close to the target; the tie goes to the truer choice, not always to the lowest level."""
    from theradose.simulation import benchmark_selection

    low = np.array([0.05, 0.06, 0.07, 0.08])  # all below a target of 0.25
    tolerance = np.array([[0.5] * 10, [0.055] * 4 + [0.5] * 6, [0.065] * 2 + [0.5] * 8])
    # rates: all 0; 0 then 0.4 (levels 2-4); 0 then 0.2 (levels 3, 4): the top level each time
    # (lowest-index tie-breaking would say 1, 2, 3)
    np.testing.assert_array_equal(benchmark_selection(tolerance, low, 0.25), [3, 3, 3])
    high = np.array([0.5, 0.6, 0.7])  # all above: every rate 1, the lowest level is the closest
    np.testing.assert_array_equal(benchmark_selection(np.full((1, 6), 0.01), high, 0.25), [0])
    # random tolerances: the chosen level's rate is always as close as any other's
    rng = np.random.default_rng(3)
    u = rng.random((500, 12))
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.5])
    chosen = benchmark_selection(u, p, 0.3)
    rate = (u[:, :, None] < p).mean(axis=1)
    gap = np.abs(rate - 0.3)
    assert np.all(gap[np.arange(500), chosen] <= gap.min(axis=1) + 1e-12)
