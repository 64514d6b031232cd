"""TITE-CRM and time in the engine: dfcrm titecrm/titesim references, and consistency checks."""

import numpy as np
import pytest
from scipy import integrate
from scipy.special import xlog1py, xlogy

from factories import crm_design, reference, scenario
from theradose.config import design_from_dict
from theradose.engine import VirtualPatients, run_trials, select_mtd, simulate
from theradose.methods.crm import EmpiricModel
from theradose.methods.tite_crm import TiteCrm
from theradose.results import OperatingCharacteristics
from theradose.scenario import Scenario
from theradose.state import TrialState
from theradose.timing import Onset

TITESIM = reference("tite_crm_sim.json")["results"]
SKELETON = TITESIM[0]["call"]["prior"]

# dfcrm's titecrm example: skeleton, target 0.2, 10 patients of a 180-day window.
EXAMPLE = {
    "skeleton": (0.05, 0.10, 0.20, 0.35, 0.50, 0.70),
    "levels": [3, 3, 3, 4, 4, 3, 2, 2, 2, 3],
    "dlt": [0, 0, 1, 0, 1, 0, 0, 0, 0, 0],
    "followup": [178, 181, 168, 181, 24, 181, 179, 102, 42, 3],
}


def _example_state():
    n = len(EXAMPLE["levels"])
    state = TrialState.start(1, 6, 0, n)
    dlt = np.array(EXAMPLE["dlt"], dtype=bool)
    followup = np.array(EXAMPLE["followup"], dtype=float)
    state.patient_level[0] = np.array(EXAMPLE["levels"]) - 1
    state.patient_dlt[0] = dlt
    state.patient_arrival[0] = -followup  # "now" is time 0
    state.patient_dlt_time[0] = np.where(dlt, followup, np.nan)
    state.time[:] = 0.0
    return state


