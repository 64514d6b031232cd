"""Personalised activity (``dose_basis = "absorbed_dose"``): levels are cumulative absorbed doses
prescribed to one organ, each patient's activity set from their own measured Gy/GBq.

Reference check: each level's true DLT probability, mean true organ dose and P(true dose > limit)
by Gauss–Hermite quadrature over the lognormal true and measured Gy/GBq, written here from the
formulas (not the package's code), against the engine's virtual patients within 4 Monte Carlo
standard errors, and against the package's own truths (level_truths, used for the OCs).
"""

from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import norm

from theradose.config import ConfigError, design_from_dict, load_design, load_scenarios
from theradose.dosimetry import level_truths, prescribed_activity
from theradose.engine import run_trials
from theradose.results import OperatingCharacteristics
from theradose.scenario import Scenario, organ_truth, truth_for
from theradose.simulation import simulate
from theradose.virtual_patients import chunk_patients

DESIGNS = Path(__file__).resolve().parents[1] / "designs"
PRESCRIBED = [12.0, 16.0, 20.0, 24.0, 28.0]  # Gy to the kidney over 4 cycles
MAX_ACTIVITY = 12.0  # GBq per cycle: binds for patients with low measured kidney Gy/GBq
CYCLES = 4
CV = 0.15
ORGANS = [
    {"name": "kidney", "gy_per_gbq_median": 0.43, "gy_per_gbq_cv": 0.37, "limit_gy": 23.0,
     "max_exceed_prob": 1.0},
    {"name": "red_marrow", "gy_per_gbq_median": 0.03, "gy_per_gbq_cv": 0.35, "limit_gy": 2.0,
     "max_exceed_prob": 1.0},
]  # tracked, not limited: every level keeps treating patients


def personalised(**dosimetry):
    source = {
        "method": "boin",
        "target": 0.25,
        "doses": PRESCRIBED,
        "dose_unit": "Gy",
        "max_patients": 24,
        "dosimetry": {
            "cycles": CYCLES,
            "measurement_cv": CV,
            "dose_basis": "absorbed_dose",
            "prescribe_to": "kidney",
            "max_activity_gbq": MAX_ACTIVITY,
            "organ": ORGANS,
            **dosimetry,
        },
    }
    return design_from_dict(source, "p.toml")


def marrow_driven() -> Scenario:
    return load_scenarios(DESIGNS / "dosimetry_scenarios.toml")[0]


