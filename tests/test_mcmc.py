"""The pymc models (NUTS) against the lattice and quadrature posteriors, and the MCMC engine of
``recommend`` and ``simulate``.

Agreement: posterior mean DLT probabilities within 0.01 and P(overdose) within 0.02 on every
level, with R-hat < 1.01 and (almost) no divergent transitions. Each run is seeded and long
enough that these tolerances are at least 2 Monte Carlo standard errors of the MCMC estimate
(checked: sd/√ESS of each level's p from arviz's bulk ESS, and 0.5/√ESS for a probability).
The lattice and quadrature posteriors themselves are exact to 1e-3 or better (test_blrm.py,
test_ewoc.py), so a failure here means the MCMC run, or the model written twice, disagrees.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from factories import blrm_design, ewoc_design
from theradose.cli import app

mcmc = pytest.importorskip("theradose.mcmc")

BLRM_CASES = [
    ("NBG 2008", (3, 4, 5, 4, 0, 0, 2) + (0,) * 8, (0,) * 6 + (2,) + (0,) * 8),
    ("all DLTs", (3, 3) + (0,) * 13, (3, 3) + (0,) * 13),
    ("no DLT", (3, 3, 3, 3, 3) + (0,) * 10, (0,) * 15),
]
EWOC_CASES = [
    ("ewoc_update data", (3, 3, 3, 0, 0, 0), (0, 1, 2, 0, 0, 0), 5000),
    # DLT rates above θ where the model has ρ0 < θ: a posterior pressed against ρ0/θ = 1
    pytest.param("all DLTs", (3, 3, 0, 0, 0, 0), (3, 3, 0, 0, 0, 0), 8000, marks=pytest.mark.slow),
    ("no DLT", (3, 3, 3, 3, 0, 0), (0, 0, 0, 0, 0, 0), 3000),
]


def _check_run(run, mean_tolerance=0.01, prob_tolerance=0.02):
    import arviz as az

    assert run.max_r_hat < 1.01, run.diagnostics
    posterior = run.idata.posterior
    # A handful of divergences in tens of thousands of transitions, near the boundaries of
    # (0, 1) for EWOC, do not bias these summaries (checked against the quadrature here).
    assert run.divergences <= 1e-3 * posterior.sizes["chain"] * posterior.sizes["draw"]
    ess = az.ess(run.idata, var_names=["p"], method="bulk")["p"].values  # [level]
    sd = posterior["p"].std(dim=("chain", "draw")).values
    assert np.all(mean_tolerance >= 2 * sd / np.sqrt(ess)), (sd, ess)
    assert prob_tolerance >= 2 * 0.5 / np.sqrt(run.min_ess_bulk)


@pytest.mark.parametrize(("label", "n", "y"), BLRM_CASES, ids=[c[0] for c in BLRM_CASES])
def test_blrm_grid_and_mcmc_agree(label, n, y):
    method = blrm_design().method
    n, y = np.array([n]), np.array([y])
    sampler = mcmc.McmcSampler(draws=3000, seed=11)
    draws = sampler.blrm_posterior(method, n, y)
    grid = method.grid_posterior(n, y)
    _check_run(sampler.last_run)
    assert np.abs(draws.p_mean - grid.p_mean).max() < 0.01
    assert np.abs(draws.prob_at_least[:, :2] - grid.prob_at_least[:, :2]).max() < 0.02
    np.testing.assert_allclose(draws.theta_mean, grid.theta_mean, atol=0.05)


@pytest.mark.parametrize(
    ("label", "n", "y", "draws"), EWOC_CASES, ids=["update", "all DLTs", "no DLT"]
)
def test_ewoc_grid_and_mcmc_agree(label, n, y, draws):
    method = ewoc_design(rounding="nearest").method
    n, y = np.array([n]), np.array([y])
    # p at the untried levels spreads over most of (0, 1) (sd up to 0.3): longer runs
    sampler = mcmc.McmcSampler(draws=draws, seed=12)
    draws = sampler.ewoc_posterior(method, n, y, (0.25, 0.5))
    grid = method.grid_posterior(n, y, (0.25, 0.5))
    _check_run(sampler.last_run)
    assert np.abs(draws.p_mean - grid.p_mean).max() < 0.01
    # P(overdose at level d) = P(γ < x_d), and the probabilities that decide the next level
    assert np.abs(draws.cdf_levels - grid.cdf_levels).max() < 0.02
    assert np.abs(draws.cdf_midpoints - grid.cdf_midpoints).max() < 0.02
    assert np.abs(draws.mtd_quantiles - grid.mtd_quantiles).max() < 0.1  # activity units


def test_the_sampler_runs_each_data_set_once():
    method = blrm_design().method
    sampler = mcmc.McmcSampler(draws=200, tune=200, chains=2, seed=3)
    n, y = np.array([[3] + [0] * 14] * 2), np.zeros((2, 15), dtype=int)
    sampler.blrm_posterior(method, n, y)
    sampler.blrm_posterior(method, n[:1], y[:1])
    assert len(sampler.runs) == 1


def test_mcmc_design_keeps_the_rules():
    design = blrm_design(safety_cutoff=0.9)
    sampler = mcmc.McmcSampler(draws=300, tune=300, chains=2)
    mcmc_design = mcmc.with_sampler(design, sampler)
    assert mcmc_design.method.sampler is sampler
    assert mcmc_design.stopping[1].method is mcmc_design.method
    assert mcmc_design.constraints == design.constraints
    with pytest.raises(ValueError, match="no MCMC model"):
        from factories import crm_design

        mcmc.with_sampler(crm_design(), sampler)


def test_recommend_with_mcmc_prints_diagnostics_and_saves_the_posterior(tmp_path):
    import arviz as az

    out = tmp_path / "post.nc"
    rec = tmp_path / "rec.json"
    result = CliRunner().invoke(
        app,
        ["recommend", "designs/ewoc.toml", "-o", "1NNN 2NNT 3NTT", "--engine", "mcmc",
         "--draws", "500", "--tune", "500", "--chains", "2", "--posterior", str(out),
         "--json", str(rec)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "R-hat" in result.output and "bulk ESS" in result.output and "tail ESS" in result.output
    assert "divergent transitions" in result.output
    idata = az.from_netcdf(out)
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 500
    assert "gamma" in idata.posterior and "p" in idata.posterior
    data = json.loads(rec.read_text())
    assert data["engine"] == "mcmc" and data["mcmc"]["chains"] == 2
    assert set(data["mcmc"]["diagnostics"]) == {"rho_fraction", "gamma"}
    assert {"p_est", "p_target", "p_overdose"} <= set(data["levels"][0])
    assert not list(tmp_path.glob(".*.tmp"))


def test_mcmc_engine_needs_a_model_and_posterior_needs_mcmc():
    runner = CliRunner()
    result = runner.invoke(
        app, ["recommend", "designs/boin.toml", "-o", "1NNN", "--engine", "mcmc"]
    )
    assert (
        result.exit_code == 2 and '--engine mcmc is for method = "blrm" or "ewoc"' in result.output
    )
    result = runner.invoke(
        app, ["recommend", "designs/blrm.toml", "-o", "1NNN", "--posterior", "x.nc"]
    )
    assert result.exit_code == 2 and "--posterior needs --engine mcmc" in result.output


def test_methods_do_not_import_pymc():
    code = (
        "import sys, theradose.methods.blrm, theradose.methods.ewoc, theradose.config; "
        "print([m for m in ('pymc', 'arviz') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_simulate_with_the_mcmc_engine():
    """A small validation run: the same patients, the grid and MCMC engines, the same pathways
    (decisions are far from their thresholds on these patients)."""
    from theradose.scenario import Scenario
    from theradose.study import run_study

    design = ewoc_design(rounding="nearest", max_patients=6)
    scen = [Scenario("S", (0.05, 0.1, 0.2, 0.3, 0.5, 0.7))]
    options = {"draws": 500, "tune": 500, "chains": 2}
    grid = run_study([design], scen, n_trials=2, seed=3)
    by_mcmc = run_study([design], scen, n_trials=2, seed=3, engine="mcmc", mcmc_options=options)
    assert by_mcmc.notes and "MCMC" in by_mcmc.notes[-1]
    assert by_mcmc.oc[0][0].values["patients_mean"] == grid.oc[0][0].values["patients_mean"]
