"""Conformance: every registered method, in every combination it can meet, keeps the invariants
the decision pipeline promises.

Parametrised over the registry (:data:`theradose.methods.METHODS`) × {no limits, organ-dose
limits, ``[timing]``, personalised activity, backfill, tumour response}: each method's example
design from ``designs/`` is run as it is, with a kidney limit added, (for a method that is not
time-to-event) with an accrual rate and a DLT window, with its levels as kidney doses prescribed
from each patient's measured dosimetry under that limit, with ``[timing]`` and backfilling, and
with the kidney limit under a scenario whose responses follow each patient's own tumour dose.
After every decision of every simulated trial, and at the end:

- no patient is treated at a level that the method (elimination) or a constraint (organ-dose
  limits, no skipping, increments, coherence) rules out at that decision;
- a design never skips an untried level;
- the final MTD is never a level the organ-dose limits rule out at the end, and, with
  ``select_tried_only``, it is a level that treated patients;
- the interim answer (``recommend`` on the trial's own cohorts and dosimetry) equals the engine's
  decision at every cohort, and its final MTD equals the simulation's;
- exact enumeration equals simulation within 4 Monte Carlo standard errors for every count-based
  method.

The checks themselves are shown to fail when the pipeline breaks an invariant.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from factories import KIDNEY, assert_simulation_matches_exact, example_source, true_probabilities
from theradose import engine, pipeline
from theradose.config import design_from_dict
from theradose.dosimetry import DosimetryTruth, Efficacy, OrganTruth
from theradose.exact import is_count_based
from theradose.methods import METHODS
from theradose.methods.interval import DECISION_COLUMNS
from theradose.pipeline import admissible_levels, select_mtd
from theradose.recommendation import patient_cohorts, recommend
from theradose.scenario import Scenario, truth_for
from theradose.state import NO_LEVEL, StopReason, TrialState, highest_level
from theradose.virtual_patients import chunk_patients

DESIGNS = Path(__file__).resolve().parents[1] / "designs"
TIMING = {"accrual_per_month": 2.0, "dlt_window_months": 1.0}
COMBINATIONS = ("plain", "organ_limits", "timing", "personalised", "backfill", "tumour_response")
# "tumour_response": the organ-limit design under a scenario whose responses follow each
# patient's own tumour dose ([scenario.efficacy]); methods that do not use efficacy ignore them.
TUMOUR = DosimetryTruth(
    organs=(OrganTruth(name="tumour", gy_per_gbq_median=1.5, gy_per_gbq_cv=0.7),),
    efficacy=Efficacy(organ="tumour", d50_gy=40.0, gamma50=1.0),
)
# Levels as cumulative kidney doses (Gy) with each patient's activity from their own measured
# Gy/GBq, capped (dose_basis = "absorbed_dose"), under the kidney limit.
PERSONALISED = {
    "cycles": 4,
    "measurement_cv": 0.15,
    "dose_basis": "absorbed_dose",
    "prescribe_to": "kidney",
    "max_activity_gbq": 11.1,
    "organ": [KIDNEY],
}


def conformance_design(key: str, combination: str, max_patients: int = 18):
    source = {**example_source(key), "max_patients": max_patients, "name": f"{key} {combination}"}
    if not METHODS[key].tite:
        source.pop("timing", None)
    if combination in ("organ_limits", "tumour_response"):
        source["dosimetry"] = {"cycles": 4, "measurement_cv": 0.15, "organ": [KIDNEY]}
    if combination == "personalised":
        source["doses"] = [8.0 + 3.0 * k for k in range(len(source["doses"]))]  # kidney Gy
        source["dose_unit"] = "Gy"
        source["dosimetry"] = PERSONALISED
    if combination in ("timing", "backfill") or METHODS[key].tite:
        # the example's efficacy window stays (TITE-BOIN12 needs one)
        late = {k: v for k, v in source.get("timing", {}).items() if k == "efficacy_window_months"}
        source["timing"] = {**TIMING, **late}
    if combination == "backfill":
        source["backfill"] = {"enabled": True, "max_per_level": 3}
    return design_from_dict(source, f"{key}-{combination}.toml")


def _cases():
    return [
        pytest.param(key, combination, id=f"{key}-{combination}")
        for key, spec in METHODS.items()
        for combination in COMBINATIONS
        # a time-to-event design always has [timing]: its plain case
        if not (combination == "timing" and spec.tite)
    ]


def _scenario(n_levels: int, high: float = 0.55, combination: str = "plain") -> Scenario:
    truth = TUMOUR if combination == "tumour_response" else None
    return Scenario("S", tuple(np.linspace(0.04, high, n_levels).round(3)), truth=truth)


class DecisionLog:
    """Wraps :func:`theradose.pipeline.decide` as the engine calls it, and records every
    decision that lets a trial go on at a level its rules forbid (a violation)."""

    def __init__(self, monkeypatch, design):
        self.design = design
        self.violations: list[str] = []
        real = engine.decide

        def checked(design, state):
            was_active = state.active.copy()
            real(design, state)
            self.check(design, state, was_active)

        monkeypatch.setattr(engine, "decide", checked)

    def check(self, design, state, was_active):
        going_on = np.flatnonzero(was_active & state.active)
        if going_on.size == 0:
            return
        level = state.next_level[going_on]
        allowed = design.allowed(state)[going_on, level]
        for trial in going_on[~allowed]:
            self.violations.append(
                f"trial {trial}: next level {state.next_level[trial] + 1} is ruled out "
                f"(n = {state.n[trial].tolist()})"
            )
        tried = highest_level(state.n[going_on] > 0)
        for trial in going_on[level > tried + 1]:
            self.violations.append(f"trial {trial}: skips to level {state.next_level[trial] + 1}")


def final_violations(design, state, mtd) -> list[str]:
    """The final MTD against the organ-dose limits at the end and ``select_tried_only``."""
    found = []
    admissible = admissible_levels(design, state)
    chosen = np.flatnonzero(mtd != NO_LEVEL)
    for trial in chosen[~admissible[chosen, mtd[chosen]]]:
        found.append(f"trial {trial}: MTD level {mtd[trial] + 1} is ruled out by organ limits")
    if design.selects_tried_only:
        for trial in chosen[state.n[chosen, mtd[chosen]] == 0]:
            found.append(f"trial {trial}: MTD level {mtd[trial] + 1} treated nobody")
    no_mtd = [r.value for r in StopReason if not r.selects_mtd]
    for trial in np.flatnonzero(np.isin(state.stop_reason, no_mtd) & (mtd != NO_LEVEL)):
        found.append(f"trial {trial}: stopped without an MTD but selected one")
    return found


def _run(design, scenario, n_trials, seed, monkeypatch):
    log = DecisionLog(monkeypatch, design)
    timed = design.timing is not None
    if design.method.uses_efficacy and not scenario.efficacy:
        # a method that decides on responses needs them: response rising, then a plateau
        eff = np.minimum(np.linspace(0.1, 0.7, design.n_levels), 0.5).round(3)
        scenario = dataclasses.replace(scenario, eff_prob=tuple(eff))
    patients = chunk_patients(seed, 0, n_trials, design.n_places, timed)
    patients = patients.head(design.n_places).with_dosimetry(design, scenario)
    patients = patients.with_efficacy(scenario)
    eff_prob = scenario.eff_prob
    if scenario.tumour_response is not None:  # the levels' truths; each patient's own p_E
        eff_prob = truth_for(scenario, design).eff_prob
    state = engine.run_trials(
        design, np.asarray(scenario.dlt_prob), patients, scenario.onset, eff_prob
    )
    return state, select_mtd(design, state), log


@pytest.mark.parametrize(("key", "combination"), _cases())
def test_invariants_hold_in_every_combination(key, combination, monkeypatch):
    design = conformance_design(key, combination)
    for high in (0.3, 0.55, 0.9):
        scenario = _scenario(design.n_levels, high, combination)
        state, mtd, log = _run(design, scenario, 200, 7, monkeypatch)
        assert log.violations == [], log.violations[:5]
        assert final_violations(design, state, mtd) == []
        assert (state.stop_reason != StopReason.RUNNING).all()
        assert (state.n_enrolled <= design.max_patients).all()
        assert (state.y <= state.n).all()
    method = design.method
    if combination == "backfill" and not (method.tite and method.turns_away):
        assert state.n_backfill.sum() > 0  # the invariants were checked with backfill patients
    if combination == "tumour_response":
        assert 0 < state.r.sum() < state.n.sum()  # each patient's response from their dose


@pytest.mark.parametrize(("key", "combination"), _cases())
def test_interim_answers_equal_the_engine(key, combination, monkeypatch):
    """``recommend`` replays each simulated trial cohort by cohort (with its measured dosimetry):
    every decision and the final MTD are the engine's. Time-to-event designs decide at arrivals
    on partial follow-up, which an outcome string does not carry: their interim answers are
    checked against the engine in their own tests (test_tite_boin, test_tite_crm)."""
    if METHODS[key].tite:
        pytest.skip("time-to-event: interim answers from follow-up times (own tests)")
    if combination == "backfill":
        pytest.skip("backfill patients arrive at times an outcome string does not carry")
    design = conformance_design(key, combination, max_patients=12)
    state, mtd, _ = _run(design, _scenario(design.n_levels, combination=combination), 12, 3,
                         monkeypatch)
    measured = state.patient_measured_gy_per_gbq
    for trial in range(state.n_trials):
        enrolled = int(state.n_enrolled[trial])
        cohorts = patient_cohorts(
            design.cohort_size,
            state.patient_level[trial, :enrolled],
            state.patient_dlt[trial, :enrolled],
            None if state.patient_response is None else state.patient_response[trial, :enrolled],
        )
        for k in range(1, len(cohorts) + 1):
            treated = sum(len(cohort[1]) for cohort in cohorts[:k])
            given = None if measured is None else measured[trial, :treated]
            rec = recommend(design, cohorts[:k], gy_per_gbq=given)
            assert rec.deviations == (), (trial, k, rec.deviations)
            if k < len(cohorts):
                assert rec.next_level == cohorts[k][0], (trial, k)
            else:
                assert rec.stop, (trial, "the engine stopped here")
                assert rec.stop_reason == StopReason(int(state.stop_reason[trial]))
                expected = None if mtd[trial] == NO_LEVEL else int(mtd[trial])
                assert rec.mtd == expected, (trial, rec.mtd, expected)


COUNT_BASED = [
    key for key in METHODS if is_count_based(conformance_design(key, "plain", max_patients=9))
]


@pytest.mark.slow
@pytest.mark.parametrize("key", COUNT_BASED)
def test_exact_enumeration_equals_simulation(key):
    design = conformance_design(key, "plain", max_patients=9)
    scenarios = [_scenario(design.n_levels, 0.6), _scenario(design.n_levels, 0.35)]
    assert_simulation_matches_exact(design, scenarios, n_trials=20_000, seed=21)


@pytest.mark.parametrize("key", [k for k in METHODS if not METHODS[k].tite])
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=true_probabilities(6))
def test_invariants_hold_for_any_truth(key, data, monkeypatch):
    design = conformance_design(key, "organ_limits", max_patients=12)
    scenario = Scenario("H", data[: design.n_levels])
    state, mtd, log = _run(design, scenario, 60, 11, monkeypatch)
    assert log.violations == []
    assert final_violations(design, state, mtd) == []


TABULATED = [
    key
    for key in METHODS
    if not METHODS[key].tite
    and (conformance_design(key, "plain").method.protocol_table(3, 18) or ({},))[0]
    == DECISION_COLUMNS
]


@pytest.mark.parametrize("key", TABULATED)
def test_printed_decision_table_is_what_the_engine_does(key):
    """Every cell of the printed table (``theradose table``), as a one-trial state at level 3:
    the engine escalates where the table says escalate, de-escalates where it says de-escalate,
    and no longer allows level 3 where it says eliminate."""
    design = conformance_design(key, "plain")
    _, rows = design.method.protocol_table(design.cohort_size, design.max_patients)
    cells = [(row, y) for row in rows for y in range(row["n"] + 1)]
    state = TrialState.start(len(cells), design.n_levels, 2)
    for i, (row, y) in enumerate(cells):
        state.n[i, :2], state.n[i, 2] = 3, row["n"]
        state.y[i, 2] = y
    state.level[:] = 2
    state.n_enrolled[:] = state.n.sum(axis=1)
    pipeline.decide(dataclasses.replace(design, stopping=()), state)
    for i, (row, y) in enumerate(cells):
        escalate = row["escalate_if_dlt_le"] is not None and y <= row["escalate_if_dlt_le"]
        deescalate = row["deescalate_if_dlt_ge"] is not None and y >= row["deescalate_if_dlt_ge"]
        eliminate = row["eliminate_if_dlt_ge"] is not None and y >= row["eliminate_if_dlt_ge"]
        expected = 3 if escalate else 1 if deescalate or eliminate else 2
        assert state.next_level[i] == expected, (row, y)
        assert design.allowed(state)[i, 2] == (not eliminate), (row, y)


# -- the checks can fail ----------------------------------------------------------------------


def test_the_checks_catch_an_mtd_the_organ_limits_forbid(monkeypatch):
    """Without the pipeline's guard (the method's own selection taken as it is), a CRM whose
    model favours a level the kidney limit rules out selects it, and the check says so."""
    design = conformance_design("crm", "organ_limits")
    scenario = _scenario(design.n_levels, 0.25)  # every level below the target
    state, mtd, _ = _run(design, scenario, 200, 5, monkeypatch)
    assert final_violations(design, state, mtd) == []
    raw = design.method.select_mtd(state)
    assert any("ruled out by organ limits" in v for v in final_violations(design, state, raw))


def test_the_checks_catch_a_level_the_constraints_forbid(monkeypatch):
    """A pipeline that forgot the organ-dose constraint treats above the admissible levels, and
    the decision check says so."""
    design = conformance_design("boin", "organ_limits")
    forgetful = dataclasses.replace(design, constraints=())
    log = DecisionLog(monkeypatch, design)

    def decide_without_limits(_, state):
        was_active = state.active.copy()
        pipeline.decide(forgetful, state)
        log.check(design, state, was_active)

    monkeypatch.setattr(engine, "decide", decide_without_limits)
    scenario = _scenario(design.n_levels, 0.2)
    patients = chunk_patients(2, 0, 200, design.max_patients, False)
    patients = patients.head(design.max_patients).with_dosimetry(design, scenario)
    engine.run_trials(design, np.asarray(scenario.dlt_prob), patients)
    assert any("is ruled out" in v for v in log.violations)


def _tite_cell_state(n_levels: int, window: float, cells) -> TrialState:
    """One trial state per (n, y, m, stft) at level 3 (0-based 2), now = time 0: levels 1 and 2
    each hold three complete DLT-free patients; level 3 holds y patients with a DLT, n − y − m
    complete without one, and m pending whose follow-up fractions sum to stft."""
    width = 6 + max(n for n, *_ in cells)
    state = TrialState.start(len(cells), n_levels, 2, width)
    for i, (n, y, m, stft) in enumerate(cells):
        levels = [0, 0, 0, 1, 1, 1] + [2] * n
        state.patient_level[i, : len(levels)] = levels
        arrival = np.full(len(levels), -2.0 * window)  # complete
        if m:
            arrival[len(levels) - m :] = -(stft / m) * window
        state.patient_arrival[i, : len(levels)] = arrival
        state.patient_dlt[i, 6 : 6 + y] = True
        state.patient_dlt_time[i, 6 : 6 + y] = 0.1 * window
        state.n[i, :3] = (3, 3, n)
        state.y[i, 2] = y
        state.n_enrolled[i] = len(levels)
    state.level[:] = 2
    state.time[:] = 0.0
    return state


def test_printed_tite_boin_table_is_what_the_engine_does():
    """Every row of TITE-BOIN's printed table (patients, DLTs, pending → decision or STFT
    cut-off), as engine states on both sides of each cut-off: the engine escalates, stays,
    de-escalates, eliminates or suspends accrual as the table says."""
    design = conformance_design("tite-boin", "plain")
    method, window = design.method, design.timing.dlt_window_months
    _, rows = method.protocol_table(design.cohort_size, 12)
    cells, expected = [], []
    for row in rows:
        n, y, m, decision, cut = (
            row["n"],
            row["dlt"],
            row["pending"],
            row["decision"],
            row["stft_cutoff"],
        )
        if cut is None:
            cells.append((n, y, m, 0.5 * m))
            expected.append(decision)
            continue
        for stft, side in ((cut - 0.05, "low"), (cut + 0.05, "high")):
            if not 0 < stft < m:
                continue
            cells.append((n, y, m, stft))
            if decision.startswith("E"):
                expected.append("E" if side == "high" else "S")
            else:
                expected.append("D" if side == "low" else "S")
    state = _tite_cell_state(design.n_levels, window, cells)
    pipeline.decide(dataclasses.replace(design, stopping=()), state)
    suspended = engine.suspended_trials(design, state)
    allowed = design.allowed(state)
    move = {"E": 3, "S": 2, "D": 1, "DE": 1}
    for i, (cell, decision) in enumerate(zip(cells, expected, strict=True)):
        if decision == "SUS":
            assert suspended[i], (cell, decision)
            continue
        assert not suspended[i], (cell, decision)
        assert state.next_level[i] == move[decision], (cell, decision, state.next_level[i])
        assert allowed[i, 2] == (decision != "DE"), (cell, decision)