def reference(scenario: Scenario, prescribed: float, n: int = 120):
    """E[P(DLT)], E[kidney dose], P(kidney > 23 Gy), E[marrow dose], P(marrow > 2 Gy) at one
    prescribed kidney dose D: a tensor Gauss–Hermite rule over the standard normals z_k (true
    kidney log Gy/GBq), e (measurement error of its log) and z_m (true marrow log Gy/GBq).

    The exceedances are indicators, which Gauss–Hermite integrates poorly, so they are taken in
    closed form over one variable: the kidney dose min(D·exp(−τe), C·A_max·g_k) passes L iff
    e < log(D/L)/τ and g_k > L/(C·A_max), independent events; the marrow dose passes 2 Gy given
    (z_k, e) with the normal tail of log g_m."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    organs = {o.name: o for o in scenario.truth.organs}
    kid, mar = organs["kidney"], organs["red_marrow"]
    sd = lambda cv: np.sqrt(np.log1p(cv * cv))  # noqa: E731
    z_k, e, z_m = np.meshgrid(x, x, x, indexing="ij", sparse=True)
    weight = w[:, None, None] * w[None, :, None] * w[None, None, :]
    g_k = kid.gy_per_gbq_median * np.exp(sd(kid.gy_per_gbq_cv) * z_k)
    measured = g_k * np.exp(sd(CV) * e)
    activity = np.minimum(prescribed / (CYCLES * measured), MAX_ACTIVITY)
    g_m = mar.gy_per_gbq_median * np.exp(sd(mar.gy_per_gbq_cv) * z_m)
    kidney = CYCLES * activity * g_k
    marrow = CYCLES * activity * g_m
    # kidney NTCP: LKB on EQD2 of the BED over cycles (Dale; Burman et al. 1991)
    k = kid.repair_half_time_h / (
        kid.alpha_beta_gy * (kid.repair_half_time_h + kid.effective_half_time_h)
    )
    bed = kidney * (1 + k * activity * g_k)
    eqd2 = bed / (1 + 2 / kid.alpha_beta_gy)
    tox = {o.name: o for o in scenario.truth.toxicity.organs}
    ntcp_k = norm.cdf((eqd2 - tox["kidney"].td50_gy) / (tox["kidney"].m * tox["kidney"].td50_gy))
    t = tox["red_marrow"]
    ntcp_m = expit(4 * t.gamma50 * (np.log(marrow) - np.log(t.td50_gy)))
    p_dlt = 1 - (1 - scenario.truth.toxicity.background_prob) * (1 - ntcp_k) * (1 - ntcp_m)
    mean = lambda f: float((np.broadcast_to(f, weight.shape) * weight).sum())  # noqa: E731
    return {
        "dlt": mean(p_dlt),
        "kidney": mean(kidney),
        "kidney_exceed": float(
            norm.cdf(np.log(prescribed / 23.0) / sd(CV))
            * norm.sf(
                (np.log(23.0 / (CYCLES * MAX_ACTIVITY)) - np.log(kid.gy_per_gbq_median))
                / sd(kid.gy_per_gbq_cv)
            )
        ),
        "marrow": mean(marrow),
        "marrow_exceed": mean(
            norm.sf(
                (np.log(2.0 / (CYCLES * activity)) - np.log(mar.gy_per_gbq_median))
                / sd(mar.gy_per_gbq_cv)
            )
        ),
    }


def _ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """Σ num / Σ den over trials with its Monte Carlo error (delta method, trials independent:
    the patients of one trial are not, as the design's path depends on them)."""
    r = num.sum() / den.sum()
    se = np.sqrt(np.square(num - r * den).sum()) / den.sum()
    return float(r), float(se)


@pytest.fixture(scope="module")
def simulated():
    design, scenario = personalised(), marrow_driven()
    truth = truth_for(scenario, design)
    n_trials = 4000
    patients = chunk_patients(2024, 0, n_trials, design.max_patients, False)
    state = run_trials(design, truth.dlt_prob, patients.with_dosimetry(design, scenario))
    return design, scenario, state


def test_activity_is_the_prescription_over_the_measured_gy_per_gbq_capped():
    design = personalised()
    measured = np.array([[0.2, 0.03], [0.43, 0.03], [1.0, 0.02]])
    got = prescribed_activity(design.dosimetry, np.array([20.0, 20.0, 20.0]), measured)
    np.testing.assert_allclose(got, [MAX_ACTIVITY, 20 / (4 * 0.43), 20 / 4])
    assert prescribed_activity(design.dosimetry, np.array([0.0]), measured[:1])[0] == 0.0


def test_reference_quadrature_is_converged():
    scenario = marrow_driven()
    for level in (PRESCRIBED[0], PRESCRIBED[-1]):
        coarse, fine = reference(scenario, level, 80), reference(scenario, level, 160)
        for key in ("dlt", "kidney", "marrow", "marrow_exceed"):
            assert abs(coarse[key] - fine[key]) < 1e-5 * max(1.0, fine[key])


def test_package_truths_agree_with_the_reference_quadrature():
    """level_truths (the OCs' truth: true MTD, PCS, admissibility) against the formulas."""
    design, scenario = personalised(), marrow_driven()
    truth = level_truths(organ_truth(scenario, design), design.dosimetry, np.array(PRESCRIBED))
    for i, d in enumerate(PRESCRIBED):
        ref = reference(scenario, d, 160)
        assert truth.dlt_prob[i] == pytest.approx(ref["dlt"], abs=2e-5)
        assert truth.exceed_prob[i, 0] == pytest.approx(ref["kidney_exceed"], abs=1e-9)
        assert truth.exceed_prob[i, 1] == pytest.approx(ref["marrow_exceed"], abs=2e-5)


def test_simulated_levels_match_the_reference_quadrature(simulated):
    """Per level, the engine's patients' DLT rate, mean true kidney and marrow dose and % past
    each limit against the quadrature, within 4 Monte Carlo standard errors."""
    design, scenario, state = simulated
    kidney, marrow = state.patient_cumulative[..., 0], state.patient_cumulative[..., 1]
    for i, d in enumerate(PRESCRIBED):
        at = state.patient_level == i
        n = at.sum(axis=1).astype(float)
        assert n.sum() > 1000, f"level {i + 1}: too few patients for the check"
        ref = reference(scenario, d, 160)
        pairs = {
            "dlt": (state.patient_dlt & at).sum(axis=1),
            "kidney": np.where(at, kidney, 0.0).sum(axis=1),
            "kidney_exceed": (state.patient_exceeds[..., 0] & at).sum(axis=1),
            "marrow": np.where(at, marrow, 0.0).sum(axis=1),
            "marrow_exceed": (state.patient_exceeds[..., 1] & at).sum(axis=1),
        }
        for key, num in pairs.items():
            value, se = _ratio(num.astype(float), n)
            if key != "kidney" and key != "marrow":  # a rare event may not be seen: its SE
                se = max(se, np.sqrt(ref[key] * (1 - ref[key]) / n.sum()))  # at the reference
            assert abs(value - ref[key]) < 4 * se, (d, key, value, ref[key], se)


def test_each_patient_gets_their_own_activity(simulated):
    design, _, state = simulated
    at = state.patient_level == 2
    per_cycle = state.patient_total_activity[at] / CYCLES
    assert per_cycle.std() > 1.0 and per_cycle.max() == pytest.approx(MAX_ACTIVITY)
    assert not state.patient_capped.any()


def test_fixed_probability_scenarios_keep_the_level_probability():
    """With dlt_prob per level a patient's DLT follows the level's probability whatever
    activity they were given: the same DLTs as a fixed-activity design on the same path."""
    design = personalised()
    fixed = design_from_dict(
        {"method": "boin", "target": 0.25, "doses": [3.7, 5.55, 7.4, 9.25, 11.1],
         "max_patients": 24, "dosimetry": {"cycles": CYCLES, "measurement_cv": CV,
                                            "organ": ORGANS}},
        "f.toml",
    )
    scenario = Scenario("S", (0.05, 0.1, 0.2, 0.3, 0.5))
    p = chunk_patients(5, 0, 300, 24, False)
    a = run_trials(design, np.array(scenario.dlt_prob), p.with_dosimetry(design, scenario))
    b = run_trials(fixed, np.array(scenario.dlt_prob), p.with_dosimetry(fixed, scenario))
    np.testing.assert_array_equal(a.patient_level, b.patient_level)
    np.testing.assert_array_equal(a.patient_dlt, b.patient_dlt)
    assert not np.allclose(a.patient_total_activity, b.patient_total_activity, equal_nan=True)


def test_example_design_compares_with_fixed_activity_on_the_same_patients():
    personal = load_design(DESIGNS / "boin_psma_personalised.toml")
    fixed = load_design(DESIGNS / "boin_psma_dosimetry.toml")
    scenarios = load_scenarios(DESIGNS / "dosimetry_scenarios.toml")
    sims = simulate([fixed, personal], scenarios[:1], 200, seed=3)
    ocs = [OperatingCharacteristics.from_simulations(s[0]) for s in sims]
    for oc in ocs:
        for key in ("activity_mean", "organ_exceed_pct", "pcs_constrained"):
            assert key in oc.values and oc.values[key] is not None
    assert ocs[0].values["activity_mean"] != ocs[1].values["activity_mean"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dose_basis": "gy"}, 'dose_basis = "gy": must be one of "activity", "absorbed_dose"'),
        ({"prescribe_to": "liver"}, 'prescribe_to = "liver": must be one of the'),
        ({"max_activity_gbq": 0}, "max_activity_gbq = 0: must be a number > 0"),
        ({"patient_cap": True}, 'patient_cap = true: not with dose_basis = "absorbed_dose"'),
        ({"dose_basis": "activity"}, 'max_activity_gbq = 12.0: only with dose_basis'),
    ],
)
def test_config_errors_name_file_key_and_what_is_allowed(change, message):
    with pytest.raises(ConfigError) as error:
        personalised(**change)
    assert any(line.startswith("p.toml: [dosimetry] ") and message in line
               for line in str(error.value).splitlines())


