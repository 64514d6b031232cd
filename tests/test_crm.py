"""CRM against dfcrm 0.2-2.1 (getprior, crm, crmsim) and against independent quadrature."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.special import xlog1py, xlogy

from factories import (
    assert_pct_agrees,
    assert_simulation_matches_exact,
    crm_design,
    reference,
    scenario,
)
from theradose.engine import run_trials
from theradose.exact import exact_operating_characteristics
from theradose.methods.crm import (
    Crm,
    EmpiricModel,
    LogisticModel,
    lee_cheung_skeleton,
    skeleton_problem,
)
from theradose.recommendation import recommend
from theradose.results import OperatingCharacteristics
from theradose.simulation import simulate
from theradose.state import StopReason, TrialState

SKELETONS = reference("crm_skeleton.json")["results"]
POSTERIORS = reference("crm_posterior.json")["results"]
CRMSIM = reference("crm_sim.json")["results"]


@pytest.mark.parametrize(
    "ref", SKELETONS, ids=lambda r: f"{r['call']['model']}-{r['call']['target']}"
)
def test_skeleton_matches_getprior(ref):
    call = ref["call"]
    skeleton = lee_cheung_skeleton(
        call["halfwidth"],
        call["target"],
        call["nu"] - 1,
        call["nlevel"],
        call["model"],
        call["intcpt"],
    )
    np.testing.assert_allclose(skeleton, ref["skeleton"], rtol=0, atol=1e-6)


def _crm_for(call, max_patients=36):
    skeleton = tuple(call["prior"])
    model = (
        EmpiricModel(skeleton)
        if call["model"] == "empiric"
        else LogisticModel(skeleton, call["intcpt"])
    )
    return Crm(len(skeleton), call["target"], model, max_patients, call["prior_var_beta"])


def _state(levels, dlts, n_levels):
    state = TrialState.start(1, n_levels, 0)
    for level, dlt in zip(levels, dlts, strict=True):
        state.n[0, level - 1] += 1
        state.y[0, level - 1] += dlt
    return state


@pytest.mark.parametrize("ref", POSTERIORS, ids=lambda r: f"{r['dataset']}-{r['call']['model']}")
def test_posterior_matches_dfcrm(ref):
    crm = _crm_for(ref["call"])
    summary = crm.level_summary(_state(ref["level"], ref["tox"], crm.n_levels))
    beta = crm.model_summary(_state(ref["level"], ref["tox"], crm.n_levels))
    assert beta["beta_mean"][0] == pytest.approx(ref["posterior_mean_beta"], abs=1e-6)
    assert beta["beta_var"][0] == pytest.approx(ref["posterior_var_beta"], abs=1e-6)
    np.testing.assert_allclose(summary["p_est"][0], ref["ptox"], rtol=0, atol=1e-6)
    state = _state(ref["level"], ref["tox"], crm.n_levels)
    assert crm.select_mtd(state)[0] + 1 == ref["recommended_dose"]


def _dense_posterior(crm, n, y):
    """Posterior mean of β and P(p_d > target) by scipy's adaptive quadrature, independently."""

    def likelihood(beta):
        p = crm.model.p(np.array(beta))
        log_lik = np.sum(xlogy(y, p) + xlog1py(n - y, -p))
        return np.exp(log_lik - beta**2 / (2 * crm.prior_var))

    opts = {"limit": 400, "epsabs": 0, "epsrel": 1e-11}
    norm = integrate.quad(likelihood, -10, 10, **opts)[0]
    mean = integrate.quad(lambda b: b * likelihood(b), -10, 10, **opts)[0] / norm
    thresholds = crm.model.beta_at(crm.target)
    overdose = [integrate.quad(likelihood, -10, b, **opts)[0] / norm for b in thresholds]
    return mean, np.array(overdose)


@settings(max_examples=40, deadline=None)
@given(
    n=st.lists(st.integers(0, 24), min_size=4, max_size=4),
    frac=st.lists(st.floats(0, 1), min_size=4, max_size=4),
    logistic=st.booleans(),
)
def test_quadrature_matches_adaptive_integration(n, frac, logistic):
    n = np.array(n)
    y = np.floor(np.array(frac) * n).astype(int)
    skeleton = (0.05, 0.12, 0.25, 0.4)
    model = LogisticModel(skeleton) if logistic else EmpiricModel(skeleton)
    crm = Crm(4, 0.25, model, max_patients=100)
    state = TrialState.start(1, 4, 0)
    state.n[0], state.y[0] = n, y
    summary = crm.level_summary(state)
    mean, overdose = _dense_posterior(crm, n, y)
    assert crm.model_summary(state)["beta_mean"][0] == pytest.approx(mean, abs=1e-6)
    np.testing.assert_allclose(summary["p_overdose"][0], overdose, rtol=0, atol=1e-6)
    assert np.all(summary["p_lower"] <= summary["p_est"] + 1e-12)
    assert np.all(summary["p_est"] <= summary["p_upper"] + 1e-12)
    assert np.all(np.isfinite(summary["p_est"]))


def test_credible_interval_is_the_posterior_quantile():
    crm = crm_design().method
    state = _state([1, 1, 1, 2, 2, 2, 3, 3, 3], [0, 0, 0, 0, 0, 1, 0, 1, 1], 6)
    summary = crm.level_summary(state)
    # P(p_3 > upper limit) = 5%: β below the 5% quantile.
    post_beta_at_upper = np.log(np.log(summary["p_upper"][0, 2]) / np.log(crm.model.skeleton[2]))
    n, y = state.n[0], state.y[0]

    def density(beta):
        p = crm.model.p(np.array(beta))
        return np.exp(np.sum(xlogy(y, p) + xlog1py(n - y, -p)) - beta**2 / (2 * crm.prior_var))

    norm = integrate.quad(density, -10, 10, epsabs=0, epsrel=1e-10, limit=200)[0]
    below = integrate.quad(density, -10, post_beta_at_upper, epsabs=0, epsrel=1e-10, limit=200)[0]
    assert below / norm == pytest.approx(0.05, abs=1e-6)


