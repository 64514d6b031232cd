"""The continual reassessment method (CRM).

O'Quigley, J., Pepe, M. & Fisher, L. (1990). Continual reassessment method: a practical design for
phase 1 clinical trials in cancer. *Biometrics* 46:33–48. doi:10.2307/2531628
Cheung, Y. K. (2011). *Dose Finding by the Continual Reassessment Method*. Chapman & Hall/CRC.

One-parameter models on a skeleton s_d (conventions of the R package dfcrm):

- empiric (power): p_d(β) = s_d^exp(β);
- logistic: p_d(β) = expit(a0 + exp(β)·x_d) with x_d = logit(s_d) − a0, so p_d(0) = s_d.

Prior β ~ N(0, σ²), σ² = 1.34 by default. The posterior is computed by quadrature
(:mod:`theradose.posterior`); the next level is the one whose estimated DLT probability —
p_d at the posterior mean of β ("plugin", dfcrm) or the posterior mean of p_d — is closest to
the target, subject to the design's restrictions (:mod:`theradose.constraints`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theradose import special_functions as special
from theradose.constraints import Coherence, EscalationStep
from theradose.methods.base import Method
from theradose.methods.spec import DesignFields, MethodSpec
from theradose.posterior import (
    QuadraturePosterior,
    cdf_below,
    log_integrand,
    n_nodes_for,
    posterior,
    quantile,
    unique_states,
)
from theradose.scenario import closest_to_target
from theradose.state import TrialState
from theradose.stopping import MaxPatients
from theradose.validation import MISSING, OPEN_UNIT, POSITIVE, Interval, TomlTable

DEFAULT_PRIOR_VAR = 1.34
DEFAULT_INTERCEPT = 3.0
CREDIBLE_LEVEL = 0.90
ESTIMATES = ("plugin", "posterior_mean")
# Skeleton values closer than this to 0 or 1 make the model degenerate (a level that can never,
# or always, be toxic); a Lee–Cheung halfwidth too wide for the number of levels produces them.
SKELETON_MARGIN = 1e-6
BETA_LIMIT = 10.0


def _log1mexp(log_p: np.ndarray) -> np.ndarray:
    """log(1 − exp(x)) for x ≤ 0, accurate at both ends (Mächler 2012)."""
    return np.where(log_p > -np.log(2), np.log(-np.expm1(log_p)), np.log1p(-np.exp(log_p)))


CRM_COLUMNS = {
    "level": "level",
    "skeleton": "skeleton",
    "indifference_low": "indifference interval from",
    "indifference_high": "to",
    "prior_mean": "prior mean DLT rate",
    "prior_p_overdose": "prior P(DLT rate > target)",
}


@dataclass(frozen=True)
class EmpiricModel:
    """p_d(β) = s_d^exp(β)."""

    skeleton: tuple[float, ...]
    name = "empiric"

    def p(self, beta: np.ndarray) -> np.ndarray:
        """DLT probability at each level, [..., level]."""
        return np.exp(self.log_p(beta)[0])

    def log_p(self, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_p = np.exp(np.asarray(beta, dtype=float))[..., None] * np.log(self.skeleton)
        return log_p, _log1mexp(log_p)

    def beta_at(self, p: float) -> np.ndarray:
        """β at which each level's DLT probability equals ``p``; p_d > p iff β < this, [level]."""
        return np.log(np.log(p) / np.log(self.skeleton))


@dataclass(frozen=True)
class LogisticModel:
    """p_d(β) = expit(a0 + exp(β)·x_d), x_d = logit(s_d) − a0."""

    skeleton: tuple[float, ...]
    intercept: float = DEFAULT_INTERCEPT
    name = "logistic"

    @property
    def scaled_doses(self) -> np.ndarray:
        return special.logit(np.asarray(self.skeleton)) - self.intercept

    def _eta(self, beta: np.ndarray) -> np.ndarray:
        return self.intercept + np.exp(np.asarray(beta, dtype=float))[..., None] * self.scaled_doses

    def p(self, beta: np.ndarray) -> np.ndarray:
        return special.expit(self._eta(beta))

    def log_p(self, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        eta = self._eta(beta)
        return -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)

    def beta_at(self, p: float) -> np.ndarray:
        # x_d < 0 whenever s_d < expit(a0), which the configuration enforces.
        return np.log((special.logit(p) - self.intercept) / self.scaled_doses)