def test_missing_keys_are_reported():
    source = {"method": "boin", "target": 0.25, "doses": PRESCRIBED, "max_patients": 24,
              "dosimetry": {"dose_basis": "absorbed_dose", "organ": ORGANS}}
    with pytest.raises(ConfigError) as error:
        design_from_dict(source, "p.toml")
    text = str(error.value)
    assert "prescribe_to: required" in text and "max_activity_gbq: required" in text


def _report_numbers():  # pragma: no cover - run by hand: python tests/test_personalised_activity.py
    design, scenario = personalised(), marrow_driven()
    truth = truth_for(scenario, design)
    patients = chunk_patients(2024, 0, 4000, design.max_patients, False)
    state = run_trials(design, truth.dlt_prob, patients.with_dosimetry(design, scenario))
    for i, d in enumerate(PRESCRIBED):
        at = state.patient_level == i
        n = at.sum(axis=1).astype(float)
        ref = reference(scenario, d, 160)
        sim_dlt = _ratio((state.patient_dlt & at).sum(axis=1).astype(float), n)
        sim_k = _ratio(np.where(at, state.patient_cumulative[..., 0], 0).sum(axis=1), n)
        sim_e = _ratio((state.patient_exceeds[..., 0] & at).sum(axis=1).astype(float), n)
        sim_m = _ratio((state.patient_exceeds[..., 1] & at).sum(axis=1).astype(float), n)
        print(
            f"{d:4g} Gy n={int(n.sum()):6d}"
            f"  DLT {ref['dlt']:.4f} vs {sim_dlt[0]:.4f}±{sim_dlt[1]:.4f}"
            f"  kidney {ref['kidney']:.3f} vs {sim_k[0]:.3f}±{sim_k[1]:.3f}"
            f"  P(k>23) {ref['kidney_exceed']:.4f} vs {sim_e[0]:.4f}±{sim_e[1]:.4f}"
            f"  P(m>2) {ref['marrow_exceed']:.4f} vs {sim_m[0]:.4f}±{sim_m[1]:.4f}"
        )


if __name__ == "__main__":
    _report_numbers()
