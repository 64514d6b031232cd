"""Backfilling (Zhao, Yuan, Korn & Freidlin 2024, BF-BOIN, Clin Cancer Res 30:673): the
``[backfill]`` section, the rules checked on every backfill patient of simulated trials, a
hand-checked trial, and a design with ``enabled = false`` bit-identical to one without the section.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from factories import KIDNEY, example_source
from theradose import engine, simulation
from theradose.backfill import observed_counts
from theradose.config import ConfigError, design_from_dict, load_design, load_scenarios
from theradose.engine import run_trials
from theradose.methods import METHODS
from theradose.pipeline import admissible_levels, select_mtd
from theradose.report import study_csv_columns
from theradose.results import OperatingCharacteristics
from theradose.scenario import Scenario
from theradose.timing import Onset
from theradose.virtual_patients import VirtualPatients, chunk_patients

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"accrual_per_month": 2.0, "dlt_window_months": 1.5}
S1 = (0.05, 0.10, 0.20, 0.30, 0.50, 0.70)
LATE = Onset("late", 3.0)


def bf_design(key: str = "boin", max_per_level: int = 4, enabled: bool = True, **extra):
    source = {**example_source(key), "max_patients": 24, "timing": TIMING, **extra}
    source["backfill"] = {"enabled": enabled, "max_per_level": max_per_level}
    return design_from_dict(source, f"bf-{key}.toml")


def simulate_state(design, dlt_prob=S1, n_trials=300, seed=3, onset=LATE):
    patients = chunk_patients(seed, 0, n_trials, design.n_places, True)
    return run_trials(design, np.asarray(dlt_prob), patients, onset)


# ---------------------------------------------------------------------------------------------
# The design file


def _errors(source: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        design_from_dict(source, "d.toml")
    return caught.value.messages


def test_backfill_needs_timing():
    source = example_source("boin")
    source["backfill"] = {"enabled": True, "max_per_level": 3}
    (message,) = _errors(source)
    assert message.startswith("d.toml: [backfill] enabled = true needs a [timing] section")


@pytest.mark.parametrize(
    ("backfill", "expected"),
    [
        ({"enabled": True}, "d.toml: [backfill] missing key 'max_per_level' (backfill patients"),
        ({"enabled": True, "max_per_level": 0}, "d.toml: [backfill] max_per_level = 0: must be"),
        ({"enabled": "yes", "max_per_level": 2}, 'd.toml: [backfill] enabled = "yes": must be'),
        ({"enabled": True, "max_level": 2}, "d.toml: [backfill] unknown key 'max_level' (did you"),
    ],
)
def test_invalid_backfill_section_is_one_line_naming_file_and_key(backfill, expected):
    source = {**example_source("boin"), "timing": TIMING, "backfill": backfill}
    messages = _errors(source)
    assert any(m.startswith(expected) for m in messages), messages
    assert all("\n" not in m for m in messages)


def test_disabled_or_absent_section_means_no_backfilling():
    assert bf_design(enabled=False).backfill is None
    assert bf_design(enabled=False).n_places == 24
    design = bf_design(max_per_level=4)
    assert design.backfill.max_per_level == 4
    assert design.n_places == 24 + 4 * 5  # none at the top level
    assert load_design(ROOT / "designs/boin_backfill.toml").backfill.max_per_level == 9


# ---------------------------------------------------------------------------------------------
# The rules, on every backfill patient


def check_backfill_rules(design, state) -> int:
    """Every backfill patient of ``state`` was treated by BF-BOIN's rules; returns how many."""
    window = design.timing.dlt_window_months
    closes = design.backfill.closes
    escalation = (state.patient_level >= 0) & ~state.patient_backfill
    checked = 0
    for t, c in zip(*np.nonzero(state.patient_backfill), strict=True):
        level, when = int(state.patient_level[t, c]), state.patient_arrival[t, c]
        before = escalation[t] & (state.patient_arrival[t] < when)
        current = state.patient_level[t, np.flatnonzero(before)[-1]]
        assert level < current, "backfilled at or above the current level"
        assert (before & (state.patient_level[t] == level)).any(), "level not cleared"
        # the data known at the arrival, at this level and every level below it, keep it open
        earlier = state.take(np.array([t]))
        earlier.patient_level = np.where(
            state.patient_arrival[t] < when, state.patient_level[t], -1
        )[None, :]
        n, y = observed_counts(earlier, np.array([0]), np.array([when]), window)
        for b in range(level + 1):
            assert not closes[n[0, b], min(y[0, b], n[0, b])], "level closed by its data"
        checked += 1
    assert (state.n_backfill <= design.backfill.max_per_level).all()
    # every patient, escalation and backfill, counts in the level's n and y at the end
    for b in range(design.n_levels):
        at = state.patient_level == b
        assert (state.n[:, b] == at.sum(axis=1)).all()
        assert (state.y[:, b] == (at & state.patient_dlt).sum(axis=1)).all()
        assert (state.n_backfill[:, b] == (at & state.patient_backfill).sum(axis=1)).all()
    assert (state.n_enrolled <= design.max_patients).all()
    return checked


