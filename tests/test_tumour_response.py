"""Efficacy from each virtual patient's own tumour dose (``[scenario.efficacy]``, model
"tumour_dose"): p_E = 1 / (1 + (D50/D)^(4·γ50)) of the patient's cumulative tumour dose over the
cycles they receive; a response iff v' < p_E, v' joined to the DLT tolerance by a Gaussian copula.

Reference check: each level's P(response) and P(DLT and response) by Gauss–Hermite quadrature
over the lognormal true (and measured) Gy/GBq, written here from the formulas (not the package's
code; the copula by scipy's bivariate normal), against the engine's patients within 4 Monte
Carlo standard errors — a BOIN12 on activity (copula ρ = 0.4), a BOIN with a kidney limit and
patient capping, a design with personalised activity prescribed to the kidney and one prescribed
to the tumour — and against the package's own truths (the OCs': utility, true OBD). Also by hand,
patient by patient: the response flag is v' < p_E with v' from the efficacy stream.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
from scipy.special import expit, ndtr, ndtri
from scipy.stats import multivariate_normal

from factories import DESIGNS
from theradose import simulation
from theradose.config import (
    ConfigError,
    check_scenarios_fit,
    design_from_dict,
    load_design,
    load_scenarios,
    scenarios_from_dict,
)
from theradose.engine import run_trials
from theradose.results import OperatingCharacteristics
from theradose.scenario import both_prob, joint_prob, truth_for
from theradose.simulation import simulate
from theradose.virtual_patients import chunk_patients

ACTIVITY = [3.7, 5.55, 7.4, 9.25, 11.1]  # GBq per cycle
CYCLES = 4
CV = 0.15  # measurement error of each patient's Gy/GBq
KIDNEY_LIMIT = 23.0
# The scenario: NTCP on absorbed dose (no radiobiology) for kidney and marrow, a tumour.
ORGANS = {
    "kidney": {"gy_per_gbq_median": 0.43, "gy_per_gbq_cv": 0.37},
    "red_marrow": {"gy_per_gbq_median": 0.03, "gy_per_gbq_cv": 0.35},
    "tumour": {"gy_per_gbq_median": 1.5, "gy_per_gbq_cv": 0.7},
}
TOXICITY = {
    "background_prob": 0.05,
    "kidney": {"td50_gy": 30.0, "gamma50": 2.0},
    "red_marrow": {"td50_gy": 1.6, "gamma50": 2.0},
}
EFFICACY = {"organ": "tumour", "d50_gy": 40.0, "gamma50": 1.0}
KIDNEY = {"name": "kidney", "gy_per_gbq_median": 0.43, "gy_per_gbq_cv": 0.37,
          "limit_gy": KIDNEY_LIMIT, "max_exceed_prob": 0.25}


def scenario(rho: float = 0.0, **efficacy):
    entry = {"name": "T", "organ": ORGANS, "toxicity": TOXICITY,
             "efficacy": {**EFFICACY, **efficacy}}
    if rho:
        entry["tox_eff_correlation"] = rho
    return scenarios_from_dict({"scenario": [entry]}, "t.toml")[0]


def design(kind: str):
    source = {"method": "boin", "target": 0.3, "doses": ACTIVITY, "max_patients": 30,
              "dosimetry": {"cycles": CYCLES, "measurement_cv": CV, "organ": [KIDNEY]}}
    if kind == "boin12":
        source.update(method="boin12", max_patients=36, boin12={"phi_e": 0.2})
    elif kind == "capped":
        source["dosimetry"]["patient_cap"] = True
    elif kind in ("kidney", "tumour"):
        tumour = {"name": "tumour", "gy_per_gbq_median": 1.5, "gy_per_gbq_cv": 0.7,
                  "limit_gy": 40.0, "max_exceed_prob": 1.0}  # tracked: % past d50
        prescribed = [8.0, 12.0, 16.0, 20.0, 24.0] if kind == "kidney" else [
            25.0, 37.5, 50.0, 62.5, 75.0]
        source.update(doses=prescribed, dose_unit="Gy")
        source["dosimetry"].update(dose_basis="absorbed_dose", prescribe_to=kind,
                                   max_activity_gbq=12.0, organ=[KIDNEY, tumour])
    return design_from_dict(source, f"{kind}.toml")


# ---------------------------------------------------------------------------------------------
# The reference: Gauss–Hermite over standard normals, from the formulas


def _rule(n: int):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / w.sum()


def _log_sd(cv):
    return np.sqrt(np.log1p(cv * cv))


def _g(organ: str, z):
    o = ORGANS[organ]
    return o["gy_per_gbq_median"] * np.exp(_log_sd(o["gy_per_gbq_cv"]) * z)


def _logistic(dose, d50, gamma50):
    with np.errstate(divide="ignore"):
        return expit(4 * gamma50 * (np.log(dose) - np.log(d50)))


def _schedule(kind: str, value: float, g_measured):
    """(S1, S2) = (Σ a_c, Σ a_c²) of a patient whose measured Gy/GBq of the design's driving
    organ (capping: kidney; personalised: the prescribed organ) is ``g_measured``, and the
    measured values where the schedule has a kink."""
    if kind == "capped":  # "reduce": cycle 1 at A, the same x ≤ A for the rest, within 23 Gy
        first = g_measured * value
        budget = KIDNEY_LIMIT - first
        with np.errstate(divide="ignore"):
            x = np.where(budget > 0, np.minimum(value, budget / ((CYCLES - 1) * g_measured)), 0)
        kinks = [KIDNEY_LIMIT / value, KIDNEY_LIMIT / (CYCLES * value)]
        return (value + (CYCLES - 1) * x, value**2 + (CYCLES - 1) * x * x), kinks
    if kind in ("kidney", "tumour"):
        a = np.minimum(value / (CYCLES * g_measured), 12.0)
        return (CYCLES * a, CYCLES * a * a), [value / (CYCLES * 12.0)]
    return (CYCLES * value + 0 * g_measured, CYCLES * value**2 + 0 * g_measured), []


def reference(kind: str, value: float, rho: float = 0.0, n: int | None = None) -> dict:
    """P(DLT), P(response), P(DLT and response) at one level (activity or prescription)."""
    n = (40 if rho else 96) if n is None else n
    x, w = _rule(n)
    bg = TOXICITY["background_prob"]
    ntcp = {o: (TOXICITY[o]["td50_gy"], TOXICITY[o]["gamma50"]) for o in ("kidney", "red_marrow")}
    d50, gamma50 = EFFICACY["d50_gy"], EFFICACY["gamma50"]
    if rho != 0.0:  # fixed schedule: p_T over (z_kidney, z_marrow), p_E over z_tumour
        (s1, _), _ = _schedule(kind, value, 1.0)
        zk, zm = np.meshgrid(x, x, indexing="ij")
        w_t = np.outer(w, w).ravel()
        spare = (1 - _logistic(_g("kidney", zk) * s1, *ntcp["kidney"])) * (
            1 - _logistic(_g("red_marrow", zm) * s1, *ntcp["red_marrow"]))
        p_t = (1 - (1 - bg) * spare).ravel()
        p_e = _logistic(_g("tumour", x) * s1, d50, gamma50)
        h, k = np.meshgrid(ndtri(p_t), ndtri(p_e), indexing="ij")
        law = multivariate_normal(mean=[0.0, 0.0], cov=[[1.0, rho], [rho, 1.0]])
        both = law.cdf(np.column_stack([h.ravel(), k.ravel()])).reshape(h.shape)
        return {"dlt": float(w_t @ p_t), "eff": float(w @ p_e),
                "both": float(w_t @ both @ w)}
    # ρ = 0. The schedule follows the measured Gy/GBq ĝ of the driving organ: log ĝ ~ N(μ, σ² +
    # τ²), and given it the true log g ~ N(μ + r(log ĝ − μ), rτ²), r = σ²/(σ² + τ²). The outer
    # integral over log ĝ is Gauss–Legendre on pieces split where the schedule has a kink; given
    # ĝ, p_T and p_E depend on independent organs, so E[p_T·p_E | ĝ] = E[p_T | ĝ]·E[p_E | ĝ].
    driver = "tumour" if kind == "tumour" else "kidney"
    mu = np.log(ORGANS[driver]["gy_per_gbq_median"])
    sigma2, tau2 = _log_sd(ORGANS[driver]["gy_per_gbq_cv"]) ** 2, _log_sd(CV) ** 2
    sd_w, r = np.sqrt(sigma2 + tau2), sigma2 / (sigma2 + tau2)
    _, kinks = _schedule(kind, value, np.ones(1))
    edges = np.sort(np.r_[mu - 10 * sd_w, mu + 10 * sd_w,
                          [np.log(k) for k in kinks if abs(np.log(k) - mu) < 10 * sd_w]])
    y, wy = np.polynomial.legendre.leggauss(n)
    lo, hi = edges[:-1, None], edges[1:, None]
    log_hat = (lo + (hi - lo) * (y + 1) / 2).ravel()
    outer = ((hi - lo) / 2 * wy).ravel() * np.exp(-0.5 * ((log_hat - mu) / sd_w) ** 2) / (
        sd_w * np.sqrt(2 * np.pi))
    (s1, _), _ = _schedule(kind, value, np.exp(log_hat))
    g_true = np.exp(mu + r * (log_hat - mu)[:, None] + np.sqrt(r * tau2) * x[None, :])
    s1 = s1[:, None]

    def expect(organ, f):  # E[f(organ's cumulative dose) | ĝ]
        g = g_true if organ == driver else _g(organ, x)[None, :]
        return f(g * s1) @ w

    keep = (1 - bg) * expect("kidney", lambda d: 1 - _logistic(d, *ntcp["kidney"]))
    keep = keep * expect("red_marrow", lambda d: 1 - _logistic(d, *ntcp["red_marrow"]))
    p_e = expect("tumour", lambda d: _logistic(d, d50, gamma50))
    return {"dlt": float((1 - keep) @ outer), "eff": float(p_e @ outer),
            "both": float(((1 - keep) * p_e) @ outer)}


CASES = {  # design kind → the scenario's copula ρ
    "boin12": 0.4,
    "capped": 0.0,
    "kidney": 0.0,
    "tumour": 0.0,
}


def _value(kind: str, level: int) -> float:
    return float(design(kind).doses[level])


def test_reference_quadrature_is_converged():
    for kind, rho in CASES.items():
        n = 24 if rho else 48
        for level in (0, 4):
            coarse = reference(kind, _value(kind, level), rho, n)
            fine = reference(kind, _value(kind, level), rho, 2 * n)
            for key in coarse:
                # Gauss–Hermite over the copula's cells (ρ ≠ 0) converges more slowly: its
                # error stays well inside the quasi-Monte Carlo tolerance below
                assert abs(coarse[key] - fine[key]) < (5e-5 if rho else 1e-6), (kind, level, key)


@pytest.mark.parametrize("kind", list(CASES))
def test_package_truths_agree_with_the_reference(kind):
    """truth_for's eff_prob and both_prob (quadrature, or quasi-Monte Carlo with ρ ≠ 0 and NTCP
    DLTs) — what utility and the true OBD are computed from — against the formulas."""
    d, s = design(kind), scenario(CASES[kind])
    truth = truth_for(s, d)
    for level in range(d.n_levels):
        ref = reference(kind, _value(kind, level), CASES[kind])
        tol = 2e-6 if CASES[kind] == 0 else 2e-4  # quasi-Monte Carlo's error
        assert truth.eff_prob[level] == pytest.approx(ref["eff"], abs=tol), (kind, level)
        assert truth.both_prob[level] == pytest.approx(ref["both"], abs=tol), (kind, level)
        assert truth.dlt_prob[level] == pytest.approx(ref["dlt"], abs=tol), (kind, level)


def _ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """Σ num / Σ den over trials with its Monte Carlo error (delta method over trials)."""
    r = num.sum() / den.sum()
    return float(r), float(np.sqrt(np.square(num - r * den).sum()) / den.sum())


def _run(kind: str, n_trials: int, seed: int):
    d, s = design(kind), scenario(CASES[kind])
    truth = truth_for(s, d)
    patients = chunk_patients(seed, 0, n_trials, d.n_places, False)
    patients = patients.head(d.n_places).with_dosimetry(d, s).with_efficacy(s)
    return d, s, patients, run_trials(d, truth.dlt_prob, patients, s.onset, truth.eff_prob)


@pytest.mark.parametrize("kind", list(CASES))
def test_simulated_response_rates_match_the_reference(kind):
    """Per level, the treated patients' response rate and rate of DLT and response against the
    reference quadrature, within 4 Monte Carlo standard errors."""
    d, _, _, state = _run(kind, 3000, 17)
    checked = 0
    for level in range(d.n_levels):
        at = state.patient_level == level
        n = at.sum(axis=1).astype(float)
        if n.sum() < 800:
            continue  # a level the design rarely reaches: too few patients to say anything
        checked += 1
        ref = reference(kind, _value(kind, level), CASES[kind])
        for key, flags in (("eff", state.patient_response),
                           ("both", state.patient_response & state.patient_dlt),
                           ("dlt", state.patient_dlt)):
            value, se = _ratio((flags & at).sum(axis=1).astype(float), n)
            assert abs(value - ref[key]) < 4 * se, (kind, level, key, value, ref[key], se)
    assert checked >= 3


def test_each_response_is_the_patients_own_draw_against_their_tumour_dose():
    """By hand for every treated patient of 40 trials: v' = Φ(ρΦ⁻¹(u) + √(1−ρ²)Φ⁻¹(v)) from the
    chunk's efficacy stream, p_E from their true tumour Gy/GBq × 4 cycles × their level's
    activity, and the response flag is v' < p_E."""
    d = design("boin12")
    seed, n_trials = 8, 40
    _, _, patients, state = _run("boin12", n_trials, seed)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, 5)))  # EFFICACY_STREAM
    v = rng.random((d.n_places, n_trials)).T
    u = patients.tolerance
    v_prime = ndtr(0.4 * ndtri(u) + np.sqrt(1 - 0.16) * ndtri(v))
    np.testing.assert_allclose(patients.response, v_prime, rtol=0, atol=1e-12)
    treated = state.patient_level >= 0
    activity = np.asarray(ACTIVITY)[np.maximum(state.patient_level, 0)]
    tumour = patients.true_gy_per_gbq[..., patients.organs.names.index("tumour")]
    dose = CYCLES * activity * tumour
    p_e = 1 / (1 + (EFFICACY["d50_gy"] / dose) ** (4 * EFFICACY["gamma50"]))
    expected = v_prime < p_e
    assert treated.sum() > 500
    assert 0.1 < expected[treated].mean() < 0.9
    np.testing.assert_array_equal(state.patient_response[treated], expected[treated])
    assert state.r.sum() == expected[treated].sum()


