"""BLRM with overdose control: the published NBG 2008 example, lattice posteriors against
independent adaptive quadrature and a denser lattice, the decision rule, exact enumeration
against simulation, and bad design files.

NBG example: Neuenschwander, Branson & Gsponer (2008), *Stat Med* 27:2420–2439, section 3 and
Figure 1 — 15 activities, d* = 250, (log α, log β) ~ N((2.15, 0.52), sd (0.84, 0.80), corr 0.2);
3, 4, 5, 4, 2 patients at levels 1, 2, 3, 4, 7 and DLTs only in the 2 at level 7. Posterior mean
DLT probabilities by bcrm (JAGS), as quoted in the theradose issue tracker (issue 4).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize
from scipy.special import expit, log_expit, logit

from factories import (
    NBG_DOSES,
    assert_simulation_matches_exact,
    blrm_design,
    scenario,
)
from theradose.config import ConfigError, design_from_dict
from theradose.constraints import MaxIncrement
from theradose.engine import run_trials
from theradose.methods import blrm as blrm_module
from theradose.pipeline import select_mtd
from theradose.posterior import lattice_log_expit, sheared_lattice, smoothed_step, step_sums
from theradose.posterior import log_expit as numpy_log_expit
from theradose.recommendation import recommend
from theradose.state import StopReason, TrialState

NBG_N = (3, 4, 5, 4, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0)
NBG_Y = (0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0)
NBG_BCRM_MEAN = (
    0.013, 0.032, 0.065, 0.131, 0.195, 0.255, 0.310, 0.360,
    0.447, 0.519, 0.646, 0.727, 0.818, 0.866, 0.894,
)  # fmt: skip


def _state(n, y):
    state = TrialState.start(1, len(n), 0)
    state.n[0], state.y[0] = n, y
    state.level[0] = int(np.flatnonzero(np.asarray(n))[-1]) if np.any(n) else 0
    return state


def test_nbg_example_matches_bcrm():
    """bcrm's means are JAGS estimates rounded to 3 decimals from a few thousand correlated
    draws: at the steepest levels their Monte Carlo error is about 0.002 (posterior sd ≈ 0.06
    over an effective ~500 draws), so agreement is checked to 0.005; our own values are checked
    to 1e-4 against adaptive quadrature below."""
    method = blrm_design().method
    p = method.level_summary(_state(NBG_N, NBG_Y))["p_est"][0]
    np.testing.assert_allclose(p, NBG_BCRM_MEAN, rtol=0, atol=0.005)
    # NBG's Figure 1 reads 0.01 at level 1 and 0.92 at the top (their MCMC)
    assert p[0] == pytest.approx(0.01, abs=0.005) and p[-1] > 0.88


def _reference(method, n, y, level):
    """Posterior mean of p_level and P(p_level ≥ c) for the interval's ends by nested adaptive
    quadrature (scipy.integrate.quad) over (log α, log β), independently of the lattices."""
    x = method.log_dose_ratio
    n, y = np.asarray(n, float), np.asarray(y, float)
    mu, cinv = np.asarray(method.prior_mean), np.linalg.inv(method.prior_cov)

    def log_f(t1, t2):
        eta = t1 + np.exp(t2) * x
        d = np.array([t1, t2]) - mu
        return float(np.sum(y * log_expit(eta) + (n - y) * log_expit(-eta)) - 0.5 * d @ cinv @ d)

    fit = optimize.minimize(lambda t: -log_f(*t), mu, method="BFGS")
    centre, sd = fit.x, np.sqrt(np.diag(fit.hess_inv)) * 1.5 + 0.05
    peak = log_f(*centre)
    lo1, hi1 = centre[0] - 14 * sd[0], centre[0] + 14 * sd[0]
    lo2, hi2 = centre[1] - 14 * sd[1], centre[1] + 14 * sd[1]
    opts = {"epsabs": 0, "epsrel": 1e-9, "limit": 200}

    def row(t2, weight=None, cut=None):
        start = lo1 if cut is None else min(max(lo1, cut - np.exp(t2) * x[level]), hi1)
        g = (lambda t1, t2: 1.0) if weight is None else weight
        return integrate.quad(
            lambda t1: np.exp(log_f(t1, t2) - peak) * g(t1, t2), start, hi1, **opts
        )[0]

    norm = integrate.quad(row, lo2, hi2, **opts)[0]
    mean = integrate.quad(
        lambda t2: row(t2, weight=lambda t1, t2: expit(t1 + np.exp(t2) * x[level])),
        lo2,
        hi2,
        **opts,
    )[0]
    above = [
        integrate.quad(row, lo2, hi2, args=(None, c), **opts)[0] / norm
        for c in logit(np.array(method.target_interval))
    ]
    return mean / norm, np.array(above)


CASES = [
    ("NBG 2008", NBG_N, NBG_Y, 6),
    ("no DLT, 30 patients", (6, 6, 6, 6, 6) + (0,) * 10, (0,) * 15, 6),
    ("all DLTs at level 1", (3,) + (0,) * 14, (3,) + (0,) * 14, 0),
    ("conflicting: 0/12 then 6/6", (0, 0, 0, 12, 6) + (0,) * 10, (0, 0, 0, 0, 6) + (0,) * 10, 4),
    ("60 patients around the MTD",
     (0,) * 5 + (20, 20, 20) + (0,) * 7, (0,) * 5 + (2, 5, 9) + (0,) * 7, 6),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("label", "n", "y", "level"), CASES, ids=[c[0] for c in CASES])
def test_lattice_matches_adaptive_quadrature(label, n, y, level):
    method = blrm_design(max_patients=60).method
    post = method.grid_posterior(np.array([n]), np.array([y]))
    mean, above = _reference(method, n, y, level)
    assert post.p_mean[0, level] == pytest.approx(mean, abs=1e-4)
    np.testing.assert_allclose(post.prob_at_least[0, :2, level], above, rtol=0, atol=1e-3)


def test_lattice_matches_a_much_denser_lattice(monkeypatch):
    """Random data sets on the six-level example design: the lattices against lattices with a
    fifth of the spacing. Worst errors measured: 5e-5 (means), 1e-3 (probabilities)."""
    from theradose.config import load_design

    method = load_design("designs/blrm.toml").method
    rng = np.random.default_rng(4)
    n = rng.integers(0, 8, size=(40, 6)) * (rng.random((40, 6)) < 0.6)
    y = rng.binomial(n, np.sort(rng.random((40, 6)), axis=1))
    post = method.grid_posterior(n, y)
    monkeypatch.setattr(blrm_module, "OWN_SPACING", 0.08)
    monkeypatch.setattr(blrm_module, "OWN_HALF_WIDTH", 8.0)
    dense, _ = method._own_lattice_pass(
        n.astype(float), y.astype(float), post.theta_mean, post.theta_cov * 1.2
    )
    assert np.abs(post.p_mean - dense.p_mean).max() < 1e-3
    assert np.abs(post.prob_at_least - dense.prob_at_least).max() < 5e-3


def test_smoothed_step_integrates_the_cubic_interpolant():
    # For f sampled at integers, h·Σ f_i·S(i − c) = ∫_c^∞ of the cubic interpolant, which is exact
    # for polynomials up to degree 2 (Keys 1981); here f(t) = 1 + t/10 − t²/200 on [−30, 30].
    t = np.arange(-30.0, 31.0)
    f = np.where(np.abs(t) <= 27, 1 + t / 10 - t**2 / 200, 0.0)
    cut = 3.3
    exact = integrate.quad(lambda s: 1 + s / 10 - s**2 / 200, cut, 27)[0]
    assert (f * smoothed_step(t - cut)).sum() == pytest.approx(exact, abs=0.05)
    s = np.linspace(-3, 3, 61)
    np.testing.assert_allclose(smoothed_step(s) + smoothed_step(-s), 1.0, atol=1e-14)
    assert np.all(np.diff(smoothed_step(np.linspace(-2, 2, 401))) >= -0.02)


@settings(max_examples=40, deadline=None)
@given(
    states=st.integers(1, 3),
    rows=st.integers(1, 6),
    levels=st.integers(1, 3),
    h=st.floats(0.05, 2.0),
    centre=st.floats(-30.0, 30.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_step_sums_are_the_smoothed_steps_summed_over_nodes(states, rows, levels, h, centre, seed):
    """The compiled row kernel against the plain sum Σ_i,j w·smoothed_step(s_0 + i) over every
    node, with steps before, inside and past the rows of 25 nodes."""
    rng = np.random.default_rng(seed)
    n_i = 25
    w = rng.random((states, n_i, rows))
    eta_first = centre + rng.normal(0.0, 10.0 * h, (states, levels, rows))
    h1 = h * rng.uniform(0.5, 1.5, states)
    cuts = np.array([-1.6, -0.7, 0.4])
    got = step_sums(w, eta_first, h1, cuts)  # [state, cut, level]
    s0 = (eta_first[:, None] - cuts[:, None, None]) / h1[:, None, None, None]  # [s, c, l, j]
    i = np.arange(n_i)[:, None]
    steps = smoothed_step(s0[..., None, :] + i)  # [state, cut, level, i, j]
    expected = (w[:, None, None] * steps).sum(axis=(3, 4))
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)


@settings(max_examples=40, deadline=None)
@given(
    scale=st.floats(1e-3, 800.0),
    shift=st.floats(-50.0, 50.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_lattice_log_expit_is_log_expit_of_the_sum(scale, shift, seed):
    """Bit for bit what numpy's log_expit gives on θ1 + slope (the engine's results do not
    change with it), and scipy's log_expit to 1e-15 relative."""
    rng = np.random.default_rng(seed)
    theta1 = shift + scale * rng.normal(size=(2, 5, 7))
    slope = scale * rng.normal(size=(2, 3, 7))
    slope[0, 0, :3] = -theta1[0, 0, :3]  # η = 0 exactly
    got = lattice_log_expit(theta1, slope)
    eta = theta1[:, None] + slope[:, :, None]
    np.testing.assert_array_equal(got, numpy_log_expit(eta))
    np.testing.assert_allclose(got, log_expit(eta), rtol=1e-15, atol=1e-300)


