"""Organ dosimetry: cumulative absorbed dose and BED over cycles, organ-limit admissibility learnt
from the patients' measured dosimetry, patient capping, and the true population quantities of a
dosimetry-driven scenario.

A radiopharmaceutical is escalated by administered *activity* (GBq per cycle), but normal-tissue
toxicity follows the *absorbed dose* (Gy) in organs at risk. Each patient has their own absorbed
dose per unit activity ``g`` (Gy/GBq) in each organ, lognormal between patients. For per-cycle
activities ``a_c`` (c = 1..C) an organ's cumulative absorbed dose and BED are ::

    D = g·S1,    BED = g·S1 + k·g²·S2,    S1 = Σ a_c,   S2 = Σ a_c²,
    k = T_rep / ((α/β)·(T_rep + T_eff))

(the linear-quadratic BED of a mono-exponentially decaying dose rate, summed over cycles that
repair fully in between; :func:`bed`). Both grow with ``g``, so "the cumulative quantity passes
the limit L" is "g > g*" with ::

    g* = 2L / (S1 + √(S1² + 4·k·S2·L))                      (k = 0 for an absorbed-dose limit)

in closed form for any schedule (:func:`gy_per_gbq_threshold`). Everything below rests on this.

What lives here
---------------
- Records built one-to-one from the TOML tables: :class:`OrganModel` and :class:`Dosimetry`
  (the design's ``[dosimetry]``), :class:`OrganTruth`, :class:`OrganNtcp`, :class:`Toxicity`,
  :class:`Efficacy` and :class:`DosimetryTruth` (a scenario's ``[scenario.organ.*]``,
  ``[scenario.toxicity]`` and ``[scenario.efficacy]``).
  Invalid values raise :class:`DosimetryError` (a ``ValueError``) whose ``messages`` are one line
  each, ``key = value: what is allowed``; ``problems()`` returns them without raising.
- Learning each organ's population of log Gy/GBq from the patients' measured dosimetry by a
  conjugate normal–scaled-inverse-χ² update (:func:`update_posterior`), and from it the
  probability that a new patient's cumulative absorbed dose or BED passes the organ limit at
  each level (:func:`exceedance_prob`) and the admissible levels (:func:`admissible_levels`).
- Patient capping of later cycles (:func:`cap_activities`).
- Virtual patients (:func:`sample_patients`), each patient's DLT probability from NTCP
  (:func:`patient_dlt_prob`) and response probability from their tumour dose
  (:func:`patient_response_prob`), and each level's true population DLT, exceedance and
  response probabilities (:func:`level_truths`).

Axes: ``[trial, organ]`` for posteriors and sufficient statistics, ``[trial, level, organ]`` for
exceedance, ``[trial, patient, organ]`` for Gy/GBq, ``[..., cycle]`` for activities. Organs are
in the order of the record they belong to (``Dosimetry.organs`` or ``DosimetryTruth.organs``).
Every function is vectorised over trials, levels and patients; none loops over them in Python.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import NamedTuple

import numpy as np

from theradose import special_functions as special
from theradose.timing import ONSETS
from theradose.validation import show_value

__all__ = [
    "CAP_RULES",
    "CappedActivities",
    "Dosimetry",
    "DosimetryError",
    "DosimetryStats",
    "DosimetryTruth",
    "Efficacy",
    "GyPerGbqPosterior",
    "LevelTruths",
    "OrganModel",
    "OrganNtcp",
    "OrganTruth",
    "SampledPatients",
    "ScheduleMoments",
    "Toxicity",
    "admissible_levels",
    "bed",
    "bed_factor",
    "cap_activities",
    "capped_moments",
    "correlation_problems",
    "dlt_cause",
    "dlt_causes",
    "dlt_prob_from_causes",
    "eqd2",
    "exceedance_prob",
    "gy_per_gbq_threshold",
    "level_truths",
    "lkb_ntcp",
    "log_sd",
    "logistic_ntcp",
    "passes_limit",
    "patient_dlt_prob",
    "patient_response_prob",
    "prescribed_activity",
    "sample_patients",
    "true_cumulative",
    "update_posterior",
]

CAP_RULES = ("reduce", "cycles")
DOSE_BASES = ("activity", "absorbed_dose")
TOXICITY_MODELS = ("ntcp", "dlt_prob")
EFFICACY_MODELS = ("tumour_dose",)
EFFICACY_DOSES = ("absorbed", "eqd2")
PREDICTIVES = ("true", "measured")
RADIOBIOLOGY_KEYS = ("alpha_beta_gy", "repair_half_time_h", "effective_half_time_h")

# Quadrature of the true population quantities (level_truths); accuracy measured against
# scipy.integrate.quad in tests/test_dosimetry.py.
INNER_SD = 8.0  # E over a patient's true log Gy/GBq covers ±8 sd (mass outside 1e-15)
INNER_STEP_SD = 0.25  # in segments 0.25 sd wide: NTCP sigmoids are steep in log Gy/GBq
INNER_NODES = 8  # Gauss–Legendre nodes per segment
OUTER_SD = 10.0  # the outer integral over measured log Gy/GBq covers ±10 sd
OUTER_STEP_SD = 1.0  # in segments at most 1 sd wide, also split at every capping kink
OUTER_NODES = 24
EXACT_LIMIT_RTOL = 1e-9  # without measurement error, capped patients land on the limit exactly
PERSONAL_NODES = 48  # quantile nodes of a new patient's measured Gy/GBq (personalised activity)


# ---------------------------------------------------------------------------------------------
# Errors and validation


class DosimetryError(ValueError):
    """Invalid dosimetry values, all of them, one line each (``key = value: what is allowed``).

    The config loader prefixes each line with the file and table it came from.
    """

    def __init__(self, messages: Sequence[str] | str) -> None:
        self.messages: list[str] = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


def _is_number(value) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _check_number(
    out: list[str],
    key: str,
    value,
    low: float,
    high: float | None = None,
    *,
    closed: bool = False,
    high_closed: bool = False,
) -> None:
    """Append a problem unless ``value`` is a finite number > low (>= low if closed) and < high
    (<= high if high_closed)."""
    if high is not None:
        allowed = f"in {'[' if closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"
    else:
        allowed = f"{'>=' if closed else '>'} {low:g}"
    ok = _is_number(value) and (value >= low if closed else value > low)
    if ok and high is not None:
        ok = value <= high if high_closed else value < high
    if not ok:
        out.append(f"{key} = {show_value(value)}: must be a number {allowed}")


def _check_name(out: list[str], name) -> None:
    if not isinstance(name, str) or not name.strip():
        out.append(f"name = {show_value(name)}: must be a non-empty string")


def _raise_if_any(problems: list[str]) -> None:
    if problems:
        raise DosimetryError(problems)


def _nonnegative(name: str, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if not np.all(values >= 0):  # also catches NaN
        bad = values[~(values >= 0)].ravel()[0]
        raise ValueError(f"{name} must be >= 0 (and not NaN), got {bad!r}")
    return values


def correlation_problems(correlation, n_organs: int, key: str = "correlation") -> list[str]:
    """Problems of an organ correlation matrix: ``n_organs`` × ``n_organs``, symmetric, ones on
    the diagonal, positive definite. Empty when it is valid (or None)."""
    if correlation is None:
        return []
    try:
        r = np.asarray(correlation, dtype=float)
    except (TypeError, ValueError):
        return [f"{key}: must be a {n_organs}×{n_organs} array of numbers, got {correlation!r}"]
    shown = np.array2string(r, separator=", ") if r.ndim == 2 else repr(correlation)
    if r.shape != (n_organs, n_organs) or not np.all(np.isfinite(r)):
        return [f"{key}: must be a {n_organs}×{n_organs} matrix (one row per organ), got {shown}"]
    if not (np.allclose(r, r.T, rtol=0, atol=1e-12) and np.allclose(np.diag(r), 1.0)):
        return [f"{key}: must be symmetric with ones on the diagonal, got {shown}"]
    if np.any(np.abs(r) > 1) or np.linalg.eigvalsh(r).min() <= 1e-10:
        return [f"{key}: must be positive definite (a valid correlation matrix), got {shown}"]
    return []


# ---------------------------------------------------------------------------------------------
# Radiobiology and NTCP


def log_sd(cv):
    """The log-scale standard deviation of a lognormal with coefficient of variation ``cv``:
    σ = √(log(1 + CV²))."""
    return np.sqrt(np.log1p(np.square(cv)))


def bed_factor(alpha_beta_gy, repair_half_time_h, effective_half_time_h):
    """``k`` of BED = D + k·D² for one cycle: k = T_rep / ((α/β)·(T_rep + T_eff)), in 1/Gy."""
    return repair_half_time_h / (alpha_beta_gy * (repair_half_time_h + effective_half_time_h))


def bed(dose_per_cycle_gy, alpha_beta_gy, repair_half_time_h, effective_half_time_h):
    """Biologically effective dose of an organ over cycles (Gy).

    For an absorbed dose D delivered at a mono-exponentially decaying dose rate (effective
    half-life T_eff) to tissue with repair half-time T_rep and α/β (Dale 1985, *Br J Radiol*
    58:515; MIRD Pamphlet No. 20, Wessels et al. 2008, *J Nucl Med* 49:1884) ::

        BED = D · [1 + D · T_rep / ((α/β) · (T_rep + T_eff))]

    Cycles weeks apart repair fully in between, so their BEDs add.

    Parameters
    ----------
    dose_per_cycle_gy : array [..., cycle]
        Absorbed dose of each cycle (Gy); the last axis is summed. A scalar is one cycle.
    alpha_beta_gy, repair_half_time_h, effective_half_time_h : float or array
        Broadcast against ``dose_per_cycle_gy`` (give [..., 1] to vary them per organ).

    Returns
    -------
    array [...] : BED (Gy)

    Examples
    --------
    DOMAIN.md's worked example, 0.6 Gy/GBq × 7.4 GBq × 4 cycles of 177Lu to the kidney:

    >>> round(float(bed([0.6 * 7.4] * 4, 2.6, 2.8, 40.0)), 1)
    19.7
    """
    dose = _nonnegative("absorbed dose per cycle", dose_per_cycle_gy)
    per_cycle = dose * (
        1 + dose * bed_factor(alpha_beta_gy, repair_half_time_h, effective_half_time_h)
    )
    return per_cycle if per_cycle.ndim == 0 else per_cycle.sum(axis=-1)


def eqd2(bed_gy, alpha_beta_gy):
    """Equieffective dose in 2-Gy fractions: EQD2 = BED / (1 + 2/(α/β)) (Bentzen et al. 2012,
    *Radiother Oncol* 105:266).

    >>> round(float(eqd2(40.0, 2.6)), 1)
    22.6
    """
    return np.asarray(bed_gy, dtype=float) / (1 + 2 / np.asarray(alpha_beta_gy, dtype=float))


def lkb_ntcp(eud_gy, td50_gy, m):
    """Lyman–Kutcher–Burman NTCP = Φ((EUD − TD50) / (m·TD50)) (Lyman 1985, *Radiat Res Suppl*
    8:S13; Kutcher & Burman 1989, *Int J Radiat Oncol Biol Phys* 16:1623). For a uniformly
    irradiated organ EUD is its absorbed dose, or EQD2 to carry external-beam parameters over.
    Kidney (Burman et al. 1991, *Int J Radiat Oncol Biol Phys* 21:123): TD50 = 28 Gy, m = 0.10.

    >>> round(float(lkb_ntcp(23.0, 28.0, 0.10)), 3)
    0.037
    """
    return special.ndtr((np.asarray(eud_gy, dtype=float) - td50_gy) / (m * td50_gy))


def logistic_ntcp(eud_gy, td50_gy, gamma50):
    """Logistic NTCP = 1 / (1 + (TD50/EUD)^(4·γ50)) (Gay & Niemierko 2007, *Phys Med* 23:115);
    0 at EUD = 0. Kidney: TD50 = 28 Gy, γ50 = 3."""
    eud = np.asarray(eud_gy, dtype=float)
    with np.errstate(divide="ignore"):
        log_ratio = np.log(td50_gy) - np.log(eud)
    return special.expit(-4 * gamma50 * log_ratio)


def gy_per_gbq_threshold(limit, activities, bed_factor=0.0):
    """The Gy/GBq above which the cumulative absorbed dose (``bed_factor = 0``) or BED of the
    schedule ``activities`` passes ``limit``: the root of g·S1 + k·g²·S2 = L ::

        g* = 2L / (S1 + √(S1² + 4·k·S2·L)),   S1 = Σ_c a_c,   S2 = Σ_c a_c²

    (the stable form of the quadratic's root; +inf when every activity is 0).

    Parameters
    ----------
    limit : float or array [...]
    activities : array [..., cycle] (GBq)
    bed_factor : float or array [...], k of :func:`bed_factor`

    Returns
    -------
    array [...] (Gy/GBq)
    """
    a = np.asarray(activities, dtype=float)
    return _threshold(limit, a.sum(axis=-1), np.square(a).sum(axis=-1), bed_factor)


def _threshold(limit, s1, s2, k):
    with np.errstate(divide="ignore"):
        return 2 * limit / (s1 + np.sqrt(s1 * s1 + 4 * k * s2 * limit))


def _cumulative(g, s1, s2, k):
    """g·S1 + k·g²·S2: cumulative absorbed dose (k = 0) or BED, from the schedule's moments."""
    if np.ndim(k) == 0 and k == 0:
        return g * s1
    return g * s1 + k * g * g * s2


class ScheduleMoments(NamedTuple):
    """A schedule by the two sums its cumulative absorbed dose and BED depend on
    (g·S1 + k·g²·S2): ``total`` S1 = Σ_c a_c (GBq) and ``total_sq`` S2 = Σ_c a_c², [...] each.
    Accepted wherever activities [..., cycle] are."""

    total: np.ndarray
    total_sq: np.ndarray


def _moments(activities) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(activities, ScheduleMoments):
        return activities.total, activities.total_sq
    a = _nonnegative("activity", activities)
    return a.sum(axis=-1), np.square(a).sum(axis=-1)


# ---------------------------------------------------------------------------------------------
# Records (one-to-one with the TOML tables)


class _Record:
    """A record read from a design or scenario file: the fields named in ``_sequences`` are
    stored as (nested) tuples, so the record stays hashable, and every problem of the values
    is raised at once on construction (:class:`DosimetryError`)."""

    _sequences: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in self._sequences:
            object.__setattr__(self, name, _tupled(getattr(self, name)))
        _raise_if_any(self.problems())


@dataclass(frozen=True, kw_only=True)
class _LognormalOrgan(_Record):
    """An organ whose Gy/GBq is lognormal between patients, with optional radiobiology."""

    name: str
    gy_per_gbq_median: float
    gy_per_gbq_cv: float
    alpha_beta_gy: float | None = None
    repair_half_time_h: float | None = None
    effective_half_time_h: float | None = None

    def problems(self) -> list[str]:
        """Every problem of the values, one line each (empty when valid)."""
        out: list[str] = []
        _check_name(out, self.name)
        _check_number(out, "gy_per_gbq_median", self.gy_per_gbq_median, 0.0)
        _check_number(out, "gy_per_gbq_cv", self.gy_per_gbq_cv, 0.0)
        given = [key for key in RADIOBIOLOGY_KEYS if getattr(self, key) is not None]
        for key in given:
            _check_number(out, key, getattr(self, key), 0.0)
        if 0 < len(given) < len(RADIOBIOLOGY_KEYS):
            missing = [key for key in RADIOBIOLOGY_KEYS if key not in given]
            out.append(
                f"{given[0]} = {show_value(getattr(self, given[0]))}: needs "
                f"{' and '.join(missing)} too (BED uses all of {', '.join(RADIOBIOLOGY_KEYS)})"
            )
        return out

    @property
    def log_median(self) -> float:
        return math.log(self.gy_per_gbq_median)

    @property
    def log_sd(self) -> float:
        """σ of log Gy/GBq between patients (:func:`log_sd` of the CV)."""
        return float(log_sd(self.gy_per_gbq_cv))

    @property
    def has_radiobiology(self) -> bool:
        return self.alpha_beta_gy is not None

    @property
    def bed_factor(self) -> float:
        """k of BED = D + k·D² per cycle; 0 without radiobiology (BED = absorbed dose)."""
        if not self.has_radiobiology:
            return 0.0
        return bed_factor(self.alpha_beta_gy, self.repair_half_time_h, self.effective_half_time_h)

    def cumulative_dose(self, activities, gy_per_gbq):
        """Cumulative absorbed dose (Gy) [...] of activities [..., cycle] and Gy/GBq [...]."""
        s1, _ = _moments(activities)
        return _nonnegative("Gy/GBq", gy_per_gbq) * s1

    def cumulative_bed(self, activities, gy_per_gbq):
        """Cumulative BED (Gy) [...] of activities [..., cycle] and Gy/GBq [...]."""
        if not self.has_radiobiology:
            raise ValueError(f"organ {self.name!r}: BED needs {', '.join(RADIOBIOLOGY_KEYS)}")
        s1, s2 = _moments(activities)
        return _cumulative(_nonnegative("Gy/GBq", gy_per_gbq), s1, s2, self.bed_factor)

    def eud(self, activities, gy_per_gbq):
        """The absorbed dose NTCP is evaluated on (Gy) [...]: EQD2 of the cumulative BED with
        radiobiology, the cumulative absorbed dose without (EUD = dose for a uniformly
        irradiated organ)."""
        s1, s2 = _moments(activities)
        return self.eud_from_moments(_nonnegative("Gy/GBq", gy_per_gbq), s1, s2)

    def eud_from_moments(self, g, s1, s2):
        """:meth:`eud` from Gy/GBq ``g`` and the activities' sum ``s1`` = ΣA and sum of squares
        ``s2`` = ΣA² over cycles (GBq, GBq²), unchecked."""
        if not self.has_radiobiology:
            return g * s1
        return eqd2(_cumulative(g, s1, s2, self.bed_factor), self.alpha_beta_gy)


@dataclass(frozen=True, kw_only=True)
class OrganTruth(_LognormalOrgan):
    """The truth about one organ of a scenario's patients (``[scenario.organ.<name>]``).

    Attributes
    ----------
    name : the organ, matching the design's ``[[dosimetry.organ]]`` and ``[scenario.toxicity.*]``
    gy_per_gbq_median, gy_per_gbq_cv : the lognormal distribution of the TRUE Gy/GBq between
        patients (log-scale sd = √(log(1 + CV²)))
    alpha_beta_gy, repair_half_time_h, effective_half_time_h : optional radiobiology; with it
        NTCP is evaluated on EQD2 of the cumulative BED, without it on the absorbed dose
    """

    @classmethod
    def as_expected_by(cls, model: OrganModel) -> OrganTruth:
        """Patients as a design's prior for the organ expects them (its median, CV and
        radiobiology): the truth for an organ a scenario does not describe."""
        shared = dataclasses.fields(_LognormalOrgan)
        return cls(**{f.name: getattr(model, f.name) for f in shared})


@dataclass(frozen=True, kw_only=True)
class OrganModel(_LognormalOrgan):
    """The design's model of one organ at risk (``[[dosimetry.organ]]``).

    Attributes
    ----------
    name : the organ
    gy_per_gbq_median, gy_per_gbq_cv : prior for the population's TRUE Gy/GBq (lognormal)
    prior_strength : how many patients' worth of information the prior carries, for the
        median and for the spread alike (κ0 = ν0 = prior_strength; :func:`update_posterior`)
    limit_gy : limit on the cumulative absorbed dose over the design's cycles, or
    limit_bed_gy : limit on the cumulative BED, which needs the three radiobiology values
    alpha_beta_gy, repair_half_time_h, effective_half_time_h : radiobiology the protocol assumes
    max_exceed_prob : a level is not admissible when P(a new patient's cumulative absorbed dose
        or BED > limit) is above this; 1 tracks the organ (its doses are reported against the
        limit) without ever ruling a level out
    """

    prior_strength: float = 5.0
    limit_gy: float | None = None
    limit_bed_gy: float | None = None
    max_exceed_prob: float = 0.10

    def problems(self) -> list[str]:
        out = super().problems()
        _check_number(out, "prior_strength", self.prior_strength, 0.0)
        _check_number(out, "max_exceed_prob", self.max_exceed_prob, 0.0, 1.0, high_closed=True)
        if (self.limit_gy is None) == (self.limit_bed_gy is None):
            given = "both" if self.limit_gy is not None else "neither"
            out.append(f"limit: give exactly one of limit_gy, limit_bed_gy (got {given})")
        if self.limit_gy is not None:
            _check_number(out, "limit_gy", self.limit_gy, 0.0)
        if self.limit_bed_gy is not None:
            _check_number(out, "limit_bed_gy", self.limit_bed_gy, 0.0)
            if all(getattr(self, key) is None for key in RADIOBIOLOGY_KEYS):
                out.append(
                    f"limit_bed_gy = {show_value(self.limit_bed_gy)}: a BED limit needs the "
                    f"organ's radiobiology: {', '.join(RADIOBIOLOGY_KEYS)}"
                )
        return out

    @property
    def limit_is_bed(self) -> bool:
        return self.limit_bed_gy is not None

    @property
    def limit(self) -> float:
        """The limit (Gy), on BED when :attr:`limit_is_bed`, else on absorbed dose."""
        return float(self.limit_bed_gy if self.limit_is_bed else self.limit_gy)

    @property
    def limit_bed_factor(self) -> float:
        """k of the limited quantity: the organ's BED factor for a BED limit, else 0."""
        return self.bed_factor if self.limit_is_bed else 0.0

    def cumulative(self, activities, gy_per_gbq):
        """The limited quantity [...] (Gy): cumulative BED for a BED limit, else cumulative
        absorbed dose, of activities [..., cycle] and Gy/GBq [...]."""
        if self.limit_is_bed:
            return self.cumulative_bed(activities, gy_per_gbq)
        return self.cumulative_dose(activities, gy_per_gbq)

    def threshold(self, activities):
        """The Gy/GBq [...] above which the schedule [..., cycle] passes the limit."""
        return gy_per_gbq_threshold(self.limit, activities, self.limit_bed_factor)

    def describe(self, cycles: int) -> str:
        quantity = "BED" if self.limit_is_bed else "absorbed dose"
        if self.max_exceed_prob >= 1:
            return (
                f"{self.name}: tracked, not limited: each patient's cumulative {quantity} over "
                f"{cycles} cycle(s) is reported against {self.limit:g} Gy (max_exceed_prob = 1 "
                "never rules a level out)."
            )
        return (
            f"{self.name}: a level is admissible only while P(a new patient's cumulative "
            f"{quantity} over {cycles} cycle(s) > {self.limit:g} Gy) ≤ {self.max_exceed_prob:g}, "
            f"updated from the patients' measured Gy/GBq (prior median "
            f"{self.gy_per_gbq_median:g} Gy/GBq, CV {self.gy_per_gbq_cv:g}, worth "
            f"{self.prior_strength:g} patients)."
        )


def _tupled(value):
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(_tupled(v) for v in value)
    return value


@dataclass(frozen=True, kw_only=True)
class Dosimetry(_Record):
    """The design's ``[dosimetry]`` section.

    Attributes
    ----------
    organs : the organs at risk, each with its limit (``[[dosimetry.organ]]``)
    cycles : cycles per patient, each at the level's activity (unless capped)
    measurement_cv : CV of each patient's dosimetry estimate: measured Gy/GBq = true × a
        lognormal error of median 1 (0: exact). 13–19% (Staanum et al. 2021, *EJNMMI Phys* 8:78)
    patient_cap : reduce later cycles so that the patient's ESTIMATED cumulative absorbed dose or
        BED stays within every organ's limit (:func:`cap_activities`)
    cap_rule : "reduce" (Menda et al. 2018) or "cycles" (ILUMINET, Sundlöv et al. 2022)
    correlation : optional correlation of log Gy/GBq between the organs (in ``organs`` order).
        The admissibility rule works on each organ's marginal, so it does not use it; it is
        there to sample patients from the design's prior (:func:`sample_patients`)
    dose_basis : "activity" (the design's ``doses`` are activities per cycle, GBq) or
        "absorbed_dose" (they are cumulative absorbed doses, Gy, prescribed to the organ
        ``prescribe_to``: each patient's activity per cycle is set from their own measured
        Gy/GBq, :func:`prescribed_activity`)
    prescribe_to : with "absorbed_dose", the organ (one of ``organs``) the levels prescribe to
    max_activity_gbq : with "absorbed_dose", the most activity per cycle any patient is given
    """

    organs: tuple[OrganModel, ...]
    cycles: int = 1
    measurement_cv: float = 0.0
    patient_cap: bool = False
    cap_rule: str = "reduce"
    correlation: tuple[tuple[float, ...], ...] | None = None
    dose_basis: str = "activity"
    prescribe_to: str | None = None
    max_activity_gbq: float | None = None
    _sequences = ("organs", "correlation")

    def problems(self) -> list[str]:
        out: list[str] = []
        if not (
            isinstance(self.cycles, int | np.integer)
            and not isinstance(self.cycles, bool)
            and self.cycles >= 1
        ):
            out.append(f"cycles = {show_value(self.cycles)}: must be an integer >= 1")
        _check_number(out, "measurement_cv", self.measurement_cv, 0.0, closed=True)
        if not isinstance(self.patient_cap, bool):
            out.append(f"patient_cap = {show_value(self.patient_cap)}: must be true or false")
        if self.cap_rule not in CAP_RULES:
            allowed = ", ".join(show_value(r) for r in CAP_RULES)
            out.append(f"cap_rule = {show_value(self.cap_rule)}: must be one of {allowed}")
        if self.patient_cap and not self.organs:
            out.append("patient_cap = true: needs at least one [[dosimetry.organ]] with a limit")
        # No organs is allowed: cycles alone (for dosimetry-driven scenarios) without limits.
        if not all(isinstance(o, OrganModel) for o in self.organs):
            out.append("organ: each must be an OrganModel")
            return out
        out += _duplicate_names(self.organs)
        out += correlation_problems(self.correlation, len(self.organs))
        out += self._prescription_problems()
        return out

    def _prescription_problems(self) -> list[str]:
        if self.dose_basis not in DOSE_BASES:
            allowed = ", ".join(show_value(b) for b in DOSE_BASES)
            return [f"dose_basis = {show_value(self.dose_basis)}: must be one of {allowed}"]
        out: list[str] = []
        if not self.personalised:
            for key in ("prescribe_to", "max_activity_gbq"):
                if getattr(self, key) is not None:
                    out.append(
                        f"{key} = {show_value(getattr(self, key))}: only with "
                        'dose_basis = "absorbed_dose"'
                    )
            return out
        names = ", ".join(show_value(n) for n in self.names) or "none given"
        why = 'with dose_basis = "absorbed_dose"'
        if self.prescribe_to is None:
            out.append(
                f"prescribe_to: required {why}: the organ the levels' absorbed doses are "
                f"prescribed to, one of the [[dosimetry.organ]] names ({names})"
            )
        elif self.prescribe_to not in self.names:
            out.append(
                f"prescribe_to = {show_value(self.prescribe_to)}: must be one of the "
                f"[[dosimetry.organ]] names ({names})"
            )
        if self.max_activity_gbq is None:
            out.append(f"max_activity_gbq: required {why}: the most GBq per cycle, > 0")
        else:
            _check_number(out, "max_activity_gbq", self.max_activity_gbq, 0.0)
        if self.patient_cap is True:
            out.append(
                f"patient_cap = true: not {why} (each patient's activity is already set from "
                "their own dosimetry)"
            )
        return out

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.organs)

    @property
    def personalised(self) -> bool:
        """True when the levels are prescribed absorbed doses (``dose_basis = "absorbed_dose"``):
        each patient's activity then follows from their own measured Gy/GBq."""
        return self.dose_basis == "absorbed_dose"

    @property
    def prescribed_index(self) -> int:
        """Position of the ``prescribe_to`` organ in :attr:`organs`."""
        return self.names.index(self.prescribe_to)

    @property
    def measurement_var(self) -> float:
        """τ² = log(1 + CV²): the variance of the measurement error of log Gy/GBq."""
        return float(np.log1p(self.measurement_cv**2))

    @property
    def capping(self) -> bool:
        """True when patient capping can change anything (capping on, more than one cycle)."""
        return bool(self.patient_cap) and self.cycles > 1

    def describe(self) -> str:
        """The dosimetry rules as protocol text, one paragraph per line."""
        lines = [o.describe(self.cycles) for o in self.organs]
        if self.personalised:
            lines.insert(
                0,
                f"Levels are cumulative absorbed doses (Gy) to the {self.prescribe_to} over "
                f"{self.cycles} cycle(s): each patient is given, every cycle, the prescribed dose "
                f"/ ({self.cycles} × their measured {self.prescribe_to} Gy/GBq), at most "
                f"{self.max_activity_gbq:g} GBq.",
            )
        if self.measurement_cv > 0:
            when = "after cycle 1"
            if self.personalised:
                when = "before cycle 1 (pre-therapy dosimetry)"
            lines.append(
                f"Each patient's Gy/GBq is measured {when} with a CV of {self.measurement_cv:g}."
            )
        if self.capping:
            how = (
                "the same reduced activity for each later cycle"
                if self.cap_rule == "reduce"
                else "full-activity cycles only while they fit, then no more"
            )
            lines.append(
                f"Later cycles are capped ({how}) so that the patient's estimated cumulative "
                "absorbed dose or BED stays within every organ's limit."
            )
        return "\n".join(lines)


