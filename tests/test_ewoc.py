"""EWOC against the R package ewoc (JAGS): the next-dose recommendation on fixed data
(``ewoc_d1classical``) and simulated trials (``ewoc_simulation``); the quadrature against
independent adaptive quadrature; the feasibility bound and rounding rules; exact enumeration
against simulation; bad design files.

Reference runs: tests/reference/ewoc_update.json and ewoc_sim.json (doses are the level
numbers 1..6, θ = 0.3, uniform priors, "nearest" rounding, no skipping, first cohort at level 1).
"""

import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit, log_expit
from scipy.stats import beta as beta_dist

from factories import (
    assert_simulation_matches_exact,
    ewoc_design,
    reference,
    scenario,
)
from theradose.config import ConfigError, design_from_dict
from theradose.engine import run_trials
from theradose.pipeline import select_mtd
from theradose.recommendation import recommend
from theradose.results import OperatingCharacteristics
from theradose.simulation import simulate
from theradose.state import TrialState

UPDATE = reference("ewoc_update.json")
SIM = reference("ewoc_sim.json")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _reference_design(**options):
    call = UPDATE["call"]
    settings = {
        "feasibility_bound": call["alpha"],
        "rounding": call["rounding"],
        "rho_prior": tuple(call["rho_prior"]),
        "mtd_prior": tuple(call["mtd_prior"]),
    }
    return ewoc_design(
        n_levels=len(call["dose_set"]), target=call["theta"], **{**settings, **options}
    )


def _cohorts(doses, dlts):
    """The reference's patients (level numbers, 0/1) as cohorts of (0-based level, flags)."""
    cohorts = []
    for level, dlt in zip(doses, dlts, strict=True):
        if cohorts and cohorts[-1][0] == level - 1 and len(cohorts[-1][1]) < 3:
            cohorts[-1][1].append(bool(dlt))
        else:
            cohorts.append((level - 1, [bool(dlt)]))
    return [(level, tuple(flags)) for level, flags in cohorts]


@pytest.mark.parametrize("ref", UPDATE["results"], ids=lambda r: f"seed{r['seed']}")
def test_next_dose_matches_ewoc_d1classical(ref):
    """The recommended level exactly; the posterior quantities within 4 Monte Carlo standard
    errors of the package's 1,000 JAGS draws. The errors are those of 1,000 independent draws
    (their sampler's are larger, so the check is if anything too strict): for a quantile q_p,
    sqrt(p(1 − p)/1000)/f(q_p) with the density f from our posterior; for a posterior mean,
    sd/sqrt(1000)."""
    design = _reference_design()
    rec = recommend(design, _cohorts(ref["dose"], ref["dlt"]))
    assert rec.next_level + 1 == ref["next_dose"]

    state = TrialState.start(1, design.n_levels, 0)
    for level, flags in _cohorts(ref["dose"], ref["dlt"]):
        state.n[0, level] += len(flags)
        state.y[0, level] += sum(flags)
    state.level[0] = ref["dose"][-1] - 1
    method = design.method
    n_draws = UPDATE["call"]["n_mcmc"]
    eps = 0.01
    for p, label in zip(QUANTILES, ("5%", "25%", "50%", "75%", "95%"), strict=True):
        q, q_lo, q_hi = method.mtd_quantiles(state, (p, p - eps / 2, p + eps / 2))[0]
        se = np.sqrt(p * (1 - p) / n_draws) * (q_hi - q_lo) / eps
        assert abs(q - ref["posterior_mtd_quantiles"][label]) <= 4 * se, (label, q, se)

    summary = method.model_summary(state)
    rho_med = summary["rho0_median"][0]
    rho_lo, rho_hi = _rho_quantiles(method, state, (0.5 - eps / 2, 0.5 + eps / 2))
    se = np.sqrt(0.25 / n_draws) * (rho_hi - rho_lo) / eps
    assert abs(rho_med - ref["posterior_rho_median"]) <= 4 * se

    level = ref["next_dose"] - 1
    mean, sd = _posterior_p_moments(method, state, level)
    assert method.level_summary(state)["p_est"][0, level] == pytest.approx(mean, abs=1e-4)
    assert abs(mean - ref["pdlt_at_next_dose_mean"]) <= 4 * sd / np.sqrt(n_draws)