def test_a_design_that_ignores_efficacy_treats_the_same_patients_the_same_way():
    """Responses drawn from tumour doses change nothing for a design that does not use them: the
    same levels and DLTs as the scenario without [efficacy]."""
    d, s = design("capped"), scenario()
    plain = dataclasses.replace(s, truth=dataclasses.replace(s.truth, efficacy=None))
    states = []
    for scen in (s, plain):
        truth = truth_for(scen, d)
        patients = chunk_patients(4, 0, 300, d.n_places, False)
        patients = patients.head(d.n_places).with_dosimetry(d, scen).with_efficacy(scen)
        states.append(run_trials(d, truth.dlt_prob, patients, scen.onset, truth.eff_prob))
    np.testing.assert_array_equal(states[0].patient_level, states[1].patient_level)
    np.testing.assert_array_equal(states[0].patient_dlt, states[1].patient_dlt)
    assert states[0].patient_response is not None and states[1].patient_response is None


def test_joint_prob_is_the_gaussian_copula():
    rng = np.random.default_rng(3)
    p_t, p_e = rng.random(400), rng.random(400)
    p_t[:20], p_e[10:30] = 0.5, 0.5  # Φ⁻¹ = 0: Owen's T at its limits
    p_t[40:45], p_e[45:50], p_t[50:55], p_e[55:60] = 0.0, 0.0, 1.0, 1.0
    for rho in (0.0, 0.35, -0.8, 0.99):
        np.testing.assert_allclose(joint_prob(p_t, p_e, rho), both_prob(p_t, p_e, rho),
                                   rtol=0, atol=1e-14)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers")