def _duplicate_names(organs) -> list[str]:
    seen, out = set(), []
    for organ in organs:
        if organ.name in seen:
            out.append(f"name = {show_value(organ.name)}: organ given more than once")
        seen.add(organ.name)
    return out


@dataclass(frozen=True, kw_only=True)
class OrganNtcp(_Record):
    """The true NTCP of one organ (``[scenario.toxicity.<name>]``): Lyman–Kutcher–Burman with
    ``m`` (:func:`lkb_ntcp`) or logistic with ``gamma50`` (:func:`logistic_ntcp`), on the
    organ's EQD2 (with radiobiology) or absorbed dose (without) — :meth:`OrganTruth.eud`.

    ``dlt_onset`` ("uniform", "late", "early") and ``onset_shape``: when in the DLT window the
    DLTs this organ causes occur (:class:`theradose.timing.Onset`); None: the scenario's.
    """

    name: str
    td50_gy: float
    m: float | None = None
    gamma50: float | None = None
    dlt_onset: str | None = None
    onset_shape: float | None = None

    def problems(self) -> list[str]:
        out: list[str] = []
        _check_name(out, self.name)
        _check_number(out, "td50_gy", self.td50_gy, 0.0)
        if (self.m is None) == (self.gamma50 is None):
            given = "both" if self.m is not None else "neither"
            out.append(
                f"give exactly one of m (Lyman–Kutcher–Burman), gamma50 (logistic), got {given}"
            )
        if self.m is not None:
            _check_number(out, "m", self.m, 0.0)
        if self.gamma50 is not None:
            _check_number(out, "gamma50", self.gamma50, 0.0)
        if self.dlt_onset is not None and self.dlt_onset not in ONSETS:
            allowed = ", ".join(show_value(k) for k in ONSETS)
            out.append(f"dlt_onset = {show_value(self.dlt_onset)}: must be one of {allowed}")
        if self.onset_shape is not None:
            _check_number(out, "onset_shape", self.onset_shape, 0.0)
            if self.dlt_onset in (None, "uniform"):
                out.append('onset_shape: only with dlt_onset = "late" or "early"')
        return out

    def onset(self, default):
        """This organ's :class:`theradose.timing.Onset`, ``default`` (the scenario's) if none."""
        from theradose.timing import DEFAULT_ONSET_SHAPE, Onset

        if self.dlt_onset is None:
            return default
        shape = DEFAULT_ONSET_SHAPE if self.onset_shape is None else self.onset_shape
        return Onset(self.dlt_onset, shape)

    def ntcp(self, eud_gy):
        if self.m is not None:
            return lkb_ntcp(eud_gy, self.td50_gy, self.m)
        return logistic_ntcp(eud_gy, self.td50_gy, self.gamma50)