def tite_design(**overrides):
    source = {
        "method": "tite-crm",
        "target": 0.3,
        "levels": 6,
        "cohort_size": 1,
        "max_patients": 30,
        "crm": {"skeleton": SKELETON},
        "timing": {"accrual_per_month": 3.0, "accrual": "fixed", "dlt_window_months": 1.0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            source[key] = {**source.get(key, {}), **value}
        else:
            source[key] = value
    return design_from_dict(source, "tite.toml")


def test_titecrm_example():
    method = TiteCrm(6, 0.2, EmpiricModel(EXAMPLE["skeleton"]), 30, window=180.0)
    state = _example_state()
    assert method.model_summary(state)["beta_mean"][0] == pytest.approx(-0.133, abs=5e-4)
    assert method.select_mtd(state)[0] + 1 == 3


def test_weighted_posterior_matches_adaptive_integration():
    method = TiteCrm(6, 0.2, EmpiricModel(EXAMPLE["skeleton"]), 30, window=180.0)
    state = _example_state()
    level = np.array(EXAMPLE["levels"]) - 1
    dlt = np.array(EXAMPLE["dlt"])
    weight = np.where(dlt == 1, 1.0, np.minimum(np.array(EXAMPLE["followup"]) / 180, 1.0))
    skeleton = np.array(EXAMPLE["skeleton"])

    def density(beta):
        p = skeleton[level] ** np.exp(beta)
        log_lik = np.sum(xlogy(dlt, p) + xlog1py(1 - dlt, -weight * p))
        return np.exp(log_lik - beta**2 / (2 * 1.34))

    opts = {"epsabs": 0, "epsrel": 1e-11, "limit": 200}
    norm = integrate.quad(density, -10, 10, **opts)[0]
    mean = integrate.quad(lambda b: b * density(b), -10, 10, **opts)[0] / norm
    assert method.model_summary(state)["beta_mean"][0] == pytest.approx(mean, abs=1e-8)


def test_adaptive_weights_follow_cheung_chappell():
    # Two DLTs at 0.2 and 0.6 of the window; pending patients at follow-up 0.1, 0.4 and 0.9.
    method = TiteCrm(3, 0.3, EmpiricModel((0.1, 0.3, 0.5)), 10, window=1.0, weights="adaptive")
    follow = np.array([[0.1, 0.4, 0.9, 1.0, 1.0]])
    onset = np.array([[np.inf, np.inf, np.inf, 0.2, 0.6]])
    pending = np.array([[True, True, True, False, False]])
    weights = method._weights(follow, onset, pending)
    # kappa = 0, 1, 2 DLT times at or below the follow-up; z = 2.
    expected = [(0 + 0.1 / 0.2) / 3, (1 + (0.4 - 0.2) / 0.4) / 3, (2 + (0.9 - 0.6) / 0.4) / 3]
    np.testing.assert_allclose(weights[0, :3], expected)
    assert np.all((weights >= 0) & (weights <= 1))


@pytest.mark.slow
@pytest.mark.parametrize(
    "ref", [r for r in TITESIM if r["design"] == "single_stage"], ids=lambda r: r["scenario"]
)
def test_simulation_agrees_with_titesim(ref):
    design = tite_design()
    n_trials = 6_000
    sim = simulate([design], [scenario(*ref["p_true"])], n_trials, seed=8)[0][0]
    oc = OperatingCharacteristics.from_simulations(sim)
    m = ref["call"]["nsim"]
    ours = np.array(oc.values["selection_pct"])
    p = (ours * n_trials + np.array(ref["selpercent"]) * m) / (n_trials + m) / 100
    se = 100 * np.sqrt(p * (1 - p) * (1 / n_trials + 1 / m))
    assert np.all(np.abs(ours - ref["selpercent"]) <= 4 * se + 1e-9)
    n_se = np.array(oc.se["patients_mean"]) * np.sqrt(1 + n_trials / m)
    assert np.all(np.abs(np.array(oc.values["patients_mean"]) - ref["npatients"]) <= 4 * n_se)
    # fixed accrual every third of a window from 1/3: the last of 30 arrives at 10, ends at 11
    assert oc.values["duration_months_mean"] == pytest.approx(ref["mean_duration_obswin_units"])


def _patients(n_trials, n_patients, seed):
    rng = np.random.default_rng(seed)
    return VirtualPatients(*(rng.random((n_trials, n_patients)) for _ in range(3)))


def test_with_nobody_pending_tite_crm_is_the_crm():
    """Accrual so slow that every window closes before the next arrival: weights are all 1."""
    tite = tite_design(max_patients=18, timing={"accrual_per_month": 0.001})
    crm = crm_design(skeleton=SKELETON, max_patients=18, cohort_size=1, coherent=False)
    patients = _patients(300, 18, seed=2)
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.7])
    a = run_trials(tite, p, patients)
    b = run_trials(crm, p, patients.tolerance)
    np.testing.assert_array_equal(a.patient_level, b.patient_level)
    np.testing.assert_array_equal(a.n, b.n)
    np.testing.assert_array_equal(select_mtd(tite, a), select_mtd(crm, b))
    assert not a.patient_while_pending.any()


@pytest.mark.parametrize("rate", [0.01, 2.0, 50.0])
def test_timing_never_changes_a_design_that_waits_for_complete_data(rate):
    plain = crm_design(skeleton=SKELETON, max_patients=24)
    from dataclasses import replace

    from theradose.timing import Timing

    timed = replace(plain, timing=Timing(rate, 2.0, "poisson"))
    patients = _patients(200, 24, seed=3)
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.7])
    a, b = run_trials(plain, p, patients.tolerance), run_trials(timed, p, patients)
    np.testing.assert_array_equal(a.patient_level, b.patient_level)
    np.testing.assert_array_equal(select_mtd(plain, a), select_mtd(timed, b))
    # cohorts wait for their window: nobody is ever enrolled while others are pending
    assert not b.patient_while_pending.any()
    durations = np.nanmax(b.patient_arrival, axis=1) + 2.0
    assert np.all(durations >= 2.0 * b.n_enrolled / plain.cohort_size)


def test_no_dlt_is_counted_before_its_onset():
    design = tite_design(max_patients=24, timing={"accrual_per_month": 12.0})
    patients = _patients(200, 24, seed=4)
    state = run_trials(design, np.array([0.3, 0.4, 0.5, 0.6, 0.7, 0.8]), patients)
    for time in (0.5, 1.0, 1.5, 2.0):
        probe = state.take(np.arange(state.n_trials))
        probe.time[:] = time
        seen = probe.observed_dlt(1.0)
        onset = probe.patient_arrival + probe.patient_dlt_time
        assert np.all(onset[seen] <= time)
        assert np.all(~seen[probe.patient_dlt & (onset > time)])
        follow = probe.followup(1.0)
        assert np.all((follow >= 0) & (follow <= 1))