def lee_cheung_skeleton(
    halfwidth: float,
    target: float,
    prior_mtd: int,
    n_levels: int,
    model: str = "empiric",
    intercept: float = DEFAULT_INTERCEPT,
) -> tuple[float, ...]:
    """Skeleton with indifference intervals target ± halfwidth (Lee & Cheung 2009, *Clin Trials*
    6:227–238, doi:10.1177/1740774509105076), as dfcrm's ``getprior``.

    Level ``prior_mtd`` (0-based) has skeleton value = target; neighbouring levels are placed so
    that the β at which one level's probability leaves the interval is where the next enters it.
    """
    lo, hi = target - halfwidth, target + halfwidth
    scaled = np.empty(n_levels)
    if model == "empiric":
        scaled[prior_mtd] = target
        for k in range(prior_mtd, 0, -1):
            scale = np.log(hi) / np.log(scaled[k])
            scaled[k - 1] = np.exp(np.log(lo) / scale)
        for k in range(prior_mtd, n_levels - 1):
            scale = np.log(lo) / np.log(scaled[k])
            scaled[k + 1] = np.exp(np.log(hi) / scale)
        return tuple(float(v) for v in scaled)
    if model == "logistic":
        scaled[prior_mtd] = special.logit(target) - intercept
        for k in range(prior_mtd, 0, -1):
            scale = (special.logit(hi) - intercept) / scaled[k]
            scaled[k - 1] = (special.logit(lo) - intercept) / scale
        for k in range(prior_mtd, n_levels - 1):
            scale = (special.logit(lo) - intercept) / scaled[k]
            scaled[k + 1] = (special.logit(hi) - intercept) / scale
        return tuple(float(v) for v in special.expit(intercept + scaled))
    raise ValueError(f"unknown CRM model {model!r}")


def skeleton_problem(
    skeleton: tuple[float, ...], model: str, intercept: float = DEFAULT_INTERCEPT
) -> str | None:
    """Why ``skeleton`` cannot be used (None when it can): values must rise strictly within
    [1e-6, 1 − 1e-6], and below expit(intercept) for the logistic model."""
    values = np.asarray(skeleton, dtype=float)
    shown = ", ".join(f"{v:.3g}" for v in values)
    outside = np.flatnonzero((values < SKELETON_MARGIN) | (values > 1 - SKELETON_MARGIN))
    if outside.size:
        level = outside[0]
        return (
            f"skeleton value {values[level]:.3g} at level {level + 1} is not within "
            f"[{SKELETON_MARGIN:g}, 1 - {SKELETON_MARGIN:g}] (skeleton {shown})"
        )
    if np.any(np.diff(values) <= 0):
        return f"skeleton must be strictly increasing (skeleton {shown})"
    if model == "logistic" and values[-1] >= special.expit(intercept):
        return (
            f"the logistic model with intercept {intercept:g} needs every skeleton value below "
            f"{special.expit(intercept):.4g} (skeleton {shown})"
        )
    return None


