"""TITE-BOIN12 (Zhou et al. 2022, Stat Med 41:1918–1931): BOIN12 when nothing is pending, the
approximated likelihood against a hand calculation, the accrual suspension rule, and the
response times it reads."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from theradose.config import ConfigError, design_from_dict, scenarios_from_dict
from theradose.engine import run_trials, suspended_trials
from theradose.pipeline import decide, select_mtd
from theradose.recommendation import recommend, recommend_from_patients
from theradose.scenario import Scenario
from theradose.simulation import run_chunk
from theradose.state import TrialState
from theradose.timing import Onset
from theradose.virtual_patients import RESPONSE_TIME_STREAM, chunk_patients

BOIN12 = {
    "target": 0.3,
    "levels": 5,
    "start_level": 1,
    "cohort_size": 3,
    "max_patients": 36,
    "boin12": {"phi_e": 0.3, "max_at_dose": 12},
}
SCENARIOS = [
    Scenario("plateau", (0.03, 0.06, 0.10, 0.18, 0.30), eff_prob=(0.2, 0.35, 0.5, 0.52, 0.53)),
    Scenario("toxic", (0.08, 0.2, 0.4, 0.55, 0.7), eff_prob=(0.3, 0.45, 0.55, 0.6, 0.62)),
    Scenario(
        "correlated",
        (0.03, 0.06, 0.10, 0.18, 0.30),
        eff_prob=(0.2, 0.35, 0.5, 0.52, 0.53),
        tox_eff_correlation=0.4,
    ),
    Scenario("inactive", (0.03, 0.06, 0.10, 0.18, 0.30), eff_prob=(0.05, 0.08, 0.1, 0.12, 0.12)),
]


def tite_boin12(timing=None, **boin12):
    timing = timing or {"accrual_per_month": 2.0, "dlt_window_months": 1.5}
    timing = {"efficacy_window_months": 3.0, **timing}
    source = {
        **BOIN12,
        "method": "tite-boin12",
        "boin12": {**BOIN12["boin12"], **boin12},
        "timing": timing,
    }
    return design_from_dict(source, "tite_boin12.toml")


def _simulate(design, scenario, n_trials=400, seed=5):
    patients = chunk_patients(seed, 0, n_trials, design.n_places, design.timing is not None)
    patients = patients.head(design.n_places).with_efficacy(scenario)
    state = run_trials(
        design,
        np.asarray(scenario.dlt_prob),
        patients,
        scenario.onset,
        scenario.eff_prob,
        scenario.response_onset,
    )
    return state, select_mtd(design, state)


# -- (1) nothing pending: BOIN12, trial by trial ---------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_with_every_outcome_known_at_each_decision_it_is_boin12(scenario):
    """Arrivals 5 months apart (fixed), windows of 1.5 and 3 months: every outcome is known when
    each patient arrives, so TITE-BOIN12 makes BOIN12's decisions on the same patients, trial by
    trial: the same patients, DLTs and responses per level, stop reasons and OBDs."""
    slow = {"accrual_per_month": 0.2, "accrual": "fixed", "dlt_window_months": 1.5}
    tite = tite_boin12(slow)
    plain = design_from_dict({**BOIN12, "method": "boin12"}, "boin12.toml")
    state, obd = _simulate(tite, scenario)
    # the same patients: BOIN12 without [timing] runs the cohort engine on the same draws
    patients = chunk_patients(5, 0, 400, plain.n_places, False).with_efficacy(scenario)
    reference = run_trials(plain, np.asarray(scenario.dlt_prob), patients, None, scenario.eff_prob)
    for name in ("n", "y", "r", "b", "stop_reason"):
        np.testing.assert_array_equal(getattr(state, name), getattr(reference, name), name)
    np.testing.assert_array_equal(obd, select_mtd(plain, reference))
    assert not state.patient_while_pending.any()  # nothing was ever pending


def test_with_late_outcomes_it_differs_from_boin12_and_is_faster():
    """With arrivals faster than the windows the design does decide on pending data (the
    equality above is not vacuous), and the trial is shorter than BOIN12 waiting for both
    windows after every cohort (the paper's reason for the design)."""
    scenario = SCENARIOS[0]
    tite = tite_boin12()
    plain = design_from_dict(
        {**BOIN12, "method": "boin12", "timing": dict(tite.timing.__dict__)}, "boin12.toml"
    )
    t_state, _ = _simulate(tite, scenario)
    b_state, _ = _simulate(plain, scenario)
    assert t_state.patient_while_pending.mean() > 0.5
    assert not np.array_equal(t_state.n, b_state.n)
    duration = lambda s: np.nanmax(s.patient_arrival, axis=1) + 3.0  # noqa: E731
    assert duration(t_state).mean() < 0.75 * duration(b_state).mean()  # 23 vs 38 months


# -- (2) the approximated likelihood by hand --------------------------------------------------

# A worked case, days: the TITE-BOIN12 paper's Table 2 (Zhou et al. 2022; transcribed in the
# dx-li/mdanderson-stats fixture tite-boin12-paper-calendar.csv): patients 1-15, level (1-based),
# arrival day, DLT day after arrival (None: no DLT), response day after arrival (None: none);
# DLT window 45 days, efficacy window 60 days; the decision at day 315 for patient 16.
TABLE_2 = [
    (1, 1, None, None),
    (1, 11, None, None),
    (1, 21, None, None),
    (2, 72, None, 40),
    (2, 82, 30, None),
    (2, 92, None, None),
    (3, 143, None, 40),
    (3, 153, 25, None),
    (3, 163, None, None),
    (4, 214, None, None),
    (4, 224, 40, None),
    (4, 234, 35, None),
    (3, 285, 25, 30),
    (3, 295, None, 55),
    (3, 305, None, None),
]
TAU_T, TAU_E, NOW = 45.0, 60.0, 315.0


def _table_2_state(method_design):
    n = len(TABLE_2)
    state = TrialState.start(1, 4, 0, n).with_efficacy().with_response_times()
    for i, (level, arrival, dlt_day, response_day) in enumerate(TABLE_2):
        state.patient_level[0, i] = level - 1
        state.patient_arrival[0, i] = arrival
        state.patient_dlt[0, i] = dlt_day is not None
        state.patient_dlt_time[0, i] = np.nan if dlt_day is None else dlt_day
        state.patient_response[0, i] = response_day is not None
        state.patient_response_time[0, i] = np.nan if response_day is None else response_day
        state.n[0, level - 1] += 1
        state.y[0, level - 1] += dlt_day is not None
        state.r[0, level - 1] += response_day is not None
        state.b[0, level - 1] += dlt_day is not None and response_day is not None
    state.n_enrolled[:] = n
    state.level[:] = 2  # the last cohort's level, 3
    state.time[:] = NOW
    return state


def _by_hand(method):
    """The paper's approximated likelihood, written out patient by patient."""
    out = {}
    for level in range(1, 5):
        rows = [r for r in TABLE_2 if r[0] == level]
        sums = {"n": len(rows), "y": 0, "r": 0, "ess_t": 0.0, "ess_e": 0.0, "m_t": 0, "m_e": 0}
        per_patient = []
        for _, arrival, dlt_day, response_day in rows:
            t = NOW - arrival
            tox_seen = dlt_day is not None and dlt_day <= t
            eff_seen = response_day is not None and response_day <= t
            tox_pending = not tox_seen and t < TAU_T
            eff_pending = not eff_seen and t < TAU_E
            sums["y"] += tox_seen
            sums["r"] += eff_seen
            sums["m_t"] += tox_pending
            sums["m_e"] += eff_pending
            sums["ess_t"] += t / TAU_T if tox_pending else 1.0
            sums["ess_e"] += t / TAU_E if eff_pending else 1.0
            per_patient.append((t, tox_seen, eff_seen, tox_pending, eff_pending))
        p_t = sums["y"] / sums["ess_t"]
        p_e = sums["r"] / sums["ess_e"]
        x = 0.0
        for t, tox_seen, eff_seen, tox_pending, eff_pending in per_patient:
            w_t, w_e = t / TAU_T, t / TAU_E
            pt = p_t * (1 - w_t) / (1 - p_t * w_t) if tox_pending else float(tox_seen)
            pe = p_e * (1 - w_e) / (1 - p_e * w_e) if eff_pending else float(eff_seen)
            # utilities 100 (response only), 40 (neither), 60 (both), 0 (DLT only)
            x += (100 * pe * (1 - pt) + 40 * (1 - pe) * (1 - pt) + 60 * pe * pt) / 100
        n = sums["n"]
        u_bar = 100 * 0.3 * 0.7 + 40 * 0.7 * 0.7 + 60 * 0.3 * 0.3  # φ_T = φ_E = 0.3
        benchmark = (u_bar + (100 - u_bar) / 2) / 100
        desirability = 100 * stats.beta.sf(benchmark, 1 + x, 1 + n - x)
        too_toxic = stats.beta.sf(0.3, 1 + sums["y"], 1 + sums["ess_t"] - sums["y"]) >= 0.95
        too_inactive = stats.beta.cdf(0.3, 1 + sums["r"], 1 + sums["ess_e"] - sums["r"]) >= 0.9
        out[level] = {**sums, "p_t": p_t, "p_e": p_e, "x": x, "desirability": desirability}
        out[level]["acceptable"] = not (too_toxic or too_inactive)
    return out


def test_effective_sample_sizes_and_utility_by_hand_on_the_papers_table_2():
    design = tite_boin12(
        {"accrual_per_month": 2.0, "dlt_window_months": TAU_T, "efficacy_window_months": TAU_E}
    )
    method = design.method
    state = _table_2_state(design)
    data = method.pending_data(state)
    summary = method.level_summary(state)
    hand = _by_hand(method)
    for level, want in hand.items():
        j = level - 1
        assert data.n[0, j] == want["n"]
        assert data.y[0, j] == want["y"] and data.r[0, j] == want["r"]
        assert data.m_tox[0, j] == want["m_t"] and data.m_eff[0, j] == want["m_e"]
        assert data.ess_tox[0, j] == pytest.approx(want["ess_t"], rel=1e-12)
        assert data.ess_eff[0, j] == pytest.approx(want["ess_e"], rel=1e-12)
        assert data.x[0, j] == pytest.approx(want["x"], rel=1e-12)
        assert summary["desirability"][0, j] == pytest.approx(want["desirability"], rel=1e-9)
        assert summary["acceptable"][0, j] == want["acceptable"]
    # level 3: DLTs seen 2 (patients 8 and 13), 4 complete and 2 pending at 20 and 10 days
    assert hand[3]["ess_t"] == pytest.approx(4 + 20 / 45 + 10 / 45)
    assert hand[3]["p_t"] == pytest.approx(3 / 7)


def test_the_decision_at_day_315_de_escalates_on_the_approximated_likelihood():
    """p̂ = 2 / (14/3) = 3/7 ≥ λd = 0.3565 (φ_T = 0.3): de-escalate to level 2. (The paper's
    illustration, with φ_T = 0.35, stays at level 3; as dx-li/mdanderson-stats records, its
    own rule gives 3/7 > λd(0.35) = 0.4185 too, so the example is not a reference for the
    decision itself.)"""
    design = tite_boin12(
        {"accrual_per_month": 2.0, "dlt_window_months": TAU_T, "efficacy_window_months": TAU_E}
    )
    state = _table_2_state(design)
    basis = design.method.decision_basis(state)
    assert basis["rate"][0] == pytest.approx(3 / 7)
    assert basis["rate"][0] >= design.method.lambdas[1]
    assert not basis["suspended"][0]  # 2 of 6 pending for each outcome
    decide(design, state)
    assert state.next_level[0] == 1


# -- (3) suspension ---------------------------------------------------------------------------


def _pending_state(n, m_tox, m_eff, window=1.5, efficacy_window=3.0):
    """One trial with n patients at level 2: m_tox of them within the DLT window, m_eff within
    the efficacy window (no events), the others complete."""
    state = TrialState.start(1, 5, 1, n).with_efficacy().with_response_times()
    state.patient_level[0, :n] = 1
    arrival = np.full(n, -10.0)
    arrival[:m_eff] = -0.5 * efficacy_window  # pending for the response
    arrival[: min(m_tox, m_eff)] = -0.5 * window  # these also for the DLT
    state.patient_arrival[0, :n] = arrival
    if m_tox > m_eff:  # pending for the DLT only: within the DLT window, past the efficacy one
        raise ValueError("the DLT window is the shorter here")
    state.n[0, 1] = state.n_enrolled[0] = n
    state.level[:] = 1
    return state


@pytest.mark.parametrize(
    ("n", "m_tox", "m_eff", "held"),
    [
        (6, 3, 3, False),
        (6, 3, 4, True),
        (6, 4, 4, True),
        (6, 0, 3, False),
        (3, 1, 2, True),
        (3, 1, 1, False),
        (4, 2, 2, False),
        (5, 0, 3, True),
    ],
)
def test_accrual_is_held_while_more_than_half_are_pending_for_either_outcome(n, m_tox, m_eff, held):
    design = tite_boin12()
    state = _pending_state(n, m_tox, m_eff)
    data = design.method.pending_data(state)
    assert (data.m_tox[0, 1], data.m_eff[0, 1]) == (m_tox, m_eff)
    assert design.method.suspend(state)[0] == held
    assert suspended_trials(design, state)[0] == held


def test_no_cohort_starts_with_more_than_half_pending_in_simulated_trials():
    """Recomputed from each simulated trial's patient records, independently of the method:
    when a cohort's first patient arrives, at most half of the previous cohort's level's
    patients are pending for the DLT and at most half for the response; and the rule holds
    accrual in a good share of trials (the check is not vacuous)."""
    design = tite_boin12()
    tau_t, tau_e = 1.5, 3.0
    waited = 0
    for scenario in SCENARIOS[:2]:
        state, _ = _simulate(design, scenario, n_trials=150, seed=9)
        for trial in range(state.n_trials):
            k_max = int(state.n_enrolled[trial])
            for k in range(3, k_max, 3):
                now = state.patient_arrival[trial, k]
                level = state.patient_level[trial, k - 1]
                before = np.flatnonzero(state.patient_level[trial, :k] == level)
                arrival = state.patient_arrival[trial, before]
                dlt_seen = state.patient_dlt[trial, before] & (
                    arrival + state.patient_dlt_time[trial, before] <= now
                )
                eff_seen = state.patient_response[trial, before] & (
                    arrival + state.patient_response_time[trial, before] <= now
                )
                m_t = np.sum(~dlt_seen & (now < arrival + tau_t))
                m_e = np.sum(~eff_seen & (now < arrival + tau_e))
                assert m_t <= 0.5 * before.size and m_e <= 0.5 * before.size, (trial, k)
            # a held trial enrols its next patient at an outcome time, not an arrival gap
            waited += np.isin(
                state.patient_arrival[trial, 3:k_max],
                np.concatenate(
                    [
                        state.patient_arrival[trial, :k_max] + tau_t,
                        state.patient_arrival[trial, :k_max] + tau_e,
                        state.patient_arrival[trial, :k_max]
                        + state.patient_dlt_time[trial, :k_max],
                        state.patient_arrival[trial, :k_max]
                        + state.patient_response_time[trial, :k_max],
                    ]
                ),
            ).any()
    assert waited > 50


def test_holding_accrual_makes_trials_longer_than_never_holding():
    scenario = SCENARIOS[0]
    held, _ = _simulate(tite_boin12(), scenario, n_trials=200)
    free, _ = _simulate(tite_boin12(max_pending_fraction=1.0), scenario, n_trials=200)
    last = lambda s: np.nanmax(s.patient_arrival, axis=1)  # noqa: E731
    assert last(held).mean() > last(free).mean() + 1.0
    assert held.patient_while_pending.mean() < free.patient_while_pending.mean()


# -- response times ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["uniform", "late", "early"])
def test_response_times_follow_the_scenarios_response_onset(kind):
    """Each responder's response time is the efficacy window × the onset model's quantile of the
    patient's own draw (its own stream): uniform, or a truncated Weibull late or early."""
    design = tite_boin12()
    scenario = dataclasses.replace(SCENARIOS[0], response_onset=Onset(kind))
    patients = chunk_patients(3, 0, 300, design.n_places, True).with_response_draws()
    state, _ = _simulate(design, scenario, n_trials=300, seed=3)
    responders = state.patient_response & (state.patient_level >= 0)
    fraction = state.patient_response_time[responders] / 3.0
    draws = patients.response_onset[:, : design.n_places][responders]
    np.testing.assert_allclose(fraction, Onset(kind).fraction(draws))
    assert np.isnan(state.patient_response_time[~responders]).all()
    assert stats.kstest(fraction, Onset(kind).cdf).pvalue > 1e-4
    seed = np.random.SeedSequence(3, spawn_key=(0, RESPONSE_TIME_STREAM))
    expected = np.random.default_rng(seed).random((design.n_places, 300)).T
    np.testing.assert_array_equal(patients.response_onset[:, : design.n_places], expected)


def test_response_times_leave_every_other_design_unchanged():
    """The response-time draws are a stream of their own, drawn only for a method with late
    efficacy: TITE-BOIN and BOIN12 (timed) see the same trials whether or not the patients carry
    them; and they are drawn patient-major, so a design with fewer places sees the same first
    patients."""
    tite_boin = design_from_dict(
        {
            "method": "tite-boin",
            "target": 0.3,
            "levels": 5,
            "cohort_size": 3,
            "max_patients": 30,
            "timing": {"accrual_per_month": 2.0, "dlt_window_months": 1.5},
        },
        "tite_boin.toml",
    )
    boin12 = design_from_dict(
        {
            **BOIN12,
            "method": "boin12",
            "timing": {"accrual_per_month": 2.0, "dlt_window_months": 1},
        },
        "boin12.toml",
    )
    scenario = SCENARIOS[0]
    for design in (tite_boin, boin12):
        patients = chunk_patients(4, 0, 200, design.n_places, True)
        assert patients.response_onset is None
        without = run_chunk(design, scenario, patients)
        with_draws = run_chunk(design, scenario, patients.with_response_draws())
        np.testing.assert_array_equal(with_draws.n, without.n)
        np.testing.assert_array_equal(with_draws.mtd, without.mtd)
    full = chunk_patients(4, 0, 200, 40, True).with_response_draws().response_onset
    head = chunk_patients(4, 0, 200, 40, True).head(20).with_response_draws().response_onset
    np.testing.assert_array_equal(head, full[:, :20])


# -- design files, recommendations -------------------------------------------------------------


def test_design_file_errors_name_the_key():
    source = {
        **BOIN12,
        "method": "tite-boin12",
        "timing": {"accrual_per_month": 2.0, "dlt_window_months": 1.5},
    }
    # without an efficacy window, responses are assessed within the DLT window
    assert design_from_dict(source, "x.toml").method.efficacy_window == 1.5
    source["timing"] = {**source["timing"], "efficacy_window_months": 0}
    with pytest.raises(ConfigError, match="efficacy_window_months"):
        design_from_dict(source, "x.toml")
    boin = {
        "method": "boin",
        "target": 0.3,
        "levels": 5,
        "timing": {
            "accrual_per_month": 2.0,
            "dlt_window_months": 1.5,
            "efficacy_window_months": 3.0,
        },
    }
    with pytest.raises(ConfigError, match="efficacy_window_months: only with a method"):
        design_from_dict(boin, "y.toml")
    with pytest.raises(ConfigError, match="response_onset: only with eff_prob"):
        scenarios_from_dict(
            {"scenario": [{"name": "S", "dlt_prob": [0.1, 0.2], "response_onset": "late"}]},
            "s.toml",
        )
    with pytest.raises(ConfigError, match="response_onset"):
        scenarios_from_dict(
            {
                "scenario": [
                    {"name": "S", "dlt_prob": [0.1], "eff_prob": [0.2], "response_onset": "soon"}
                ]
            },
            "s.toml",
        )
    (late,) = scenarios_from_dict(
        {
            "scenario": [
                {
                    "name": "S",
                    "dlt_prob": [0.1],
                    "eff_prob": [0.2],
                    "response_onset": "late",
                    "response_onset_shape": 2.0,
                }
            ]
        },
        "s.toml",
    )
    assert late.response_onset == Onset("late", 2.0)


def test_outcome_strings_are_complete_data_and_patients_need_their_responses():
    """An outcome string carries no times: every outcome is known, and the interim answer is
    BOIN12's. Patients given one by one need their responses (the patient file's ``response``
    column, tests/test_tite_boin12_recommend.py): without them, refused in one line."""
    design = tite_boin12()
    plain = design_from_dict({**BOIN12, "method": "boin12"}, "boin12.toml")
    cohorts = [(0, [False] * 3, [True, False, False]), (1, [False, True, False], [True] * 3)]
    got, want = recommend(design, cohorts), recommend(plain, cohorts)
    assert (got.next_level, got.mtd, got.n, got.y, got.r) == (
        want.next_level,
        want.mtd,
        want.n,
        want.y,
        want.r,
    )
    with pytest.raises(ValueError, match="decides on responses") as info:
        recommend_from_patients(design, np.array([0]), np.array([False]), np.array([1.0]))
    assert "\n" not in str(info.value)


def test_protocol_text_names_the_paper_and_the_windows():
    method = tite_boin12().method
    text = method.describe()
    assert "TITE-BOIN12 (Zhou et al. 2022)" in text and "1.5-month DLT window" in text
    assert "3-month efficacy window" in text
    assert any("sim.9337" in ref for ref in method.references)
    assert math.isclose(method.efficacy_window, 3.0)


def test_cli_refuses_a_patient_file_without_responses_in_one_line(tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from theradose.cli import app

    design = Path(__file__).resolve().parents[1] / "designs" / "tite_boin12_psma.toml"
    patients = tmp_path / "patients.csv"
    patients.write_text("level,dlt,followup_days\n1,0,95\n1,0,80\n1,0,60\n")
    result = CliRunner().invoke(app, ["recommend", str(design), "--patients", str(patients)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "missing column 'response'" in lines[0]
    assert "method 'tite-boin12' decides on responses" in lines[0]
    paths = CliRunner().invoke(app, ["paths", str(design), "--outcomes", "1NNN", "--cohorts", "1"])
    assert paths.exit_code == 0 and "1NNN → treat at level 2" in paths.output