def test_late_onset_fractions():
    onset = Onset("late", 3.0)
    u = np.random.default_rng(0).random(200_000)
    x = onset.fraction(u)
    assert np.all((x > 0) & (x <= 1))
    grid = np.linspace(0.05, 0.95, 10)
    empirical = (x[:, None] <= grid).mean(axis=0)
    assert np.all(np.abs(empirical - onset.cdf(grid)) < 4 * np.sqrt(0.25 / u.size))
    assert onset.cdf(0.5) < 0.2  # most DLTs in the window's second half


def test_fast_accrual_and_late_onset_enrol_patients_while_others_are_pending():
    design = tite_design(timing={"accrual_per_month": 6.0, "accrual": "poisson"})
    late = Scenario("late", (0.05, 0.1, 0.2, 0.3, 0.5, 0.7), Onset("late", 3.0))
    sim = simulate([design], [late], 400, seed=1)[0][0]
    oc = OperatingCharacteristics.from_simulations(sim)
    assert oc.values["enrolled_while_pending_pct"] > 50
    assert oc.values["dlt_after_last_decision_mean"] > 0
    assert oc.values["duration_months_p95"] >= oc.values["duration_months_mean"]


@pytest.mark.parametrize(
    ("timing", "message"),
    [
        ({"dlt_window_months": 0}, "[timing] dlt_window_months = 0: must be a number > 0"),
        ({"accrual_per_month": -1}, "[timing] accrual_per_month = -1: must be a number > 0"),
        ({"accrual": "weekly"}, '[timing] accrual = "weekly": must be one of'),
    ],
)
def test_bad_timing(timing, message):
    from theradose.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        tite_design(timing=timing)
    assert any(message in line for line in caught.value.messages), caught.value.messages


def test_tite_needs_timing_and_forbids_coherence():
    from theradose.config import ConfigError

    source = {
        "method": "tite-crm",
        "target": 0.3,
        "levels": 6,
        "cohort_size": 1,
        "max_patients": 30,
        "crm": {"skeleton": SKELETON, "coherent": True},
    }
    with pytest.raises(ConfigError) as caught:
        design_from_dict(source, "t.toml")
    text = str(caught.value)
    assert "missing section [timing]" in text and "unknown key 'coherent'" in text


def test_recommendation_from_patients_reproduces_the_titecrm_example():
    from theradose.engine import recommend_from_patients
    from theradose.timing import DAYS_PER_MONTH

    design = design_from_dict(
        {
            "method": "tite-crm",
            "target": 0.2,
            "levels": 6,
            "cohort_size": 1,
            "max_patients": 30,
            "crm": {"skeleton": list(EXAMPLE["skeleton"]), "no_skip": False},
            "timing": {"accrual_per_month": 1.0, "dlt_window_months": 180 / DAYS_PER_MONTH},
        },
        "example.toml",
    )
    level = np.array(EXAMPLE["levels"]) - 1
    followup = np.array(EXAMPLE["followup"]) / DAYS_PER_MONTH
    rec = recommend_from_patients(design, level, np.array(EXAMPLE["dlt"], bool), followup)
    assert rec.model_summary["beta_mean"] == pytest.approx(-0.133, abs=5e-4)
    assert rec.next_level + 1 == 3 and rec.mtd + 1 == 3
    assert sum(rec.pending) == 5  # no DLT and under 180 days: patients 1, 7, 8, 9, 10


def test_recommendations_replay_simulated_trials_without_deviation():
    from theradose.engine import recommend_from_patients

    design = tite_design(max_patients=15, timing={"accrual_per_month": 4.0, "accrual": "poisson"})
    state = run_trials(design, np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.7]), _patients(12, 15, 9))
    assert state.patient_while_pending.any()
    for trial in range(state.n_trials):
        treated = state.patient_level[trial] >= 0
        rec = recommend_from_patients(
            design,
            state.patient_level[trial][treated],
            state.patient_dlt[trial][treated],
            -state.patient_arrival[trial][treated],  # the engine's times, bit for bit
            state.patient_dlt_time[trial][treated],
        )
        assert rec.deviations == ()
