"""The randomised optimisation stage when the patients have dosimetry: its patients are virtual
patients like the escalation's (own organ Gy/GBq, activity by the design's rule, DLT from the
NTCP of their own organ doses, response from their own tumour dose), their organ doses are
reported, and an arm the organ-dose constraint rules out at the end of the stage is not selected.

Oracles, all written here from the formulas:

- Selection: given the escalation's MTD the stage's patients are fresh and i.i.d., so each arm is
  a multinomial over the four outcomes (response without DLT, neither, both, DLT without
  response) with the population's cell probabilities: E[p_T(i)], E[p_E(i)] and
  E[C_ρ(p_T(i), p_E(i))] over the patients' joint Gy/GBq, by quadrature (Gauss–Hermite over the
  organs' normals, the copula as P(Z₁ < a, Z₂ < b) = ∫_{−∞}^{a} φ(z) Φ((b − ρz)/√(1 − ρ²)) dz by
  Gauss–Legendre: neither the package's quasi-Monte Carlo nor its Owen's-T copula). The
  simulated selection, given the MTD, must lie within 4 Monte Carlo SEs of the exact sum; the
  old draw from the level's probabilities (P(both) = C_ρ(mean p_T, mean p_E)) must be many SEs
  off.
- Organ doses: the stage's per-level % of patients past the kidney limit against P(true
  cumulative dose > limit) — closed form for fixed activity, an outer Gauss–Legendre integral
  over the measured Gy/GBq (split where the schedule has a kink) for capped and personalised
  activity.
- The organ-dose guard: the end-of-stage admissibility recomputed trial by trial from every
  measured Gy/GBq with the normal–scaled-inverse-χ² update in its textbook form (Gelman et al.,
  *Bayesian Data Analysis*, 3rd ed., §3.3) and scipy's Student-t tail.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, ndtr, ndtri

from test_optimisation import assert_within_4_se, chunk_fields, exact_multinomial, shift_in_se
from theradose.config import design_from_dict, scenarios_from_dict
from theradose.engine import run_trials
from theradose.optimisation import candidates, stage_patients, stage_seeds
from theradose.pipeline import select_mtd
from theradose.scenario import both_prob, truth_for
from theradose.simulation import run_chunk
from theradose.state import NO_LEVEL
from theradose.virtual_patients import chunk_patients

ACTIVITY = [3.7, 5.55, 7.4, 9.25, 11.1]  # GBq per cycle
CYCLES = 4
CV = 0.15  # measurement error of each patient's Gy/GBq
LIMIT = 23.0  # kidney, Gy (absorbed dose)
KIDNEY = (0.43, 0.37)  # the scenario's median Gy/GBq and CV
TUMOUR = (1.5, 0.70)
BACKGROUND, TD50, GAMMA50 = 0.05, 20.0, 2.0  # kidney NTCP (logistic)
D50, E_GAMMA50 = 40.0, 1.0  # tumour response (logistic in the tumour's absorbed dose)
GUARD = 0.3


def scenario(rho: float, r: float = 0.0, kidney=KIDNEY):
    """NTCP of the kidney dose, response from the tumour dose; ``r``: correlation of the
    kidney's and the tumour's log Gy/GBq; ``rho``: the DLT–response copula."""
    entry = {
        "name": f"rho {rho}, r {r}",
        "tox_eff_correlation": rho,
        "organ": {
            "kidney": {"gy_per_gbq_median": kidney[0], "gy_per_gbq_cv": kidney[1]},
            "tumour": {"gy_per_gbq_median": TUMOUR[0], "gy_per_gbq_cv": TUMOUR[1]},
        },
        "toxicity": {
            "model": "ntcp",
            "background_prob": BACKGROUND,
            "kidney": {"td50_gy": TD50, "gamma50": GAMMA50},
        },
        "efficacy": {"organ": "tumour", "d50_gy": D50, "gamma50": E_GAMMA50},
    }
    if r:
        entry["correlation"] = [[1.0, r], [r, 1.0]]
    return scenarios_from_dict({"scenario": [entry]}, "s.toml")[0]


def design(kind: str = "fixed", max_exceed_prob: float = 1.0, dosimetry: bool = True):
    """BOIN with a stage (20 + 20, response rule, guard 0.3, no margin) and a kidney limit:
    ``max_exceed_prob`` 1 never rules a level out (the stage then depends on the escalation
    only through its MTD); ``kind``: fixed activity, capped ("reduce"), or personalised
    (cumulative kidney doses prescribed)."""
    organ = {"name": "kidney", "gy_per_gbq_median": 0.43, "gy_per_gbq_cv": 0.37,
             "limit_gy": LIMIT, "max_exceed_prob": max_exceed_prob}  # fmt: skip
    source = {
        "name": kind,
        "method": "boin",
        "target": 0.3,
        "doses": ACTIVITY,
        "cohort_size": 3,
        "max_patients": 30,
        "optimisation": {
            "candidates": "mtd_and_below",
            "patients_per_arm": 20,
            "max_dlt_rate": GUARD,
        },
    }
    if dosimetry:
        source["dosimetry"] = {"cycles": CYCLES, "measurement_cv": CV, "organ": [organ]}
    if kind == "capped":
        source["dosimetry"]["patient_cap"] = True
    elif kind == "personalised":
        source.update(doses=PRESCRIBED, dose_unit="Gy")
        source["dosimetry"].update(
            dose_basis="absorbed_dose", prescribe_to="kidney", max_activity_gbq=MAX_ACTIVITY
        )
    return design_from_dict(source, f"{kind}.toml")


PRESCRIBED = [8.0, 12.0, 16.0, 20.0, 24.0]  # Gy to the kidney over the cycles
MAX_ACTIVITY = 9.0  # GBq per cycle


# ---------------------------------------------------------------------------------------------
# The reference quadrature


def _log_sd(cv: float) -> float:
    return float(np.sqrt(np.log1p(cv * cv)))


def _logistic(dose, d50, gamma50):
    with np.errstate(divide="ignore"):
        return expit(4 * gamma50 * (np.log(dose) - np.log(d50)))


def cells(activity: float, rho: float, r: float, n: int = 64) -> tuple[float, float, float]:
    """P(DLT), P(response), P(DLT and response) of a patient at a fixed activity per cycle:
    E over (z_kidney, z_tumour), jointly normal with correlation r, of p_T, p_E and
    C_ρ(p_T, p_E)."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    s1 = CYCLES * activity
    p_t = 1 - (1 - BACKGROUND) * (
        1 - _logistic(KIDNEY[0] * np.exp(_log_sd(KIDNEY[1]) * x) * s1, TD50, GAMMA50)
    )  # [z_kidney]
    z_tumour = r * x[:, None] + np.sqrt(1 - r * r) * x[None, :]  # [z_kidney, w]
    p_e = _logistic(TUMOUR[0] * np.exp(_log_sd(TUMOUR[1]) * z_tumour) * s1, D50, E_GAMMA50)
    # C_ρ(p_T, p_E) = ∫_{−12}^{a} φ(z) Φ((b − ρz)/√(1 − ρ²)) dz, a = Φ⁻¹(p_T), b = Φ⁻¹(p_E)
    a = np.clip(ndtri(p_t), -12.0, 12.0)
    b = ndtri(p_e)
    y, wy = np.polynomial.legendre.leggauss(n)
    z = -12.0 + (a[:, None] + 12.0) * (y[None, :] + 1) / 2  # [z_kidney, node]
    wz = (a[:, None] + 12.0) / 2 * wy[None, :] * stats.norm.pdf(z)
    inner = ndtr((b[:, None, :] - rho * z[:, :, None]) / np.sqrt(1 - rho * rho)) @ w
    both = (wz * inner).sum(axis=1) @ w
    return float(w @ p_t), float(w @ (p_e @ w)), float(both)