def test_sheared_lattice_rows_broadcast():
    """θ2 [state, 1, j] is constant along a row; with θ1 [state, i, j] the lattice has the prior's
    moments when weighted by the prior (trapezoidal rule, spacing 0.25 sd: exact but for the
    tails past ±6.5 sd, 2·6.5·φ(6.5) ≈ 3e-9 of the variance)."""
    mean = np.array([[0.5, -0.2]])
    cov = np.array([[[1.0, 0.3], [0.3, 0.5]]])
    theta1, theta2, h1 = sheared_lattice(mean, cov, 6.5, 0.25)
    assert theta1.shape == (1, 53, 53) and theta2.shape == (1, 1, 53) and h1.shape == (1,)
    np.testing.assert_allclose(np.diff(theta1, axis=1), h1[0])  # rows rise in θ1 by h1
    d = np.stack(np.broadcast_arrays(theta1, theta2), axis=-1).reshape(-1, 2) - mean
    w = np.exp(-0.5 * ((d @ np.linalg.inv(cov[0])) * d).sum(axis=1))
    w /= w.sum()
    np.testing.assert_allclose(w @ d, 0.0, atol=1e-12)
    np.testing.assert_allclose((w[:, None] * d).T @ d, cov[0], rtol=5e-9)


def test_rules_get_the_same_probabilities_without_the_posterior_means():
    """The rules do not compute the posterior means of p: every other summary is bit for bit the
    same (also on lattices of their own, vague prior), and p_est is computed when asked for."""
    method = blrm_design(prior_sd=(2.0, 1.0), prior_corr=0.0).method
    rng = np.random.default_rng(5)
    n = rng.integers(0, 8, size=(300, 15)) * (rng.random((300, 15)) < 0.3)
    y = rng.binomial(n, np.sort(rng.random((300, 15)), axis=1))
    full = method.grid_posterior(n, y)
    rules = method.grid_posterior(n, y, p_mean=False)
    assert full.own_lattice.sum() > 100 and np.isnan(rules.p_mean).all()
    assert np.isfinite(full.p_mean).all()
    for name in ("prob_at_least", "theta_mean", "theta_cov", "own_lattice"):
        np.testing.assert_array_equal(getattr(rules, name), getattr(full, name))
    state = _state(n[0], y[0])
    assert set(method.probabilities(state, p_est=False)) == {"p_target", "p_overdose"}
    # one state alone: the matrix products may round differently from those of the batch
    np.testing.assert_allclose(method.probabilities(state)["p_est"][0], full.p_mean[0], rtol=1e-12)


