"""TITE-CRM and time in the engine: dfcrm titecrm/titesim references, and consistency checks."""

import numpy as np
import pytest
from scipy import integrate
from scipy.special import xlog1py, xlogy

from factories import crm_design, reference, scenario
from theradose.config import design_from_dict
from theradose.engine import run_trials
from theradose.methods.crm import EmpiricModel
from theradose.methods.tite_crm import TiteCrm
from theradose.pipeline import select_mtd
from theradose.results import OperatingCharacteristics
from theradose.scenario import Scenario, truth_for
from theradose.simulation import simulate
from theradose.state import TrialState
from theradose.timing import Onset
from theradose.virtual_patients import VirtualPatients

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


def tite_source(**overrides):
    """A TITE-CRM design file as a dict: dfcrm's titesim conventions, with ``overrides``
    (sections merged key by key)."""
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
    return source


def tite_design(**overrides):
    return design_from_dict(tite_source(**overrides), "tite.toml")


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


# dfcrm's two-stage titesim: x0 = 3 patients a level (1, 1, 1, 2, 2, 2, …, 6, 6, …) until the
# first DLT, waiting tgrp = one window after a group's last patient before moving up.
TWO_STAGE = {"crm": {"start_up": "cohorts", "start_up_cohort_size": 3}}


@pytest.mark.slow
@pytest.mark.parametrize("ref", TITESIM, ids=lambda r: f"{r['scenario']}-{r['design']}")
def test_simulation_agrees_with_titesim(ref):
    design = tite_design(**(TWO_STAGE if ref["design"] == "two_stage" else {}))
    n_trials = 6_000
    sim = simulate([design], [scenario(*ref["p_true"])], n_trials, seed=8)[0][0]
    oc = OperatingCharacteristics.from_simulations(sim)
    m = ref["call"]["nsim"]
    ours = np.array(oc.values["selection_pct"])
    p = (ours * n_trials + np.array(ref["selpercent"]) * m) / (n_trials + m) / 100
    se = 100 * np.sqrt(p * (1 - p) * (1 / n_trials + 1 / m))
    assert np.all(np.abs(ours - ref["selpercent"]) <= 4 * se + 1e-9)
    inflate = np.sqrt(1 + n_trials / m)  # our SE → SE of the difference from dfcrm's mean
    n_se = np.array(oc.se["patients_mean"]) * inflate
    assert np.all(np.abs(np.array(oc.values["patients_mean"]) - ref["npatients"]) <= 4 * n_se)
    dlt_se = np.array(oc.se["dlt_mean"]) * inflate
    assert np.all(np.abs(np.array(oc.values["dlt_mean"]) - ref["ntox"]) <= 4 * dlt_se + 1e-9)
    if ref["design"] == "single_stage":
        # fixed accrual every third of a window from 1/3: the last of 30 arrives at 10, ends at 11
        assert oc.values["duration_months_mean"] == pytest.approx(ref["mean_duration_obswin_units"])
    else:
        # the start-up's waits (and arrivals turned away) make the duration random
        duration_se = oc.se["duration_months_mean"] * inflate
        assert abs(oc.values["duration_months_mean"] - ref["mean_duration_obswin_units"]) <= (
            4 * duration_se
        )


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


@pytest.mark.parametrize("kind", ["late", "early"])
def test_onset_fractions_follow_their_distribution(kind):
    onset = Onset(kind, 3.0)
    u = np.random.default_rng(0).random(200_000)
    x = onset.fraction(u)
    assert np.all((x >= 0) & (x <= 1))
    assert np.all(np.diff(onset.fraction(np.sort(u))) >= 0)  # increasing in the draw
    grid = np.linspace(0.05, 0.95, 10)
    empirical = (x[:, None] <= grid).mean(axis=0)
    assert np.all(np.abs(empirical - onset.cdf(grid)) < 4 * np.sqrt(0.25 / u.size))
    if kind == "late":
        assert onset.cdf(0.5) < 0.2  # most DLTs in the window's second half
    else:  # the mirror image: most in the first half
        assert onset.cdf(0.5) > 0.8
        assert onset.cdf(0.3) == pytest.approx(1 - Onset("late", 3.0).cdf(0.7), abs=1e-15)


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

    source = tite_source(crm={"coherent": True})
    del source["timing"]
    with pytest.raises(ConfigError) as caught:
        design_from_dict(source, "t.toml")
    text = str(caught.value)
    assert "missing section [timing]" in text and "unknown key 'coherent'" in text