def level_cells(rho: float, r: float, n: int = 64):
    """``cells`` of every level: (p_t, p_e, both) arrays [level]."""
    return tuple(np.array(v) for v in zip(*(cells(a, rho, r, n) for a in ACTIVITY), strict=True))


CASES = [(0.8, 0.0), (-0.5, 0.6)]  # (ρ, correlation of kidney and tumour log Gy/GBq)


@pytest.mark.parametrize(("rho", "r"), CASES)
def test_reference_quadrature_is_converged_and_agrees_with_the_package_s_truth(rho, r):
    """64 nodes against 128: < 1e-7; against the package's truths (quasi-Monte Carlo, 16 × 2^15
    points): < 5e-4 (its stated accuracy, < 1e-5 in practice, with margin)."""
    coarse, fine = level_cells(rho, r), level_cells(rho, r, 128)
    for a, b in zip(coarse, fine, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)
    truth = truth_for(scenario(rho, r), design())
    for mine, theirs in zip(coarse, (truth.dlt_prob, truth.eff_prob, truth.both_prob), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=5e-4)


# ---------------------------------------------------------------------------------------------
# Selection: the exact multinomial sum of the patients' own probabilities


@pytest.mark.parametrize(("rho", "r"), CASES)
def test_stage_selects_as_the_multinomial_sum_over_the_patients_own_probabilities(rho, r):
    """100,000 trials: given the escalation's MTD k (arms k and k − 1, 20 each), the simulated %
    selecting each arm and none is within 4 SEs of the multinomial sum with the population's
    cells E[p_T(i)], E[p_E(i)], E[C_ρ(p_T(i), p_E(i))] (largest |z| 2.6 over both cases).
    The stage's old draw (each patient with the level's probabilities, so P(both) =
    C_ρ(mean p_T, mean p_E)) moves the exact figures at MTD level 4 (50,000 trials) by 10.6
    SEs with ρ = 0.8 and independent organs (P(both) at level 4: 0.318 instead of 0.254) and
    by 16.5 SEs with ρ = −0.5 and kidney and tumour uptake correlated 0.6 (0.147 instead of
    0.244): an engine drawing from the levels' probabilities fails here."""
    d = design()
    p_t, p_e, both = level_cells(rho, r)
    old_both = both_prob(p_t, p_e, rho)
    mtd, optimised = chunk_fields(d, scenario(rho, r), 100_000, 21, "mtd", "optimised")
    checked, power = 0, []
    for k in range(1, d.n_levels):
        given = mtd == k
        if given.sum() < 1000:
            continue
        args = d.optimisation.arm_sizes, (k, k - 1), p_t, p_e, rho, "response", GUARD, 0.0
        exact = exact_multinomial(*args, both=both)
        assert_within_4_se(exact, optimised[given], ("MTD", k + 1))
        old = exact_multinomial(*args, both=old_both)
        power.append(shift_in_se(exact, old, int(given.sum())))
        checked += 1
    assert checked >= 2
    assert max(power) > 8, power