@dataclass(frozen=True, kw_only=True)
class Toxicity(_Record):
    """``[scenario.toxicity]``: P(DLT) = 1 − (1 − background_prob)·Π_organs (1 − NTCP_organ)
    with ``model = "ntcp"``; ``"dlt_prob"`` takes the scenario's DLT probabilities instead."""

    model: str = "ntcp"
    background_prob: float = 0.0
    organs: tuple[OrganNtcp, ...] = ()
    _sequences = ("organs",)

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.model not in TOXICITY_MODELS:
            allowed = ", ".join(show_value(m) for m in TOXICITY_MODELS)
            out.append(f"model = {show_value(self.model)}: must be one of {allowed}")
        _check_number(out, "background_prob", self.background_prob, 0.0, 1.0, closed=True)
        if self.model == "ntcp" and not self.organs:
            out.append('model = "ntcp": needs at least one [scenario.toxicity.<organ>] table')
        out += _duplicate_names(self.organs)
        return out

    @property
    def uses_ntcp(self) -> bool:
        return self.model == "ntcp"


@dataclass(frozen=True, kw_only=True)
class Efficacy(_Record):
    """``[scenario.efficacy]`` with ``model = "tumour_dose"``: each patient's probability of a
    response follows their own cumulative tumour absorbed dose D over the cycles they receive,

        p_E(D) = 1 / (1 + (D50 / D)^(4·γ50))

    the logistic dose–response in the normalised-slope form of Niemierko (Gay & Niemierko 2007,
    *Phys Med* 23:115; :func:`logistic_ntcp`, as a tumour control probability here): 50% at
    ``d50_gy``, slope γ50 = D·dp/dD at D50; 0 at D = 0. ``dose = "eqd2"`` takes D as the EQD2 of
    the cumulative BED with the tumour organ's radiobiology (:meth:`OrganTruth.eud` form), which
    ``"absorbed"`` (the default) does not use. Tumour absorbed dose predicting response:
    177Lu-DOTATATE in neuroendocrine tumours (Ilan et al. 2015, *J Nucl Med* 56:177),
    177Lu-PSMA-617 (Violet et al. 2019, *J Nucl Med* 60:517).

    Attributes
    ----------
    organ : the tumour, one of the scenario's ``[scenario.organ.<name>]`` (its Gy/GBq, correlated
        with the other organs by the scenario's ``correlation``), not one with an NTCP
    d50_gy : the tumour dose (Gy) with a 50% probability of a response
    gamma50 : the normalised slope at d50_gy
    model : "tumour_dose"
    dose : "absorbed" or "eqd2"
    """

    organ: str
    d50_gy: float
    gamma50: float
    model: str = "tumour_dose"
    dose: str = "absorbed"

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.model not in EFFICACY_MODELS:
            allowed = ", ".join(show_value(m) for m in EFFICACY_MODELS)
            out.append(f"model = {show_value(self.model)}: must be one of {allowed}")
        if not isinstance(self.organ, str) or not self.organ.strip():
            out.append(
                f"organ = {show_value(self.organ)}: must name the tumour, one of the scenario's "
                "[scenario.organ.<name>]"
            )
        _check_number(out, "d50_gy", self.d50_gy, 0.0)
        _check_number(out, "gamma50", self.gamma50, 0.0)
        if self.dose not in EFFICACY_DOSES:
            allowed = ", ".join(show_value(d) for d in EFFICACY_DOSES)
            out.append(f"dose = {show_value(self.dose)}: must be one of {allowed}")
        return out

    def response_prob(self, organ: OrganTruth, g, s1, s2):
        """p_E [...] of true tumour Gy/GBq ``g`` under schedules of moments ``s1``, ``s2``
        (:class:`ScheduleMoments`), for the tumour ``organ`` (its radiobiology for EQD2)."""
        dose = g * s1
        if self.dose == "eqd2":
            dose = eqd2(_cumulative(g, s1, s2, organ.bed_factor), organ.alpha_beta_gy)
        return logistic_ntcp(dose, self.d50_gy, self.gamma50)