def test_results_do_not_depend_on_the_number_of_workers(monkeypatch):
    monkeypatch.setattr(simulation, "CHUNK_TRIALS", 40)
    designs, scenarios = [design("boin12"), design("kidney")], [scenario()]

    def figures(workers):
        sims = simulate(designs, scenarios, 100, seed=9, workers=workers)
        return [OperatingCharacteristics.from_simulations(row[0]).values for row in sims]

    assert figures(2) == figures(1)


# ---------------------------------------------------------------------------------------------
# The examples and the operating characteristics


def test_example_scenarios_give_response_figures_for_every_example_design():
    """The 177Lu-DOTATATE-like BOIN12 designs and the PSMA dosimetry designs under their tumour
    scenarios: response rate, utility, P(selecting the OBD) and % at the OBD are reported."""
    pairs = [
        (["boin12_dotatate.toml", "boin12_dotatate_personalised.toml"], "dotatate_scenarios.toml"),
        (["boin_psma_personalised.toml"], "psma_tumour_scenarios.toml"),
    ]
    for names, scenario_file in pairs:
        designs = [load_design(DESIGNS / name) for name in names]
        scenarios = load_scenarios(DESIGNS / scenario_file)
        for d in designs:
            check_scenarios_fit(d, scenarios, scenario_file)
        for row, d in zip(simulate(designs, scenarios, 60, seed=2), designs, strict=True):
            for sim in row:
                values = OperatingCharacteristics.from_simulations(sim).values
                assert values["response_rate_pct"] is not None
                if d.method.uses_efficacy:
                    for key in ("utility_per_patient_mean", "obd_selection_pct", "true_obd"):
                        assert values[key] is not None, (d.name, sim.scenario, key)