# ---------------------------------------------------------------------------------------------
# Organ doses of the stage's patients


def prob_past_limit(kind: str, value: float, n: int = 96) -> float:
    """P(a patient's TRUE cumulative kidney dose > LIMIT) at a level of value ``value``
    (activity per cycle, or prescribed Gy). Fixed activity: closed form. Capped ("reduce":
    cycle 1 at A, every later cycle at x = min(A, (L − ĝA)/((C − 1)ĝ)), 0 when ĝA ≥ L) and
    personalised (a = min(D/(Cĝ), A_max) every cycle): the schedule follows the measured ĝ,
    log ĝ ~ N(μ, σ² + τ²), and given it log g ~ N(μ + q(log ĝ − μ), qτ²), q = σ²/(σ² + τ²);
    the outer integral is Gauss–Legendre over log ĝ on pieces split at the schedule's kinks."""
    mu, sigma, tau = np.log(KIDNEY[0]), _log_sd(KIDNEY[1]), _log_sd(CV)
    if kind == "fixed":
        return float(stats.norm.sf((np.log(LIMIT / (CYCLES * value)) - mu) / sigma))
    sd_hat = np.hypot(sigma, tau)
    q = sigma**2 / sd_hat**2
    if kind == "capped":
        kinks = [LIMIT / (CYCLES * value), LIMIT / value]
    else:
        kinks = [value / (CYCLES * MAX_ACTIVITY)]
    edges = np.sort(np.r_[mu - 10 * sd_hat, mu + 10 * sd_hat, np.log(kinks)])
    y, wy = np.polynomial.legendre.leggauss(n)
    lo, hi = edges[:-1, None], edges[1:, None]
    log_hat = (lo + (hi - lo) * (y + 1) / 2).ravel()
    weight = ((hi - lo) / 2 * wy).ravel() * stats.norm.pdf(log_hat, mu, sd_hat)
    g_hat = np.exp(log_hat)
    if kind == "capped":
        later = np.clip((LIMIT - g_hat * value) / ((CYCLES - 1) * g_hat), 0.0, value)
        s1 = value + (CYCLES - 1) * later
    else:
        s1 = CYCLES * np.minimum(value / (CYCLES * g_hat), MAX_ACTIVITY)
    mean = mu + q * (log_hat - mu)
    past = stats.norm.sf((np.log(LIMIT / s1) - mean) / np.sqrt(q * tau * tau))
    return float(weight @ past)