def _dense_rule(method, state):
    """Posterior weights on a fine product rule (independent of the method's composite rule)."""
    u = (np.arange(2000) + 0.5) / 2000
    rho = beta_dist.ppf(u, *method.rho_prior)
    gamma = beta_dist.ppf(u, *method.mtd_prior)
    r, g = np.meshgrid(rho, gamma, indexing="ij")
    eta = method.eta(r, g)
    n, y = state.n[0].astype(float), state.y[0].astype(float)
    log_f = (y * log_expit(eta) + (n - y) * log_expit(-eta)).sum(axis=-1)
    w = np.exp(log_f - log_f.max())
    return w / w.sum(), r, g, eta


def _rho_quantiles(method, state, probs):
    w, r, _, _ = _dense_rule(method, state)
    marginal = w.sum(axis=1)
    cdf = np.cumsum(marginal)
    return [method.target * np.interp(p, cdf, r[:, 0]) for p in probs]


def _posterior_p_moments(method, state, level):
    w, _, _, eta = _dense_rule(method, state)
    p = expit(eta[..., level])
    mean = (w * p).sum()
    return mean, np.sqrt((w * (p - mean) ** 2).sum())


def _pct_se(a, n_a, b, n_b):
    pooled = (np.asarray(a) * n_a + np.asarray(b) * n_b) / (n_a + n_b) / 100
    return 100 * np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))


@pytest.mark.slow
@pytest.mark.parametrize("ref", SIM["results"], ids=lambda r: r["scenario"])
def test_simulation_matches_ewoc_simulation(ref):
    """4,000 trials here against the package's 200: every level's selection % and mean patients
    within 4 combined standard errors. Conventions of the runs: first cohort at level 1, α =
    0.25 + 0.05 per patient without DLT up to 0.5, "nearest" rounding, at most one level above the
    last cohort's, the MTD the recommendation after the last cohort."""
    call = ref["call"]
    design = _reference_design(
        feasibility_step=call["alpha_rate"], feasibility_max=0.5, max_patients=call["sample_size"]
    )
    n_trials = 4000
    sim = simulate([design], [scenario(*ref["p_true"])], n_trials, seed=2024)[0][0]
    oc = OperatingCharacteristics.from_simulations(sim)
    n_ref = call["n_sim"]
    selection = np.array(oc.values["selection_pct"])
    se = _pct_se(selection, n_trials, ref["selpercent"], n_ref)
    assert np.all(np.abs(selection - ref["selpercent"]) <= 4 * se + 1e-9), (selection, se)
    patients = np.array(oc.values["patients_mean"])
    n_se = np.array(oc.se["patients_mean"]) * np.sqrt(1 + n_trials / n_ref)
    assert np.all(np.abs(patients - ref["npatients"]) <= 4 * n_se + 1e-9), (patients, n_se)
    assert oc.values["no_selection_pct"] == 0  # no early stopping in the reference runs