# ---------------------------------------------------------------------------------------------
# Bad input: one line each, naming the file, the table and the key


def _errors(entry: dict) -> list[str]:
    base = {"name": "T", "organ": ORGANS, "toxicity": TOXICITY}
    with pytest.raises(ConfigError) as error:
        scenarios_from_dict({"scenario": [base | entry]}, "bad.toml")
    return str(error.value).splitlines()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"efficacy": EFFICACY | {"organ": "liver"}},
         '[efficacy] organ = "liver": must be one of the scenario\'s organs'),
        ({"efficacy": EFFICACY | {"organ": "kidney"}},
         '[efficacy] organ = "kidney": has an NTCP ([scenario.toxicity.kidney])'),
        ({"efficacy": EFFICACY | {"dose": "eqd2"}},
         '[efficacy] dose = "eqd2": needs the radiobiology of [scenario.organ.tumour]'),
        ({"efficacy": EFFICACY | {"dose": "bed"}},
         '[efficacy] dose = "bed": must be one of "absorbed", "eqd2"'),
        ({"efficacy": EFFICACY | {"d50_gy": -30.0}},
         "[efficacy] d50_gy = -30.0: must be a number > 0"),
        ({"efficacy": EFFICACY | {"gamma50": 0}}, "[efficacy] gamma50 = 0: must be a number > 0"),
        ({"efficacy": EFFICACY | {"model": "tcp"}},
         '[efficacy] model = "tcp": must be one of "tumour_dose"'),
        ({"efficacy": {"organ": "tumour", "gamma50": 1.0}}, "[efficacy] missing key 'd50_gy'"),
        ({"efficacy": EFFICACY | {"d50": 40.0}},
         "[efficacy] unknown key 'd50' (did you mean 'd50_gy'?)"),
        ({"efficacy": EFFICACY, "eff_prob": [0.1, 0.2, 0.3, 0.4, 0.5]},
         "eff_prob: not with [scenario.efficacy]"),
        ({"efficacy": EFFICACY | {"tox_eff_correlation": 0.3}},
         "[efficacy] tox_eff_correlation: give it in the [[scenario]] table itself"),
    ],
)
def test_bad_efficacy_is_one_line_naming_file_table_and_key(entry, message):
    lines = _errors(entry)
    assert any(line.startswith('bad.toml: scenario[1] ("T") ') and message in line
               for line in lines), lines