@pytest.mark.parametrize("kind", ["fixed", "capped", "personalised"])
def test_stage_patients_pass_the_kidney_limit_as_the_quadrature_says(kind):
    """20,000 trials: at each level with ≥ 2,000 stage patients, the % of them whose true
    cumulative kidney dose passed 23 Gy (pooled; the stage's patients are i.i.d. given their
    level, so binomial errors) is within 4 SEs of the quadrature, and the figure the OCs report
    per level is that pooled %. Capping moves the figure by more than 10 SEs from the planned
    schedule's at some level: a stage that ignored the design's rule would fail here."""
    from theradose.results import OperatingCharacteristics
    from theradose.simulation import empty_simulations

    d = design(kind)
    s = scenario(0.3)
    stage_n, stage_exceed = chunk_fields(d, s, 20_000, 22, "stage_n", "stage_exceed")
    checked, differs = 0, 0
    for level in range(d.n_levels):
        n = int(stage_n[:, level].sum())
        if n < 2000:
            continue
        p = prob_past_limit(kind, d.doses[level])
        q = int(stage_exceed[:, level, 0].sum()) / n
        se = np.sqrt(p * (1 - p) / n)
        assert abs(q - p) <= 4 * se + 1e-12, (kind, level + 1, n, p, q, (q - p) / se)
        differs += abs(prob_past_limit("fixed", d.doses[level]) - p) > 10 * se
        checked += 1
    assert checked >= 2
    assert kind != "capped" or differs >= 1
    # the OCs' per-level figure is the pooled % of the same counts
    sim = empty_simulations(d, s)
    patients = chunk_patients(22, 0, 2000, d.n_places, False)
    chunk = run_chunk(d, s, patients)
    sim.add(chunk)
    figure = OperatingCharacteristics.from_simulations(sim).values
    pooled = figure["optimisation_organ_exceed_level_pct"]["kidney"]
    for level in range(d.n_levels):
        n = int(chunk.stage_n[:, level].sum())
        expected = None if n == 0 else 100 * int(chunk.stage_exceed[:, level, 0].sum()) / n
        assert pooled[level] == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# The organ-dose guard at the end of the stage


def admissible_by_hand(design_, measured_logs: list[np.ndarray]) -> np.ndarray:
    """Levels whose posterior-predictive P(a new patient's true cumulative kidney dose >
    LIMIT) ≤ max_exceed_prob, from one trial's measured log Gy/GBq: normal–scaled-inverse-χ²
    prior (μ0 = log median, s0² = log(1 + CV²) + τ², κ0 = ν0 = prior strength), textbook
    update, Student-t predictive of the true value t_νn(μn, sn²/κn + max(sn² − τ², 0))."""
    organ = design_.dosimetry.organs[0]
    tau2 = _log_sd(CV) ** 2
    mu0, s0_2 = np.log(organ.gy_per_gbq_median), _log_sd(organ.gy_per_gbq_cv) ** 2 + tau2
    k0 = nu0 = float(organ.prior_strength)
    y = np.concatenate(measured_logs)
    n = y.size
    mean = y.mean() if n else 0.0
    kn, nun = k0 + n, nu0 + n
    mun = (k0 * mu0 + n * mean) / kn
    ss = ((y - mean) ** 2).sum() + k0 * n * (mean - mu0) ** 2 / kn
    sn_2 = (nu0 * s0_2 + ss) / nun
    scale = np.sqrt(sn_2 / kn + max(sn_2 - tau2, 0.0))
    threshold = np.log(LIMIT / (CYCLES * np.asarray(ACTIVITY)))
    return stats.t.sf((threshold - mun) / scale, nun) <= organ.max_exceed_prob


