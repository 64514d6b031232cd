"""Escalation with overdose control (EWOC).

Babb, J., Rogatko, A. & Zacks, S. (1998). Cancer phase I clinical trials: efficient dose
escalation with overdose control. *Stat Med* 17:1103–1120.
doi:10.1002/(SICI)1097-0258(19980530)17:10<1103::AID-SIM793>3.0.CO;2-9
Tighiouart, M. & Rogatko, A. (2010). Dose finding with escalation with overdose control (EWOC) in
cancer clinical trials. *Stat Sci* 25:217–226. doi:10.1214/10-STS333
Conventions of the R package ewoc (Diniz, M. A., Tighiouart, M. & Rogatko, A., ``ewoc_d1classical``
and ``ewoc_simulation``).

The logistic model in its "classical" parametrisation, with x = (d − d_low)/(d_high − d_low) the
activity rescaled to [0, 1] over the MTD's range [d_low, d_high] (the ewoc package's ``min_dose``
and ``max_dose``; by default level 1 to the top level, see :attr:`Ewoc.mtd_range`), θ the target
DLT probability, ρ0 = P(DLT at d_low) (level 1 by default) and γ the MTD on the same scale:

    logit p(x) = logit ρ0 + (logit θ − logit ρ0)·x/γ,    ρ0/θ ~ Beta(a, b),  γ ~ Beta(c, d),

independently (uniform by default), so that p(γ) = θ. The next level is the feasibility bound's
α-quantile of γ's posterior, mapped to a level ("down": the highest level at or below it;
"nearest": the closest), so that P(the next level is above the MTD | data) ≤ α: the overdose
control. The bound may rise by a step after every patient without a DLT, up to a maximum (the
ewoc package's "conditional" feasibility strategy). Since p_d > θ exactly when x_d > γ,
P(overdose at level d) = P(γ < x_d | data).

Deviations from the ewoc package, none of which moves its reference results beyond their Monte
Carlo error: its JAGS model replaces p by 0.99 where p rounds to 1 in double precision (γ tiny
beside x), a region with no posterior mass worth counting, not reproduced here; its simulated MTD
is computed with the feasibility bound of the last cohort's decision rather than one updated by
that cohort's outcomes (the same bound once it has reached its maximum, as in all its reference
runs).

Posteriors are integrals over (ρ0/θ, γ) by composite Gauss–Legendre rules on the prior's
quantile scale (so the prior is uniform there), with the γ-segments ending at every level and
every midpoint between levels: the posterior probabilities that decide the next level are sums
of whole segments, with no interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# The Beta CDF and quantile from scipy.special: what scipy.stats.beta.cdf/ppf call, bit for bit,
# without importing scipy.stats.
from theradose import special_functions as special
from theradose.constraints import EscalationStep
from theradose.methods.base import Method
from theradose.methods.blrm import PRIOR_COLUMNS
from theradose.methods.spec import DesignFields, MethodSpec
from theradose.posterior import gauss_legendre, partial_integrals, unique_states
from theradose.state import TrialState
from theradose.stopping import MaxPatients
from theradose.validation import OPEN_UNIT, POSITIVE, Interval, TomlTable, number_pair

ROUNDINGS = ("down", "nearest")
FINALS = ("next_dose", "median")
DEFAULT_FEASIBILITY_BOUND = 0.25  # Babb et al. 1998; ewoc package default
DEFAULT_FEASIBILITY_MAX = 0.5  # ewoc package: the bound never rises above 0.5
MTD_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

# Composite rules: the largest γ-segment (in the prior's quantile scale), extra breakpoints that
# grade the segments towards γ = 0 (where p changes fastest with γ), nodes per γ-segment, and the
# rule for ρ0/θ. Their accuracy is measured against adaptive quadrature in tests/test_ewoc.py.
MAX_SEGMENT = 0.1
GRADED_BREAKS = (0.003125, 0.00625, 0.0125, 0.025)
NODES_PER_SEGMENT = 12
# ρ0/θ's segments, graded towards 0 (ρ0 near 0 when level 1 is given to many patients without
# DLT) and towards 1 (a flat dose–toxicity curve), on the prior's quantile scale.
RHO_BREAKS = (0.0, 1e-4, 5e-4, 2.5e-3, 0.0125, 0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 0.99, 1.0)
RHO_NODES_PER_SEGMENT = 8
CDF_POINTS_PER_SEGMENT = 16
_BLOCK = 32  # states at a time: keeps the [state, node] arrays (~20,000 nodes for 6 levels) small


@dataclass(frozen=True)
class EwocPosterior:
    """Posterior summaries of distinct data sets (one row per state).

    Attributes
    ----------
    cdf_levels : [state, level] P(γ ≤ x_d), the probability that level d is above the MTD
    cdf_midpoints : [state, level − 1] P(γ ≤ (x_d + x_{d+1})/2)
    p_mean : [state, level] posterior mean DLT probability
    mtd_quantiles : [state, quantile] of γ's posterior quantiles asked for, as activity
    rho_median : [state] posterior median of ρ0 (NaN unless asked for)
    """

    cdf_levels: np.ndarray
    cdf_midpoints: np.ndarray
    p_mean: np.ndarray
    mtd_quantiles: np.ndarray
    rho_median: np.ndarray


@dataclass(frozen=True)
class Ewoc(Method):
    """EWOC (``method = "ewoc"``).

    Parameters
    ----------
    doses : activity of each level (or 1..K when the design gives only the number of levels);
        the model uses them rescaled to [0, 1]
    target : θ, the DLT probability that defines the MTD
    max_patients : the trial's maximum sample size
    feasibility_bound : α, the posterior probability allowed for the next level to be above the
        MTD
    feasibility_step : α rises by this after every patient without a DLT (0: fixed)
    feasibility_max : … up to this
    rounding : "down" (the highest level at or below the α-quantile) or "nearest"
    final : "next_dose" (the MTD is the level the rule gives after the last cohort, the ewoc
        package's definition) or "median" (γ's posterior median, mapped to a level by
        ``rounding``)
    rho_prior, mtd_prior : Beta parameters of ρ0/θ and of γ
    mtd_limits : the MTD's range (low, high) in activity, ``[ewoc] mtd_range``: low at or below
        level 1, high at or above the top level (above it with rounding "down"); None for the
        default (:attr:`mtd_range`)
    sampler : ``None`` for the quadrature posteriors, or a :class:`theradose.mcmc.McmcSampler`
    """

    doses: tuple[float, ...]
    target: float
    max_patients: int
    feasibility_bound: float = DEFAULT_FEASIBILITY_BOUND
    feasibility_step: float = 0.0
    feasibility_max: float = DEFAULT_FEASIBILITY_MAX
    rounding: str = "down"
    final: str = "next_dose"
    rho_prior: tuple[float, float] = (1.0, 1.0)
    mtd_prior: tuple[float, float] = (1.0, 1.0)
    mtd_limits: tuple[float, float] | None = None
    sampler: Any = field(default=None, compare=False)
    key = "ewoc"
    references = (
        (
            "Babb J, Rogatko A, Zacks S (1998). Cancer phase I clinical trials: efficient dose "
            "escalation with overdose control. Stat Med 17:1103–1120."
        ),
        (
            "Tighiouart M, Rogatko A (2010). Dose finding with escalation with overdose control "
            "(EWOC) in cancer clinical trials. Stat Sci 25:217–226."
        ),
    )
    model_based = True
    select_tried_only = False  # ewoc: the MTD estimate may be an untried level
    count_based = True
    _rule: dict = field(init=False, repr=False, compare=False)
    _cache: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.doses) < 2:
            raise ValueError("EWOC needs at least two levels")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        if self.final not in FINALS:
            raise ValueError(f"final must be one of {FINALS}, got {self.final!r}")
        if self.mtd_limits is not None:
            problem = mtd_range_problem(self.mtd_limits, self.doses, self.rounding)
            if problem:
                raise ValueError(f"mtd_range: {problem}")
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_rule", self._quadrature_rule())

    # -- the model ----------------------------------------------------------------------------

    @property
    def n_levels(self) -> int:
        return len(self.doses)

    @property
    def mtd_is_next_level(self) -> bool:
        return self.final == "next_dose"

    @property
    def mtd_range(self) -> tuple[float, float]:
        """The support of the MTD in activity: ``mtd_limits`` when given; by default from level 1
        to the top level, one step of activity further with rounding "down" so that the top
        level can be reached (the ewoc package adds 1 to ``max_dose`` then: one step when doses
        are level numbers)."""
        if self.mtd_limits is not None:
            return float(self.mtd_limits[0]), float(self.mtd_limits[1])
        d = self.doses
        top = d[-1] + (d[-1] - d[-2]) if self.rounding == "down" else d[-1]
        return float(d[0]), float(top)

    @property
    def scaled_doses(self) -> np.ndarray:
        """x_d = (d − d_low)/(d_high − d_low) over the MTD's range, [level]."""
        low, high = self.mtd_range
        return (np.asarray(self.doses, dtype=float) - low) / (high - low)

    @property
    def midpoints(self) -> np.ndarray:
        x = self.scaled_doses
        return (x[1:] + x[:-1]) / 2

    def eta(self, rho_fraction: np.ndarray, gamma: np.ndarray) -> np.ndarray:
        """logit p_d for ρ0 = θ·``rho_fraction`` and MTD ``gamma`` (rescaled), [..., level]."""
        logit_rho = special.logit(self.target * rho_fraction)[..., None]
        slope = (special.logit(self.target) - logit_rho) / gamma[..., None]
        return logit_rho + slope * self.scaled_doses

    def activity(self, scaled: np.ndarray) -> np.ndarray:
        """Rescaled activity x back to activity."""
        low, high = self.mtd_range
        return low + np.asarray(scaled) * (high - low)

    def feasibility(self, state: TrialState) -> np.ndarray:
        """α for each trial's next decision, [trial]: the bound, raised by the step after each
        patient so far without a DLT, at most the maximum."""
        without_dlt = state.n.sum(axis=1) - state.y.sum(axis=1)
        raised = self.feasibility_bound + self.feasibility_step * without_dlt
        return np.minimum(raised, max(self.feasibility_max, self.feasibility_bound))

    # -- quadrature -----------------------------------------------------------------------------

    def _quadrature_rule(self) -> dict:
        c, d = self.mtd_prior
        # Level 1 is x = 0, already a breakpoint, unless mtd_range starts below it.
        thresholds = np.concatenate([self.scaled_doses, self.midpoints])
        thresholds = thresholds[(thresholds > 0) & (thresholds < 1)]
        breaks = np.unique(np.concatenate([[0.0, 1.0], thresholds, GRADED_BREAKS]))
        u_breaks = special.betainc(c, d, breaks)
        u_breaks = np.unique(np.concatenate([u_breaks, _subdivide(u_breaks, MAX_SEGMENT)]))
        u_gamma, q_gamma, seg_gamma = _composite(u_breaks, NODES_PER_SEGMENT)
        gamma = special.betaincinv(c, d, u_gamma)
        rho_breaks = np.asarray(RHO_BREAKS)
        u_rho, q_rho, _ = _composite(rho_breaks, RHO_NODES_PER_SEGMENT)
        rho_fraction = special.betaincinv(*self.rho_prior, u_rho)

        # Nodes rho-major: node = i_rho * n_gamma + i_gamma.
        eta = self.eta(rho_fraction[:, None], gamma[None, :]).reshape(-1, self.n_levels)
        log_q = np.log(np.outer(q_rho, q_gamma)).ravel()
        # P(γ ≤ t) for a breakpoint t: the mass of the segments that end at or below it.
        seg_end = u_breaks[1:][seg_gamma]  # [gamma node]

        def below(t: np.ndarray) -> np.ndarray:  # [gamma node, t]
            u_t = special.betainc(c, d, t)
            return (seg_end[:, None] <= u_t[None, :] * (1 + 1e-12)).astype(float)

        # DLT counts, then non-DLT counts, times this: the log-likelihood, [2·level, node]
        log_lik = np.concatenate([special.log_expit(eta), special.log_expit(-eta)], axis=1)
        return {
            "log_lik": log_lik.T.copy(),
            "log_q": log_q,
            "p": special.expit(eta),  # [node, level]
            "n_rho": u_rho.size,
            "n_gamma": u_gamma.size,
            "below_levels": below(self.scaled_doses),  # [gamma node, level]
            "below_midpoints": below(self.midpoints),
            "u_breaks": u_breaks,
            "rho_breaks": rho_breaks,
            "nodes_per_segment": NODES_PER_SEGMENT,
            "rho_nodes_per_segment": RHO_NODES_PER_SEGMENT,
        }

    def grid_posterior(self, n: np.ndarray, y: np.ndarray, quantiles=()) -> EwocPosterior:
        """Posterior summaries of each row of ``n``, ``y`` [state, level] by quadrature, with the
        MTD's posterior ``quantiles`` (probabilities) and ρ0's median when any are asked for."""
        blocks = [
            self._grid_block(n[start : start + _BLOCK], y[start : start + _BLOCK], quantiles)
            for start in range(0, max(n.shape[0], 1), _BLOCK)
        ]
        return EwocPosterior(*(np.concatenate(parts) for parts in zip(*blocks, strict=True)))

    def _grid_block(self, n, y, quantiles) -> tuple[np.ndarray, ...]:
        rule = self._rule
        n = n.astype(float)
        y = y.astype(float)
        w = np.concatenate([y, n - y], axis=1) @ rule["log_lik"]  # [state, node]
        w += rule["log_q"]
        w -= w.max(axis=1, keepdims=True)
        np.exp(w, out=w)  # unnormalised: the sums below are divided by the total instead
        w_gamma = w.reshape(-1, rule["n_rho"], rule["n_gamma"]).sum(axis=1)
        total = w_gamma.sum(axis=1, keepdims=True)
        w_gamma /= total
        states = n.shape[0]
        mtd_q = np.full((states, len(quantiles)), np.nan)
        rho_median = np.full(states, np.nan)
        if len(quantiles):
            u = _quantiles(w_gamma, rule["u_breaks"], rule["nodes_per_segment"], quantiles)
            mtd_q = self.activity(special.betaincinv(*self.mtd_prior, u))
            w_rho = w.reshape(-1, rule["n_rho"], rule["n_gamma"]).sum(axis=2) / total
            per_segment = rule["rho_nodes_per_segment"]
            u = _quantiles(w_rho, rule["rho_breaks"], per_segment, (0.5,))[:, 0]
            rho_median = self.target * special.betaincinv(*self.rho_prior, u)
        return (
            np.clip(w_gamma @ rule["below_levels"], 0.0, 1.0),
            np.clip(w_gamma @ rule["below_midpoints"], 0.0, 1.0),
            (w @ rule["p"]) / total,
            mtd_q,
            rho_median,
        )

    # -- the posterior of a batch of trials ----------------------------------------------------

    def posterior(self, state: TrialState, quantiles=()) -> tuple[EwocPosterior, np.ndarray]:
        """Summaries of each distinct data set and, per trial, the index of its row (the last
        result is kept, so the rules of one decision share one computation)."""
        quantiles = tuple(quantiles)
        key = (state.n.shape, state.n.tobytes(), state.y.tobytes(), quantiles)
        if key not in self._cache:
            n, y, index = unique_states(state.n, state.y)
            if self.sampler is not None:
                post = self.sampler.ewoc_posterior(self, n, y, quantiles)
            else:
                post = self.grid_posterior(n, y, quantiles)
            self._cache.clear()
            self._cache[key] = (post, index)
        return self._cache[key]

    def level_for(self, state: TrialState, prob: np.ndarray) -> np.ndarray:
        """The level the ``prob``-quantile of γ maps to under the rounding rule, [trial]."""
        post, index = self.posterior(state)
        prob = np.asarray(prob, dtype=float).reshape(-1, 1)
        if self.rounding == "down":
            # x_d ≤ q_α exactly when P(γ ≤ x_d) ≤ α; level 1 when no level is (it is x = 0,
            # always at or below, unless mtd_range starts below level 1).
            return (post.cdf_levels[index, 1:] <= prob).sum(axis=1)
        # q_α is nearer level d + 1 than level d exactly when it is above their midpoint, that is
        # P(γ ≤ midpoint) < α (the lower level on a tie, as R's which.min).
        return (post.cdf_midpoints[index] < prob).sum(axis=1)

    # -- the method's rules --------------------------------------------------------------------

    def allowed(self, state: TrialState) -> np.ndarray:
        return np.ones((state.n_trials, self.n_levels), dtype=bool)

    def propose(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        """The level of the feasibility bound's quantile of the MTD."""
        return self.level_for(state, self.feasibility(state)), np.zeros(
            state.n_trials, dtype=np.int8
        )

    def select_mtd(self, state: TrialState) -> np.ndarray:
        """``final = "median"``: γ's posterior median mapped to a level; ``"next_dose"``: the
        proposal (the pipeline adds the design's constraints,
        :func:`theradose.pipeline.select_mtd`)."""
        if self.final == "median":
            return self.level_for(state, np.full(state.n_trials, 0.5))
        return self.propose(state)[0]

    def mtd_quantiles(self, state: TrialState, probs) -> np.ndarray:
        """Posterior quantiles of the MTD as activity, [trial, prob]."""
        post, index = self.posterior(state, probs)
        return post.mtd_quantiles[index]

    def prob_above_target(self, state: TrialState, level: int) -> np.ndarray:
        """P(p_level > θ | data) = P(γ < x_level | data), [trial]. Zero at level 1 when the MTD's
        range starts there (the default): ρ0 < θ by construction, so a safety stop on level 1
        never fires with this model then."""
        post, index = self.posterior(state)
        return post.cdf_levels[index, level]

    def level_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        """Per level: posterior mean DLT probability; P(the level is the one nearest the MTD);
        P(overdose) = P(p_d > θ) = P(γ < x_d)."""
        post, index = self.posterior(state)
        cdf_mid = post.cdf_midpoints[index]
        ones = np.ones((cdf_mid.shape[0], 1))
        upper = np.concatenate([cdf_mid, ones], axis=1)
        lower = np.concatenate([0 * ones, cdf_mid], axis=1)
        return {
            "p_est": post.p_mean[index],
            "p_target": np.clip(upper - lower, 0.0, 1.0),
            "p_overdose": post.cdf_levels[index],
        }

    def model_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        """Posterior quantiles of the MTD (as activity), the median of ρ0 and the feasibility
        bound, [trial] each."""
        post, index = self.posterior(state, MTD_QUANTILES)
        out = {
            f"mtd_q{round(100 * q):02d}": post.mtd_quantiles[index, k]
            for k, q in enumerate(MTD_QUANTILES)
        }
        out["rho0_median"] = post.rho_median[index]
        out["feasibility_bound"] = self.feasibility(state)
        return out

    def protocol_table(self, cohort_size: int, max_patients: int):
        """The model before any data: prior mean DLT rate, P(target), P(overdose) per level."""
        return PRIOR_COLUMNS, self.prior_rows()

    def prior_rows(self) -> list[dict[str, float | int]]:
        """The model before any data: per level the activity, the prior mean DLT probability,
        P(the level is the one nearest the MTD) and P(overdose)."""
        empty = TrialState.start(1, self.n_levels, 0)
        summary = self.level_summary(empty)
        return [
            {
                "level": d + 1,
                "activity": float(self.doses[d]),
                "prior_mean": float(summary["p_est"][0, d]),
                "prior_p_target": float(summary["p_target"][0, d]),
                "prior_p_overdose": float(summary["p_overdose"][0, d]),
            }
            for d in range(self.n_levels)
        ]

    estimate_labels = {  # noqa: RUF012 - a class constant
        "p_target": "P(nearest the MTD)",
        "p_overdose": "P(DLT rate > target)",
    }

    def describe(self) -> str:
        step = (
            f", rising by {self.feasibility_step:g} after each patient without a DLT up to "
            f"{self.feasibility_max:g}"
            if self.feasibility_step
            else ""
        )
        return (
            f"EWOC (Babb et al. 1998): next level = the {self.feasibility_bound:g}-quantile of "
            f"the MTD's posterior{step}, rounded {self.rounding}; MTD = "
            + (
                "the next-level rule after the last cohort."
                if self.mtd_is_next_level
                else "the posterior median of the MTD, rounded the same way."
            )
            + (
                f" The MTD's range: {self.mtd_range[0]:g} to {self.mtd_range[1]:g}."
                if self.mtd_limits is not None
                else ""
            )
        )

    def design_warnings(self, design) -> list[str]:
        """Warn when the top level can never be given: not even in a trial in which no patient
        has a DLT, the best case for escalation (a DLT only lowers the MTD's posterior
        quantiles), does the design's next level reach it before ``max_patients``.

        The rule gives the top level only when the feasibility quantile of the MTD's posterior
        reaches it (rounding "down") or its midpoint with the level below ("nearest"); near the
        end of the MTD's range that needs more DLT-free patients than a trial has. A wider
        ``mtd_range`` moves the top level away from the end of the range. The check replays the
        trial's decisions on its DLT-free outcomes (:func:`levels_without_dlt`), and a few wider
        ranges to suggest one.
        """
        top = self.n_levels - 1
        given = levels_without_dlt(design)
        if top in given:
            return []
        low, high = self.mtd_range
        step = self.doses[-1] - self.doses[-2]
        suggestion = ""
        for k in range(1, 11):
            wider = replace(self, mtd_limits=(low, high + k * step))
            if top in levels_without_dlt(replace(design, method=wider)):
                suggestion = f", e.g. mtd_range = [{low:g}, {high + k * step:g}]"
                break
        unit = f" {design.dose_unit}" if design.dose_unit else ""
        return [
            f"[ewoc] the top level {design.level_label(top)} is never given, even when none of "
            f"the {design.max_patients} patients has a DLT (the trial then goes no higher than "
            f"level {max(given) + 1}): the feasibility quantile of the MTD's posterior, on the "
            f"MTD's range {low:g} to {high:g}{unit}, does not reach it; widen [ewoc] "
            f"mtd_range{suggestion}"
        ]


def levels_without_dlt(design) -> list[int]:
    """The level (0-based) of each cohort of a trial of ``design`` in which no patient has a
    DLT, up to ``max_patients``: the design's own decisions (:func:`theradose.pipeline.decide`)
    without its stopping rules and organ-dose limits, which would end the trial or cap the
    levels for reasons of their own."""
    from theradose.pipeline import decide

    rules_only = replace(
        design,
        constraints=tuple(c for c in design.constraints if not c.organ_limits),
        stopping=(),
    )
    state = TrialState.start(1, design.n_levels, design.start_level)
    levels = []
    while state.active[0] and state.n_enrolled[0] < design.max_patients:
        levels.append(int(state.next_level[0]))
        state.record_cohort(np.array([0]), design.cohort_size, np.array([0]))
        decide(rules_only, state)
    return levels


def _subdivide(breaks: np.ndarray, width: float) -> np.ndarray:
    """Extra breakpoints so that no segment of ``breaks`` is wider than ``width``."""
    extra = []
    for lo, hi in zip(breaks[:-1], breaks[1:], strict=True):
        k = int(np.ceil((hi - lo) / width - 1e-9))
        extra.extend(np.linspace(lo, hi, k + 1)[1:-1])
    return np.asarray(extra)


def _composite(breaks: np.ndarray, per_segment: int):
    """Composite Gauss–Legendre rule on [breaks[0], breaks[-1]]: nodes, weights, segment index."""
    nodes, weights, segment = [], [], []
    for j, (lo, hi) in enumerate(zip(breaks[:-1], breaks[1:], strict=True)):
        x, q = gauss_legendre(per_segment, lo, hi)
        nodes.append(x)
        weights.append(q)
        segment.append(np.full(per_segment, j))
    return np.concatenate(nodes), np.concatenate(weights), np.concatenate(segment)


def _quantiles(w: np.ndarray, breaks: np.ndarray, per_segment: int, probs) -> np.ndarray:
    """Quantiles on a composite rule's scale from posterior weights on its nodes, [state, prob].

    The cumulative distribution function is integrated within each segment from the
    interpolating polynomial of the weights (:func:`theradose.posterior.partial_integrals`) on a
    fine set of points, then inverted by linear interpolation.
    """
    s = np.linspace(-1, 1, CDF_POINTS_PER_SEGMENT + 1)[1:]
    partial = partial_integrals(per_segment, s)  # [node, point]
    n_seg = breaks.size - 1
    w_seg = w.reshape(w.shape[0], n_seg, per_segment)
    within = w_seg @ partial  # [state, segment, point]
    start = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(w_seg.sum(2), axis=1)[:, :-1]], 1)
    cdf = (start[:, :, None] + within).reshape(w.shape[0], -1)
    cdf = np.maximum.accumulate(np.clip(cdf, 0.0, 1.0), axis=1)
    cdf = np.concatenate([np.zeros((w.shape[0], 1)), cdf], axis=1)
    lo, hi = breaks[:-1, None], breaks[1:, None]
    points = np.concatenate([[breaks[0]], (lo + (hi - lo) * (s + 1) / 2).ravel()])
    out = np.empty((w.shape[0], len(probs)))
    for k, prob in enumerate(probs):
        j = np.clip((cdf < prob).sum(axis=1), 1, points.size - 1)
        c0 = np.take_along_axis(cdf, (j - 1)[:, None], 1)[:, 0]
        c1 = np.take_along_axis(cdf, j[:, None], 1)[:, 0]
        t = np.where(c1 > c0, (prob - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.5)
        out[:, k] = points[j - 1] + t * (points[j] - points[j - 1])
    return out


# ---------------------------------------------------------------------------------------------
# The design file


def parse_ewoc(table: TomlTable, fields: DesignFields) -> dict[str, Any]:
    if fields.n_levels is not None and fields.n_levels < 2:
        table.error("EWOC needs at least two levels (the MTD is placed between the first and last)")
    bound = table.number("feasibility_bound", OPEN_UNIT, default=DEFAULT_FEASIBILITY_BOUND)
    highest = table.number("feasibility_max", OPEN_UNIT, default=DEFAULT_FEASIBILITY_MAX)
    if bound is not None and highest is not None and highest < bound:
        table.value_error(
            "feasibility_max", highest, f"must be at least feasibility_bound ({bound:g})"
        )
    rounding = table.choice("rounding", ROUNDINGS)
    final = table.choice("final", FINALS)
    if rounding is None and "rounding" not in table.data:
        rounding = "down"
    limits = number_pair(table, "mtd_range", POSITIVE)
    doses = fields.doses
    if doses is None and fields.n_levels is not None:
        doses = tuple(float(k) for k in range(1, fields.n_levels + 1))  # level numbers
    if limits is not None and doses is not None and len(doses) >= 2:
        problem = mtd_range_problem(limits, doses, rounding)
        if problem:
            table.error(f"mtd_range: {problem}")
            limits = None
    return {
        "feasibility_bound": bound,
        "feasibility_step": table.number(
            "feasibility_step", Interval(0.0, 1.0, low_closed=True), default=0.0
        ),
        "feasibility_max": highest,
        "rounding": rounding,
        "final": final or ("next_dose" if "final" not in table.data else None),
        "rho_prior": number_pair(table, "rho_prior", POSITIVE, default=(1.0, 1.0)),
        "mtd_prior": number_pair(table, "mtd_prior", POSITIVE, default=(1.0, 1.0)),
        "mtd_limits": limits,
    }


def mtd_range_problem(
    limits: tuple[float, float], doses: tuple[float, ...], rounding: str | None
) -> str | None:
    """Why ``limits`` cannot be the MTD's range (None when they can): the model places the MTD
    between them and rescales activity to [0, 1] over them, so they must hold every level, and
    with rounding "down" the top level must lie below the high end (the quantile of the MTD that
    gives a level is below the high end)."""
    low, high = limits
    shown = f"got [{low:g}, {high:g}]"
    if not low < high:
        return f"must be increasing, [low, high], {shown}"
    if low > doses[0]:
        return (
            f"must start at or below level 1's activity ({doses[0]:g}): the model's ρ0 is the DLT "
            f"probability at the low end, and every level must lie in the range, {shown}"
        )
    if high < doses[-1]:
        return f"must reach the top level's activity ({doses[-1]:g}), {shown}"
    if rounding == "down" and high == doses[-1]:
        return (
            f'must end above the top level\'s activity ({doses[-1]:g}) with rounding = "down": '
            "the top level is given only when the MTD's quantile is at or above it, and the "
            f"quantile is below the high end, {shown}"
        )
    return None


def build_ewoc(fields: DesignFields, options: dict[str, Any]):
    doses = fields.doses or tuple(float(k) for k in range(1, fields.n_levels + 1))
    method = Ewoc(doses, fields.target, fields.max_patients, **options)
    # The ewoc package's no-skipping rule: never more than one level above the last cohort's.
    return method, (EscalationStep(1),), (MaxPatients(fields.max_patients),)


SPEC = MethodSpec(
    method_class=Ewoc,
    key="ewoc",
    section="ewoc",
    keys=(
        "feasibility_bound",
        "feasibility_step",
        "feasibility_max",
        "rounding",
        "final",
        "rho_prior",
        "mtd_prior",
        "mtd_range",
    ),
    parse=parse_ewoc,
    build=build_ewoc,
)