@pytest.mark.parametrize("ref", CRMSIM, ids=lambda r: f"{r['scenario']}-seed{r['call']['seed']}")
def test_exact_enumeration_agrees_with_crmsim(ref):
    """dfcrm's 10,000 simulated trials against our exact enumeration: only crmsim's error counts."""
    call = ref["call"]
    design = crm_design(skeleton=call["prior"], target=call["target"], max_patients=call["n"])
    exact = exact_operating_characteristics(design, scenario(*ref["p_true"]))
    assert exact["total_prob"] == pytest.approx(1.0, abs=1e-12)
    assert_pct_agrees(ref["selpercent"], call["nsim"], exact["selection_pct"], ref["scenario"])
    n_se = call["n"] / 2 / np.sqrt(call["nsim"])  # a per-level count's SD is at most n/2
    assert np.all(np.abs(np.array(ref["npatients"]) - exact["patients_mean"]) <= 4 * n_se)


@pytest.mark.slow
def test_simulation_agrees_with_exact():
    design = crm_design(max_patients=24, safety_cutoff=0.85, max_at_dose=9)
    scen = scenario(0.15, 0.25, 0.35, 0.5, 0.6, 0.7)
    assert_simulation_matches_exact(design, [scen], n_trials=30_000, seed=23)


@pytest.mark.slow
@pytest.mark.parametrize("ref", CRMSIM[:2], ids=lambda r: r["scenario"])
def test_simulation_agrees_with_crmsim(ref):
    call = ref["call"]
    design = crm_design(skeleton=call["prior"], target=call["target"], max_patients=call["n"])
    n_trials = 20_000
    sim = simulate([design], [scenario(*ref["p_true"])], n_trials, seed=17)[0][0]
    oc = OperatingCharacteristics.from_simulations(sim)
    # two independent simulations: the combined standard error
    p = np.array(oc.values["selection_pct"]) * n_trials + np.array(ref["selpercent"]) * call["nsim"]
    p = p / (n_trials + call["nsim"]) / 100
    se = 100 * np.sqrt(p * (1 - p) * (1 / n_trials + 1 / call["nsim"]))
    diff = np.abs(np.array(oc.values["selection_pct"]) - ref["selpercent"])
    assert np.all(diff <= 4 * se + 1e-9), (diff, se)
    n_se = np.array(oc.se["patients_mean"]) * np.sqrt(1 + n_trials / call["nsim"])
    assert np.all(np.abs(np.array(oc.values["patients_mean"]) - ref["npatients"]) <= 4 * n_se)


def test_restrictions_hold_on_every_cohort():
    design = crm_design(max_patients=36)
    rng = np.random.default_rng(5)
    state = run_trials(design, np.array([0.02, 0.05, 0.1, 0.6, 0.8, 0.9]), rng.random((400, 36)))
    levels, dlts = state.patient_level, state.patient_dlt
    for c in range(1, 12):
        prev, cur = levels[:, 3 * c - 1], levels[:, 3 * c]
        enrolled = cur >= 0
        assert np.all(cur[enrolled] <= prev[enrolled] + 1)  # no skipping
        toxic = dlts[:, 3 * (c - 1) : 3 * c].sum(1) >= 0.3 * 3
        assert np.all(cur[enrolled & toxic] <= prev[enrolled & toxic])  # coherence


def test_safety_stop_fires_and_selects_nothing():
    design = crm_design(safety_cutoff=0.9, safety_min_n=3)
    rec = recommend(design, [(0, (True, True, True))])
    assert rec.stop and rec.stop_reason is StopReason.SAFETY and rec.mtd is None
    sim = simulate([design], [scenario(0.6, 0.7, 0.75, 0.8, 0.85, 0.9)], 2000, seed=1)[0][0]
    oc = OperatingCharacteristics.from_simulations(sim)
    assert oc.values["no_selection_pct"] > 90
    assert oc.values["stop_reason_pct"]["safety"] == pytest.approx(oc.values["no_selection_pct"])


def test_start_up_escalates_until_the_first_dlt():
    design = crm_design(start_up="cohorts", coherent=True)
    rec = recommend(design, [(0, (False,) * 3), (1, (False,) * 3)])
    assert rec.next_level == 2
    rec = recommend(design, [(0, (False,) * 3), (1, (False, True, False))])
    assert rec.next_level <= 1


@settings(max_examples=25, deadline=None)
@given(
    n=st.lists(st.integers(0, 40), min_size=6, max_size=6),
    all_dlt=st.booleans(),
    estimate=st.sampled_from(["plugin", "posterior_mean"]),
)
def test_extreme_data_give_finite_probabilities(n, all_dlt, estimate):
    design = crm_design(estimate=estimate, max_patients=240)
    state = TrialState.start(1, 6, 0)
    state.n[0] = n
    state.y[0] = n if all_dlt else 0
    state.level[0] = 0
    p = design.method.estimates(state)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    summary = design.method.level_summary(state)
    for value in summary.values():
        assert np.all(np.isfinite(value))
    assert np.all((summary["p_overdose"] >= 0) & (summary["p_overdose"] <= 1))


def test_too_wide_halfwidth_is_reported():
    skeleton = lee_cheung_skeleton(0.25, 0.3, 4, 8)
    assert "not within" in skeleton_problem(skeleton, "empiric")
    assert skeleton_problem(lee_cheung_skeleton(0.05, 0.3, 2, 6), "empiric") is None