def test_an_arm_the_updated_organ_constraint_rules_out_is_not_selected():
    """Patients take up more than the design's prior expects (kidney median 0.55 Gy/GBq, prior
    0.43; kidney limit with max_exceed_prob 0.1): the stage's 40 measured patients often rule
    out a level escalation still admitted. Trial by trial (2,000), the end-of-stage admissible
    levels equal a textbook recomputation from every measured Gy/GBq (the escalation's records
    and the stage patients' draws); the optimised level is always admissible; the guard rules
    an arm out in some trials and changes the selection in some."""
    d = design(max_exceed_prob=0.1)
    s = scenario(0.7, kidney=(0.55, 0.37))
    n_trials = 2000
    patients = chunk_patients(23, 0, n_trials, d.n_places, False)
    chunk = run_chunk(d, s, patients)
    # the stage's patients as the engine drew them, from the same streams
    treated = patients.head(d.n_places).with_dosimetry(d, s).with_efficacy(s)
    truth = truth_for(s, d)
    state = run_trials(d, truth.dlt_prob, treated, s.onset, truth.eff_prob, s.response_onset)
    mtd = select_mtd(d, state)
    np.testing.assert_array_equal(mtd, chunk.mtd)
    levels = candidates(d, state, mtd)
    seed = stage_seeds(treated.optimisation_seed)[3]
    own = stage_patients(d, treated.organs, seed, np.maximum(levels, 0), 20)
    sizes = np.where(levels >= 0, 20, 0)
    ruled_out = 0
    for trial in range(n_trials):
        escalation = state.patient_measured_gy_per_gbq[trial, :, 0]
        logs = [np.log(escalation[np.isfinite(escalation)])]
        for arm in range(2):
            logs.append(np.log(own.measured_gy_per_gbq[trial, arm, : sizes[trial, arm], 0]))
        expected = admissible_by_hand(d, logs)
        np.testing.assert_array_equal(chunk.stage_admissible[trial], expected, err_msg=trial)
        arms = levels[trial][levels[trial] >= 0]
        ruled_out += bool((~expected[arms]).any())
    entered = chunk.optimised >= 0
    assert chunk.stage_admissible[np.flatnonzero(entered), chunk.optimised[entered]].all()
    assert 0.02 * n_trials < ruled_out < n_trials
    # without the guard: the rule on the same arms (arm 0 the MTD, the higher level; equal
    # arms, so response counts compare as rates), any arm passing the DLT guard selectable
    rows = np.arange(n_trials)[:, None]
    y_arm, r_arm = (c[rows, np.maximum(levels, 0)] for c in (chunk.stage_y, chunk.stage_r))
    ok = (levels >= 0) & (y_arm <= GUARD * sizes + 1e-9)
    higher = ok[:, 0] & (~ok[:, 1] | (r_arm[:, 0] > r_arm[:, 1]))
    unguarded = np.where(higher, levels[:, 0], np.where(ok[:, 1], levels[:, 1], NO_LEVEL))
    free = chunk.stage_admissible[rows, np.maximum(levels, 0)].all(axis=1)
    np.testing.assert_array_equal(unguarded[free], chunk.optimised[free])
    assert (unguarded != chunk.optimised).sum() > 0.01 * n_trials


# ---------------------------------------------------------------------------------------------
# Scenarios with the levels' probabilities


def test_level_probability_scenarios_draw_the_same_dlts_and_responses():
    """Under a scenario with the levels' DLT and response probabilities, a design whose organ
    limit never binds (max_exceed_prob 1, fixed activity) treats its stage patients exactly as
    the same design without [dosimetry] (the same u and v'; organ Gy/GBq from a sub-stream of
    their own) — selections and every stage count bit-identical — and reports their organ
    doses besides."""
    level_probs = scenarios_from_dict(
        {
            "scenario": [
                {
                    "name": "levels",
                    "dlt_prob": [0.05, 0.12, 0.22, 0.32, 0.5],
                    "eff_prob": [0.15, 0.3, 0.45, 0.5, 0.55],
                    "tox_eff_correlation": 0.4,
                }
            ]
        },
        "s.toml",
    )[0]
    names = ("mtd", "optimised", "stage_n", "stage_y", "stage_r", "stage_b")
    with_dosimetry = chunk_fields(design(), level_probs, 3000, 24, *names, "stage_exceed")
    without = chunk_fields(design(dosimetry=False), level_probs, 3000, 24, *names)
    for name, a, b in zip(names, with_dosimetry, without, strict=False):
        np.testing.assert_array_equal(a, b, err_msg=name)
    exceed = with_dosimetry[-1]
    assert exceed.shape == (3000, 5, 1) and exceed.sum() > 0