def test_recommendation_from_patients_reproduces_the_titecrm_example():
    from theradose.recommendation import recommend_from_patients
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


@pytest.mark.parametrize("start_up", [{}, TWO_STAGE], ids=["single-stage", "two-stage"])
def test_recommendations_replay_simulated_trials_without_deviation(start_up):
    from theradose.recommendation import recommend_from_patients

    timing = {"accrual_per_month": 4.0, "accrual": "poisson"}
    design = tite_design(max_patients=15, timing=timing, **start_up)
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


def _dfcrm_start_up(arrival_gap, wait, group, n, n_levels, dlt, onset):
    """dfcrm's two-stage titesim loop up to the first observed DLT, for one trial with fixed
    accrual: the patients' (level, arrival) before it, and the time the model takes over (None
    when the start-up lasts the whole trial). ``dlt``/``onset``: each patient's eventual DLT and
    its onset after arrival, in enrolment order."""
    levels = [min(j // group, n_levels - 1) for j in range(n)]
    arrivals = [arrival_gap]
    now = arrival_gap
    while len(arrivals) < n:
        now += arrival_gap  # the next arrival
        seen = any(dlt[i] and arrivals[i] + onset[i] <= now for i in range(len(arrivals)))
        if seen:
            return list(zip(levels, arrivals, strict=False)), now
        m = len(arrivals) - 1
        if levels[m + 1] == levels[m] or now - arrivals[m] >= wait:
            arrivals.append(now)  # else this arrival is turned away
    return list(zip(levels, arrivals, strict=False)), None


@pytest.mark.parametrize("wait", [1.0, 0.5, 2.0])
def test_two_stage_start_up_follows_dfcrm_arrival_by_arrival(wait):
    """Fixed accrual: the start-up's levels and arrival times, and the time of the first model
    decision, equal dfcrm's loop bit for bit (its floating-point sums included)."""
    design = tite_design(
        max_patients=20,
        crm={"start_up": "cohorts", "start_up_cohort_size": 3, "start_up_wait_months": wait},
    )
    p = np.array([0.02, 0.04, 0.06, 0.08, 0.1, 0.15])  # long start-ups
    patients = _patients(300, 20, seed=4)
    state = run_trials(design, p, patients)
    for t in range(300):
        level = state.patient_level[t]
        dlt = patients.tolerance[t] < p[np.maximum(level, 0)]
        start, handover = _dfcrm_start_up(1 / 3, wait, 3, 20, 6, dlt, patients.onset[t])
        k = len(start)
        np.testing.assert_array_equal(level[:k], [lv for lv, _ in start])
        np.testing.assert_array_equal(state.patient_arrival[t, :k], [a for _, a in start])
        if handover is not None:
            assert state.patient_arrival[t, k] == handover  # the first patient the model places


@pytest.mark.parametrize("accrual", ["fixed", "poisson"])
def test_two_stage_never_moves_up_early_in_the_start_up(accrual):
    """Until a DLT is seen, patient j gets level j // 3 (arrivals turned away, not enrolled),
    and a new level's first patient arrives at least the wait after the previous patient."""
    design = tite_design(
        max_patients=24,
        timing={"accrual_per_month": 5.0, "accrual": accrual},
        crm={"start_up": "cohorts", "start_up_cohort_size": 3, "start_up_wait_months": 0.8},
    )
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.7])
    patients = _patients(400, 24, seed=5)
    state = run_trials(design, p, patients)
    arrival, level = state.patient_arrival, state.patient_level
    onset = arrival + state.patient_dlt_time
    checked = 0
    for t in range(400):
        for j in range(1, 24):
            if np.any(state.patient_dlt[t, :j] & (onset[t, :j] <= arrival[t, j])):
                break  # a DLT was seen: the model has the trial
            assert level[t, j] == min(j // 3, 5)
            if level[t, j] > level[t, j - 1]:
                assert arrival[t, j] - arrival[t, j - 1] >= 0.8
                checked += 1
    assert checked > 200
    if accrual == "poisson":  # turned-away arrivals use their own stream: same seed, same trials
        again = run_trials(design, p, patients)
        np.testing.assert_array_equal(again.patient_arrival, arrival)


@pytest.mark.parametrize(
    ("crm", "message"),
    [
        ({"start_up_wait_months": 1.0}, 'start_up_wait_months: only with start_up = "cohorts"'),
        ({"start_up_cohort_size": 3}, 'start_up_cohort_size: only with start_up = "cohorts"'),
        (
            {"start_up": "cohorts", "start_up_wait_months": 0},
            "start_up_wait_months = 0: must be a number > 0",
        ),
        (
            {"start_up": "cohorts", "start_up_cohort_size": 0},
            "start_up_cohort_size = 0: must be an integer",
        ),
    ],
)
def test_bad_start_up(crm, message):
    from theradose.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        tite_design(crm=crm)
    assert any(message in line for line in caught.value.messages), caught.value.messages


def test_recommend_in_a_two_stage_start_up():
    """During the start-up the design waits for the last patient's follow-up before moving up;
    once it is long enough it moves up; a DLT hands the trial to the model at once."""
    from theradose.recommendation import recommend_from_patients
    from theradose.timing import DAYS_PER_MONTH

    design = tite_design(**TWO_STAGE)
    level = np.zeros(3, dtype=int)
    days = lambda *d: np.array(d) / DAYS_PER_MONTH  # noqa: E731
    held = recommend_from_patients(design, level, np.zeros(3, bool), days(50, 30, 10))
    assert held.suspended and held.start_up_wait and held.next_level is None
    assert held.review_in * DAYS_PER_MONTH == pytest.approx(DAYS_PER_MONTH - 10)  # a 1-month wait
    done = recommend_from_patients(design, level, np.zeros(3, bool), days(90, 70, 31))
    assert not done.suspended and done.next_level == 1
    dlt = recommend_from_patients(design, level, np.array([True, False, False]), days(50, 30, 10))
    assert not dlt.suspended and not dlt.start_up_wait and dlt.next_level == 0


def test_a_start_up_move_a_constraint_forbids_is_no_wait():
    """Two-stage start-up under an organ-dose limit that keeps the trial at level 1: the
    start-up never moves up, so it never waits; patients arrive every third of a window."""
    source = {
        **tite_source(**TWO_STAGE),
        "doses": [1.85, 3.7, 5.55, 7.4, 9.25, 11.1],
        "dosimetry": {
            "cycles": 4,
            "organ": [
                {
                    "name": "kidney",
                    "gy_per_gbq_median": 0.43,
                    "gy_per_gbq_cv": 0.37,
                    "prior_strength": 50,
                    "limit_gy": 6.0,  # level 1 (7.4 GBq in all) admissible, level 2 never
                    "max_exceed_prob": 0.10,
                }
            ],
        },
    }
    design = design_from_dict(source, "blocked.toml")
    scen = Scenario("safe", (0.0,) * 6)
    patients = _patients(50, 30, seed=6).with_dosimetry(design, scen)
    state = run_trials(design, truth_for(scen, design).dlt_prob, patients)
    assert (state.patient_level == 0).all()
    np.testing.assert_allclose(np.diff(state.patient_arrival, axis=1), 1 / 3, rtol=1e-9)


def test_two_stage_with_poisson_accrual_is_the_same_for_any_number_of_workers(monkeypatch):
    """Arrivals turned away draw their gaps from a stream of each chunk's own."""
    import theradose.simulation as simulation
    from test_invariants import assert_same_simulations

    monkeypatch.setattr(simulation, "CHUNK_TRIALS", 150)
    timing = {"accrual_per_month": 4.0, "accrual": "poisson"}
    design = tite_design(max_patients=18, timing=timing, **TWO_STAGE)
    scen = [scenario(0.05, 0.1, 0.2, 0.3, 0.5, 0.7)]
    one = simulate([design], scen, n_trials=400, seed=3, workers=1)[0][0]
    two = simulate([design], scen, n_trials=400, seed=3, workers=2)[0][0]
    assert_same_simulations(one, two)