@dataclass(frozen=True, kw_only=True)
class DosimetryTruth(_Record):
    """The truth about a scenario's patients: each organ's Gy/GBq, optionally correlated between
    organs (on the log scale, in ``organs`` order), the toxicity model and, optionally, the
    efficacy model (a response from the patient's own tumour dose, :class:`Efficacy`)."""

    organs: tuple[OrganTruth, ...]
    toxicity: Toxicity | None = None
    correlation: tuple[tuple[float, ...], ...] | None = None
    efficacy: Efficacy | None = None
    _sequences = ("organs", "correlation")

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.organs:
            out.append("organ: give at least one [scenario.organ.<name>]")
        out += _duplicate_names(self.organs)
        if self.toxicity is not None:
            names = {o.name for o in self.organs}
            for ntcp in self.toxicity.organs:
                if ntcp.name not in names:
                    out.append(
                        f"toxicity.{ntcp.name}: no [scenario.organ.{ntcp.name}] gives its Gy/GBq"
                    )
        out += correlation_problems(self.correlation, len(self.organs))
        if self.efficacy is not None:
            out += self._efficacy_problems()
        return out

    def _efficacy_problems(self) -> list[str]:
        """The response organ against the organs: one of them, no NTCP, radiobiology for EQD2."""
        eff = self.efficacy
        if not isinstance(eff.organ, str) or not eff.organ.strip():
            return []  # reported by the record itself
        shown = show_value(eff.organ)
        if eff.organ not in self.names:
            names = ", ".join(self.names) or "none given"
            return [
                f"[efficacy] organ = {shown}: must be one of the scenario's organs "
                f"([scenario.organ.<name>]: {names})"
            ]
        toxicity = () if self.toxicity is None else self.toxicity.organs
        if eff.organ in {o.name for o in toxicity}:
            return [
                f"[efficacy] organ = {shown}: has an NTCP ([scenario.toxicity.{eff.organ}]); "
                "the response organ is a tumour, not an organ at risk"
            ]
        organ = self.organs[self.names.index(eff.organ)]
        if eff.dose == "eqd2" and not organ.has_radiobiology:
            return [
                f'[efficacy] dose = "eqd2": needs the radiobiology of [scenario.organ.{eff.organ}] '
                f"({', '.join(RADIOBIOLOGY_KEYS)}), or dose = \"absorbed\""
            ]
        return []

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.organs)

    def index(self, names: Sequence[str]) -> np.ndarray:
        """Positions of ``names`` in :attr:`organs`; ValueError naming any that is missing."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ValueError(
                f"the scenario gives no Gy/GBq for organ(s) {', '.join(map(repr, missing))} "
                f"(it has {', '.join(map(repr, self.names))})"
            )
        return np.array([self.names.index(n) for n in names], dtype=int)

    @property
    def independent(self) -> bool:
        r = self.correlation
        return r is None or np.allclose(np.asarray(r), np.eye(len(self.organs)))


def _cholesky(correlation, n: int) -> np.ndarray:
    return np.eye(n) if correlation is None else np.linalg.cholesky(np.asarray(correlation))


# ---------------------------------------------------------------------------------------------
# Virtual patients


class SampledPatients(NamedTuple):
    """Virtual patients' Gy/GBq, [trial, patient, organ]."""

    true_gy_per_gbq: np.ndarray
    measured_gy_per_gbq: np.ndarray


def sample_patients(
    rng: np.random.Generator,
    organs: Sequence[_LognormalOrgan],
    n_trials: int,
    n_patients: int,
    *,
    measurement_cv: float = 0.0,
    correlation=None,
) -> SampledPatients:
    """Draw patients' true and measured Gy/GBq per organ.

    log g_true = log(median) + σ·(L z),  L Lᵀ = correlation (identity when None);
    measured = g_true · exp(τ·e),  τ = √(log(1 + measurement_cv²)),  z, e ~ N(0, I).

    The measurement error is median-unbiased (unbiased on the log scale, as the conjugate model
    of :func:`update_posterior` assumes). Draws are patient-major, each patient's ``z`` and ``e``
    together, so a batch with more patients or another ``measurement_cv`` shares the first
    patients' true values and standardised errors (common random numbers across designs).

    Returns
    -------
    SampledPatients : true_gy_per_gbq, measured_gy_per_gbq, each [trial, patient, organ]
    """
    organs = tuple(organs)
    _raise_if_any(correlation_problems(correlation, len(organs)))
    if not _is_number(measurement_cv) or measurement_cv < 0:
        raise ValueError(f"measurement_cv must be a number >= 0, got {measurement_cv!r}")
    tau = float(log_sd(measurement_cv))
    true, measured = sample_patients_by_organ(rng, organs, n_trials, n_patients, tau, correlation)
    true = true.transpose(2, 1, 0)
    if measured is None:  # exact dosimetry: the measurement is the true value
        return SampledPatients(true, true.copy())
    return SampledPatients(true, measured.transpose(2, 1, 0))


def sample_patients_by_organ(
    rng, organs, n_trials, n_patients, tau, correlation, measured_organs=None
):
    """:func:`sample_patients`' true and measured Gy/GBq, each [organ, patient, trial]
    (C-contiguous: each organ's values one block, as the engine reads them), measured None when
    ``tau`` = 0; ``measured_organs``: the organs (positions in ``organs``, in the order wanted)
    whose measured values to return (all when None; the draws are the same whichever). The same
    draws and arithmetic, to the last bit, without temporaries: without a correlation, one
    patient's draws at a time (the stream is patient-major), each organ's values in its block."""
    n = len(organs)
    mu = np.array([o.log_median for o in organs])
    sd = np.array([o.log_sd for o in organs])
    order = np.arange(n) if measured_organs is None else np.asarray(measured_organs, dtype=int)
    if correlation is None:
        return _sample_independent(rng, mu, sd, n_trials, n_patients, tau, order)
    draws = rng.standard_normal((n_patients, n_trials, 2, n))  # [patient, trial, (z, e), organ]
    z = (draws.transpose(1, 0, 2, 3)[:, :, 0, :] @ _cholesky(correlation, n).T).transpose(1, 0, 2)
    true = np.empty((n, n_patients, n_trials))
    log_true = true.transpose(1, 2, 0)  # [patient, trial, organ]
    np.multiply(sd, z, out=log_true)
    np.add(mu, log_true, out=log_true)
    measured = None
    if tau != 0:
        measured = np.empty_like(true)
        log_measured = measured.transpose(1, 2, 0)
        np.multiply(tau, draws[:, :, 1, :], out=log_measured)
        np.add(log_true, log_measured, out=log_measured)
        np.exp(measured, out=measured)
        if not np.array_equal(order, np.arange(n)):
            measured = measured[order]
    np.exp(true, out=true)
    return true, measured


def _sample_independent(rng, mu, sd, n_trials, n_patients, tau, order):
    """:func:`sample_patients_by_organ` for independent organs: each patient's [trial, (z, e),
    organ] draws into one small buffer (in cache, where the whole chunk's draws were megabytes
    of new memory), then each organ's block of that patient, exponentiated where it lies
    (contiguous, as before: numpy's vectorised exp gives the same bits for any contiguous
    block); measured values only for the organs in ``order``, written in that order."""
    n = mu.size
    true = np.empty((n, n_patients, n_trials))
    measured = None if tau == 0 else np.empty((order.size, n_patients, n_trials))
    slot = {int(j): i for i, j in enumerate(order)}
    draws = np.empty((n_trials, 2, n))
    for k in range(n_patients):
        rng.standard_normal(out=draws)
        for j in range(n):
            log_true = true[j, k]
            np.multiply(sd[j], draws[:, 0, j], out=log_true)
            np.add(mu[j], log_true, out=log_true)
            if measured is not None and j in slot:
                log_measured = measured[slot[j], k]
                np.multiply(tau, draws[:, 1, j], out=log_measured)
                np.add(log_true, log_measured, out=log_measured)
                np.exp(log_measured, out=log_measured)
            np.exp(log_true, out=log_true)
    return true, measured


def patient_dlt_prob(gy_per_gbq, activities, truth: DosimetryTruth):
    """Each patient's DLT probability given their own true Gy/GBq and activities.

    P(DLT | patient) = 1 − (1 − background)·Π_organs (1 − NTCP_organ(EUD_organ)), with EUD the
    organ's EQD2 of the cumulative BED (with radiobiology) or cumulative absorbed dose.
    A virtual patient has a DLT iff u < P(DLT | patient), u their latent tolerance.

    Parameters
    ----------
    gy_per_gbq : array [..., organ], true Gy/GBq in ``truth.organs`` order
    activities : array [..., cycle] (GBq), broadcast against ``gy_per_gbq[..., 0]``
    truth : the scenario (its toxicity model must be "ntcp")

    Returns
    -------
    array [...]
    """
    return _combined(_cause_probs(gy_per_gbq, activities, truth))


def patient_response_prob(gy_per_gbq, activities, truth: DosimetryTruth):
    """Each patient's response probability from their own cumulative tumour dose
    (:class:`Efficacy`): p_E = 1 / (1 + (D50/D)^(4·γ50)) with D the tumour organ's cumulative
    absorbed dose (or EQD2) over ``activities``. A virtual patient responds iff v' < p_E, v' their
    response variable (:meth:`theradose.virtual_patients.VirtualPatients.with_efficacy`).

    Parameters
    ----------
    gy_per_gbq : array [..., organ], true Gy/GBq in ``truth.organs`` order
    activities : array [..., cycle] (GBq) or :class:`ScheduleMoments`, broadcast against
        ``gy_per_gbq[..., 0]``
    truth : the scenario (its ``efficacy`` must be given)

    Returns
    -------
    array [...]
    """
    eff = truth.efficacy
    if eff is None:
        raise ValueError("patient response probabilities need the scenario's [efficacy]")
    j = int(truth.index([eff.organ])[0])
    s1, s2 = _moments(activities)
    g = _nonnegative("Gy/GBq", gy_per_gbq)[..., j]
    return eff.response_prob(truth.organs[j], g, s1, s2)


def dlt_prob_from_causes(causes):
    """P(DLT) = 1 − Π(1 − q) [...] from each cause's probability [..., cause]
    (:func:`dlt_causes`): to the last bit what :func:`patient_dlt_prob` gives."""
    causes = np.asarray(causes)
    return _combined(causes[..., k] for k in range(causes.shape[-1]))


def _combined(cause_probs):
    spare = 1.0
    for q in cause_probs:  # background first, then organs: always in this order
        spare = spare * (1 - q)
    return 1 - spare


def dlt_causes(gy_per_gbq, activities, truth: DosimetryTruth):
    """Each cause's probability of a DLT for each patient, [..., cause]: the background first,
    then each organ of ``truth.toxicity`` (its NTCP), in that order; P(DLT) = 1 − Π(1 − q)
    (:func:`patient_dlt_prob`)."""
    qs = _cause_probs(gy_per_gbq, activities, truth)
    shape = np.broadcast_shapes(*(np.shape(q) for q in qs))
    return np.stack([np.broadcast_to(q, shape) for q in qs], axis=-1)


def _cause_probs(gy_per_gbq, activities, truth: DosimetryTruth) -> list:
    tox = truth.toxicity
    if tox is None or not tox.uses_ntcp:
        raise ValueError('patient DLT probabilities need a toxicity model = "ntcp"')
    g = _nonnegative("Gy/GBq", gy_per_gbq)
    s1, s2 = _moments(activities)
    qs = [np.float64(tox.background_prob)]
    for ntcp, j in zip(tox.organs, truth.index([o.name for o in tox.organs]), strict=True):
        qs.append(ntcp.ntcp(truth.organs[j].eud_from_moments(g[..., j], s1, s2)))
    return qs


def dlt_cause(cause_probs, tolerance):
    """Which cause gives each DLT, [...] (index into the causes of :func:`dlt_causes`).

    The causes act as competing risks with cumulative hazards H_k = −log(1 − q_k), so that
    P(DLT) = 1 − exp(−Σ H_k) = 1 − Π(1 − q_k), and given a DLT the cause is k with probability
    H_k / Σ H (exact when the cause-specific hazards are proportional over the window). A
    patient has a DLT iff u < P(DLT), so u / P(DLT) is uniform given a DLT: it picks the cause,
    keeping the latent tolerances common across designs. Meaningless where there is no DLT.
    """
    q = np.clip(np.asarray(cause_probs, dtype=float), 0.0, 1.0 - 1e-15)
    hazard = -np.log1p(-q)
    total = hazard.sum(axis=-1)
    p_dlt = -np.expm1(-total)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.cumsum(hazard, axis=-1) / total[..., None]
        w = np.asarray(tolerance, dtype=float) / p_dlt
    cause = (share <= w[..., None]).sum(axis=-1)
    return np.minimum(cause, q.shape[-1] - 1)


# ---------------------------------------------------------------------------------------------
# Learning Gy/GBq from the patients' dosimetry


