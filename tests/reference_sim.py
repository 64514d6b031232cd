"""A plain reference simulator: one trial at a time, written from the published rules.

This is the independent oracle that the vectorised engine must match exactly on the same latent
tolerances. It deliberately imports nothing from ``theradose`` (no methods, engine, isotonic
regression or stop-reason enum): every rule is restated here as a loop over patients and cohorts,
in the words of the papers and the BOIN R package.

Patient ``k`` (0-based, in enrolment order) has a DLT iff ``u[k] < p_true[level given to k]``.

- 3+3: Storer, B. E. (1989). *Biometrics* 45:925–937; Korn, E. L. et al. (1994).
  *Stat Med* 13:1799–1806.
- BOIN: Liu, S. & Yuan, Y. (2015). *J R Stat Soc C* 64:507–523. doi:10.1111/rssc.12089, with
  the conventions of the BOIN R package 2.7.2 (``get.boundary``, ``get.oc``, ``select.mtd``).
- CRM: O'Quigley, J., Pepe, M. & Fisher, L. (1990). *Biometrics* 46:33–48. doi:10.2307/2531628,
  with the conventions of the dfcrm R package 0.2-2.1 (``crm``, ``crmsim``) and Cheung, Y. K.
  (2011), *Dose Finding by the Continual Reassessment Method*, Chapman & Hall/CRC. Posterior
  integrals by adaptive quadrature (``scipy.integrate.quad``), not the engine's fixed rule.
- BF-BOIN (backfilling): Zhao, Y., Yuan, Y., Korn, E. L. & Freidlin, B. (2024). *Clin Cancer
  Res* 30(4):673–679, in time (accrual, a DLT window, onsets), with the rules of theradose's
  docs/dose-optimisation.md, section "Dose optimisation: backfill and a randomised stage".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cache

from scipy.integrate import quad
from scipy.stats import beta

NONE = -1  # no level selected


class RefStop(Enum):
    """Why a reference trial ended."""

    TOO_TOXIC = "too_toxic"  # lowest level too toxic / eliminated: no MTD
    RULE_COMPLETE = "rule_complete"  # the 3+3 rule ended the trial
    MAX_PATIENTS = "max_patients"
    MAX_AT_DOSE = "max_at_dose"  # BOIN n.earlystop; CRM: enough patients at the next level
    SAFETY = "safety"  # CRM: P(p_1 > target | data) above the cutoff: no MTD


@dataclass(frozen=True)
class RefTrial:
    """One simulated trial: counts per level, the patients in order, the MTD and why it ended."""

    n: tuple[int, ...]  # [level]
    y: tuple[int, ...]  # [level]
    levels: tuple[int, ...]  # [patient] level given, in enrolment order
    dlts: tuple[bool, ...]  # [patient]
    mtd: int  # 0-based, NONE for no MTD
    stop: RefStop
    # BOIN only: after a trial that ran to max_patients, whether the final data eliminate
    # level 1 (get.oc does not check elimination after the last cohort; select.mtd does).
    lowest_eliminated_at_end: bool = False
    # CRM only: the smallest margin by which a decision was taken — the gap between the closest
    # and the next closest estimate to the target (over every proposal the model made and the
    # final selection), and |P(p_1 > target | data) − cutoff| over every safety check. Below
    # ~1e-9 the decision is an exact tie up to rounding, and another implementation may differ.
    tie_gap: float = math.inf
    cutoff_gap: float = math.inf


class _Trial:
    """Mutable bookkeeping of one trial while it runs."""

    def __init__(self, u: Sequence[float], p_true: Sequence[float]) -> None:
        self.u = u
        self.p_true = p_true
        self.n = [0] * len(p_true)
        self.y = [0] * len(p_true)
        self.levels: list[int] = []
        self.dlts: list[bool] = []

    @property
    def enrolled(self) -> int:
        return len(self.levels)

    def treat(self, level: int, size: int) -> None:
        for _ in range(size):
            k = self.enrolled
            dlt = bool(self.u[k] < self.p_true[level])
            self.levels.append(level)
            self.dlts.append(dlt)
            self.n[level] += 1
            self.y[level] += int(dlt)

    def result(
        self,
        mtd: int,
        stop: RefStop,
        eliminated_at_end: bool = False,
        tie_gap: float = math.inf,
        cutoff_gap: float = math.inf,
    ) -> RefTrial:
        return RefTrial(
            n=tuple(self.n),
            y=tuple(self.y),
            levels=tuple(self.levels),
            dlts=tuple(self.dlts),
            mtd=mtd,
            stop=stop,
            lowest_eliminated_at_end=eliminated_at_end,
            tie_gap=tie_gap,
            cutoff_gap=cutoff_gap,
        )


# --------------------------------------------------------------------------------------- 3+3


def three_plus_three(
    u: Sequence[float],
    p_true: Sequence[float],
    deescalate: bool = True,
    max_patients: int | None = None,
    start_level: int = 0,
) -> RefTrial:
    """One 3+3 trial (cohorts of three).

    0/3 → escalate; 1/3 → three more at the same level; ≤ 1/6 → escalate; ≥ 2 DLTs → the level
    is too toxic. With ``deescalate``: go down one level and treat three more there unless it
    already has six (then stop), applying the same rules; a level cleared directly below a
    too-toxic level ends the trial; MTD = highest level with six patients and ≤ 1 DLT below the
    lowest too-toxic level. Without: stop at once, MTD = the level below. Escalating past the
    top stops with the top as MTD; ≥ 2 DLTs at level 1 stops with no MTD.

    The published rules do not say what the MTD is when the ``max_patients`` cap cuts a trial
    short. Convention here: the highest level the rules have cleared for escalation (0/3 or
    ≤ 1/6) below the lowest too-toxic level — and, with de-escalation once a level has been
    found too toxic, one with six patients (the rule's own MTD definition).
    """
    n_levels = len(p_true)
    top = n_levels - 1
    cap = 6 * n_levels if max_patients is None else max_patients
    trial = _Trial(u, p_true)
    n, y = trial.n, trial.y
    lowest_toxic = n_levels  # none found yet

    def six_with_at_most_one_below_toxic() -> int:
        ok = [j for j in range(lowest_toxic) if n[j] == 6 and y[j] <= 1]
        return max(ok) if ok else NONE

    def mtd_when_capped() -> int:
        ok = []
        for j in range(lowest_toxic):
            six_ok = n[j] == 6 and y[j] <= 1
            cleared = (n[j] == 3 and y[j] == 0) or six_ok
            needs_six = deescalate and lowest_toxic < n_levels
            if six_ok if needs_six else cleared:
                ok.append(j)
        return max(ok) if ok else NONE

    d = start_level
    while True:
        trial.treat(d, min(3, cap - trial.enrolled))
        if y[d] >= 2:
            lowest_toxic = min(lowest_toxic, d)
            if d == 0:
                return trial.result(NONE, RefStop.TOO_TOXIC)
            if not deescalate:
                return trial.result(d - 1, RefStop.RULE_COMPLETE)
            if n[d - 1] >= 6:
                return trial.result(six_with_at_most_one_below_toxic(), RefStop.RULE_COMPLETE)
            next_level = d - 1
        elif (n[d] == 3 and y[d] == 0) or (n[d] == 6 and y[d] <= 1):
            if d == top:
                return trial.result(top, RefStop.RULE_COMPLETE)
            if d + 1 == lowest_toxic:
                return trial.result(six_with_at_most_one_below_toxic(), RefStop.RULE_COMPLETE)
            next_level = d + 1
        else:
            next_level = d
        if trial.enrolled >= cap:
            return trial.result(mtd_when_capped(), RefStop.MAX_PATIENTS)
        d = next_level


# -------------------------------------------------------------------------------------- BOIN


def boin_boundaries(target: float, p_saf: float, p_tox: float) -> tuple[float, float]:
    """λe and λd of Liu & Yuan (2015)."""
    lambda_e = math.log((1 - p_saf) / (1 - target)) / math.log(
        target * (1 - p_saf) / (p_saf * (1 - target))
    )
    lambda_d = math.log((1 - target) / (1 - p_tox)) / math.log(
        p_tox * (1 - target) / (target * (1 - p_tox))
    )
    return lambda_e, lambda_d


@cache
def prob_above(n: int, y: int, target: float) -> float:
    """P(p > target | y DLTs in n) under a Beta(1, 1) prior."""
    return float(beta.sf(target, 1 + y, 1 + n - y))


def pava(values: Sequence[float], weights: Sequence[float]) -> list[float]:
    """Weighted isotonic (non-decreasing) regression by pooling adjacent violators."""
    blocks: list[tuple[float, float, int]] = []  # (mean, weight, length)
    for x, w in zip(values, weights, strict=True):
        blocks.append((x, w, 1))
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            x2, w2, c2 = blocks.pop()
            x1, w1, c1 = blocks.pop()
            blocks.append(((x1 * w1 + x2 * w2) / (w1 + w2), w1 + w2, c1 + c2))
    fit: list[float] = []
    for mean, _, length in blocks:
        fit.extend([mean] * length)
    return fit


def boin_select_mtd(
    n: Sequence[int],
    y: Sequence[int],
    target: float,
    cutoff: float = 0.95,
    extra_safe: bool = False,
    offset: float = 0.05,
) -> int:
    """BOIN's ``select.mtd``: isotonic estimates over the treated, non-eliminated levels."""
    n_levels = len(n)
    eliminated = [False] * n_levels
    for i in range(n_levels):
        if n[i] >= 3 and prob_above(n[i], y[i], target) > cutoff:
            eliminated[i:] = [True] * (n_levels - i)
            break
    if extra_safe and n[0] >= 3 and prob_above(n[0], y[0], target) > cutoff - offset:
        eliminated = [True] * n_levels
    admissible = [i for i in range(n_levels) if n[i] > 0 and not eliminated[i]]
    if eliminated[0] or not admissible:
        return NONE
    p_hat, weight = [], []
    for i in admissible:
        p_hat.append((y[i] + 0.05) / (n[i] + 0.1))
        var = (y[i] + 0.05) * (n[i] - y[i] + 0.05) / ((n[i] + 0.1) ** 2 * (n[i] + 1.1))
        weight.append(1 / var)
    fit = [p + (i + 1) * 1e-10 for i, p in enumerate(pava(p_hat, weight))]
    distance = [abs(p - target) for p in fit]
    return admissible[distance.index(min(distance))]


def boin(
    u: Sequence[float],
    p_true: Sequence[float],
    target: float,
    cohort_size: int,
    max_patients: int,
    start_level: int = 0,
    p_saf: float | None = None,
    p_tox: float | None = None,
    cutoff: float = 0.95,
    extra_safe: bool = False,
    offset: float = 0.05,
    max_at_dose: int = 100,
) -> RefTrial:
    """One BOIN trial, following ``get.oc`` of the BOIN R package 2.7.2.

    After each cohort at level d (the last cohort truncated to ``max_patients``):

    1. ``max_patients`` reached → end (no elimination check, as ``get.oc``);
    2. n_d ≥ 3 and P(p_d > φ | data) > cutoff → eliminate d and above; at level 1 → stop;
    3. extra safe: n_1 ≥ 3 and P(p_1 > φ | data) > cutoff − offset → stop;
    4. escalate if y/n ≤ λe (to d + 1 unless d is the top or d + 1 is eliminated: stay),
       de-escalate if y/n ≥ λd (not below level 1: stay), else stay. As ``get.boundary``
       caps the de-escalation boundary at the elimination boundary, a level eliminated just
       now is always left downwards;
    5. n_d ≥ ``max_at_dose`` and the next cohort would stay at d → stop (``n.earlystop``).

    The MTD is :func:`boin_select_mtd` on all the data, none after a safety stop.
    """
    p_saf = 0.6 * target if p_saf is None else p_saf
    p_tox = 1.4 * target if p_tox is None else p_tox
    lambda_e, lambda_d = boin_boundaries(target, p_saf, p_tox)
    n_levels = len(p_true)
    top = n_levels - 1
    trial = _Trial(u, p_true)
    n, y = trial.n, trial.y
    eliminated = [False] * n_levels

    def final(stop: RefStop) -> RefTrial:
        mtd = boin_select_mtd(n, y, target, cutoff, extra_safe, offset)
        at_end = stop is RefStop.MAX_PATIENTS and (
            (n[0] >= 3 and prob_above(n[0], y[0], target) > cutoff)
            or (extra_safe and n[0] >= 3 and prob_above(n[0], y[0], target) > cutoff - offset)
        )
        return trial.result(mtd, stop, at_end)

    d = start_level
    while True:
        trial.treat(d, min(cohort_size, max_patients - trial.enrolled))
        if trial.enrolled >= max_patients:
            return final(RefStop.MAX_PATIENTS)
        if n[d] >= 3 and prob_above(n[d], y[d], target) > cutoff:
            eliminated[d:] = [True] * (n_levels - d)
            if d == 0:
                return trial.result(NONE, RefStop.TOO_TOXIC)
        if extra_safe and n[0] >= 3 and prob_above(n[0], y[0], target) > cutoff - offset:
            return trial.result(NONE, RefStop.TOO_TOXIC)
        rate = y[d] / n[d]
        if rate <= lambda_e:
            next_level = d + 1 if d < top and not eliminated[d + 1] else d
        elif rate >= lambda_d or eliminated[d]:
            next_level = d - 1 if d > 0 else d
        else:
            next_level = d
        if next_level == d and n[d] >= max_at_dose:
            return final(RefStop.MAX_AT_DOSE)
        d = next_level


# --------------------------------------------------------------------------------------- CRM

CRM_INTERCEPT = 3.0  # dfcrm's intcpt of the logistic model
CRM_PRIOR_VAR = 1.34  # dfcrm's default prior variance of β
BETA_BOUND = 10.0  # dfcrm integrates the posterior of β over [−10, 10]
QUAD_OPTIONS = {"epsabs": 1e-13, "epsrel": 1e-12, "limit": 500}


def _log_expit(eta: float) -> float:
    """log(1 / (1 + e^−η)), finite for every finite η."""
    return -math.log1p(math.exp(-eta)) if eta >= 0 else eta - math.log1p(math.exp(eta))


def crm_scaled_doses(
    model: str, skeleton: Sequence[float], intercept: float = CRM_INTERCEPT
) -> list[float]:
    """Each level's scaled dose: log s_d (empiric) or x_d = logit(s_d) − a0 (logistic)."""
    if model == "empiric":
        return [math.log(s) for s in skeleton]
    if model == "logistic":
        return [math.log(s / (1 - s)) - intercept for s in skeleton]
    raise ValueError(f"unknown CRM model {model!r}")


def _log_p(model: str, x: float, beta: float, intercept: float) -> tuple[float, float]:
    """(log p, log(1 − p)) of a level with scaled dose ``x`` at β.

    Empiric: log p = exp(β)·log s, log(1 − p) = log(−expm1(log p)); logistic: log expit(±η),
    η = a0 + exp(β)·x. Both stay finite where p itself under- or overflows, so 0·log 0 never
    arises (the role of xlogy in dfcrm-like code).
    """
    if model == "empiric":
        log_p = math.exp(beta) * x  # < 0 and finite: s in (0, 1), |β| ≤ 10
        return log_p, math.log(-math.expm1(log_p))
    eta = intercept + math.exp(beta) * x
    return _log_expit(eta), _log_expit(-eta)


def crm_p(
    model: str, skeleton: Sequence[float], beta: float, intercept: float = CRM_INTERCEPT
) -> list[float]:
    """DLT probability of each level at β: empiric s_d^exp(β); logistic
    expit(a0 + exp(β)·x_d) with x_d = logit(s_d) − a0, so that p_d(0) = s_d in both."""
    return [
        math.exp(_log_p(model, x, beta, intercept)[0])
        for x in crm_scaled_doses(model, skeleton, intercept)
    ]


@dataclass(frozen=True)
class CrmFit:
    """What the CRM needs from the posterior of β after some data."""

    beta_mean: float
    p_plugin: tuple[float, ...]  # [level] p_d at the posterior mean of β (dfcrm)
    p_mean: tuple[float, ...] | None  # [level] posterior mean of p_d (when asked for)
    prob_lowest_above: float  # P(p_1 > target | data)


@cache
def crm_fit(
    model: str,
    skeleton: tuple[float, ...],
    target: float,
    n: tuple[int, ...],
    y: tuple[int, ...],
    prior_var: float = CRM_PRIOR_VAR,
    intercept: float = CRM_INTERCEPT,
    posterior_mean: bool = False,
) -> CrmFit:
    """The posterior of β ~ N(0, prior_var) given y DLTs in n patients per level.

    Every integral is ∫ g(β) L(β) φ(β) dβ over [−10, 10] by adaptive Gauss–Kronrod quadrature
    (``scipy.integrate.quad``), the integrand scaled by its maximum on a grid of step 0.05 and
    split at that point, so that a narrow posterior is never stepped over.
    """
    scaled = crm_scaled_doses(model, skeleton, intercept)
    treated = [(x, n_d, y_d) for x, n_d, y_d in zip(scaled, n, y, strict=True) if n_d]

    def log_f(b: float) -> float:
        total = -b * b / (2 * prior_var)
        for x, n_d, y_d in treated:
            log_p, log_q = _log_p(model, x, b, intercept)
            total += (y_d * log_p if y_d else 0.0) + ((n_d - y_d) * log_q if n_d > y_d else 0.0)
        return total

    grid = [-BETA_BOUND + 0.05 * i for i in range(401)]
    values = [log_f(b) for b in grid]
    shift = max(values)
    mode = grid[values.index(shift)]

    def integral(g, upper: float = BETA_BOUND) -> float:
        upper = min(upper, BETA_BOUND)
        if upper <= -BETA_BOUND:
            return 0.0
        points = [mode] if -BETA_BOUND < mode < upper else None
        value, _ = quad(
            lambda b: g(b) * math.exp(log_f(b) - shift),
            -BETA_BOUND,
            upper,
            points=points,
            **QUAD_OPTIONS,
        )
        return value

    norm = integral(lambda b: 1.0)
    beta_mean = integral(lambda b: b) / norm
    p_mean = None
    if posterior_mean:
        p_mean = tuple(
            integral(lambda b, x=x: math.exp(_log_p(model, x, b, intercept)[0])) / norm
            for x in scaled
        )
    # p_1 decreases in β: p_1 > target iff β < the β at which p_1 = target.
    if model == "empiric":
        threshold = math.log(math.log(target) / scaled[0])
    else:
        threshold = math.log((math.log(target / (1 - target)) - intercept) / scaled[0])
    return CrmFit(
        beta_mean=beta_mean,
        p_plugin=tuple(crm_p(model, skeleton, beta_mean, intercept)),
        p_mean=p_mean,
        prob_lowest_above=integral(lambda b: 1.0, threshold) / norm,
    )


def closest_level(p: Sequence[float], target: float) -> tuple[int, float]:
    """The level whose estimate is closest to ``target`` (the lowest on an exact tie), and the
    gap to the next closest level's distance (inf with one level)."""
    distance = [abs(v - target) for v in p]
    best = distance.index(min(distance))
    others = [v for i, v in enumerate(distance) if i != best]
    return best, (min(others) - distance[best]) if others else math.inf


def crm(
    u: Sequence[float],
    p_true: Sequence[float],
    skeleton: Sequence[float],
    target: float,
    cohort_size: int,
    max_patients: int,
    model: str = "empiric",
    prior_var: float = CRM_PRIOR_VAR,
    intercept: float = CRM_INTERCEPT,
    estimate: str = "plugin",
    start_up: str = "none",
    no_skip: bool = True,
    coherent: bool = True,
    safety_cutoff: float | None = None,
    safety_min_n: int = 3,
    max_at_dose: int | None = None,
    start_level: int = 0,
) -> RefTrial:
    """One CRM trial (O'Quigley, Pepe & Fisher 1990; dfcrm's ``crm``/``crmsim``).

    After each cohort at level d (cohorts of ``cohort_size``, the last truncated to
    ``max_patients``), with the posterior of β from all the data so far:

    1. safety (when ``safety_cutoff`` is set): ≥ ``safety_min_n`` patients and
       P(p_1 > target | data) > cutoff → stop, no MTD;
    2. ``max_patients`` reached → stop;
    3. proposal = the level whose estimate (``"plugin"``: p_d at the posterior mean of β;
       ``"posterior_mean"``: the posterior mean of p_d) is closest to the target; with
       ``start_up = "cohorts"``, d + 1 (at most the top) until the first DLT of the trial;
    4. next = min(proposal, d + 1 if ``no_skip``, d if ``coherent`` and the last cohort's DLT
       fraction ≥ target);
    5. ``max_at_dose`` set and n_next ≥ max_at_dose → stop.

    The MTD (unless stopped for safety) is the level whose estimate from all the data is closest
    to the target, with no restriction.
    """
    skeleton = tuple(float(s) for s in skeleton)
    top = len(p_true) - 1
    trial = _Trial(u, p_true)
    n, y = trial.n, trial.y
    tie_gap = cutoff_gap = math.inf

    def fit() -> CrmFit:
        return crm_fit(
            model,
            skeleton,
            target,
            tuple(n),
            tuple(y),
            prior_var,
            intercept,
            estimate == "posterior_mean",
        )

    def estimates(f: CrmFit) -> tuple[float, ...]:
        return f.p_mean if estimate == "posterior_mean" else f.p_plugin

    def end(stop: RefStop, f: CrmFit) -> RefTrial:
        nonlocal tie_gap
        mtd = NONE
        if stop is not RefStop.SAFETY:
            mtd, gap = closest_level(estimates(f), target)
            tie_gap = min(tie_gap, gap)
        return trial.result(mtd, stop, tie_gap=tie_gap, cutoff_gap=cutoff_gap)

    d = start_level
    while True:
        size = min(cohort_size, max_patients - trial.enrolled)
        trial.treat(d, size)
        cohort_dlts = sum(trial.dlts[-size:])
        f = fit()
        if safety_cutoff is not None and trial.enrolled >= safety_min_n:
            cutoff_gap = min(cutoff_gap, abs(f.prob_lowest_above - safety_cutoff))
            if f.prob_lowest_above > safety_cutoff:
                return end(RefStop.SAFETY, f)
        if trial.enrolled >= max_patients:
            return end(RefStop.MAX_PATIENTS, f)
        if start_up == "cohorts" and sum(y) == 0:
            proposal = min(d + 1, top)
        else:
            proposal, gap = closest_level(estimates(f), target)
            tie_gap = min(tie_gap, gap)
        next_level = proposal
        if no_skip:
            next_level = min(next_level, d + 1)
        if coherent and cohort_dlts / size >= target:
            next_level = min(next_level, d)
        if max_at_dose is not None and n[next_level] >= max_at_dose:
            return end(RefStop.MAX_AT_DOSE, f)
        d = next_level


def outcome_string(levels: Sequence[int], dlts: Sequence[bool]) -> str:
    """'1NNN 2NTN': runs of patients at the same level, 1-based, N/T per patient."""
    parts: list[str] = []
    previous = None
    for level, dlt in zip(levels, dlts, strict=True):
        if level != previous:
            parts.append(str(level + 1))
            previous = level
        parts[-1] += "T" if dlt else "N"
    return " ".join(parts)


# ----------------------------------------------------------------------------------- BF-BOIN


def accrual_gap(u: float, accrual_per_month: float, accrual: str = "poisson") -> float:
    """Months from one arrival to the next, from one U(0, 1) draw: Poisson accrual has
    exponential gaps, by inversion −log(1 − u)/rate; fixed accrual spaces arrivals 1/rate apart
    (the draw is taken and not used)."""
    if accrual == "fixed":
        return 1.0 / accrual_per_month
    if accrual != "poisson":
        raise ValueError(f"unknown accrual {accrual!r}")
    return -math.log1p(-u) / accrual_per_month


def onset_fraction(u: float, kind: str = "uniform", shape: float = 3.0) -> float:
    """When a DLT occurs, as a fraction of the DLT window, from one U(0, 1) draw by inversion.

    "uniform": u. "late": a Weibull with shape k and scale the window, truncated to it:
    F(x) = (1 − exp(−x^k)) / (1 − exp(−1)), so x = (−log(1 − u (1 − e^−1)))^(1/k).
    "early": the mirror image, 1 − late(1 − u).
    """
    if kind == "uniform":
        return u
    if kind == "late":
        return (-math.log1p(-u * (1.0 - math.exp(-1.0)))) ** (1.0 / shape)
    if kind == "early":
        return 1.0 - onset_fraction(1.0 - u, "late", shape)
    raise ValueError(f"unknown onset {kind!r}")


@dataclass(frozen=True)
class RefPatient:
    """One patient of a trial in time: the level given, the DLT, when they arrived and when
    (months after arrival) their DLT occurred, inf without one; backfilled or escalation."""

    level: int
    dlt: bool
    arrival: float
    dlt_after: float
    backfill: bool

    def known(self, now: float, window: float) -> bool:
        """Whether the outcome is known at ``now``: the DLT has occurred, or the window has
        closed (at its last instant included) without one."""
        return (self.dlt and self.arrival + self.dlt_after <= now) or self.arrival + window <= now


@dataclass(frozen=True)
class RefBackfillTrial:
    """One BF-BOIN trial: every patient in order of arrival, the final counts (complete
    follow-up of everyone), the MTD, why and when the trial ended, and how many draws of the
    backfill arrivals' stream it used."""

    n: tuple[int, ...]  # [level] escalation and backfill patients
    y: tuple[int, ...]  # [level]
    n_backfill: tuple[int, ...]  # [level]
    patients: tuple[RefPatient, ...]  # in order of arrival
    n_escalation: int
    mtd: int  # 0-based, NONE for no MTD
    stop: RefStop
    stopped_at: float  # months: the decision that ended the trial
    turned_away: int  # arrivals while accrual was held that no level could take
    backfill_draws: int

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(p.level for p in self.patients)

    @property
    def dlts(self) -> tuple[bool, ...]:
        return tuple(p.dlt for p in self.patients)


def bf_boin(
    u: Sequence[float],
    arrival_u: Sequence[float],
    onset_u: Sequence[float],
    backfill_u: Sequence[float],
    p_true: Sequence[float],
    target: float,
    cohort_size: int,
    max_patients: int,
    max_per_level: int,
    accrual_per_month: float,
    dlt_window_months: float,
    accrual: str = "poisson",
    onset: str = "uniform",
    onset_shape: float = 3.0,
    start_level: int = 0,
    p_saf: float | None = None,
    p_tox: float | None = None,
    cutoff: float = 0.95,
    max_at_dose: int = 100,
) -> RefBackfillTrial:
    """One BOIN trial with backfilling (BF-BOIN, Zhao et al. 2024), in time, waiting for
    complete data.

    The k-th patient to arrive (0-based, escalation and backfill patients together) has a DLT
    iff ``u[k]`` < p_true at their level, at ``onset_fraction(onset_u[k])`` of the window after
    arrival. Escalation patients arrive one ``accrual_gap(arrival_u[k])`` after another, the
    cohort's first one gap after the decision that assigned it (the trial starts at 0).

    From the cohort's last arrival until its DLT window closes, escalation accrual is held.
    Meanwhile patients keep arriving, one gap from ``backfill_u`` (taken in order, one per gap,
    the gap that reaches past the window's end included) after another from the cohort's last
    arrival; one arriving at time t is treated at the highest level b open at t, or turned
    away when none is. Level b is open when

    1. b is below the cohort's level and escalation patients have been treated there;
    2. neither b nor any level below it was eliminated at the last decision;
    3. at b and at every level below it, the patients whose outcome is known at t (escalation
       and backfill: a DLT occurred, or the window closed) do not call for de-escalation
       (y/n ≥ λd) nor elimination (n ≥ 3, P(p > φ | y, n) > cutoff);
    4. fewer than ``max_per_level`` backfill patients have been treated at b.

    At the window's end the design decides on the patients whose outcome is known then (every
    escalation patient; backfill patients whose DLT occurred or window closed):

    1. every level with n ≥ 3 and P(p > φ | y, n) > cutoff is eliminated with all above it
       (once eliminated, always); level 1 eliminated → stop, no MTD;
    2. ``max_patients`` escalation patients treated → stop (backfill patients do not count);
    3. at the cohort's level d, the proposal is d + 1 if y/n ≤ λe (not above the top), d − 1 if
       y/n ≥ λd (not below level 1), else d; the next level is the highest non-eliminated level
       at or below the proposal;
    4. next level = d and n_d ≥ ``max_at_dose`` → stop.

    When the trial ends, every patient's follow-up completes; the MTD is BOIN's
    :func:`boin_select_mtd` on all the data, none after a stop for toxicity. Every draw
    sequence must be long enough for the trial (an IndexError otherwise).
    """
    p_saf = 0.6 * target if p_saf is None else p_saf
    p_tox = 1.4 * target if p_tox is None else p_tox
    lambda_e, lambda_d = boin_boundaries(target, p_saf, p_tox)
    window = dlt_window_months
    n_levels = len(p_true)
    top = n_levels - 1
    patients: list[RefPatient] = []
    eliminated = [False] * n_levels  # at the last decision
    draws = 0
    turned_away = 0

    def treat(level: int, arrival: float, backfill: bool) -> None:
        k = len(patients)
        dlt = bool(u[k] < p_true[level])
        dlt_after = window * onset_fraction(onset_u[k], onset, onset_shape) if dlt else math.inf
        patients.append(RefPatient(level, dlt, arrival, dlt_after, backfill))

    def known_counts(now: float) -> tuple[list[int], list[int]]:
        n, y = [0] * n_levels, [0] * n_levels
        for p in patients:
            if p.known(now, window):
                n[p.level] += 1
                y[p.level] += int(p.dlt)
        return n, y

    def too_toxic(n: int, y: int) -> bool:
        return n >= 3 and prob_above(n, y, target) > cutoff

    def calls_for_deescalation(n: int, y: int) -> bool:
        return n > 0 and (y / n >= lambda_d or too_toxic(n, y))

    def open_for_backfill(b: int, current: int, now: float) -> bool:
        if b >= current:
            return False
        if not any(p.level == b and not p.backfill for p in patients):
            return False
        if sum(p.level == b and p.backfill for p in patients) >= max_per_level:
            return False
        n, y = known_counts(now)
        return not any(eliminated[j] or calls_for_deescalation(n[j], y[j]) for j in range(b + 1))

    def end(stop: RefStop, when: float) -> RefBackfillTrial:
        n, y, n_backfill = [0] * n_levels, [0] * n_levels, [0] * n_levels
        for p in patients:
            n[p.level] += 1
            y[p.level] += int(p.dlt)
            n_backfill[p.level] += int(p.backfill)
        mtd = NONE if stop is RefStop.TOO_TOXIC else boin_select_mtd(n, y, target, cutoff)
        return RefBackfillTrial(
            n=tuple(n),
            y=tuple(y),
            n_backfill=tuple(n_backfill),
            patients=tuple(patients),
            n_escalation=n_escalation,
            mtd=mtd,
            stop=stop,
            stopped_at=when,
            turned_away=turned_away,
            backfill_draws=draws,
        )

    d = start_level
    n_escalation = 0
    now = 0.0
    while True:
        size = min(cohort_size, max_patients - n_escalation)
        elapsed = 0.0
        for _ in range(size):
            elapsed += accrual_gap(arrival_u[len(patients)], accrual_per_month, accrual)
            treat(d, now + elapsed, backfill=False)
        n_escalation += size
        last = now + elapsed
        decision_time = last + window
        clock = last
        while True:  # accrual held: arrivals are backfilled or turned away
            clock += accrual_gap(backfill_u[draws], accrual_per_month, accrual)
            draws += 1
            if not clock < decision_time:
                break
            open_levels = [b for b in range(n_levels) if open_for_backfill(b, d, clock)]
            if open_levels:
                treat(max(open_levels), clock, backfill=True)
            else:
                turned_away += 1
        now = decision_time
        n, y = known_counts(now)
        for j in range(n_levels):
            if too_toxic(n[j], y[j]):
                eliminated[j:] = [True] * (n_levels - j)
                break
        if eliminated[0]:
            return end(RefStop.TOO_TOXIC, now)
        if n_escalation >= max_patients:
            return end(RefStop.MAX_PATIENTS, now)
        rate = y[d] / n[d]
        if rate <= lambda_e:
            proposal = min(d + 1, top)
        elif rate >= lambda_d:
            proposal = max(d - 1, 0)
        else:
            proposal = d
        next_level = max(j for j in range(proposal + 1) if not eliminated[j])
        if next_level == d and n[d] >= max_at_dose:
            return end(RefStop.MAX_AT_DOSE, now)
        d = next_level
