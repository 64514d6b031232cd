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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cache

from scipy.stats import beta

NONE = -1  # no level selected


class RefStop(Enum):
    """Why a reference trial ended."""

    TOO_TOXIC = "too_toxic"  # lowest level too toxic / eliminated: no MTD
    RULE_COMPLETE = "rule_complete"  # the 3+3 rule ended the trial
    MAX_PATIENTS = "max_patients"
    MAX_AT_DOSE = "max_at_dose"  # BOIN n.earlystop


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

    def result(self, mtd: int, stop: RefStop, eliminated_at_end: bool = False) -> RefTrial:
        return RefTrial(
            n=tuple(self.n),
            y=tuple(self.y),
            levels=tuple(self.levels),
            dlts=tuple(self.dlts),
            mtd=mtd,
            stop=stop,
            lowest_eliminated_at_end=eliminated_at_end,
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