def test_decision_is_the_admissible_level_with_highest_target_probability():
    design = blrm_design()
    state = _state(NBG_N, NBG_Y)
    prob = design.method.probabilities(state)
    admissible = prob["p_overdose"][0] < 0.25
    expected = int(np.argmax(np.where(admissible, prob["p_target"][0], -1)))
    proposal, stop = design.method.propose(state)
    assert proposal[0] == expected and stop[0] == 0
    assert not admissible[expected + 1 :].any()  # P(overdose) grows with the level


def test_the_pipeline_choice_is_the_constrained_argmax():
    """The engine takes the highest allowed level at or below the proposal; with P(target)
    unimodal over levels that is the admissible level with the highest P(target) within the
    increment limits, as NBG's rule says. Checked on every final state of simulated trials."""
    design = blrm_design(
        doses=(1.85, 3.7, 5.55, 7.4, 9.25, 11.1), reference_dose=7.4,
        prior_mean=(-0.85, 0.0), prior_sd=(2.0, 1.0), prior_corr=0.0, target=0.3,
        max_increment=0.5,
    )  # fmt: skip
    u = np.random.default_rng(2).random((600, 36))
    for p_true in ([0.05, 0.1, 0.2, 0.3, 0.5, 0.7], [0.01, 0.02, 0.05, 0.1, 0.2, 0.35]):
        state = run_trials(design, np.array(p_true), u)
        allowed = design.allowed(state)
        score = np.where(allowed, design.method.probabilities(state)["p_target"], -1.0)
        best = np.where(allowed.any(axis=1), score.argmax(axis=1), -1)
        assert np.array_equal(select_mtd(design, state), best)


