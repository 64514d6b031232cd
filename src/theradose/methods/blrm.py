"""The Bayesian logistic regression model (BLRM) with escalation with overdose control.

Neuenschwander, B., Branson, M. & Gsponer, T. (2008). Critical aspects of the Bayesian approach to
phase I cancer trials. *Stat Med* 27:2420–2439. doi:10.1002/sim.3230
Babb, J., Rogatko, A. & Zacks, S. (1998). Cancer phase I clinical trials: efficient dose
escalation with overdose control. *Stat Med* 17:1103–1120.
doi:10.1002/(SICI)1097-0258(19980530)17:10<1103::AID-SIM793>3.0.CO;2-9

The model, with d* the reference activity and θ = (log α, log β):

    logit p(d) = log α + β·log(d / d*),    θ ~ N2(μ, Σ),  Σ from the two sds and their correlation.

The DLT probability of a level falls into an underdosing [0, c1), target [c1, c2) or overdosing
[c2, 1] interval. The next level maximises P(c1 ≤ p_d < c2 | data) among the levels whose
P(p_d ≥ c2 | data) is below the overdose bound (0.25 in NBG 2008) — the escalation-with-overdose-
control criterion; increment limits and no skipping are constraints of the design
(:mod:`theradose.constraints`). A trial stops when no level satisfies the overdose bound; the MTD
is the level the same rule gives after the last cohort.

Posteriors are integrals over θ computed on sheared lattices (:mod:`theradose.posterior`): first
on one lattice placed from the prior and shared by every data set, the log-likelihood of all of
them a matrix product; where a posterior is too concentrated for that lattice, or reaches its
edge, again on a lattice of its own placed from its posterior moments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theradose import special_functions as special
from theradose.constraints import MaxIncrement, NoSkip
from theradose.methods.base import Method
from theradose.methods.spec import DesignFields, MethodSpec
from theradose.posterior import (
    lattice_log_expit,
    log_expit,
    sheared_lattice,
    smoothed_step,
    step_sums,
    unique_states,
)
from theradose.state import TrialState
from theradose.stopping import MaxPatients
from theradose.validation import (
    OPEN_UNIT,
    POSITIVE,
    Interval,
    TomlTable,
    is_number,
    number_pair,
    show_value,
)

# Lattices: half-widths and spacings in standard deviations (of the prior for the shared lattice,
# of the posterior for a state's own). The accuracy they give is measured in tests/test_blrm.py.
SHARED_HALF_WIDTH = 6.5
SHARED_SPACING = 0.25
OWN_HALF_WIDTH = 6.0
OWN_SPACING = 0.4
# A posterior whose narrowest standard deviation spans fewer lattice spacings than this, or that
# puts more than EDGE_MASS within one standard deviation of the lattice's edge, gets its own.
MIN_SPACINGS_PER_SD = 1.25
EDGE_MASS = 1e-6
MAX_OWN_PASSES = 4
OWN_COARSE_SPACINGS_PER_SD = 0.8 / OWN_SPACING
_BLOCK = 16  # states per block on their own lattices: keeps [state, level, node] arrays in cache
_SHARED_BLOCK = 1024  # states per block on the shared lattice: bounds the [state, node] arrays
_SHARED_ROWS = 32  # states at a time for elementwise work on the shared lattice: stays in cache

DEFAULT_TARGET_INTERVAL = (0.16, 0.33)  # NBG 2008
DEFAULT_MAX_OVERDOSE_PROB = 0.25  # NBG 2008; Babb et al. 1998
PROBABILITY_CUTS = ("interval_low", "interval_high", "target")
N_MOMENTS = 5  # θ1, θ2, θ1², θ1θ2, θ2²: the last columns of the weighted sums


def prior_covariance(sd: tuple[float, float], corr: float) -> np.ndarray:
    """Σ of (log α, log β) from the two standard deviations and their correlation."""
    s1, s2 = sd
    return np.array([[s1 * s1, corr * s1 * s2], [corr * s1 * s2, s2 * s2]])


def prior_problem(sd: tuple[float, float], corr: float) -> str | None:
    """Why the prior covariance cannot be used (None when it can): it must be positive definite."""
    if min(sd) <= 0:
        return f"prior standard deviations must be > 0, got {list(sd)}"
    if not -1 < corr < 1:
        return f"prior_corr must be in (-1, 1) for a positive-definite covariance, got {corr:g}"
    return None


# BLRM and EWOC: the model before any data (``prior_rows``); the methods name their intervals.
PRIOR_COLUMNS = {
    "level": "level",
    "activity": "activity",
    "prior_mean": "prior mean DLT rate",
    "prior_p_target": "prior P(target)",
    "prior_p_overdose": "prior P(overdose)",
}


@dataclass(frozen=True)
class BlrmPosterior:
    """Posterior summaries of distinct data sets (one row per state).

    Attributes
    ----------
    p_mean : [state, level] posterior mean DLT probability (NaN where not asked for: the rules
        need only the interval probabilities)
    prob_at_least : [state, cut, level] P(p_d ≥ cut), cuts as in :data:`PROBABILITY_CUTS`
    theta_mean : [state, 2] posterior mean of (log α, log β)
    theta_cov : [state, 2, 2]
    own_lattice : [state] whether the state needed a lattice of its own
    """

    p_mean: np.ndarray
    prob_at_least: np.ndarray
    theta_mean: np.ndarray
    theta_cov: np.ndarray
    own_lattice: np.ndarray

    def take(self, index: np.ndarray) -> BlrmPosterior:
        return BlrmPosterior(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class Blrm(Method):
    """BLRM with overdose control (``method = "blrm"``).

    Parameters
    ----------
    doses : activity of each level (any unit, the same as ``reference_dose``)
    target : the design's target DLT probability, inside ``target_interval``
    max_patients : the trial's maximum sample size
    reference_dose : d*, the activity at which logit p = log α
    prior_mean, prior_sd, prior_corr : the bivariate normal prior of (log α, log β)
    target_interval : (c1, c2); overdosing is p ≥ c2
    max_overdose_prob : the overdose bound: levels with P(p ≥ c2 | data) at or above it are
        not given
    sampler : ``None`` for the lattice posteriors, or a :class:`theradose.mcmc.McmcSampler` to
        compute every posterior by MCMC instead (validation, interim recommendations)
    """

    doses: tuple[float, ...]
    target: float
    max_patients: int
    reference_dose: float
    prior_mean: tuple[float, float]
    prior_sd: tuple[float, float]
    prior_corr: float = 0.0
    target_interval: tuple[float, float] = DEFAULT_TARGET_INTERVAL
    max_overdose_prob: float = DEFAULT_MAX_OVERDOSE_PROB
    sampler: Any = field(default=None, compare=False)
    key = "blrm"
    references = (
        (
            "Neuenschwander B, Branson M, Gsponer T (2008). Critical aspects of the Bayesian "
            "approach to phase I cancer trials. Stat Med 27:2420–2439. doi:10.1002/sim.3230"
        ),
    )
    model_based = True
    select_tried_only = False
    count_based = True
    mtd_is_next_level = True  # the MTD is the level the decision rule gives after the last cohort
    _shared: dict = field(init=False, repr=False, compare=False)
    _cache: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problem = prior_problem(self.prior_sd, self.prior_corr)
        if problem:
            raise ValueError(problem)
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_shared", self._shared_lattice())

    # -- the model ----------------------------------------------------------------------------

    @property
    def n_levels(self) -> int:
        return len(self.doses)

    @property
    def log_dose_ratio(self) -> np.ndarray:
        """x_d = log(d / d*), [level]."""
        return np.log(np.asarray(self.doses, dtype=float) / self.reference_dose)

    @property
    def prior_cov(self) -> np.ndarray:
        return prior_covariance(self.prior_sd, self.prior_corr)

    @property
    def logit_cuts(self) -> np.ndarray:
        """logit of (c1, c2, target), [cut]."""
        return special.logit(np.array([*self.target_interval, self.target], dtype=float))

    def eta(self, theta1: np.ndarray, theta2: np.ndarray) -> np.ndarray:
        """logit p_d = θ1 + exp(θ2)·x_d, [..., level]."""
        return theta1[..., None] + np.exp(theta2)[..., None] * self.log_dose_ratio

    def log_prior(self, theta1: np.ndarray, theta2: np.ndarray) -> np.ndarray:
        """Log prior density up to a constant, [...] (``theta1`` and ``theta2`` broadcast)."""
        d1 = theta1 - self.prior_mean[0]
        d2 = theta2 - self.prior_mean[1]
        s1, s2 = self.prior_sd
        r = self.prior_corr
        z1, z2 = d1 / s1, d2 / s2
        q = z1 * z1
        if r != 0:  # with r = 0 the term is ±0: q is bit for bit the same without it
            q -= 2 * r * z1 * z2
        q += z2 * z2
        return q / (-2 * (1 - r * r))  # −q / (2(1 − r²)), one pass fewer

    # -- posteriors on lattices ----------------------------------------------------------------

    def _shared_lattice(self) -> dict:
        theta1, theta2, h1 = sheared_lattice(
            np.asarray(self.prior_mean), self.prior_cov, SHARED_HALF_WIDTH, SHARED_SPACING
        )
        theta2 = np.broadcast_to(theta2, theta1.shape).ravel()  # [node]
        theta1 = theta1.ravel()
        eta = self.eta(theta1, theta2)  # [node, level]
        summands = _summands(eta, float(h1), self.logit_cuts, theta1, theta2)
        near_edge = _near_edge(SHARED_HALF_WIDTH, SHARED_SPACING)
        return {
            # DLT counts, then non-DLT counts, times these: the log-likelihood, [2·level, node]
            "log_lik": np.concatenate([log_expit(eta), log_expit(-eta)], axis=1).T.copy(),
            "log_prior": self.log_prior(theta1, theta2),
            "summands": summands,
            # what every state needs, to decide whether it needs its own lattice: the moments
            # of θ, then the mass near the edge, [node, 6]
            "moments": np.column_stack([summands[:, -N_MOMENTS:], near_edge]),
            "to_lattice": _to_lattice_units(self.prior_cov, SHARED_SPACING),
        }

    def grid_posterior(self, n: np.ndarray, y: np.ndarray, p_mean: bool = True) -> BlrmPosterior:
        """Posterior summaries of each row of ``n``, ``y`` [state, level] on lattices; the
        posterior mean DLT probabilities only with ``p_mean`` (on a lattice of its own, they
        cost the likelihood's terms at the levels not given and an exp per level and node)."""
        if n.shape[0] > _SHARED_BLOCK:
            blocks = [
                self.grid_posterior(n[i : i + _SHARED_BLOCK], y[i : i + _SHARED_BLOCK], p_mean)
                for i in range(0, n.shape[0], _SHARED_BLOCK)
            ]
            names = BlrmPosterior.__dataclass_fields__
            return BlrmPosterior(
                *(np.concatenate([getattr(b, name) for b in blocks]) for name in names)
            )
        shared = self._shared
        n = n.astype(float)
        y = y.astype(float)
        log_f = np.concatenate([y, n - y], axis=1) @ shared["log_lik"]
        for start in range(0, n.shape[0], _SHARED_ROWS):  # rows a block at a time, in cache
            block = log_f[start : start + _SHARED_ROWS]
            block += shared["log_prior"]
            block -= block.max(axis=1, keepdims=True)
            np.exp(block, out=block)
            block /= block.sum(axis=1, keepdims=True)
        w = log_f
        moments = w @ shared["moments"]
        # The summaries only of the states that keep the shared lattice; the others need only
        # the moments that place their own.
        sums = np.full((n.shape[0], shared["summands"].shape[1]), np.nan)
        sums[:, -N_MOMENTS:] = moments[:, :N_MOMENTS]
        post = _from_weights(sums, self.n_levels)
        lattice_cov = shared["to_lattice"] @ post.theta_cov @ shared["to_lattice"].T
        narrow = _smallest_sd(lattice_cov) < MIN_SPACINGS_PER_SD
        own = narrow | (moments[:, N_MOMENTS] > EDGE_MASS)
        if not own.all():
            keep = np.flatnonzero(~own)
            sums[keep] = w[keep] @ shared["summands"]
            post = _from_weights(sums, self.n_levels)
        if own.any():
            rows = np.flatnonzero(own)
            refined = self._own_lattice_posterior(n[rows], y[rows], post.take(rows), p_mean)
            for name in post.__dataclass_fields__:
                getattr(post, name)[rows] = getattr(refined, name)
        if not p_mean:
            post.p_mean[...] = np.nan
        return post

    def _own_lattice_posterior(
        self, n, y, start: BlrmPosterior, p_mean: bool = True
    ) -> BlrmPosterior:
        """Posteriors on lattices placed from each state's posterior moments, repeated while a
        lattice is still too coarse for the posterior it finds."""
        # The shared lattice may have seen the posterior as one or two nodes: widen its
        # covariance by the shared spacing so that the first own lattice surely covers it.
        spacing = SHARED_SPACING * np.sqrt(np.diag(self.prior_cov))
        mean = start.theta_mean.copy()
        cov = start.theta_cov + np.diag(spacing**2)
        todo = np.arange(n.shape[0])
        out = None
        for attempt in range(MAX_OWN_PASSES):
            post, coarse = self._own_lattice_pass(
                n[todo],
                y[todo],
                mean[todo],
                cov[todo],
                coarse_too=attempt == MAX_OWN_PASSES - 1,
                expect_coarse=attempt == 0,
                p_mean=p_mean,
            )
            if out is None:
                out = post
            else:
                for name in out.__dataclass_fields__:
                    getattr(out, name)[todo] = getattr(post, name)
            if not coarse.any():
                break
            mean[todo[coarse]] = post.theta_mean[coarse]
            cov[todo[coarse]] = post.theta_cov[coarse]
            todo = todo[coarse]
        return out

    def _own_lattice_pass(
        self,
        n,
        y,
        mean,
        cov,
        coarse_too: bool = True,
        expect_coarse: bool = False,
        p_mean: bool = True,
    ) -> tuple[BlrmPosterior, np.ndarray]:
        """Posteriors on lattices of their own placed from ``mean``, ``cov``, and whether each
        lattice was too coarse; the summaries of those are computed only with ``coarse_too``
        (otherwise NaN, only their moments: they are computed again on a finer lattice).

        ``expect_coarse``: most lattices will be too coarse (the first, placed from the widened
        moments of the shared lattice), so the likelihood is first computed only at the levels
        given, and the summaries only for the others, from the weights kept. Without ``p_mean``
        (the posterior mean DLT probabilities) log p is needed only at the levels given.
        """
        n_levels = self.n_levels
        sums = np.full((n.shape[0], n_levels * (1 + len(PROBABILITY_CUTS)) + N_MOMENTS), np.nan)
        x = self.log_dose_ratio
        kept = None  # [state, i, j] the weights, while the summaries wait for the coarse check
        # θ1 [state, i, j]; θ2 [state, 1, j], constant along a row j
        lattice = sheared_lattice(mean, cov, OWN_HALF_WIDTH, OWN_SPACING)
        for block in _blocks(n.shape[0]):
            theta1, theta2, h1 = (part[block] for part in lattice)
            states = theta1.shape[0]
            exp_theta2 = np.exp(theta2)
            slope = exp_theta2 * x[:, None]  # e^θ2·x_d, [state, level, j]
            nb, no_dlt = n[block], n[block] - y[block]
            given = np.flatnonzero(nb.any(axis=0))
            # A lattice that turns out too coarse only places the next one: its likelihood needs
            # only the levels given (the others have weight 0).
            levels = given if expect_coarse else np.arange(n_levels)
            if expect_coarse or p_mean:
                log_p = lattice_log_expit(theta1, slope[:, levels])
                log_p = log_p.reshape(states, levels.size, -1)  # [state, level, node]
            else:
                # log p only at the levels given; elsewhere n·log p is ±0 whatever log p is, so
                # 0 there leaves the product (same shape, same rounding) bit for bit the same
                log_p = np.zeros((states, n_levels, theta1[0].size))
                part = lattice_log_expit(theta1, slope[:, given])
                log_p[:, given] = part.reshape(states, given.size, -1)
            # Σ y·log p + (n − y)·log(1 − p) = Σ n·log p − (n − y)·η, η linear in θ1 and e^θ2
            log_f = (nb[:, None, levels] @ log_p)[:, 0]  # [state, node]
            log_f -= (theta1 * no_dlt.sum(axis=1)[:, None, None]).reshape(states, -1)
            log_f.reshape(theta1.shape)[...] -= exp_theta2 * (no_dlt @ x)[:, None, None]
            log_f += self.log_prior(theta1, theta2).reshape(states, -1)
            w = _normalised(log_f).reshape(theta1.shape)  # [state, i, j]
            # w·θ1, w·θ2, w·θ1², w·θ1θ2, w·θ2², each summed over the nodes
            terms = np.empty((N_MOMENTS, *theta1.shape))
            np.multiply(w, theta1, out=terms[0])
            np.multiply(w, theta2, out=terms[1])
            np.multiply(theta1, theta1, out=terms[2])
            np.multiply(theta1, theta2, out=terms[3])
            terms[2:4] *= w
            np.multiply(w, theta2 * theta2, out=terms[4])
            sums[block, -N_MOMENTS:] = terms.reshape(N_MOMENTS, states, -1).sum(axis=2).T
            if expect_coarse:
                if kept is None:
                    kept = np.empty((n.shape[0], *w.shape[1:]))
                kept[block] = w
            else:
                first = theta1[:, None, 0] + slope  # η at i = 0, [state, level, j]
                sums[block, :-N_MOMENTS] = _summaries(
                    w, first, h1, self.logit_cuts, log_p if p_mean else None
                )
        to_lattice = _to_lattice_units(cov, OWN_SPACING)
        theta_cov = _from_weights(sums, n_levels).theta_cov
        lattice_cov = to_lattice @ theta_cov @ np.swapaxes(to_lattice, -1, -2)
        # Built from the right moments, the lattice sees a standard deviation of 1/OWN_SPACING
        # steps in every direction; far fewer means the moments it was built from overstated
        # the spread.
        coarse = _smallest_sd(lattice_cov) < OWN_COARSE_SPACINGS_PER_SD
        if expect_coarse:
            rows = np.arange(n.shape[0]) if coarse_too else np.flatnonzero(~coarse)
            for block in _blocks(rows.size):
                out = rows[block]
                theta1, theta2, h1 = (part[out] for part in lattice)
                slope = np.exp(theta2) * x[:, None]
                log_p = None
                if p_mean:
                    log_p = lattice_log_expit(theta1, slope).reshape(out.size, n_levels, -1)
                first = theta1[:, None, 0] + slope
                sums[out, :-N_MOMENTS] = _summaries(kept[out], first, h1, self.logit_cuts, log_p)
        elif not coarse_too:
            sums[coarse, :-N_MOMENTS] = np.nan
        post = _from_weights(sums, self.n_levels)
        post = BlrmPosterior(
            post.p_mean,
            post.prob_at_least,
            post.theta_mean,
            post.theta_cov,
            np.ones(n.shape[0], dtype=bool),
        )
        return post, coarse

    # -- the posterior of a batch of trials ----------------------------------------------------

    def posterior(
        self, state: TrialState, p_mean: bool = False
    ) -> tuple[BlrmPosterior, np.ndarray]:
        """Summaries of each distinct data set and, per trial, the index of its row; the
        posterior mean DLT probabilities only with ``p_mean`` (the rules do not use them).

        The last result is kept, so that the method's rules, its stopping rules and the engine
        share one computation per decision.
        """
        key = (state.n.shape, state.n.tobytes(), state.y.tobytes())
        kept = self._cache.get(key)
        if kept is None or (p_mean and not kept[2]):
            n, y, index = unique_states(state.n, state.y)
            if self.sampler is not None:
                post, p_mean = self.sampler.blrm_posterior(self, n, y), True
            else:
                post = self.grid_posterior(n, y, p_mean)
            self._cache.clear()
            self._cache[key] = kept = (post, index, p_mean)
        return kept[0], kept[1]

    def probabilities(self, state: TrialState, p_est: bool = True) -> dict[str, np.ndarray]:
        """P(target interval), P(overdose) and, with ``p_est``, the posterior mean per level,
        [trial, level]."""
        post, index = self.posterior(state, p_mean=p_est)
        above = post.prob_at_least[index]
        prob = {
            "p_target": np.clip(above[:, 0] - above[:, 1], 0.0, 1.0),
            "p_overdose": np.clip(above[:, 1], 0.0, 1.0),
        }
        return {"p_est": post.p_mean[index], **prob} if p_est else prob

    # -- the method's rules --------------------------------------------------------------------

    def allowed(self, state: TrialState) -> np.ndarray:
        """Levels that satisfy the overdose bound, [trial, level]."""
        return self.probabilities(state, p_est=False)["p_overdose"] < self.max_overdose_prob

    def propose(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        """The admissible level with the highest P(target), the lowest on a tie; level 1 when no
        level is admissible (the engine then stops the trial)."""
        prob = self.probabilities(state, p_est=False)
        admissible = prob["p_overdose"] < self.max_overdose_prob
        score = np.where(admissible, prob["p_target"], -1.0)
        return score.argmax(axis=1), np.zeros(state.n_trials, dtype=np.int8)

    def select_mtd(self, state: TrialState) -> np.ndarray:
        """The decision rule applied to all the data, without the design's constraints (the
        engine applies them: :func:`theradose.pipeline.select_mtd`)."""
        return self.propose(state)[0]

    def prob_above_target(self, state: TrialState, level: int) -> np.ndarray:
        """P(p_level > target | data) for each trial, [trial]."""
        post, index = self.posterior(state)
        return np.clip(post.prob_at_least[index, 2, level], 0.0, 1.0)

    def level_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        """Per level: posterior mean DLT probability, P(target interval), P(overdose)."""
        return self.probabilities(state)

    def model_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        """Posterior means and standard deviations of log α and log β, [trial] each."""
        post, index = self.posterior(state)
        sd = np.sqrt(np.maximum(np.diagonal(post.theta_cov, axis1=1, axis2=2), 0.0))
        return {
            "log_alpha_mean": post.theta_mean[index, 0],
            "log_alpha_sd": sd[index, 0],
            "log_beta_mean": post.theta_mean[index, 1],
            "log_beta_sd": sd[index, 1],
        }

    def protocol_table(self, cohort_size: int, max_patients: int):
        """The model before any data: prior mean DLT rate, P(target), P(overdose) per level."""
        return PRIOR_COLUMNS, self.prior_rows()

    def prior_rows(self) -> list[dict[str, float | int]]:
        """The model before any data: per level the activity, the prior mean DLT probability,
        P(target interval) and P(overdose)."""
        empty = TrialState.start(1, self.n_levels, 0)
        prob = self.probabilities(empty)
        return [
            {
                "level": d + 1,
                "activity": float(self.doses[d]),
                "prior_mean": float(prob["p_est"][0, d]),
                "prior_p_target": float(prob["p_target"][0, d]),
                "prior_p_overdose": float(prob["p_overdose"][0, d]),
            }
            for d in range(self.n_levels)
        ]

    def design_warnings(self, design) -> list[str]:
        """Warn when the overdose bound can end the trial before it has begun: the prior's
        P(overdose) at the start level is already at or above ``max_overdose_prob`` (the rule
        itself would not give that level), or one DLT in the first cohort leaves no level with
        P(overdose) below it (the trial stops with no MTD, in simulation as "level 1 too toxic").

        Widening ``prior_sd`` is not always the cure: it moves a prior P(overdose) below 0.5
        up, towards 0.5 (measured in tests/test_design_warnings.py).
        """
        start = design.start_level
        c2 = self.target_interval[1]
        bound = self.max_overdose_prob
        empty = TrialState.start(1, self.n_levels, start)
        prior = float(self.probabilities(empty)["p_overdose"][0, start])
        one_dlt = TrialState.start(1, self.n_levels, start)
        one_dlt.record_cohort(np.array([0]), design.cohort_size, np.array([1]))
        stops = not self.allowed(one_dlt).any()
        at_start = f"the start level {design.level_label(start)}"
        one = f"one DLT among the first {design.cohort_size} patients"
        lower = " or start lower" if start > 0 else ""
        advice = (
            f"make the prior put less mass on DLT rates ≥ {c2:g} there (prior_mean, prior_sd, "
            f"reference_dose){lower}"
        )
        if prior >= bound:
            then = (
                f", and {one} stops the trial"
                if stops
                else " (the first cohort gets it only because the design starts there)"
            )
            return [
                f"[blrm] prior P(overdose) = P(DLT rate ≥ {c2:g}) at {at_start} is {prior:.2f}"
                f" ≥ max_overdose_prob {bound:g}: the overdose rule would not give that level "
                f"before any data{then}; {advice}"
            ]
        if stops:
            return [
                f"[blrm] {one} at {at_start} leaves no level with P(DLT rate ≥ {c2:g}) < "
                f"max_overdose_prob {bound:g} (prior P(overdose) there {prior:.2f}), so it stops "
                f"the trial with no MTD; {advice}"
            ]
        return []

    @property
    def estimate_labels(self) -> dict[str, str]:
        """Column labels of :meth:`level_summary` in reports."""
        c1, c2 = self.target_interval
        return {"p_target": f"P({c1:g} ≤ DLT rate < {c2:g})", "p_overdose": f"P(DLT rate ≥ {c2:g})"}

    def describe(self) -> str:
        c1, c2 = self.target_interval
        m1, m2 = self.prior_mean
        s1, s2 = self.prior_sd
        return (
            f"BLRM (Neuenschwander et al. 2008): logit p = log α + β·log(d / "
            f"{self.reference_dose:g}), (log α, log β) ~ N(({m1:g}, {m2:g}), sd ({s1:g}, {s2:g}), "
            f"corr {self.prior_corr:g}); next level: the highest P({c1:g} ≤ p < {c2:g}) among "
            f"levels with P(p ≥ {c2:g}) < {self.max_overdose_prob:g}."
        )


def _summands(eta, h1, logit_cuts, theta1, theta2) -> np.ndarray:
    """What the posterior weights are summed against, [..., node, k]: p per level, the smoothed
    steps P(p_d ≥ cut) per cut and level, then θ1, θ2, θ1², θ1θ2, θ2²."""
    steps = [smoothed_step((eta - cut) / h1) for cut in logit_cuts]
    moments = [theta1, theta2, theta1 * theta1, theta1 * theta2, theta2 * theta2]
    shape = eta.shape[:-1]
    parts = [special.expit(eta), *steps, *(np.broadcast_to(m, shape)[..., None] for m in moments)]
    return np.concatenate(parts, axis=-1)


def _blocks(size: int) -> list[slice]:
    return [slice(start, start + _BLOCK) for start in range(0, size, _BLOCK)]


def _normalised(log_f: np.ndarray) -> np.ndarray:
    """Weights [state, node] from the unnormalised log posterior (overwritten)."""
    log_f -= log_f.max(axis=1, keepdims=True)
    w = np.exp(log_f, out=log_f)
    w /= w.sum(axis=1, keepdims=True)
    return w


def _summaries(w, eta_first, h1, logit_cuts, log_p=None) -> np.ndarray:
    """The posterior means of p (NaN without ``log_p``) and P(p_d ≥ cut) on lattices,
    [state, level + cut·level], from the weights ``w`` [state, i, j], η at i = 0 ``eta_first``
    [state, level, j], the θ1 spacing ``h1`` [state] and log p [state, level, node]
    (overwritten)."""
    states, n_levels = eta_first.shape[:2]
    out = np.empty((states, n_levels * (1 + logit_cuts.size)))
    if log_p is None:
        out[:, :n_levels] = np.nan
    else:
        p = np.exp(log_p, out=log_p)
        out[:, :n_levels] = (p @ w.reshape(states, -1, 1))[..., 0]
    out[:, n_levels:] = step_sums(w, eta_first, h1, logit_cuts).reshape(states, -1)
    return out


def _from_weights(sums: np.ndarray, n_levels: int) -> BlrmPosterior:
    """Unpack the weighted sums of :func:`_summands` [state, k]."""
    n_cuts = len(PROBABILITY_CUTS)
    p_mean = sums[:, :n_levels]
    above = sums[:, n_levels : n_levels * (1 + n_cuts)].reshape(-1, n_cuts, n_levels)
    m1, m2, m11, m12, m22 = sums[:, n_levels * (1 + n_cuts) :].T
    cov = np.empty((sums.shape[0], 2, 2))
    cov[:, 0, 0] = m11 - m1 * m1
    cov[:, 0, 1] = cov[:, 1, 0] = m12 - m1 * m2
    cov[:, 1, 1] = m22 - m2 * m2
    return BlrmPosterior(
        p_mean=p_mean,
        prob_at_least=above,
        theta_mean=np.column_stack([m1, m2]),
        theta_cov=cov,
        own_lattice=np.zeros(sums.shape[0], dtype=bool),
    )


def _to_lattice_units(cov: np.ndarray, spacing: float) -> np.ndarray:
    """The linear map from θ to lattice steps of the lattice built on ``cov`` [..., 2, 2]."""
    cov = np.asarray(cov, dtype=float)
    slope = cov[..., 0, 1] / cov[..., 1, 1]
    sd1_given_2 = np.sqrt(cov[..., 0, 0] - cov[..., 0, 1] * slope)
    sd2 = np.sqrt(cov[..., 1, 1])
    out = np.zeros(cov.shape)
    out[..., 0, 0] = 1 / sd1_given_2
    out[..., 0, 1] = -slope / sd1_given_2
    out[..., 1, 1] = 1 / sd2
    return out / spacing


def _smallest_sd(cov: np.ndarray) -> np.ndarray:
    """Square root of the smaller eigenvalue of each 2×2 covariance, [...]."""
    a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    half_trace = (a + c) / 2
    gap = np.sqrt(((a - c) / 2) ** 2 + b * b)
    return np.sqrt(np.maximum(half_trace - gap, 0.0))


def _near_edge(half_width: float, spacing: float) -> np.ndarray:
    """Nodes within one standard deviation of the lattice's edge, [node] (0/1)."""
    k = np.arange(-half_width, half_width + spacing / 2, spacing)
    i, j = (v.ravel() for v in np.meshgrid(k, k, indexing="ij"))
    return (np.maximum(np.abs(i), np.abs(j)) > half_width - 1).astype(float)


# ---------------------------------------------------------------------------------------------
# The design file


BLRM_DEFAULT_MAX_INCREMENT = 1.0  # NBG 2008: at most double the highest activity given


def parse_blrm(table: TomlTable, fields: DesignFields) -> dict[str, Any]:
    if fields.doses is None and fields.n_levels is not None:
        table.error(
            "the BLRM needs the activity of each level: give 'doses' (strictly increasing, > 0) "
            "rather than 'levels'"
        )
    reference = table.number(
        "reference_dose", POSITIVE, required="d*, the activity the model is centred on, > 0"
    )
    mean = number_pair(
        table, "prior_mean", Interval(), required="the prior means of (log α, log β)"
    )
    sd = number_pair(
        table, "prior_sd", POSITIVE, required="the prior standard deviations of (log α, log β)"
    )
    corr = None
    if "prior_corr" in table.data and is_number(table.data["prior_corr"]):
        value = table.data["prior_corr"]
        if value in Interval(-1.0, 1.0):
            corr = float(value)
        else:
            table.value_error(
                "prior_corr",
                value,
                "must be a number in (-1, 1): the prior covariance must be positive definite",
            )
    else:
        corr = table.number("prior_corr", Interval(-1.0, 1.0), default=0.0)
    interval = number_pair(table, "target_interval", OPEN_UNIT, default=DEFAULT_TARGET_INTERVAL)
    if interval is not None:
        low, high = interval
        if not low < high:
            table.error(f"target_interval: must be increasing, got {show_value(list(interval))}")
            interval = None
        elif fields.target is not None and not low <= fields.target <= high:
            table.error(
                f"target_interval: must contain target ({fields.target:g}), got "
                f"{show_value(list(interval))}"
            )
            interval = None
    return {
        "reference_dose": reference,
        "prior_mean": mean,
        "prior_sd": sd,
        "prior_corr": corr,
        "target_interval": interval,
        "max_overdose_prob": table.number(
            "max_overdose_prob", OPEN_UNIT, default=DEFAULT_MAX_OVERDOSE_PROB
        ),
        "max_increment": table.number(
            "max_increment", POSITIVE, default=BLRM_DEFAULT_MAX_INCREMENT
        ),
    }


def build_blrm(fields: DesignFields, options: dict[str, Any]):
    method = Blrm(
        fields.doses,
        fields.target,
        fields.max_patients,
        reference_dose=options["reference_dose"],
        prior_mean=options["prior_mean"],
        prior_sd=options["prior_sd"],
        prior_corr=options["prior_corr"],
        target_interval=options["target_interval"],
        max_overdose_prob=options["max_overdose_prob"],
    )
    constraints = (MaxIncrement(fields.doses, options["max_increment"]), NoSkip())
    return method, constraints, (MaxPatients(fields.max_patients),)


SPEC = MethodSpec(
    method_class=Blrm,
    key="blrm",
    section="blrm",
    keys=(
        "reference_dose",
        "prior_mean",
        "prior_sd",
        "prior_corr",
        "target_interval",
        "max_overdose_prob",
        "max_increment",
    ),
    parse=parse_blrm,
    build=build_blrm,
)