@dataclass(frozen=True)
class DosimetryStats:
    """Sufficient statistics of the measured log Gy/GBq of the patients treated so far.

    Attributes
    ----------
    count, sum_log, sum_sq_log : arrays [trial, organ]: n, Σ log g_measured, Σ (log g_measured)²
    """

    count: np.ndarray
    sum_log: np.ndarray
    sum_sq_log: np.ndarray

    @classmethod
    def empty(cls, n_trials: int, n_organs: int) -> DosimetryStats:
        # organ-major: each organ's [trial] column contiguous (update_posterior's arithmetic
        # broadcasts per-organ constants along it, several times faster than along organs)
        return cls(*(np.zeros((n_organs, n_trials)).T for _ in range(3)))

    @classmethod
    def from_measured(cls, measured_gy_per_gbq, treated=None) -> DosimetryStats:
        """From measured Gy/GBq [trial, patient, organ] of the patients where ``treated``
        [trial, patient] is True (all when None; NaN entries count as not treated)."""
        g = np.asarray(measured_gy_per_gbq, dtype=float)
        use = np.isfinite(g)
        if treated is not None:
            use &= np.asarray(treated, dtype=bool)[..., None]
        if np.any(g[use] <= 0):
            raise ValueError("measured Gy/GBq must be > 0")
        log_g = np.log(np.where(use, g, 1.0))
        return cls(use.sum(axis=1).astype(float), log_g.sum(axis=1), np.square(log_g).sum(axis=1))

    def __add__(self, other: DosimetryStats) -> DosimetryStats:
        return DosimetryStats(
            self.count + other.count,
            self.sum_log + other.sum_log,
            self.sum_sq_log + other.sum_sq_log,
        )