def test_increments_and_no_skipping_hold_on_every_cohort():
    design = blrm_design(doses=(1, 2, 3, 5, 8, 10), reference_dose=5, max_increment=0.5,
                         prior_mean=(-1.1, 0.0), prior_sd=(2.0, 1.0), prior_corr=0.0)  # fmt: skip
    state = run_trials(design, np.full(6, 0.01), np.random.default_rng(1).random((300, 36)))
    doses = np.array(design.doses)
    for c in range(1, 12):
        given = state.patient_level[:, : 3 * c]
        nxt = state.patient_level[:, 3 * c]
        treated = nxt >= 0
        highest = given.max(axis=1)
        assert np.all(doses[nxt[treated]] <= 1.5 * doses[highest[treated]] + 1e-9)
        assert np.all(nxt[treated] <= highest[treated] + 1)


def test_max_increment_mask():
    state = TrialState.start(2, 4, 0)
    state.n[0] = [3, 3, 0, 0]
    mask = MaxIncrement((1.0, 2.0, 4.0, 8.0), 1.0).allowed(state)
    assert mask[0].tolist() == [True, True, True, False]  # 4 ≤ 2 × 2
    assert mask[1].all()  # nobody treated yet


def test_too_toxic_start_stops_and_safety_stop_fires():
    design = blrm_design(safety_cutoff=0.8)
    rec = recommend(design, [(0, (True, True, True))])
    assert rec.stop and rec.mtd is None
    assert rec.stop_reason in (StopReason.TOO_TOXIC, StopReason.SAFETY)
    prob = design.method.prob_above_target(_state((3,) + (0,) * 14, (3,) + (0,) * 14), 0)
    assert prob[0] > 0.8
    # Overdose control alone (no safety rule): no admissible level is a stop with no MTD.
    rec = recommend(blrm_design(), [(0, (True, True, True))])
    assert rec.stop and rec.stop_reason is StopReason.TOO_TOXIC and rec.mtd is None


@pytest.mark.slow
def test_simulation_agrees_with_exact_enumeration():
    design = blrm_design(
        doses=(2.0, 4.0, 6.0), reference_dose=4.0, prior_mean=(-1.0, 0.0), prior_sd=(1.5, 0.8),
        prior_corr=0.0, target=0.3, max_patients=12,
    )  # fmt: skip
    assert_simulation_matches_exact(design, [scenario(0.1, 0.3, 0.5)], n_trials=20_000, seed=5)


def test_own_lattices_are_used_where_the_posterior_concentrates():
    method = blrm_design(max_patients=120).method
    n = np.array([[0, 0, 0, 0, 0, 40, 40, 40] + [0] * 7, [3] + [0] * 14])
    y = np.array([[0, 0, 0, 0, 0, 4, 10, 20] + [0] * 7, [0] * 15])
    post = method.grid_posterior(n, y)
    assert post.own_lattice.tolist() == [True, False]
    assert np.all(np.isfinite(post.p_mean)) and np.all(np.diff(post.p_mean, axis=1) > 0)


# --- design files -----------------------------------------------------------------------------

BASE = {
    "method": "blrm",
    "target": 0.3,
    "doses": [1.85, 3.7, 5.55, 7.4, 9.25, 11.1],
    "max_patients": 36,
    "blrm": {"reference_dose": 7.4, "prior_mean": [-0.85, 0.0], "prior_sd": [2.0, 1.0]},
}


def _errors(**changes) -> list[str]:
    data = {**BASE, **{k: v for k, v in changes.items() if k != "blrm"}}
    data["blrm"] = {**BASE["blrm"], **changes.get("blrm", {})}
    with pytest.raises(ConfigError) as info:
        design_from_dict(data, "b.toml")
    return info.value.messages