@pytest.mark.parametrize("key", ["boin", "tite-boin", "keyboard", "crm"])
def test_every_backfill_patient_follows_the_rules(key):
    design = bf_design(key, max_per_level=3)
    for dlt_prob in (S1, (0.25, 0.35, 0.45, 0.55, 0.65, 0.75)):
        state = simulate_state(design, dlt_prob, n_trials=150)
        assert check_backfill_rules(design, state) > 0


def test_the_rule_checker_catches_a_backfill_at_the_current_level():
    design = bf_design(max_per_level=3)
    state = simulate_state(design, n_trials=50)
    t, c = (np.argwhere(state.patient_backfill))[0]
    state.patient_level[t, c] = 5
    with pytest.raises(AssertionError):
        check_backfill_rules(design, state)


def test_backfilling_stops_at_a_level_whose_data_call_for_deescalation():
    """At 30% DLTs on levels 1–3, level 1's known outcomes often reach BOIN's de-escalation
    boundary: backfilling there stops (each arrival checked by check_backfill_rules), and some
    trials treat far fewer than the cap of 12 backfill patients there."""
    design = bf_design(max_per_level=12)
    state = simulate_state(design, (0.3, 0.3, 0.3, 0.9, 0.9, 0.9), n_trials=300)
    assert check_backfill_rules(design, state) > 0
    reached = state.patient_level.max(axis=1) >= 2  # trials that backfilled below level 3
    closed = reached & (state.n_backfill[:, 0] < 12)
    assert closed.mean() > 0.15


# ---------------------------------------------------------------------------------------------
# A hand-checked trial


def test_a_hand_checked_trial():
    """BOIN, 3 levels, cohorts of 3, 9 escalation patients, one arrival a month (fixed), a
    2-month window, at most 2 backfill patients per level.

    Cohort 1 (level 1) arrives at months 1, 2, 3; its window closes at 5; the arrival at 4 finds
    no level below level 1: turned away. Escalate (0/3). Cohort 2 (level 2) at 6, 7, 8; the
    arrival at 9 is backfilled at level 1 (cleared, 0/3) and has a DLT at 9 + 0.5·2 = 10, seen at
    the decision at 10: level 1 holds 1/4 (< λd = 0.357, still open). Escalate (0/3). Cohort 3
    (level 3) at 11, 12, 13; the arrival at 14 goes to the highest open level, 2. The trial
    stops at 15 with 9 escalation patients; the backfill patients' outcomes are all counted.
    """
    source = {
        "method": "boin",
        "target": 0.3,
        "levels": 3,
        "cohort_size": 3,
        "max_patients": 9,
        "timing": {"accrual_per_month": 1.0, "accrual": "fixed", "dlt_window_months": 2.0},
        "backfill": {"enabled": True, "max_per_level": 2},
    }
    design = design_from_dict(source, "hand.toml")
    assert design.n_places == 13
    tolerance = np.full((1, 13), 0.99)
    tolerance[0, 6] = 0.0  # the first backfill patient has a DLT
    patients = VirtualPatients(
        tolerance,
        arrival=np.full((1, 13), 0.5),
        onset=np.full((1, 13), 0.5),
        backfill_seed=np.random.SeedSequence(0),
    )
    state = run_trials(design, np.array([0.1, 0.2, 0.3]), patients, Onset())
    assert state.patient_level[0].tolist() == [0, 0, 0, 1, 1, 1, 0, 2, 2, 2, 1, -1, -1]
    assert state.patient_backfill[0].tolist() == [False] * 6 + [True] + [False] * 3 + [True] + [
        False
    ] * 2
    np.testing.assert_allclose(state.patient_arrival[0, :11], [1, 2, 3, 6, 7, 8, 9, 11, 12, 13, 14])
    assert state.n[0].tolist() == [4, 4, 3]
    assert state.y[0].tolist() == [1, 0, 0]
    assert state.n_backfill[0].tolist() == [1, 1, 0]
    assert state.n_enrolled[0] == 9
    assert state.stopped_at[0] == 15.0