@dataclass(frozen=True)
class GyPerGbqPosterior:
    """Normal–scaled-inverse-χ² posterior of each organ's population of MEASURED log Gy/GBq:
    σ² ~ Inv-χ²(ν, s²), μ | σ² ~ N(mean, σ²/κ). Arrays [trial, organ].

    ``measurement_var`` τ² is the known variance of the measurement error of log Gy/GBq.
    """

    mean: np.ndarray
    kappa: np.ndarray
    nu: np.ndarray
    scale2: np.ndarray
    measurement_var: float = 0.0

    def predictive(self, of: str = "true") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Degrees of freedom, location and scale [trial, organ] of the Student-t predictive of
        a new patient's log Gy/GBq.

        ``of="measured"``: the exact posterior predictive of a new MEASURED value,
        t_ν(mean, s²·(1 + 1/κ)) (Gelman et al., *Bayesian Data Analysis*, 3rd ed., 2013, §3.3).

        ``of="true"``: the new patient's TRUE value = measured − error. The population spread
        of true values is σ² − τ² while the uncertainty of μ, σ²/κ, stays (μ is learnt from
        noisy measurements); plugging the posterior scale s² in for σ² gives
        t_ν(mean, s²/κ + max(s² − τ², 0)). Exact when τ = 0; otherwise within 0.005 of the
        exact tail probability (the mixture over the posterior of σ², by quadrature) for a
        measurement CV up to 20% and tails 0.02–0.3: the plug-in is slightly light-tailed, by
        at most 0.0041 (CV 20%) or 0.0024 (CV 15%) with no patients, less as they accrue
        (tests/test_dosimetry.py). "measured" is the conservative alternative: its tails are
        heavier by τ² (e.g. 0.118 instead of 0.100 at CV 15%).
        """
        if of not in PREDICTIVES:
            raise ValueError(f"of = {of!r}: must be one of {', '.join(map(repr, PREDICTIVES))}")
        if of == "measured":
            var = self.scale2 * (1 + 1 / self.kappa)
        else:
            var = self.scale2 / self.kappa + np.maximum(self.scale2 - self.measurement_var, 0.0)
        return self.nu, self.mean, np.sqrt(var)

    def prob_above(self, log_threshold, of: str = "true"):
        """P(a new patient's log Gy/GBq > log_threshold), broadcast against [trial, organ]."""
        df, loc, scale = self.predictive(of)
        return special.stdtr(df, (loc - log_threshold) / scale)


def update_posterior(dosimetry: Dosimetry, stats: DosimetryStats) -> GyPerGbqPosterior:
    """Conjugate update of each organ's population of measured log Gy/GBq, every trial at once.

    Model (Gelman et al., *Bayesian Data Analysis*, 3rd ed., 2013, §3.3): measured
    y_i = log g_i + ε_i, log g_i ~ N(μ, σ_g²), ε_i ~ N(0, τ²), so y_i ~ N(μ, σ²), σ² = σ_g² + τ²;
    prior σ² ~ Inv-χ²(ν0, s0²), μ | σ² ~ N(μ0, σ²/κ0) with ::

        μ0 = log(gy_per_gbq_median),   s0² = log(1 + gy_per_gbq_cv²) + τ²,
        κ0 = ν0 = prior_strength

    (the design's median and CV describe the TRUE Gy/GBq; measurements add τ²). With n
    measurements, z_i = y_i − μ0, Σz and Σz² from the sufficient statistics ::

        κn = κ0 + n,  νn = ν0 + n,  μn = μ0 + Σz/κn,  νn·sn² = ν0·s0² + Σz² − (Σz)²/κn

    (the usual νn·sn² = ν0·s0² + (n−1)s² + κ0·n·(ȳ − μ0)²/κn, rearranged without dividing by n).

    Parameters
    ----------
    dosimetry : the design's section (organs' priors, measurement_cv)
    stats : [trial, organ] in ``dosimetry.organs`` order

    Returns
    -------
    GyPerGbqPosterior : arrays [trial, organ]
    """
    tau2, mu0, s0_2, k0 = _prior(dosimetry)
    n = np.asarray(stats.count, dtype=float)
    sum_z = stats.sum_log - n * mu0
    sum_z2 = stats.sum_sq_log - 2 * mu0 * stats.sum_log + n * mu0 * mu0
    kappa = k0 + n
    nu = k0 + n
    mean = mu0 + sum_z / kappa
    scale2 = (k0 * s0_2 + np.maximum(sum_z2 - sum_z * sum_z / kappa, 0.0)) / nu
    return GyPerGbqPosterior(mean, kappa, nu, scale2, tau2)


@lru_cache(maxsize=64)
def _prior(dosimetry: Dosimetry):
    """τ² and the organs' μ0, s0², κ0 = ν0 [organ] of :func:`update_posterior` (once per design:
    the engine updates every cohort)."""
    tau2 = dosimetry.measurement_var
    mu0 = np.array([o.log_median for o in dosimetry.organs])
    s0_2 = np.array([o.log_sd**2 for o in dosimetry.organs]) + tau2
    k0 = np.array([float(o.prior_strength) for o in dosimetry.organs])
    for a in (mu0, s0_2, k0):
        a.setflags(write=False)
    return tau2, mu0, s0_2, k0


def _schedules(activity, cycles: int) -> np.ndarray:
    """Per-cycle activities [level, cycle] from [level] (the same each cycle) or [level, cycle]."""
    a = _nonnegative("activity", activity)
    if a.ndim == 1:
        return np.repeat(a[:, None], cycles, axis=1)
    if a.ndim == 2:
        return a
    raise ValueError(f"activity must be [level] or [level, cycle], got shape {a.shape}")


def _log_thresholds(dosimetry: Dosimetry, activity, cycles) -> np.ndarray:
    """log g* [level, organ] of each level's schedule and each organ's limit (read-only; once
    per design and schedule: they do not depend on the data)."""
    a = np.asarray(activity, dtype=float)
    return _log_thresholds_of(dosimetry, a.shape, a.tobytes(), cycles)


@lru_cache(maxsize=64)
def _log_thresholds_of(dosimetry: Dosimetry, shape, activity: bytes, cycles) -> np.ndarray:
    activity = np.frombuffer(activity).reshape(shape)
    schedules = _schedules(activity, dosimetry.cycles if cycles is None else cycles)
    thr = np.stack([o.threshold(schedules) for o in dosimetry.organs], axis=-1)
    with np.errstate(divide="ignore"):
        log_thr = np.log(thr)
    log_thr.setflags(write=False)
    return log_thr


def exceedance_prob(
    posterior: GyPerGbqPosterior, dosimetry: Dosimetry, activity, *, cycles=None, of="true"
) -> np.ndarray:
    """P(a new patient's cumulative absorbed dose or BED passes the organ's limit), for every
    trial, level and organ at once.

    The cumulative quantity at schedule ``a`` passes the limit iff the patient's Gy/GBq passes
    g* (:func:`gy_per_gbq_threshold`, with the protocol's radiobiology for a BED limit), so the
    probability is the Student-t tail P(log g > log g*) of :meth:`GyPerGbqPosterior.predictive`.
    The schedule is the planned one, uncapped: with patient capping this is the probability
    that a new patient would need their later cycles reduced.

    Parameters
    ----------
    posterior : [trial, organ]
    dosimetry : the design's section (limits, cycles)
    activity : [level] activity per cycle (the same every cycle), or [level, cycle]; with
        ``dose_basis = "absorbed_dose"`` the [level] prescribed absorbed doses (Gy), each new
        patient's activity following from their measured Gy/GBq
        (:func:`_personalised_exceedance`)
    cycles : number of cycles for a [level] activity; ``dosimetry.cycles`` when None
        (``cycles=1``: the first cycle alone)
    of : "true" (default) or "measured" Gy/GBq of the new patient

    Returns
    -------
    array [trial, level, organ]
    """
    if dosimetry.personalised:
        cycles = dosimetry.cycles if cycles is None else cycles
        return _personalised_exceedance(posterior, dosimetry, activity, cycles, of)
    log_thr = _log_thresholds(dosimetry, activity, cycles)
    df, loc, scale = posterior.predictive(of)
    return special.stdtr(df[:, None, :], (loc[:, None, :] - log_thr) / scale[:, None, :])


def admissible_levels(
    posterior: GyPerGbqPosterior, dosimetry: Dosimetry, activity, *, cycles=None, of="true"
) -> np.ndarray:
    """Levels whose exceedance probability is at most every organ's ``max_exceed_prob``,
    bool [trial, level] — the dosimetry constraint mask.

    Equal to ``(exceedance_prob(...) <= max_exceed_prob).all(-1)`` but compares each level's
    log threshold with the predictive quantile loc + t_ν(1 − p)·scale, the t quantile computed
    once per distinct ν (ν = ν0 + n takes a handful of values): many times faster than
    evaluating every tail (benchmarks/). With prescribed absorbed doses (``dosimetry``'s
    ``dose_basis = "absorbed_dose"``) it compares :func:`exceedance_prob` itself.
    """
    if dosimetry.personalised:
        limits = np.array([o.max_exceed_prob for o in dosimetry.organs])
        exceed = exceedance_prob(posterior, dosimetry, activity, cycles=cycles, of=of)
        return (exceed <= limits).all(axis=-1)
    log_thr = _log_thresholds(dosimetry, activity, cycles)  # [level, organ]
    df, loc, scale = posterior.predictive(of)
    allowed = np.ones((df.shape[0], log_thr.shape[0]), dtype=bool)
    for j, organ in enumerate(dosimetry.organs):
        quantile = _t_quantiles(df[:, j], 1 - organ.max_exceed_prob)
        bound = loc[:, j] + quantile * scale[:, j]  # the predictive's (1 − p) quantile
        allowed &= log_thr[None, :, j] >= bound[:, None]
    return allowed


def _t_quantiles(df: np.ndarray, prob: float) -> np.ndarray:
    """Student-t quantiles t_ν(prob) [...] for degrees of freedom ``df`` [...], one evaluation
    per distinct value (a lookup table when they are whole numbers, as ν0 + n usually is)."""
    if prob <= 0:  # max_exceed_prob = 1 (scipy's stdtrit gives +inf at 0, not −inf)
        return np.full(df.shape, -np.inf)
    low, high = df.min(initial=np.inf), df.max(initial=-np.inf)
    if np.isfinite(low) and high - low < 4096 and np.all(df == np.floor(df)):
        return _t_table(float(low), float(high), prob)[(df - low).astype(np.intp)]
    unique, inverse = np.unique(df, return_inverse=True)
    return special.stdtrit(unique, prob)[inverse.reshape(df.shape)]


@lru_cache(maxsize=256)
def _t_table(low: float, high: float, prob: float) -> np.ndarray:
    """t_ν(prob) for ν = low, low + 1, …, high (read-only; the engine asks every cohort)."""
    table = special.stdtrit(np.arange(low, high + 1), prob)
    table.setflags(write=False)
    return table


# ---------------------------------------------------------------------------------------------
# Personalised activity (levels prescribed as absorbed doses)


def prescribed_activity(dosimetry: Dosimetry, level_value, measured_gy_per_gbq):
    """The activity per cycle (GBq) each patient is given, [...].

    With ``dose_basis = "activity"`` it is the level's value. With ``"absorbed_dose"`` the level
    is a cumulative absorbed dose D (Gy) prescribed to the organ P = ``prescribe_to``, and a
    patient with measured Gy/GBq ĝ_P (pre-therapy or first-cycle dosimetry) is given, every
    cycle ::

        a = min(D / (C · ĝ_P), A_max)

    (C cycles, A_max = ``max_activity_gbq``): the activity that would deliver exactly D if the
    measurement were exact, never more than the maximum. Individualised activity from a tracer
    study: 131I-tositumomab (Kaminski et al. 2000, *Blood* 96:1259), 131I-anti-CD20 escalated on
    the critical organ's absorbed dose (Press et al. 2000, *Blood* 96:2934).

    Parameters
    ----------
    level_value : array [...], the level's activity (GBq) or prescribed absorbed dose (Gy)
    measured_gy_per_gbq : array [..., design organ], or None with ``dose_basis = "activity"``
    """
    value = np.asarray(level_value, dtype=float)
    if not dosimetry.personalised:
        return value
    g = _nonnegative("measured Gy/GBq", measured_gy_per_gbq)[..., dosimetry.prescribed_index]
    return _personal_activity(dosimetry, value, g)


def _personal_activity(dosimetry: Dosimetry, prescribed_gy, measured_gy_per_gbq):
    with np.errstate(divide="ignore", invalid="ignore"):
        wanted = prescribed_gy / (dosimetry.cycles * measured_gy_per_gbq)
    wanted = np.where(prescribed_gy > 0, wanted, 0.0)  # 0 Gy (no patient): no activity
    return np.minimum(wanted, dosimetry.max_activity_gbq)


def _personalised_exceedance(
    posterior: GyPerGbqPosterior, dosimetry: Dosimetry, prescribed, cycles: int, of: str
) -> np.ndarray:
    """:func:`exceedance_prob` when the levels are prescribed absorbed doses, [trial, level,
    organ].

    A new patient's activity depends on their measured log Gy/GBq ŷ of the prescribed organ P,
    so the probability is an average over ŷ's Student-t predictive (``PERSONAL_NODES``
    equally weighted midpoint quantiles). Given ŷ, organ j ≠ P passes its limit with the
    Student-t tail of :meth:`GyPerGbqPosterior.predictive` at the schedule's threshold (organs
    independent, as in the fixed-activity rule); for P itself the true log Gy/GBq given ŷ is
    taken as normal, mean m + r(ŷ − m) and variance r·τ², r = s_true² / s_measured² (the
    predictive scales; exact for a normal population with known spread, an approximation
    otherwise). ``of="measured"`` takes the true value to be the measured one.
    """
    prescribed = np.asarray(prescribed, dtype=float)
    if prescribed.ndim != 1:
        raise ValueError(
            f"prescribed absorbed doses must be [level], got shape {prescribed.shape}"
        )
    p = dosimetry.prescribed_index
    df_m, loc_m, scale_m = posterior.predictive("measured")
    df, loc, scale = posterior.predictive(of)
    u = (np.arange(PERSONAL_NODES) + 0.5) / PERSONAL_NODES
    quantiles = np.stack([_t_quantiles(df_m[:, p], q) for q in u], axis=-1)  # [trial, node]
    y = loc_m[:, p, None] + scale_m[:, p, None] * quantiles
    a = _personal_activity(dosimetry, prescribed[None, :, None], np.exp(y)[:, None, :])
    s1, s2 = cycles * a, cycles * a * a  # [trial, level, node]
    out = np.empty((df.shape[0], prescribed.size, len(dosimetry.organs)))
    for j, organ in enumerate(dosimetry.organs):
        with np.errstate(divide="ignore"):
            log_thr = np.log(_threshold(organ.limit, s1, s2, organ.limit_bed_factor))
        if j != p:
            z = (loc[:, j, None, None] - log_thr) / scale[:, j, None, None]
            tail = special.stdtr(df[:, j, None, None], z)
        elif of == "measured":
            tail = _prob_exceed(y[:, None, :], np.zeros(y.shape)[:, None, :], log_thr)
        else:
            r = np.square(scale[:, p] / scale_m[:, p])[:, None]  # [trial, 1]
            mean = loc[:, p, None] + r * (y - loc_m[:, p, None])
            sd = np.sqrt(r * posterior.measurement_var) * np.ones(y.shape)
            tail = _prob_exceed(mean[:, None, :], sd[:, None, :], log_thr)
        out[..., j] = tail.mean(axis=-1)
    return out


# ---------------------------------------------------------------------------------------------
# Patient capping


class CappedActivities(NamedTuple):
    """Per-patient activities after capping: ``activities`` [..., cycle] (GBq) and ``capped``
    [...] (True where any later cycle is below the planned activity)."""

    activities: np.ndarray
    capped: np.ndarray


def cap_activities(
    planned_activity, measured_gy_per_gbq, dosimetry: Dosimetry, *, rule: str | None = None
) -> CappedActivities:
    """Cap each patient's later cycles from their dosimetry after cycle 1.

    Cycle 1 is given at the planned activity ``A``; the patient's Gy/GBq ĝ is measured; cycles
    2..C are then chosen so that the ESTIMATED cumulative absorbed dose or BED (ĝ in place of
    the true Gy/GBq, the protocol's radiobiology) stays within every organ's limit L:

    - ``"reduce"`` (Menda et al. 2018, *J Nucl Med* 59:1692): every later cycle gets the same
      activity x = min(A, x*) with x* the largest activity that fits,
      est(A) + (C−1)·(ĝ·x + k·ĝ²·x²) = L, i.e. x* = 2R / (b + √(b² + 4aR)) with R = L − est(A),
      a = (C−1)·k·ĝ², b = (C−1)·ĝ; when cycle 1 has used the whole budget (R ≤ 0) the later
      cycles are not given (activity 0) — any amount, however small, would pass the limit.
    - ``"cycles"`` (ILUMINET, Sundlöv et al. 2022, *Eur J Nucl Med Mol Imaging*): full-activity
      cycles while the estimated cumulative quantity stays within the limit, then no more: the
      patient gets n = min(C, max(1, ⌊L / est(A)⌋)) cycles.

    Either way the later activities never exceed the planned one and are never negative, and
    the estimated cumulative quantity is within the limit unless cycle 1 alone passes it.

    Parameters
    ----------
    planned_activity : array [...] (GBq per cycle), broadcast against ``measured[..., 0]``
    measured_gy_per_gbq : array [..., organ] in ``dosimetry.organs`` order
    dosimetry : organs (limits, radiobiology), cycles, cap_rule
    rule : overrides ``dosimetry.cap_rule``

    Returns
    -------
    CappedActivities : activities [..., cycle], capped [...]
    """
    rule, planned, later = _later_cycles(planned_activity, measured_gy_per_gbq, dosimetry, rule)
    c = dosimetry.cycles
    if c == 1:
        return CappedActivities(planned[..., None].copy(), np.zeros(planned.shape, dtype=bool))
    if rule == "reduce":
        activities = np.concatenate(
            [planned[..., None], np.repeat(later[..., None], c - 1, axis=-1)], axis=-1
        )
    else:
        given = np.arange(1, c + 1) <= later[..., None]
        activities = np.where(given, planned[..., None], 0.0)
    capped = (activities[..., 1:] < planned[..., None]).any(axis=-1)
    return CappedActivities(activities, capped)


def capped_moments(
    planned_activity, measured_gy_per_gbq, dosimetry: Dosimetry, *, rule: str | None = None
) -> tuple[ScheduleMoments, np.ndarray]:
    """:func:`cap_activities` as the schedule's moments, without the [..., cycle] array (the
    engine's form): S1 = A + (C−1)·x and S2 = A² + (C−1)·x² ("reduce"), n·A and n·A² ("cycles").

    Returns
    -------
    (ScheduleMoments [...], capped [...])
    """
    rule, planned, g = _capping_inputs(planned_activity, measured_gy_per_gbq, dosimetry, rule)
    return _capped_moments(planned, [g[..., j] for j in range(g.shape[-1])], dosimetry, rule)


def _capped_moments(planned, organ_g, dosimetry: Dosimetry, rule: str):
    """:func:`capped_moments` of checked inputs: ``planned`` [...] and each design organ's
    measured Gy/GBq [...] (``organ_g``, in ``dosimetry.organs`` order). The engine calls it
    directly: its activities and Gy/GBq are valid by construction."""
    later = _later_cycles_of(planned, organ_g, dosimetry, rule)
    c = dosimetry.cycles
    if c == 1:
        return ScheduleMoments(planned.copy(), planned * planned), np.zeros(planned.shape, bool)
    if rule == "reduce":
        capped = later < planned
        total = np.multiply(c - 1, later)
        np.add(planned, total, out=total)
        np.square(later, out=later)
        np.multiply(c - 1, later, out=later)
        total_sq = np.square(planned)
        np.add(total_sq, later, out=total_sq)
        return ScheduleMoments(total, total_sq), capped
    capped = (later < c) & (planned > 0)
    total_sq = np.square(planned)
    np.multiply(later, total_sq, out=total_sq)
    np.multiply(later, planned, out=later)
    return ScheduleMoments(later, total_sq), capped


def _capping_inputs(planned_activity, measured_gy_per_gbq, dosimetry: Dosimetry, rule):
    """The capping rule, the planned activity [...] and measured Gy/GBq [..., organ], checked."""
    rule = dosimetry.cap_rule if rule is None else rule
    if rule not in CAP_RULES:
        raise ValueError(f"rule = {rule!r}: must be one of {', '.join(map(repr, CAP_RULES))}")
    g = _nonnegative("measured Gy/GBq", measured_gy_per_gbq)
    planned = _nonnegative("planned activity", planned_activity)
    if g.shape[-1] != len(dosimetry.organs):
        raise ValueError(
            f"measured Gy/GBq has {g.shape[-1]} organ(s), the design {len(dosimetry.organs)}"
        )
    planned = np.broadcast_to(planned, np.broadcast_shapes(planned.shape, g.shape[:-1]))
    return rule, planned, g


def _later_cycles(planned_activity, measured_gy_per_gbq, dosimetry: Dosimetry, rule):
    """The capping rule, the planned activity [...] and what the rule gives after cycle 1:
    the activity of every later cycle ("reduce") or the number of cycles given ("cycles")."""
    rule, planned, g = _capping_inputs(planned_activity, measured_gy_per_gbq, dosimetry, rule)
    organ_g = [g[..., j] for j in range(g.shape[-1])]
    return rule, planned, _later_cycles_of(planned, organ_g, dosimetry, rule)


def _later_cycles_of(planned, organ_g, dosimetry: Dosimetry, rule: str):
    """What ``rule`` gives after cycle 1 (:func:`_later_cycles`), [...] (None for one cycle),
    from checked inputs, one organ at a time ([...] arrays, not [..., organ] ones with a short
    last axis) and in place: the same operations as the formulas, to the last bit."""
    c = dosimetry.cycles
    if c == 1:
        return None
    later = None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for g_j, organ in zip(organ_g, dosimetry.organs, strict=True):
            limit, k = organ.limit, organ.limit_bed_factor
            first = np.multiply(g_j, planned)  # the estimate after cycle 1: g·A + k·g²·A²
            if k:
                first += k * g_j * g_j * (planned * planned)
            if rule == "reduce":
                budget = np.subtract(limit, first, out=first)
                lin = np.multiply(c - 1, g_j)
                if k:
                    # x* = 2R / (b + √(b² + 4aR)), a = (C−1)·k·ĝ², b = (C−1)·ĝ
                    quad = (c - 1) * k * g_j * g_j
                    fits = 2 * budget / (lin + np.sqrt(lin * lin + 4 * quad * budget))
                else:
                    fits = np.divide(budget, lin)
                np.logical_not(lin > 0, out=(no_lin := np.empty(lin.shape, bool)))
                np.copyto(fits, np.inf, where=no_lin)
                np.copyto(fits, 0.0, where=budget <= 0)
            else:
                # A relative tolerance so that a schedule landing exactly on the limit is allowed.
                n_fit = np.divide(limit, first)
                n_fit *= 1 + 1e-12
                np.floor(n_fit, out=n_fit)
                np.copyto(n_fit, np.inf, where=~(first > 0))
                fits = np.maximum(n_fit, 1.0, out=n_fit)
            if later is None:
                start = planned if rule == "reduce" else float(c)
                later = np.minimum(start, fits, out=fits)
            else:
                np.minimum(later, fits, out=later)
    if later is None:  # no organ to cap on
        later = planned.copy() if rule == "reduce" else np.full(planned.shape, float(c))
    return later


# ---------------------------------------------------------------------------------------------
# True population quantities of a scenario


@dataclass(frozen=True)
class LevelTruths:
    """Each level's true population quantities under a dosimetry-driven scenario.

    Attributes
    ----------
    dlt_prob : [level] population P(DLT) = E over patients of P(DLT | patient); None when the
        scenario's toxicity model is "dlt_prob"
    exceed_prob : [level, organ] P(a patient's TRUE cumulative absorbed dose or BED > limit),
        organs in ``Dosimetry.organs`` order
    dlt_prob_se, exceed_prob_se : their numerical standard errors: 0 for quadrature (accurate
        to < 1e-9) and for closed forms; for randomised quasi-Monte Carlo the spread of the
        replicate means (a guide: see :func:`level_truths`)
    capped : whether patient capping was applied
    method : "quadrature" or "qmc"
    eff_prob : [level] population P(response) = E over patients of p_E (:class:`Efficacy`);
        None without the scenario's efficacy
    both_prob : [level] population P(DLT and response) = E over patients of
        C_ρ(P(DLT | patient), p_E) (:func:`theradose.scenario.joint_prob`); None without efficacy
        or without DLT probabilities
    eff_prob_se, both_prob_se : their numerical standard errors, as ``dlt_prob_se``
    """

    dlt_prob: np.ndarray | None
    exceed_prob: np.ndarray
    dlt_prob_se: np.ndarray | None
    exceed_prob_se: np.ndarray
    capped: bool
    method: str
    eff_prob: np.ndarray | None = None
    both_prob: np.ndarray | None = None
    eff_prob_se: np.ndarray | None = None
    both_prob_se: np.ndarray | None = None


@cache
def _normal_rule(step_sd: float, half_width_sd: float, n_per_segment: int):
    """Nodes z and weights (summing to 1) for E f(Z), Z ~ N(0, 1): composite Gauss–Legendre on
    segments ``step_sd`` wide over ±``half_width_sd``. Unlike Gauss–Hermite (whose nodes are
    ~0.35 apart at the centre for 64 nodes), it resolves the steep NTCP sigmoids of log Gy/GBq
    (LKB with m = 0.1 rises over ~0.1 on the log scale)."""
    edges = np.arange(-half_width_sd, half_width_sd + step_sd / 2, step_sd)
    x, w = np.polynomial.legendre.leggauss(n_per_segment)
    lo, hi = edges[:-1, None], edges[1:, None]
    z = (lo + (hi - lo) * (x + 1) / 2).ravel()
    weight = ((hi - lo) / 2 * w).ravel() * np.exp(-0.5 * z * z)
    weight /= weight.sum()
    z.setflags(write=False)
    weight.setflags(write=False)
    return z, weight


def _inner_rule():
    return _normal_rule(INNER_STEP_SD, INNER_SD, INNER_NODES)


def _true_limit_factor(model: OrganModel, truth: OrganTruth) -> float:
    """k of the TRUE limited quantity: a BED limit is judged with the scenario's radiobiology,
    or the protocol's when the scenario gives none; an absorbed-dose limit needs none."""
    if not model.limit_is_bed:
        return 0.0
    return truth.bed_factor if truth.has_radiobiology else model.bed_factor


def true_cumulative(model: OrganModel, organ: OrganTruth, activities, gy_per_gbq):
    """The TRUE value [...] of the quantity ``model``'s limit is on — cumulative BED for a BED
    limit, with the scenario's radiobiology (the protocol's where the scenario gives none), else
    cumulative absorbed dose — for activities [..., cycle] and true Gy/GBq [...]."""
    s1, s2 = _moments(activities)
    g = _nonnegative("Gy/GBq", gy_per_gbq)
    return _cumulative(g, s1, s2, _true_limit_factor(model, organ))


def passes_limit(model: OrganModel, organ: OrganTruth, activities, gy_per_gbq):
    """Whether a patient's TRUE cumulative quantity passes ``model``'s limit, bool [...]; a
    relative tolerance of 1e-9 keeps a patient capped exactly onto the limit (no measurement
    error) from passing it by rounding, as :func:`level_truths` does."""
    cumulative = true_cumulative(model, organ, activities, gy_per_gbq)
    return cumulative > model.limit * (1 + EXACT_LIMIT_RTOL)


def _prob_exceed(mean, sd, log_threshold):
    """P(N(mean, sd²) > log_threshold); where sd = 0 the indicator, with a relative tolerance
    of 1e-9 so that a patient capped exactly onto the limit does not pass it by rounding."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (mean - log_threshold) / sd
    return np.where(sd > 0, special.ndtr(z), mean > log_threshold + EXACT_LIMIT_RTOL)


def level_truths(
    truth: DosimetryTruth,
    dosimetry: Dosimetry,
    activity,
    *,
    patient_cap: bool | None = None,
    method: str = "auto",
    qmc_points: int = 2**15,
    qmc_replicates: int = 16,
    seed: int = 0,
    tox_eff_correlation: float = 0.0,
    dlt_prob=None,
) -> LevelTruths:
    """True population DLT and exceedance probabilities of each level, and with the scenario's
    efficacy (``truth.efficacy``) its response and DLT-and-response probabilities.

    P(DLT at level d) = E over patients [1 − (1 − background)·Π_organs (1 − NTCP(EUD_organ))],
    P(exceed at level d) = P(the patient's TRUE cumulative absorbed dose or BED > limit), where a
    patient's schedule is the level's activity for ``dosimetry.cycles`` cycles, capped from their
    measured Gy/GBq when ``patient_cap`` (default ``dosimetry.patient_cap``) is on. The true
    cumulative BED uses the scenario's radiobiology (the protocol's where the scenario has none);
    the capping uses the protocol's. Without capping these are the uncapped truths; capped
    patients receive less, so the capped truths are lower — which defines the true MTD is the
    caller's choice.

    With ``dose_basis = "absorbed_dose"`` ``activity`` holds the levels' prescribed absorbed
    doses (Gy) and each patient's schedule is ``cycles`` × :func:`prescribed_activity` of
    their measured Gy/GBq of the prescribed organ (``patient_cap`` is ignored): computed as
    with capping, the outer integral over that organ's measured value (split where the activity
    reaches ``max_activity_gbq``), or by quasi-Monte Carlo when organs are correlated.

    With efficacy, P(response at level d) = E over patients [p_E(D_tumour)] on the same
    schedules, and P(DLT and response) = E over patients [C_ρ(P(DLT | patient), p_E)], C_ρ the
    Gaussian copula of ρ = ``tox_eff_correlation`` (the patients' DLT and response variables are
    joined by it) and P(DLT | patient) from NTCP, or ``dlt_prob`` [level] when the scenario gives
    the levels' DLT probabilities. With ρ = 0 and independent organs the tumour's dose is
    independent of the organs at risk given the schedule, so the expectation of the product is the
    product of the expectations, node by node of the outer integral.

    Methods
    -------
    Uncapped exceedance is closed form, Φ((log g_median − log g*)/σ), whatever the method.

    "quadrature" (chosen by "auto" whenever it applies: independent organs, and a single design
    organ when capping): the DLT probability is an expectation over each organ's true log
    Gy/GBq by composite Gauss–Legendre (segments 0.25 sd wide over ±8 sd, 8 nodes each; with
    independent organs the expectation of the product over organs is the product of the
    expectations). With capping the schedule depends on the measured value ĝ: the outer
    integral over log ĝ ~ N(μ, σ² + τ²) is Gauss–Legendre on segments at most 1 sd wide that
    also break at every kink of the capping rule (where capping starts, where cycles stop), so
    that the integrand is smooth on each segment; given ĝ the true value is normal,
    log g | log ĝ ~ N(μ + ρ(log ĝ − μ), ρτ²), ρ = σ²/(σ² + τ²), integrated as above, and the
    exceedance given ĝ is closed form. Agreement with scipy.integrate.quad: < 1e-10 uncapped,
    < 1e-9 capped (measured 5e-16 and 1e-10; tests/test_dosimetry.py).

    "qmc" (otherwise: correlated organs, capping by several organs, or efficacy with ρ ≠ 0 and
    DLTs from NTCP — P(DLT and response) then needs every organ jointly): randomised
    quasi-Monte Carlo, ``qmc_replicates`` independently scrambled Sobol' sets of
    ``qmc_points`` points. With capping the points draw the measured log Gy/GBq of the design's
    organs from their joint normal, then the true values from their conditional normal given
    those (a linear-Gaussian model), and the exceedance given the measured values is closed
    form (conditional Monte Carlo: a smooth integrand, not an indicator). Deterministic for a
    given ``seed``. Measured error at the defaults (16 × 2^15 points) against quadrature where
    both apply: < 1e-5. The reported standard error, the spread of the replicate means, is a
    guide only: replicate errors are heavy-tailed (the outermost stratum of the normal holds a
    single point), so it can understate the error several-fold.

    Parameters
    ----------
    truth : the scenario's organs (every design organ must be among them) and toxicity
    dosimetry : the design's organs (limits, protocol radiobiology), cycles, measurement error
        and capping rule
    activity : [level] activity per cycle (GBq)
    tox_eff_correlation : ρ of the Gaussian copula between a patient's DLT and response
    dlt_prob : [level] the scenario's DLT probabilities when its toxicity is not NTCP (for
        P(DLT and response)); ignored with NTCP

    Returns
    -------
    LevelTruths
    """
    if dosimetry.personalised:
        capped = True  # as with capping, each patient's schedule follows their measured Gy/GBq
    elif patient_cap is None:
        capped = dosimetry.capping
    else:
        capped = bool(patient_cap) and dosimetry.cycles > 1
    activity = _nonnegative("activity", activity)
    if activity.ndim != 1:
        raise ValueError(f"activity must be [level], got shape {activity.shape}")
    truth.index(dosimetry.names)  # every design organ needs a truth
    single = len(dosimetry.organs) == 1 or dosimetry.personalised
    ntcp = truth.toxicity is not None and truth.toxicity.uses_ntcp
    rho = float(tox_eff_correlation)
    efficacy = None
    if truth.efficacy is not None:
        level_dlt = None if ntcp or dlt_prob is None else np.asarray(dlt_prob, dtype=float)
        if level_dlt is not None and level_dlt.shape != activity.shape:
            raise ValueError(f"dlt_prob must be [level] like activity, got {level_dlt.shape}")
        efficacy = (rho, level_dlt)
    joint = efficacy is not None and rho != 0.0 and ntcp
    quadrature_ok = truth.independent and (not capped or single) and not joint
    if method == "auto":
        method = "quadrature" if quadrature_ok else "qmc"
    if method == "quadrature":
        if not quadrature_ok:
            raise ValueError(
                "quadrature needs independent organs, with capping a single design organ, and "
                'with efficacy from NTCP patients tox_eff_correlation = 0; use method="qmc"'
            )
        return _truths_quadrature(truth, dosimetry, activity, capped, efficacy)
    if method == "qmc":
        return _truths_qmc(
            truth, dosimetry, activity, capped, qmc_points, qmc_replicates, seed, efficacy
        )
    raise ValueError(f'method = {method!r}: must be "auto", "quadrature" or "qmc"')


def _uncapped_exceed(truth: DosimetryTruth, dosimetry: Dosimetry, activity) -> np.ndarray:
    """Closed-form P(true cumulative quantity > limit) [level, organ] at the planned schedule."""
    schedules = np.repeat(activity[:, None], dosimetry.cycles, axis=1)
    out = np.empty((activity.size, len(dosimetry.organs)))
    for i, (model, j) in enumerate(
        zip(dosimetry.organs, truth.index(dosimetry.names), strict=True)
    ):
        organ = truth.organs[j]
        k = _true_limit_factor(model, organ)
        with np.errstate(divide="ignore"):
            log_thr = np.log(gy_per_gbq_threshold(model.limit, schedules, k))
        out[:, i] = _prob_exceed(organ.log_median, organ.log_sd, log_thr)
    return out


def _outer_nodes(truth: DosimetryTruth, dosimetry: Dosimetry, activity: np.ndarray):
    """Outer nodes over w = log ĝ of the single design organ, per level: weights [level, node],
    the capped schedules [level, node, cycle] and the conditional mean and sd [level, node] of
    the organ's true log Gy/GBq given w."""
    model = dosimetry.organs[0]
    organ = truth.organs[int(truth.index([model.name])[0])]
    mu, sigma2, tau2 = organ.log_median, organ.log_sd**2, dosimetry.measurement_var
    sd_w = math.sqrt(sigma2 + tau2)
    c = dosimetry.cycles
    s1_full = np.arange(1, c + 1)[None, :] * activity[:, None]  # [level, n] of n full cycles
    s2_full = s1_full * activity[:, None]
    kinks = []
    for k in {model.limit_bed_factor, _true_limit_factor(model, organ)}:
        with np.errstate(divide="ignore"):
            kinks.append(np.log(_threshold(model.limit, s1_full, s2_full, k)))
    w, weight = _outer_rule(mu, sd_w, kinks, activity.size)
    schedules = cap_activities(activity[:, None], np.exp(w)[..., None], dosimetry).activities
    rho = sigma2 / (sigma2 + tau2)
    return weight, schedules, mu + rho * (w - mu), np.full(w.shape, math.sqrt(rho * tau2))