def test_example_file_builds():
    design = design_from_dict(BASE, "b.toml")
    assert design.method_key == "blrm"
    assert [type(c).__name__ for c in design.constraints] == ["MaxIncrement", "NoSkip"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"blrm": {"prior_corr": 1.0}}, "prior_corr = 1.0: must be a number in (-1, 1)"),
        ({"blrm": {"prior_corr": -1}}, "positive definite"),
        ({"blrm": {"prior_sd": [0.8, 0]}}, "prior_sd: every value must be > 0"),
        ({"blrm": {"prior_sd": [-1, 1]}}, "prior_sd: every value must be > 0"),
        ({"blrm": {"reference_dose": 0}}, "reference_dose = 0: must be a number > 0"),
        ({"blrm": {"reference_dose": -7.4}}, "reference_dose = -7.4: must be a number > 0"),
        ({"blrm": {"target_interval": [0.16, 0.25]}}, "must contain target (0.3)"),
        ({"blrm": {"target_interval": [0.33, 0.16]}}, "target_interval: must be increasing"),
        ({"blrm": {"prior_mean": [1]}}, "prior_mean: must be an array of two numbers"),
        ({"doses": [1.85, 3.7, 3.7, 7.4]}, "doses: must be strictly increasing"),
        ({"blrm": {"max_increment": 0}}, "max_increment = 0: must be a number > 0"),
        ({"blrm": {"max_overdose_prob": 1.5}}, "max_overdose_prob = 1.5"),
    ],
)
def test_bad_blrm_files_give_one_line_errors(changes, expected):
    messages = _errors(**changes)
    assert any(expected in m for m in messages), messages
    assert all(m.startswith("b.toml: ") and "\n" not in m for m in messages)


def test_blrm_needs_activities():
    data = {k: v for k, v in BASE.items() if k != "doses"} | {"levels": 6}
    with pytest.raises(ConfigError, match="needs the activity of each level"):
        design_from_dict(data, "b.toml")


def test_method_rejects_a_singular_prior():
    with pytest.raises(ValueError, match="positive-definite"):
        blrm_design(prior_corr=1.0)


def test_nbg_doses_constant_is_the_papers():
    assert len(NBG_DOSES) == 15 and NBG_DOSES[6] == 25


@settings(max_examples=30, deadline=None)
@given(
    n=st.lists(st.integers(0, 30), min_size=6, max_size=6),
    frac=st.lists(st.floats(0, 1), min_size=6, max_size=6),
)
def test_posterior_probabilities_are_coherent(n, frac):
    """p_d's posterior mean and P(overdose) rise with the level; all probabilities in [0, 1]."""
    from theradose.config import load_design

    method = load_design("designs/blrm.toml").method
    n = np.array([n])
    y = np.floor(np.array([frac]) * n).astype(int)
    prob = method.probabilities(_state(n[0], y[0]))
    for values in prob.values():
        assert np.all(np.isfinite(values)) and np.all((values >= 0) & (values <= 1))
    assert np.all(np.diff(prob["p_est"][0]) > 0)
    assert np.all(np.diff(prob["p_overdose"][0]) >= -2e-3)  # up to the lattice's accuracy


# --- the command line -------------------------------------------------------------------------


def test_cli_table_and_recommend(tmp_path):
    import json

    from typer.testing import CliRunner

    from theradose.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["table", "designs/blrm.toml", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["level"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"prior_mean", "prior_p_target", "prior_p_overdose", "activity"} <= set(rows[0])
    out = tmp_path / "rec.json"
    result = runner.invoke(
        app, ["recommend", "designs/blrm.toml", "-o", "1NNN 2NNN 3NTN", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    # the column header wraps to keep the table within the terminal's width
    assert "P(0.16 ≤ DLT" in result.output and "< 0.33)" in result.output
    data = json.loads(out.read_text())
    assert data["engine"] == "grid" and data["mcmc"] is None
    level = data["levels"][2]
    assert {"p_est", "p_target", "p_overdose"} <= set(level)
    assert "log_alpha_mean" in data


def test_cli_bad_file_exits_2(tmp_path):
    from typer.testing import CliRunner

    from theradose.cli import app

    path = tmp_path / "bad.toml"
    path.write_text(
        'method = "blrm"\ntarget = 0.3\ndoses = [1, 2, 4]\nmax_patients = 12\n'
        "[blrm]\nreference_dose = 0\nprior_mean = [0, 0]\nprior_sd = [1, 1]\nprior_corr = 1\n"
    )
    result = CliRunner().invoke(app, ["recommend", str(path), "-o", "1NNN"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert any("reference_dose = 0" in line for line in lines)
    assert any("prior_corr = 1" in line for line in lines)
    assert all(line.startswith("error: ") for line in lines)