def test_backfill_outcomes_are_used_once_observed():
    """The decision at month 10 of the hand-checked trial sees the backfill DLT (onset 10); with
    the onset later than the decision it does not, and the trial's counts at the decision differ."""
    source = {
        "method": "boin",
        "target": 0.3,
        "levels": 3,
        "cohort_size": 3,
        "max_patients": 6,
        "timing": {"accrual_per_month": 1.0, "accrual": "fixed", "dlt_window_months": 2.0},
        "backfill": {"enabled": True, "max_per_level": 2},
    }
    design = design_from_dict(source, "hand.toml")
    seen = []
    original = engine.decide

    def recording(d, state):
        seen.append(state.n[0].tolist())
        original(d, state)

    for onset, expected in ((0.5, [4, 3, 0]), (0.9, [3, 3, 0])):
        tolerance = np.full((1, design.n_places), 0.99)
        tolerance[0, 6] = 0.0
        patients = VirtualPatients(
            tolerance,
            arrival=np.full(tolerance.shape, 0.5),
            onset=np.full(tolerance.shape, onset),
            backfill_seed=np.random.SeedSequence(0),
        )
        seen.clear()
        engine.decide = recording
        try:
            state = run_trials(design, np.array([0.1, 0.2, 0.3]), patients, Onset())
        finally:
            engine.decide = original
        assert seen[-1] == expected
        assert state.n[0].tolist() == [4, 3, 0]  # at the end every outcome is known


def test_a_design_deciding_on_responses_counts_a_backfill_patient_when_both_windows_closed(
    monkeypatch,
):
    """BOIN12 decides on DLT and response together and waits for the efficacy window: a backfill
    patient joins its counts only when their response is known (arrival + the longer window),
    even when an early DLT is seen before — at every decision of simulated trials."""
    source = {
        "method": "boin12",
        "target": 0.3,
        "levels": 4,
        "cohort_size": 3,
        "max_patients": 18,
        "boin12": {"phi_e": 0.3},
        "timing": {"accrual_per_month": 3.0, "dlt_window_months": 1.0,
                   "efficacy_window_months": 3.0},
        "backfill": {"enabled": True, "max_per_level": 6},
    }  # fmt: skip
    design = design_from_dict(source, "bf12.toml")
    scenario = Scenario("S", (0.1, 0.25, 0.45, 0.6), eff_prob=(0.3, 0.5, 0.6, 0.6))
    early = []
    original = engine.decide

    def checked(d, state):
        counted = state.patient_backfill & ~state.backfill_unseen
        complete = state.patient_arrival + design.timing.follow_up_months <= state.time[:, None]
        early.append(int((counted & ~complete).sum()))
        original(d, state)

    monkeypatch.setattr(engine, "decide", checked)
    sims = simulation.simulate([design], [scenario], 300, seed=3)
    assert sims[0][0].n_trials == 300
    assert sum(early) == 0
    assert sims[0][0].backfill["total_sum"] > 100  # the rule had backfill patients to hold


# ---------------------------------------------------------------------------------------------
# Results


def _sims(designs, scenarios, n_trials=200, seed=11, workers=1):
    return simulation.simulate(designs, scenarios, n_trials, seed, workers=workers)


def _values(sims):
    return [OperatingCharacteristics.from_simulations(s).values for row in sims for s in row]


def test_disabled_backfill_is_bit_identical_to_no_section():
    scenarios = load_scenarios(ROOT / "designs/late_onset.toml")
    plain = load_design(ROOT / "designs/boin_timed.toml")
    source = {**plain.source, "backfill": {"enabled": False, "max_per_level": 6}}
    disabled = design_from_dict(source, "disabled.toml")
    a, b = _sims([plain], scenarios), _sims([disabled], scenarios)
    assert _values(a) == _values(b)
    for x, y in zip(a[0], b[0], strict=True):
        assert x.n_sum.tolist() == y.n_sum.tolist()
        assert np.array_equal(np.concatenate(x.durations), np.concatenate(y.durations))