def _adaptive_cdf(method, n, y, t):
    """P(γ ≤ t | data) and the posterior mean of each p_d, independently of the method's rule:
    adaptive quadrature over γ (scipy.integrate.quad, tolerance 1e-10) of integrals over ρ0/θ by
    a fixed 3,000-node composite Gauss–Legendre rule, graded towards both ends, with the Beta
    prior densities."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    a, b = method.rho_prior
    c, d = method.mtd_prior
    x = method.scaled_doses
    edges = np.unique(
        np.concatenate([np.geomspace(1e-7, 0.5, 60), 1 - np.geomspace(1e-7, 0.5, 60)])
    )
    edges = np.concatenate([[0.0], edges, [1.0]])
    g_nodes, g_weights = np.polynomial.legendre.leggauss(25)
    half = np.diff(edges)[:, None] / 2
    v = (edges[:-1, None] + half * (g_nodes + 1)).ravel()
    q = (half * g_weights).ravel() * beta_dist.pdf(v, a, b)

    def integrand(g):  # [1 + level]: ∫ L(v, g) prior(v) dv, then ∫ p_d L prior dv
        eta = method.eta(v, np.full(v.shape, g))
        log_lik = (y * log_expit(eta) + (n - y) * log_expit(-eta)).sum(axis=1)
        w = q * np.exp(log_lik - scale) * beta_dist.pdf(g, c, d)
        return np.concatenate([[w.sum()], w @ expit(eta)])

    probe = np.linspace(0.01, 0.99, 50)
    scale = 0.0
    scale = max(np.log(max(integrand(g)[0], 1e-300)) for g in probe)
    opts = {"epsabs": 0, "epsrel": 1e-10, "limit": 400}
    points = sorted({*np.round(x[(x > 0) & (x < 1)], 12), 0.01, 0.05})

    def over_gamma(k, upper):
        inside = [p for p in points if p < upper]
        return integrate.quad(lambda g: integrand(g)[k], 0, upper, points=inside or None, **opts)[0]

    norm = over_gamma(0, 1.0)
    means = np.array([over_gamma(1 + k, 1.0) for k in range(method.n_levels)]) / norm
    return over_gamma(0, t) / norm, means


ADAPTIVE_CASES = [
    ("reference data", (3, 3, 3, 0, 0, 0), (0, 1, 2, 0, 0, 0), {}),
    ("no DLT", (3, 3, 3, 3, 6, 0), (0, 0, 0, 0, 0, 0), {}),
    ("all DLTs at level 1", (3, 0, 0, 0, 0, 0), (3, 0, 0, 0, 0, 0), {}),
    ("steep, down rounding", (0, 0, 10, 8, 10, 12), (0, 0, 1, 1, 9, 12), {"rounding": "down"}),
    ("Beta priors", (6, 6, 3, 0, 0, 0), (0, 1, 2, 0, 0, 0),
     {"rho_prior": (0.5, 2.0), "mtd_prior": (2.0, 0.7)}),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("label", "n", "y", "options"), ADAPTIVE_CASES, ids=[c[0] for c in ADAPTIVE_CASES]
)
def test_quadrature_matches_adaptive_integration(label, n, y, options):
    design = _reference_design(**options)
    method = design.method
    post = method.grid_posterior(np.array([n]), np.array([y]))
    for k in (1, 3):
        t = method.scaled_doses[k]
        cdf, means = _adaptive_cdf(method, n, y, t)
        assert post.cdf_levels[0, k] == pytest.approx(cdf, abs=1e-5), k
    t = method.midpoints[2]
    cdf, means = _adaptive_cdf(method, n, y, t)
    assert post.cdf_midpoints[0, 2] == pytest.approx(cdf, abs=1e-5)
    np.testing.assert_allclose(post.p_mean[0], means, rtol=0, atol=1e-5)


def test_feasibility_bound_rises_per_patient_without_dlt():
    method = _reference_design(feasibility_step=0.05, feasibility_max=0.5).method
    state = TrialState.start(5, 6, 0)
    state.n[:, 0] = [3, 3, 3, 6, 9]
    state.y[:, 0] = [3, 2, 0, 1, 0]
    np.testing.assert_allclose(method.feasibility(state), [0.25, 0.30, 0.40, 0.50, 0.50])


@pytest.mark.parametrize("rounding", ["down", "nearest"])
def test_rounding_maps_the_quantile_to_a_level(rounding):
    """The level from the cumulative probabilities equals the level of the quantile itself."""
    design = _reference_design(rounding=rounding)
    method = design.method
    rng = np.random.default_rng(8)
    state = TrialState.start(60, 6, 0)
    state.n[:] = rng.integers(0, 7, size=(60, 6))
    state.y[:] = rng.binomial(state.n, np.linspace(0.05, 0.7, 6))
    for alpha in (0.25, 0.4, 0.5):
        level = method.level_for(state, np.full(60, alpha))
        q = method.mtd_quantiles(state, (alpha,))[:, 0]
        doses = np.asarray(method.doses)
        if rounding == "down":
            expected = np.clip((doses[None, :] <= q[:, None]).sum(axis=1) - 1, 0, 5)
        else:
            expected = np.abs(q[:, None] - doses[None, :]).argmin(axis=1)
        clear = np.abs(q[:, None] - np.concatenate([doses, (doses[1:] + doses[:-1]) / 2])).min(1)
        keep = clear > 1e-3  # quantiles within 0.001 of a boundary are interpolation ties
        assert np.array_equal(level[keep], expected[keep])


def test_down_rounding_reaches_the_top_level():
    """With "down" the MTD's range ends one step above the top level (the ewoc package adds 1 to
    max_dose), else the top level could never be at or below a quantile."""
    design = _reference_design(rounding="down", feasibility_bound=0.5, max_patients=60)
    assert design.method.mtd_range == (1.0, 7.0)
    rec = recommend(design, [(k, (False,) * 6) for k in range(6)])
    assert rec.next_level == 5 and rec.mtd == 5
    assert _reference_design(rounding="nearest").method.mtd_range == (1.0, 6.0)


def test_level_one_is_never_above_the_mtd():
    method = _reference_design().method
    state = TrialState.start(1, 6, 0)
    state.n[0, 0], state.y[0, 0] = 6, 6
    assert method.prob_above_target(state, 0)[0] == 0.0
    # Data at level 1 only inform ρ0, not γ: P(γ < x_2 = 0.2) stays the prior's.
    assert method.prob_above_target(state, 1)[0] == pytest.approx(0.2, abs=1e-6)


def test_no_skipping_relative_to_the_last_cohort():
    design = _reference_design()
    rng = np.random.default_rng(3)
    state = run_trials(design, np.full(6, 0.02), rng.random((300, 30)))
    levels = state.patient_level
    for c in range(1, 10):
        prev, cur = levels[:, 3 * c - 1], levels[:, 3 * c]
        assert np.all(cur[cur >= 0] <= prev[cur >= 0] + 1)
    assert np.all(select_mtd(design, state) <= state.level + 1)


def test_median_final_selection():
    design = _reference_design(final="median")
    rec = recommend(design, _cohorts([1, 1, 1, 2, 2, 2, 3, 3, 3], [0, 0, 0, 0, 0, 1, 0, 1, 1]))
    median = rec.model_summary["mtd_q50"]
    assert rec.mtd == int(np.abs(np.arange(1, 7) - median).argmin())


@pytest.mark.slow
def test_simulation_agrees_with_exact_enumeration():
    design = _reference_design(feasibility_step=0.05, max_patients=12)
    scen = scenario(0.05, 0.15, 0.3, 0.45, 0.6, 0.75)
    assert_simulation_matches_exact(design, [scen], n_trials=20_000, seed=9)


# --- design files -----------------------------------------------------------------------------

BASE = {
    "method": "ewoc",
    "target": 0.3,
    "doses": [1.85, 3.7, 5.55, 7.4, 9.25, 11.1],
    "max_patients": 30,
}


def test_example_file_builds():
    design = design_from_dict({**BASE, "ewoc": {"rounding": "nearest", "final": "median"}}, "e")
    assert design.method.rounding == "nearest" and design.method.final == "median"
    assert design.max_patients is not None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"ewoc": {"feasibility_bound": 0.4, "feasibility_max": 0.3}}, "must be at least"),
        ({"ewoc": {"rounding": "up"}}, 'rounding = "up": must be one of "down", "nearest"'),
        ({"ewoc": {"final": "mode"}}, 'final = "mode": must be one of'),
        ({"ewoc": {"mtd_prior": [1, 0]}}, "mtd_prior: every value must be > 0"),
        ({"doses": [2.0]}, "EWOC needs at least two levels"),
        ({"doses": [3.0, 2.0, 1.0]}, "doses: must be strictly increasing"),
        ({"ewoc": {"feasibility_bound": 0}}, "feasibility_bound = 0: must be a number in (0, 1)"),
    ],
)
def test_bad_ewoc_files_give_one_line_errors(changes, expected):
    data = {**BASE, **changes}
    with pytest.raises(ConfigError) as info:
        design_from_dict(data, "e.toml")
    assert any(expected in m for m in info.value.messages), info.value.messages


def test_cli_table_and_recommend(tmp_path):
    import json

    from typer.testing import CliRunner

    from theradose.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["table", "designs/ewoc.toml", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        "level,activity,prior_mean,prior_p_target,prior_p_overdose"
    )
    out = tmp_path / "rec.json"
    result = runner.invoke(
        app, ["recommend", "designs/ewoc.toml", "-o", "1NNN 2NNT 3NTT", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {"p_est", "p_target", "p_overdose"} <= set(data["levels"][0])
    assert data["levels"][0]["p_overdose"] == 0.0
    assert {"mtd_q25", "mtd_q50", "rho0_median", "feasibility_bound"} <= set(data)