@dataclass(frozen=True)
class Crm(Method):
    """CRM (``method = "crm"``): Bayesian one-parameter model, level closest to the target.

    ``start_up = "cohorts"`` escalates one level each time ``start_up_cohort_size`` patients
    have been treated at the current level, until the first DLT, then follows the model
    (two-stage CRM, Cheung 2011 ch. 4; dfcrm's initial design ``x0``).
    """

    n_levels: int
    target: float
    model: EmpiricModel | LogisticModel
    max_patients: int
    prior_var: float = DEFAULT_PRIOR_VAR
    estimate: str = "plugin"
    start_up: str = "none"
    start_up_cohort_size: int = 1
    key = "crm"
    references = (
        (
            "O'Quigley J, Pepe M, Fisher L (1990). Continual reassessment method: a practical "
            "design for phase 1 clinical trials in cancer. Biometrics 46:33–48."
        ),
        (
            "Cheung YK (2011). Dose Finding by the Continual Reassessment Method. Chapman & "
            "Hall/CRC."
        ),
        (
            "Lee SM, Cheung YK (2009). Model calibration in the continual reassessment method. "
            "Clin Trials 6:227–238."
        ),
    )
    model_based = True
    select_tried_only = False  # dfcrm: the level whose estimate is closest, tried or not
    label = "CRM (O'Quigley, Pepe & Fisher 1990)"
    count_based = True
    n_nodes: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_nodes", n_nodes_for(self.max_patients))

    @property
    def prior_sd(self) -> float:
        return float(np.sqrt(self.prior_var))

    def _data(self, state: TrialState):
        """What the likelihood needs, one row per distinct state, and each trial's row."""
        n, y, index = unique_states(state.n, state.y)
        return (n, y), index

    def _log_f(self, data, nodes: np.ndarray) -> np.ndarray:
        """Unnormalised log posterior of β on ``nodes`` for each row of ``data``: [row, node]."""
        n, y = data
        return log_integrand(self.model, self.prior_sd, n, y, nodes)

    def _fingerprint(self, state: TrialState) -> bytes:
        """What the posterior depends on: the counts (time-to-event designs add follow-up)."""
        return state.n.tobytes() + state.y.tobytes()

    def _posterior(self, state: TrialState):
        # propose, the safety stop and the final selection ask for the same posterior: compute it
        # once per state of the trials (the memo lives on the state, so it dies with it)
        key = (id(self), self._fingerprint(state))
        memo = state.memo if state.memo is not None else {}
        if memo.get("crm_posterior", (None,))[0] != key:
            data, index = self._data(state)
            split = float(self.model.beta_at(self.target)[0])  # level 1's overdose threshold
            post = posterior(lambda nodes: self._log_f(data, nodes), self.n_nodes, split)
            memo["crm_posterior"] = (key, (data, index, post))
        return memo["crm_posterior"][1]

    def dlts_so_far(self, state: TrialState) -> np.ndarray:
        """DLTs known at the trial's current time, [trial]."""
        return state.y.sum(axis=1)

    def estimates(self, state: TrialState) -> np.ndarray:
        """Estimated DLT probability of each level, [trial, level]."""
        _, index, post = self._posterior(state)
        if self.estimate == "plugin":
            p = self.model.p(post.beta_mean)
        else:
            p = post.weights @ self.model.p(post.nodes)
        return p[index]

    def allowed(self, state: TrialState) -> np.ndarray:
        return np.ones((state.n_trials, self.n_levels), dtype=bool)

    def propose(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        proposal = closest_to_target(self.estimates(state), self.target)
        if self.start_up == "cohorts":
            proposal = np.where(self.in_start_up(state), self.start_up_level(state), proposal)
        return proposal, np.zeros(state.n_trials, dtype=np.int8)

    def in_start_up(self, state: TrialState) -> np.ndarray:
        """Trials still in the start-up (no DLT known yet), [trial]."""
        if self.start_up != "cohorts":
            return np.zeros(state.n_trials, dtype=bool)
        return self.dlts_so_far(state) == 0

    def start_up_level(self, state: TrialState) -> np.ndarray:
        """The start-up's next level: one up once the current level has its patients, [trial]."""
        level = np.maximum(state.level, 0)
        filled = state.current(state.n) >= self.start_up_cohort_size
        step_up = np.minimum(level + filled, self.n_levels - 1)
        return np.where(state.level < 0, state.next_level, step_up)

    def select_mtd(self, state: TrialState) -> np.ndarray:
        return closest_to_target(self.estimates(state), self.target)

    @property
    def estimate_labels(self) -> dict[str, str]:
        """Report labels of :meth:`level_summary`: ``p_est`` is the plug-in estimate p_d at the
        posterior mean of β (dfcrm's, the default) or the posterior mean of p_d."""
        if self.estimate == "plugin":
            return {"p_est": "DLT rate at posterior mean β (plug-in)"}
        return {"p_est": "posterior mean DLT rate"}

    def describe(self) -> str:
        estimate = "at the posterior mean of β" if self.estimate == "plugin" else "posterior mean"
        text = (
            f"{self.label}, {self.model.name} model, β ~ N(0, "
            f"{self.prior_var:g}); next level and MTD: the DLT probability ({estimate}) closest "
            "to the target."
        )
        if self.start_up == "cohorts":
            text += (
                f" Start-up: {self.start_up_cohort_size} patient(s) a level, one level up at a "
                "time, until the first DLT; then the model."
            )
        return text

    def prob_above_target(self, state: TrialState, level: int) -> np.ndarray:
        """P(p_level > target | data) for each trial, [trial]."""
        data, index, post = self._posterior(state)
        upper = self.model.beta_at(self.target)[level]
        if post.split is not None and upper == post.split:
            return post.prob_below_split()[index]
        return cdf_below(lambda x: self._log_f(data, x), post, upper, self.n_nodes)[index]

    def model_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        """Posterior mean and variance of β, [trial] each."""
        _, index, post = self._posterior(state)
        return {"beta_mean": post.beta_mean[index], "beta_var": post.beta_var[index]}

    def indifference_intervals(self) -> list[tuple[float | None, float | None]]:
        """Per level, the true DLT probabilities at which the model picks it (Cheung & Chappell
        2002, *Biometrics* 58:671–674): the range of p_d over the β where level d's estimate is
        closest to the target. None where the range is open (level 1 above, the top below)."""
        from scipy.optimize import brentq  # here: only the protocol's table needs it

        switch = []
        for d in range(self.n_levels - 1):

            def gap(beta, d=d):
                p = self.model.p(np.array(beta))
                return p[d] + p[d + 1] - 2 * self.target

            lo, hi = -BETA_LIMIT, BETA_LIMIT
            switch.append(brentq(gap, lo, hi, xtol=1e-14) if gap(lo) * gap(hi) < 0 else None)
        intervals = []
        for d in range(self.n_levels):
            below = switch[d - 1] if d > 0 else None  # β where level d - 1 hands over to d
            above = switch[d] if d < self.n_levels - 1 else None
            p_low = None if above is None else float(self.model.p(np.array(above))[d])
            p_high = None if below is None else float(self.model.p(np.array(below))[d])
            intervals.append((p_low, p_high))
        return intervals

    def protocol_table(self, cohort_size: int, max_patients: int):
        """The skeleton with its indifference intervals and prior summaries."""
        return CRM_COLUMNS, self.skeleton_rows()

    def skeleton_rows(self) -> list[dict[str, float | int | None]]:
        """The model before any data: per level the skeleton, the indifference interval, the prior
        mean DLT probability and the prior P(DLT probability > target)."""
        empty = TrialState.start(1, self.n_levels, 0, max_patients=1)  # no patients yet
        _, _, post = self._posterior(empty)
        prior_mean = post.weights @ self.model.p(post.nodes)
        overdose = self.level_summary(empty)["p_overdose"][0]
        rows = []
        for d, (low, high) in enumerate(self.indifference_intervals()):
            rows.append(
                {
                    "level": d + 1,
                    "skeleton": self.model.skeleton[d],
                    "indifference_low": low,
                    "indifference_high": high,
                    "prior_mean": float(prior_mean[0, d]),
                    "prior_p_overdose": float(overdose[d]),
                }
            )
        return rows

    def level_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        """Posterior summaries per level: estimate, 90% credible interval, P(overdose).

        The interval is the posterior quantile of β mapped through p_d (exact; dfcrm's ``crm``
        reports a normal approximation instead). Meant for a few trials (``recommend``).
        """
        data, index, post = self._posterior(state)
        log_f = lambda x: self._log_f(data, x)  # noqa: E731
        tail = (1 - CREDIBLE_LEVEL) / 2
        beta_lo, beta_hi = np.empty(post.norm.size), np.empty(post.norm.size)
        for s in range(post.norm.size):
            one = _one_state(post, s)
            log_f_one = lambda x, s=s: log_f(x)[s : s + 1]  # noqa: E731
            beta_lo[s] = quantile(log_f_one, one, tail, self.n_nodes)
            beta_hi[s] = quantile(log_f_one, one, 1 - tail, self.n_nodes)
        overdose = np.column_stack(
            [cdf_below(log_f, post, b, self.n_nodes) for b in self.model.beta_at(self.target)]
        )
        # p_d decreases in β: the upper β quantile gives the lower p limit.
        summary = {
            "p_est": self.model.p(post.beta_mean)
            if self.estimate == "plugin"
            else post.weights @ self.model.p(post.nodes),
            "p_lower": self.model.p(beta_hi),
            "p_upper": self.model.p(beta_lo),
            "p_overdose": overdose,
        }
        return {k: v[index] for k, v in summary.items()}


def _one_state(post: QuadraturePosterior, s: int) -> QuadraturePosterior:
    return QuadraturePosterior(
        nodes=post.nodes,
        weights=post.weights[s : s + 1],
        log_shift=post.log_shift[s : s + 1],
        norm=post.norm[s : s + 1],
    )


# ---------------------------------------------------------------------------------------------
# The design file


CRM_MODELS = ("empiric", "logistic")
CRM_START_UPS = ("none", "cohorts")
CRM_SKELETON_KEYS = ("halfwidth", "prior_mtd")


def parse_crm_skeleton(table: TomlTable, fields: DesignFields, model: str | None, intercept):
    """``skeleton = [...]`` or ``[crm.skeleton]`` with halfwidth and prior_mtd (Lee & Cheung)."""
    value = table.data.get("skeleton", MISSING)
    if value is MISSING:
        table.error(
            "missing key 'skeleton' (the prior DLT probability of each level, or a "
            "[crm.skeleton] table with halfwidth and prior_mtd)"
        )
        return None
    if isinstance(value, Mapping):
        sub = table.section("skeleton")
        sub.check_keys(CRM_SKELETON_KEYS)
        target = fields.target
        limit = min(target, 1 - target) if target is not None else 0.5
        halfwidth = sub.number(
            "halfwidth", Interval(0.0, limit), required=f"a number in (0, {limit:g})"
        )
        prior_mtd = sub.integer("prior_mtd", 1, required="the level guessed to be the MTD")
        if None in (halfwidth, prior_mtd, target, fields.n_levels, model):
            return None
        if prior_mtd > fields.n_levels:
            sub.value_error("prior_mtd", prior_mtd, f"must be an integer in 1..{fields.n_levels}")
            return None
        skeleton = lee_cheung_skeleton(
            halfwidth, target, prior_mtd - 1, fields.n_levels, model, intercept
        )
        problem = skeleton_problem(skeleton, model, intercept)
        if problem:
            sub.value_error(
                "halfwidth", halfwidth, f"too large for {fields.n_levels} levels: {problem}"
            )
            return None
        return skeleton
    skeleton = table.numbers("skeleton", OPEN_UNIT, "increasing")
    if skeleton is None or fields.n_levels is None:
        return None
    if len(skeleton) != fields.n_levels:
        table.error(
            f"skeleton: has {len(skeleton)} values, but the design has {fields.n_levels} levels"
        )
        return None
    problem = skeleton_problem(skeleton, model or "empiric", intercept)
    if problem:
        table.error(f"skeleton: {problem}")
        return None
    return skeleton


def parse_crm(table: TomlTable, fields: DesignFields) -> dict[str, Any]:
    model = table.choice("model", CRM_MODELS) or ("empiric" if "model" not in table.data else None)
    intercept = table.number("intercept", Interval(), default=DEFAULT_INTERCEPT)
    if "intercept" in table.data and model == "empiric":
        table.error('intercept: only for model = "logistic"')
    estimate = table.choice("estimate", ESTIMATES)
    start_up = table.choice("start_up", CRM_START_UPS)
    start_up_cohort_size = table.integer("start_up_cohort_size", 1, default=1)
    if "start_up_cohort_size" in table.data and start_up != "cohorts":
        table.error('start_up_cohort_size: only with start_up = "cohorts"')
    return {
        "model": model,
        "intercept": intercept,
        "skeleton": parse_crm_skeleton(table, fields, model, intercept),
        "prior_var": table.number("prior_var", POSITIVE, default=DEFAULT_PRIOR_VAR),
        "estimate": estimate or ("plugin" if "estimate" not in table.data else None),
        "start_up": start_up or ("none" if "start_up" not in table.data else None),
        "start_up_cohort_size": start_up_cohort_size,
        "no_skip": table.boolean("no_skip", default=True),
        "coherent": table.boolean("coherent", default=True),
    }


def build_crm(fields: DesignFields, options: dict[str, Any]):
    skeleton = options["skeleton"]
    if options["model"] == "logistic":
        model = LogisticModel(skeleton, options["intercept"])
    else:
        model = EmpiricModel(skeleton)
    method = Crm(
        fields.n_levels,
        fields.target,
        model,
        fields.max_patients,
        prior_var=options["prior_var"],
        estimate=options["estimate"],
        start_up=options["start_up"],
        start_up_cohort_size=options["start_up_cohort_size"],
    )
    constraints = []
    if options["no_skip"]:
        constraints.append(EscalationStep(1))
    if options["coherent"]:
        constraints.append(Coherence(fields.target))
    return method, tuple(constraints), (MaxPatients(fields.max_patients),)


SPEC = MethodSpec(
    method_class=Crm,
    key="crm",
    section="crm",
    keys=(
        "model",
        "skeleton",
        "prior_var",
        "intercept",
        "estimate",
        "no_skip",
        "coherent",
        "start_up",
        "start_up_cohort_size",
    ),
    parse=parse_crm,
    build=build_crm,
)
