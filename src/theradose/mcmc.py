"""The two-parameter designs' models in pymc, sampled by NUTS: the independent check of the
lattice and quadrature posteriors, and an engine for interim recommendations.

Imported only when asked for (``--engine mcmc``): pymc and arviz take seconds to load.

- BLRM (Neuenschwander, Branson & Gsponer 2008, *Stat Med* 27:2420–2439):
  (log α, log β) ~ N2(μ, Σ), y_d ~ Binomial(n_d, expit(log α + exp(log β)·log(d/d*))).
- EWOC (Babb, Rogatko & Zacks 1998, *Stat Med* 17:1103–1120), the ewoc package's classical
  parametrisation: ρ0/θ ~ Beta(a, b), γ ~ Beta(c, d),
  y_d ~ Binomial(n_d, expit(logit ρ0 + (logit θ − logit ρ0)·x_d/γ)).

NUTS: Hoffman, M. D. & Gelman, A. (2014). *J Mach Learn Res* 15:1593–1623. Diagnostics: rank-
normalised split R-hat and bulk and tail effective sample sizes (Vehtari, Gelman, Simpson,
Carpenter & Bürkner 2021, *Bayesian Analysis* 16:667–718, doi:10.1214/20-BA1221), as arviz
computes them.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
from scipy.special import expit, logit

from theradose.design import Design
from theradose.methods.blrm import Blrm, BlrmPosterior
from theradose.methods.ewoc import Ewoc, EwocPosterior

DEFAULT_DRAWS = 2000
DEFAULT_TUNE = 1000
DEFAULT_CHAINS = 4
DEFAULT_TARGET_ACCEPT = 0.95


@dataclass(frozen=True)
class McmcRun:
    """One data set sampled: its counts, the draws and their diagnostics.

    Attributes
    ----------
    n, y : [level] the data
    idata : arviz.InferenceData (posterior, sample_stats, observed_data)
    diagnostics : per parameter, ``r_hat``, ``ess_bulk``, ``ess_tail``
    divergences : divergent transitions after tuning, all chains
    seconds : sampling time
    """

    n: tuple[int, ...]
    y: tuple[int, ...]
    idata: Any
    diagnostics: dict[str, dict[str, float]]
    divergences: int
    seconds: float

    @property
    def max_r_hat(self) -> float:
        return max(d["r_hat"] for d in self.diagnostics.values())

    @property
    def min_ess_bulk(self) -> float:
        return min(d["ess_bulk"] for d in self.diagnostics.values())

    @property
    def min_ess_tail(self) -> float:
        return min(d["ess_tail"] for d in self.diagnostics.values())


@dataclass
class McmcSampler:
    """Posteriors of a method by NUTS (``cores = 1``, seeded), one run per distinct data set.

    Every run is kept in ``runs`` (in order), so the same data set is never sampled twice and
    the draws behind a recommendation can be inspected and saved.
    """

    draws: int = DEFAULT_DRAWS
    tune: int = DEFAULT_TUNE
    chains: int = DEFAULT_CHAINS
    seed: int = 1
    target_accept: float = DEFAULT_TARGET_ACCEPT
    runs: list[McmcRun] = field(default_factory=list)
    _by_data: dict = field(default_factory=dict, repr=False)

    @property
    def last_run(self) -> McmcRun | None:
        return self.runs[-1] if self.runs else None

    def run(self, model_builder, key: str, n: np.ndarray, y: np.ndarray) -> McmcRun:
        """Sample the model that ``model_builder(n, y)`` builds for one data set (cached)."""
        data = (key, tuple(int(v) for v in n), tuple(int(v) for v in y))
        if data not in self._by_data:
            start = time.perf_counter()
            with _quiet():
                model = model_builder(n, y)
                with model:
                    idata = pm.sample(
                        draws=self.draws,
                        tune=self.tune,
                        chains=self.chains,
                        cores=1,
                        random_seed=self.seed,
                        target_accept=self.target_accept,
                        progressbar=False,
                        compute_convergence_checks=False,
                    )
            seconds = time.perf_counter() - start
            names = [v.name for v in model.free_RVs]
            run = McmcRun(
                n=data[1],
                y=data[2],
                idata=idata,
                diagnostics=diagnostics(idata, names),
                divergences=int(idata.sample_stats["diverging"].sum()),
                seconds=seconds,
            )
            self._by_data[data] = run
            self.runs.append(run)
        return self._by_data[data]

    # -- the methods' posteriors from draws ----------------------------------------------------

    def blrm_posterior(self, method: Blrm, n: np.ndarray, y: np.ndarray) -> BlrmPosterior:
        """:class:`~theradose.methods.blrm.BlrmPosterior` of each row of ``n``, ``y`` from
        draws."""
        rows = []
        for n_row, y_row in zip(n, y, strict=True):
            run = self.run(lambda a, b: blrm_model(method, a, b), "blrm", n_row, y_row)
            rows.append(blrm_summary(method, _draws(run.idata, "theta")))
        return BlrmPosterior(*(np.stack(parts) for parts in zip(*rows, strict=True)))

    def ewoc_posterior(self, method: Ewoc, n: np.ndarray, y: np.ndarray, quantiles=()):
        """:class:`~theradose.methods.ewoc.EwocPosterior` of each row from draws."""
        rows = []
        for n_row, y_row in zip(n, y, strict=True):
            run = self.run(lambda a, b: ewoc_model(method, a, b), "ewoc", n_row, y_row)
            rho_fraction = _draws(run.idata, "rho_fraction")
            gamma = _draws(run.idata, "gamma")
            rows.append(ewoc_summary(method, rho_fraction, gamma, quantiles))
        return EwocPosterior(*(np.stack(parts) for parts in zip(*rows, strict=True)))


# ---------------------------------------------------------------------------------------------
# Models


def blrm_model(method: Blrm, n: np.ndarray, y: np.ndarray) -> pm.Model:
    """The BLRM of ``method`` with data ``n``, ``y`` [level]."""
    coords = {"param": ["log_alpha", "log_beta"], "level": np.arange(1, method.n_levels + 1)}
    with pm.Model(coords=coords) as model:
        theta = pm.MvNormal(
            "theta", mu=np.asarray(method.prior_mean), cov=method.prior_cov, dims="param"
        )
        eta = theta[0] + pm.math.exp(theta[1]) * method.log_dose_ratio
        pm.Deterministic("p", pm.math.sigmoid(eta), dims="level")
        pm.Binomial("dlt", n=np.asarray(n), logit_p=eta, observed=np.asarray(y), dims="level")
    return model


def ewoc_model(method: Ewoc, n: np.ndarray, y: np.ndarray) -> pm.Model:
    """The EWOC model of ``method`` (classical parametrisation) with data ``n``, ``y``."""
    low, high = method.mtd_range
    with pm.Model(coords={"level": np.arange(1, method.n_levels + 1)}) as model:
        rho_fraction = pm.Beta("rho_fraction", *method.rho_prior)
        gamma = pm.Beta("gamma", *method.mtd_prior)
        logit_rho = pm.math.logit(method.target * rho_fraction)
        slope = (logit(method.target) - logit_rho) / gamma
        eta = logit_rho + slope * method.scaled_doses
        pm.Deterministic("rho0", method.target * rho_fraction)
        pm.Deterministic("mtd", low + gamma * (high - low))
        pm.Deterministic("p", pm.math.sigmoid(eta), dims="level")
        pm.Binomial("dlt", n=np.asarray(n), logit_p=eta, observed=np.asarray(y), dims="level")
    return model


# ---------------------------------------------------------------------------------------------
# Summaries of draws


def blrm_summary(method: Blrm, theta: np.ndarray) -> tuple[np.ndarray, ...]:
    """The fields of a one-row :class:`BlrmPosterior` from draws of θ [draw, 2]."""
    eta = method.eta(theta[:, 0], theta[:, 1])  # [draw, level]
    above = np.stack([(eta >= cut).mean(axis=0) for cut in method.logit_cuts])
    return (
        expit(eta).mean(axis=0),
        above,
        theta.mean(axis=0),
        np.cov(theta, rowvar=False),
        np.array(False),
    )


def ewoc_summary(method: Ewoc, rho_fraction, gamma, quantiles=()) -> tuple[np.ndarray, ...]:
    """The fields of a one-row :class:`EwocPosterior` from draws of ρ0/θ and γ [draw]."""
    eta = method.eta(rho_fraction, gamma)
    mtd = method.activity(gamma)
    return (
        (gamma[:, None] <= method.scaled_doses).mean(axis=0),
        (gamma[:, None] <= method.midpoints).mean(axis=0),
        expit(eta).mean(axis=0),
        np.quantile(mtd, quantiles) if len(quantiles) else np.empty(0),
        np.median(method.target * rho_fraction),
    )


def diagnostics(idata, names) -> dict[str, dict[str, float]]:
    """R-hat, bulk and tail ESS of every component of the named variables."""
    summary = az.summary(idata, var_names=list(names), kind="diagnostics", round_to="none")
    return {
        str(label): {
            "r_hat": float(row["r_hat"]),
            "ess_bulk": float(row["ess_bulk"]),
            "ess_tail": float(row["ess_tail"]),
        }
        for label, row in summary.iterrows()
    }


def _draws(idata, name: str) -> np.ndarray:
    """All chains' draws of a variable, chains concatenated: [draw, ...]."""
    values = idata.posterior[name].values
    return values.reshape(-1, *values.shape[2:])


@contextlib.contextmanager
def _quiet():
    """pymc's progress messages and pytensor's BLAS notice off while sampling."""
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*BLAS.*")
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------------------------
# Designs that use MCMC


def with_sampler(design: Design, sampler: McmcSampler) -> Design:
    """``design`` with its method's posteriors computed by ``sampler`` (also in the stopping
    rules that hold the method).

    Raises
    ------
    ValueError
        For a method without an MCMC model (only BLRM and EWOC have one).
    """
    if not isinstance(design.method, Blrm | Ewoc):
        raise ValueError(
            f"design {design.name!r} (method {design.method_key}) has no MCMC model: "
            "--engine mcmc is for the blrm and ewoc methods"
        )
    method = replace(design.method, sampler=sampler)
    stopping = tuple(
        replace(rule, method=method) if getattr(rule, "method", None) is design.method else rule
        for rule in design.stopping
    )
    return replace(design, method=method, stopping=stopping)