def test_a_tumour_scenario_needs_activities_per_level():
    d = design_from_dict({"method": "boin", "target": 0.3, "levels": 5, "max_patients": 30},
                         "levels.toml")
    levels = scenarios_from_dict({"scenario": [{
        "name": "T", "dlt_prob": [0.05, 0.1, 0.2, 0.3, 0.4],
        "organ": {"tumour": ORGANS["tumour"]}, "efficacy": EFFICACY}]}, "t.toml")[0]
    with pytest.raises(ConfigError, match="responses come from tumour doses"):
        check_scenarios_fit(d, [levels], "t.toml")
    with pytest.raises(ConfigError, match="DLTs come from organ doses"):
        check_scenarios_fit(d, [scenario()], "t.toml")


def test_levels_dlt_probabilities_with_responses_from_tumour_doses():
    """A scenario may give each level's DLT probability and take responses from tumour doses:
    P(DLT and response) = E[C_ρ(p_T, p_E)] with p_T the level's, checked against the copula of
    the level's p_T with the reference's p_E at each Gauss–Hermite node."""
    levels = scenarios_from_dict({"scenario": [{
        "name": "T", "dlt_prob": [0.05, 0.1, 0.2, 0.3, 0.4], "tox_eff_correlation": -0.3,
        "organ": {"tumour": ORGANS["tumour"]}, "efficacy": EFFICACY}]}, "t.toml")[0]
    d = design("boin12")
    truth = truth_for(levels, d)
    x, w = _rule(96)
    for level, activity in enumerate(ACTIVITY):
        p_e = _logistic(_g("tumour", x) * CYCLES * activity, EFFICACY["d50_gy"], 1.0)
        p_t = levels.dlt_prob[level]
        assert truth.eff_prob[level] == pytest.approx(w @ p_e, abs=1e-7)
        assert truth.both_prob[level] == pytest.approx(
            w @ both_prob(np.full(p_e.shape, p_t), p_e, -0.3), abs=1e-7)
        assert truth.dlt_prob[level] == p_t


def test_tox_eff_correlation_goes_with_the_efficacy_table():
    s = scenario(0.3)
    assert s.tox_eff_correlation == 0.3 and s.efficacy and s.eff_prob is None
    with pytest.raises(ConfigError, match="tox_eff_correlation: only with eff_prob"):
        scenarios_from_dict({"scenario": [{"name": "T", "dlt_prob": [0.1, 0.2],
                                           "tox_eff_correlation": 0.2}]}, "t.toml")