def test_backfilling_leaves_other_designs_of_the_run_unchanged():
    """A backfill design draws more patients per trial; the others see the same ones."""
    scenarios = [Scenario("S1", S1, Onset("late", 3.0))]
    plain = load_design(ROOT / "designs/boin_timed.toml")
    backfill = load_design(ROOT / "designs/boin_backfill.toml")
    alone = _values(_sims([plain], scenarios))
    together = _values(_sims([plain, backfill], scenarios))
    assert together[0] == alone[0]
    assert "backfill_patients_mean" not in together[0]
    assert sum(together[1]["backfill_patients_mean"]) == pytest.approx(
        together[1]["backfill_total_mean"]
    )
    assert together[1]["n_mean"] > 36


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(simulation, "CHUNK_TRIALS", 50)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers")
def test_same_seed_same_results_whatever_the_workers(small_chunks):
    scenarios = [Scenario("S1", S1, Onset("late", 3.0))]
    designs = [load_design(ROOT / "designs/boin_backfill.toml"), bf_design("tite-boin")]
    one = _values(_sims(designs, scenarios, n_trials=130, seed=5))
    assert _values(_sims(designs, scenarios, n_trials=130, seed=5, workers=2)) == one


def test_csv_has_backfill_columns_only_with_a_backfill_design():
    from theradose.study import run_study

    scenarios = ROOT / "designs/late_onset.toml"
    with_bf = run_study(
        [ROOT / "designs/boin_timed.toml", ROOT / "designs/boin_backfill.toml"],
        scenarios,
        n_trials=60,
        seed=2,
    )
    assert "backfill_mean" in study_csv_columns(with_bf)
    without = run_study([ROOT / "designs/boin_timed.toml"], scenarios, n_trials=60, seed=2)
    assert "backfill_mean" not in study_csv_columns(without)


# ---------------------------------------------------------------------------------------------
# Conformance: with organ-dose limits, and for every method




def test_with_organ_limits_backfill_only_at_admissible_levels(monkeypatch):
    """Each backfill patient is treated at a level that the organ-dose limits admitted at the
    decision before their arrival (and the rules above hold)."""
    dosimetry = {"cycles": 4, "measurement_cv": 0.15, "organ": [KIDNEY]}
    design = bf_design("boin", max_per_level=4, dosimetry=dosimetry)
    log = []  # (time [trial], admissible [trial, level]) at each decision
    original = engine._note_allowed

    def noting(d, state):
        original(d, state)
        log.append((state.time.copy(), admissible_levels(d, state)))

    monkeypatch.setattr(engine, "_note_allowed", noting)
    state = simulate_state(design, n_trials=200)
    assert check_backfill_rules(design, state) > 0
    ruled_out_somewhere = False
    for t, c in zip(*np.nonzero(state.patient_backfill), strict=True):
        when = state.patient_arrival[t, c]
        admissible = [mask[t] for time, mask in log if time[t] <= when][-1]
        assert admissible[state.patient_level[t, c]]
        ruled_out_somewhere |= not admissible.all()
    assert ruled_out_somewhere  # the limits did rule levels out while backfilling
    assert (state.ruled_out_at >= 0).any()
    mtd = select_mtd(design, state)
    assert admissible_levels(design, state)[np.flatnonzero(mtd >= 0), mtd[mtd >= 0]].all()


@pytest.mark.parametrize("key", sorted(METHODS))
def test_every_method_can_backfill_with_timing(key):
    source = {**example_source(key), "max_patients": 18, "timing": TIMING}
    source["backfill"] = {"enabled": True, "max_per_level": 2}
    design = design_from_dict(source, f"{key}.toml")
    eff = None
    patients = chunk_patients(4, 0, 40, design.n_places, True)
    if design.method.uses_efficacy:
        eff = np.array([0.2, 0.3, 0.4, 0.5, 0.5, 0.5][: design.n_levels])
        scenario = Scenario("E", S1[: design.n_levels], eff_prob=tuple(eff))
        patients = patients.with_efficacy(scenario)
    state = run_trials(design, np.asarray(S1[: design.n_levels]), patients, Onset(), eff)
    check_backfill_rules(design, state)
    assert not state.active.any()


def test_a_design_that_never_holds_accrual_is_warned_that_nobody_will_be_backfilled():
    from theradose.sense import design_warnings

    source = {**example_source("tite-crm"), "backfill": {"enabled": True, "max_per_level": 3}}
    warnings = design_warnings(design_from_dict(source, "tite_crm_backfill.toml"))
    assert any("no patient will be backfilled" in w for w in warnings), warnings
    boin = {**example_source("tite-boin"), "backfill": {"enabled": True, "max_per_level": 3}}
    assert not design_warnings(design_from_dict(boin, "tite_boin_backfill.toml"))