def _outer_rule(mu: float, sd_w: float, kinks: list, n_levels: int):
    """Nodes w and weights [level, node] for E f(w), w ~ N(mu, sd_w²): Gauss–Legendre on
    segments at most ``OUTER_STEP_SD`` sd wide over ±``OUTER_SD`` sd, also split at the
    ``kinks`` ([level, k] arrays of w)."""
    grid = mu + sd_w * np.arange(-OUTER_SD, OUTER_SD + OUTER_STEP_SD / 2, OUTER_STEP_SD)
    edges = np.concatenate([np.broadcast_to(grid, (n_levels, grid.size)), *kinks], axis=1)
    edges = np.sort(np.clip(edges, grid[0], grid[-1]), axis=1)  # [level, edge]
    x, wl = np.polynomial.legendre.leggauss(OUTER_NODES)
    lo, hi = edges[:, :-1, None], edges[:, 1:, None]  # [level, segment, 1]
    w = (lo + (hi - lo) * (x + 1) / 2).reshape(n_levels, -1)
    weight = ((hi - lo) / 2 * wl).reshape(n_levels, -1)
    weight = weight * np.exp(-0.5 * ((w - mu) / sd_w) ** 2) / (sd_w * math.sqrt(2 * math.pi))
    return w, weight


def _personal_outer_nodes(truth: DosimetryTruth, dosimetry: Dosimetry, prescribed: np.ndarray):
    """:func:`_outer_nodes` for levels prescribed as absorbed doses: w = log ĝ_P of the
    prescribed organ, each patient's schedule ``cycles`` × :func:`prescribed_activity`, the
    segments split where the activity reaches ``max_activity_gbq``."""
    model = dosimetry.organs[dosimetry.prescribed_index]
    organ = truth.organs[int(truth.index([model.name])[0])]
    mu, sigma2, tau2 = organ.log_median, organ.log_sd**2, dosimetry.measurement_var
    sd_w = math.sqrt(sigma2 + tau2)
    with np.errstate(divide="ignore"):
        kink = np.log(prescribed / (dosimetry.cycles * dosimetry.max_activity_gbq))
    w, weight = _outer_rule(mu, sd_w, [kink[:, None]], prescribed.size)
    a = _personal_activity(dosimetry, prescribed[:, None], np.exp(w))  # [level, node]
    schedules = np.repeat(a[..., None], dosimetry.cycles, axis=-1)
    rho = sigma2 / (sigma2 + tau2)
    return weight, schedules, mu + rho * (w - mu), np.full(w.shape, math.sqrt(rho * tau2))


def _truths_quadrature(truth, dosimetry, activity, capped, efficacy=None) -> LevelTruths:
    n_levels = activity.size
    capped_organ = -1
    if capped:
        # the schedule follows the measured Gy/GBq of one design organ: capping's single organ,
        # or the organ a personalised design prescribes to
        nodes = _personal_outer_nodes if dosimetry.personalised else _outer_nodes
        weight, schedules, cond_mean, cond_sd = nodes(truth, dosimetry, activity)
        measured = dosimetry.prescribed_index if dosimetry.personalised else 0
        capped_organ = int(truth.index([dosimetry.organs[measured].name])[0])
    else:
        weight = np.ones((n_levels, 1))
        schedules = np.repeat(activity[:, None, None], dosimetry.cycles, axis=2)
    s1, s2 = schedules.sum(axis=-1), np.square(schedules).sum(axis=-1)  # [level, node]

    def conditional(j: int):
        """Mean and sd [level, node] of organ j's true log Gy/GBq given the outer node."""
        if j == capped_organ:
            return cond_mean, cond_sd
        organ = truth.organs[j]
        return np.full(s1.shape, organ.log_median), np.full(s1.shape, organ.log_sd)

    dlt = spare = None
    tox = truth.toxicity
    if tox is not None and tox.uses_ntcp:
        z, wz = _inner_rule()
        spare = np.full(s1.shape, 1.0 - tox.background_prob)
        for ntcp, j in zip(tox.organs, truth.index([o.name for o in tox.organs]), strict=True):
            mean, sd = conditional(int(j))
            g = np.exp(mean[..., None] + sd[..., None] * z)  # [level, node, inner]
            eud = truth.organs[j].eud_from_moments(g, s1[..., None], s2[..., None])
            spare = spare * ((1 - ntcp.ntcp(eud)) @ wz)
        dlt = ((1 - spare) * weight).sum(axis=1)

    eff = both = None
    if efficacy is not None:
        from theradose.scenario import joint_prob

        rho, level_dlt = efficacy
        z, wz = _inner_rule()
        j = int(truth.index([truth.efficacy.organ])[0])
        mean, sd = conditional(j)
        g = np.exp(mean[..., None] + sd[..., None] * z)  # [level, node, inner]
        p_e = truth.efficacy.response_prob(truth.organs[j], g, s1[..., None], s2[..., None])
        at_node = p_e @ wz  # [level, node]: E[p_E | outer node]
        eff = (at_node * weight).sum(axis=1)
        if spare is not None:
            # ρ = 0 (quadrature's condition): given the node, the tumour's Gy/GBq is independent
            # of the organs at risk', so E[p_T·p_E | node] = E[p_T | node]·E[p_E | node]
            both = ((1 - spare) * at_node * weight).sum(axis=1)
        elif level_dlt is not None:
            p_t = level_dlt[:, None, None]
            both = ((joint_prob(p_t, p_e, rho) @ wz) * weight).sum(axis=1)

    if capped:
        exceed = np.empty((n_levels, len(dosimetry.organs)))
        for i, (model, j) in enumerate(
            zip(dosimetry.organs, truth.index(dosimetry.names), strict=True)
        ):
            mean, sd = conditional(int(j))
            k = _true_limit_factor(model, truth.organs[j])
            with np.errstate(divide="ignore"):
                log_thr = np.log(_threshold(model.limit, s1, s2, k))
            exceed[:, i] = (_prob_exceed(mean, sd, log_thr) * weight).sum(axis=1)
    else:
        exceed = _uncapped_exceed(truth, dosimetry, activity)
    return LevelTruths(
        dlt_prob=dlt,
        exceed_prob=exceed,
        dlt_prob_se=None if dlt is None else np.zeros(n_levels),
        exceed_prob_se=np.zeros(exceed.shape),
        capped=capped and not dosimetry.personalised,
        method="quadrature",
        eff_prob=eff,
        both_prob=both,
        eff_prob_se=None if eff is None else np.zeros(n_levels),
        both_prob_se=None if both is None else np.zeros(n_levels),
    )


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """A square root S (S Sᵀ = cov) of a positive semi-definite matrix, zero directions kept."""
    values, vectors = np.linalg.eigh(cov)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def _truths_qmc(
    truth, dosimetry, activity, capped, points, replicates, seed, efficacy=None
) -> LevelTruths:
    if points < 2 or points & (points - 1):
        raise ValueError(f"qmc_points must be a power of 2, got {points}")
    if replicates < 2:
        raise ValueError(f"qmc_replicates must be at least 2, got {replicates}")
    n_truth, n_design = len(truth.organs), len(dosimetry.organs)
    design = truth.index(dosimetry.names)
    mu = np.array([o.log_median for o in truth.organs])
    sd = np.array([o.log_sd for o in truth.organs])
    corr = np.eye(n_truth) if truth.correlation is None else np.asarray(truth.correlation)
    cov = corr * np.outer(sd, sd)
    tox = truth.toxicity
    with_dlt = tox is not None and tox.uses_ntcp
    if capped:
        # Measured log ĝ_D ~ N(μ_D, Σ_DD + τ²I); true log g | log ĝ_D ~ N(μ + B(log ĝ_D − μ_D),
        # Σ − B Σ_D·) with B = Σ_·D (Σ_DD + τ²I)⁻¹.
        cov_hat = cov[np.ix_(design, design)] + dosimetry.measurement_var * np.eye(n_design)
        root_hat = np.linalg.cholesky(cov_hat)
        gain = np.linalg.solve(cov_hat, cov[design, :]).T  # [n_truth, n_design]
        cond_cov = cov - gain @ cov[design, :]
        root = _psd_sqrt(cond_cov)
        cond_sd = np.sqrt(np.clip(np.diag(cond_cov)[design], 0.0, None))
        cond_sd = np.where(cond_sd > 1e-9 * sd[design], cond_sd, 0.0)
        limit = np.array([o.limit for o in dosimetry.organs])
        k_true = np.array(
            [
                _true_limit_factor(m, truth.organs[j])
                for m, j in zip(dosimetry.organs, design, strict=True)
            ]
        )
        dims = n_design + n_truth
    else:
        root = np.linalg.cholesky(cov)
        dims = n_truth
    dlt = np.zeros((replicates, activity.size))
    exceed = np.zeros((replicates, activity.size, n_design))
    eff, both = np.zeros((replicates, activity.size)), np.zeros((replicates, activity.size))
    with_both = efficacy is not None and (with_dlt or efficacy[1] is not None)
    from scipy.stats import qmc  # here: scipy.stats takes most of a second to import

    for r, child in enumerate(np.random.SeedSequence(seed).spawn(replicates)):
        sobol = qmc.Sobol(dims, scramble=True, rng=np.random.default_rng(child))
        z = special.ndtri(np.clip(sobol.random(points), 1e-16, 1 - 1e-16))  # [point, dim]
        if capped:
            log_hat = mu[design] + z[:, :n_design] @ root_hat.T  # [point, design organ]
            cond_mean = mu + (log_hat - mu[design]) @ gain.T  # [point, organ]
            log_g = cond_mean + z[:, n_design:] @ root.T
            if dosimetry.personalised:
                a = prescribed_activity(dosimetry, activity[:, None], np.exp(log_hat))
                schedules = np.repeat(a[..., None], dosimetry.cycles, axis=-1)
            else:
                schedules = cap_activities(activity[:, None], np.exp(log_hat), dosimetry)
                schedules = schedules.activities
            s1 = schedules.sum(axis=-1)[..., None]  # [level, point, 1]
            s2 = np.square(schedules).sum(axis=-1)[..., None]
            with np.errstate(divide="ignore"):
                log_thr = np.log(_threshold(limit, s1, s2, k_true))  # [level, point, organ]
            exceed[r] = _prob_exceed(cond_mean[:, design], cond_sd, log_thr).mean(axis=1)
        else:
            log_g = mu + z @ root.T
            schedules = np.repeat(activity[:, None, None], dosimetry.cycles, axis=2)
        p_t, g = None, np.exp(log_g)
        if with_dlt:
            p_t = patient_dlt_prob(g, schedules, truth)  # [level, point]
            dlt[r] = p_t.mean(axis=-1)
        if efficacy is not None:
            from theradose.scenario import joint_prob

            rho, level_dlt = efficacy
            p_e = patient_response_prob(g, schedules, truth)  # [level, point]
            eff[r] = p_e.mean(axis=-1)
            if with_both:
                p_t = level_dlt[:, None] if p_t is None else p_t
                both[r] = joint_prob(p_t, p_e, rho).mean(axis=-1)
    se = lambda v: v.std(axis=0, ddof=1) / math.sqrt(replicates)  # noqa: E731
    if capped:
        exceed_prob, exceed_se = exceed.mean(axis=0), se(exceed)
    else:
        exceed_prob = _uncapped_exceed(truth, dosimetry, activity)
        exceed_se = np.zeros(exceed_prob.shape)
    return LevelTruths(
        dlt_prob=dlt.mean(axis=0) if with_dlt else None,
        exceed_prob=exceed_prob,
        dlt_prob_se=se(dlt) if with_dlt else None,
        exceed_prob_se=exceed_se,
        capped=capped and not dosimetry.personalised,
        method="qmc",
        eff_prob=None if efficacy is None else eff.mean(axis=0),
        both_prob=both.mean(axis=0) if with_both else None,
        eff_prob_se=None if efficacy is None else se(eff),
        both_prob_se=se(both) if with_both else None,
    )
