"""Scenarios: the truth a simulation is run under."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from theradose.state import NO_LEVEL
from theradose.timing import Onset

# Level 1 more than this above the target means no level is acceptable: the true MTD is none.
NO_MTD_MARGIN = 0.10
_TIE = 1e-12


@dataclass(frozen=True)
class Scenario:
    """True DLT probability of each level (non-decreasing, in [0, 1]); optionally the true
    response probability of each level (``eff_prob``), or each patient's from their own tumour
    dose (``truth.efficacy``, :class:`theradose.dosimetry.Efficacy`), and the association of DLT
    and response within a patient (``tox_eff_correlation``, the Gaussian copula's ρ: see
    :meth:`theradose.virtual_patients.VirtualPatients.with_efficacy`)."""

    name: str
    dlt_prob: tuple[float, ...]  # empty when DLTs come from organ doses (NTCP)
    onset: Onset = field(default_factory=Onset)  # when DLTs occur within the window
    truth: object = None  # theradose.dosimetry.DosimetryTruth: the patients' organ Gy/GBq
    eff_prob: tuple[float, ...] | None = None  # [level] P(response); None: no efficacy
    tox_eff_correlation: float = 0.0  # Gaussian copula ρ between DLT and response, in (−1, 1)
    # when responses occur within the efficacy window (a design's [timing]
    # efficacy_window_months; read by a method with late efficacy, TITE-BOIN12)
    response_onset: Onset = field(default_factory=Onset)
    # the [[scenario]] table as read from its file (empty when built in code): every output
    # records it, so a run can be repeated after the file has changed
    source: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def efficacy(self) -> bool:
        return self.eff_prob is not None or self.tumour_response is not None

    @property
    def tumour_response(self) -> object | None:
        """The :class:`theradose.dosimetry.Efficacy` of a scenario whose responses follow each
        patient's own tumour dose (None otherwise)."""
        return None if self.truth is None else self.truth.efficacy

    @property
    def n_levels(self) -> int | None:
        """Levels the truth is given for; None when DLT probabilities follow from the design's
        activities through NTCP."""
        return None if self.uses_ntcp else len(self.dlt_prob)

    @property
    def uses_ntcp(self) -> bool:
        return self.truth is not None and self.truth.toxicity is not None and (
            self.truth.toxicity.uses_ntcp
        )

    def true_mtd(self, target: float) -> int:
        """The level whose true DLT probability is closest to ``target`` (the lower on a tie);
        ``NO_LEVEL`` when level 1 is above target + 0.1."""
        return true_mtd(np.asarray(self.dlt_prob), target)


def true_mtd(dlt_prob: np.ndarray, target: float) -> int:
    if dlt_prob[0] > target + NO_MTD_MARGIN + _TIE:
        return NO_LEVEL
    distance = np.round(np.abs(dlt_prob - target) / _TIE) * _TIE
    return int(np.argmin(distance))


def closest_to_target(p: np.ndarray, target: float) -> np.ndarray:
    """Index of the level closest to ``target`` along the last axis (the lower one on a tie)."""
    return np.argmin(np.round(np.abs(p - target) / _TIE), axis=-1)


@dataclass(frozen=True)
class DesignTruth:
    """What a scenario means for one design: each level's true DLT probability under the design's
    schedule (cycles, capping), each level's true probability that a patient passes each organ
    limit of the design (planned schedule), and the levels that follow from them.

    Attributes
    ----------
    dlt_prob : [level]
    exceed_prob : [level, organ] in the design's organ order, or None without organ limits
    true_mtd : closest to the target (NO_LEVEL when level 1 is above target + 0.1)
    admissible : bool [level], true exceedance ≤ the organ's max_exceed_prob for every organ
    optimum : the constrained optimum: closest to the target among admissible levels
    eff_prob : [level] true response probability (None: the scenario gives no efficacy)
    both_prob : [level] true P(DLT and response) (None without efficacy)
    utility : [level] true mean utility per patient, for a method that uses efficacy (else None)
    obd : the true optimal biological dose (NO_LEVEL: none, or no utility)
    """

    dlt_prob: np.ndarray
    exceed_prob: np.ndarray | None
    true_mtd: int
    admissible: np.ndarray
    optimum: int
    eff_prob: np.ndarray | None = None
    both_prob: np.ndarray | None = None
    utility: np.ndarray | None = None
    obd: int = NO_LEVEL

    @property
    def highest_admissible(self) -> int:
        return int(np.flatnonzero(self.admissible)[-1]) if self.admissible.any() else NO_LEVEL


def both_prob(dlt_prob, eff_prob, rho: float) -> np.ndarray:
    """P(DLT and response) per level when a patient has a DLT iff u < p_T and responds iff
    v' < p_E, with (u, v') joined by a Gaussian copula of correlation ρ:
    Φ₂(Φ⁻¹(p_T), Φ⁻¹(p_E); ρ) (p_T · p_E when ρ = 0), [level]."""
    p_t = np.asarray(dlt_prob, dtype=float)
    p_e = np.asarray(eff_prob, dtype=float)
    if rho == 0.0:
        return p_t * p_e
    from scipy.stats import multivariate_normal

    from theradose import special_functions as special

    out = np.minimum(p_t, p_e)  # p = 0 or 1 at either margin: the copula's bounds are exact
    inner = (p_t > 0) & (p_t < 1) & (p_e > 0) & (p_e < 1)
    if inner.any():
        z = np.column_stack([special.ndtri(p_t[inner]), special.ndtri(p_e[inner])])
        law = multivariate_normal(mean=[0.0, 0.0], cov=[[1.0, rho], [rho, 1.0]])
        out[inner] = np.atleast_1d(law.cdf(z))
    out[(p_t == 0) | (p_e == 0)] = 0.0
    out[p_t == 1] = p_e[p_t == 1]
    out[p_e == 1] = p_t[p_e == 1]
    return out


def joint_prob(p_t, p_e, rho: float) -> np.ndarray:
    """:func:`both_prob` element by element over arrays of any (broadcast) shape — one value per
    virtual patient of a quadrature or quasi-Monte Carlo rule: C_ρ(p_T, p_E) =
    Φ₂(Φ⁻¹(p_T), Φ⁻¹(p_E); ρ), by Owen's T function (Owen 1956, *Ann Math Stat* 27:1075) ::

        Φ₂(h, k; ρ) = ½[Φ(h) + Φ(k)] − T(h, a_h) − T(k, a_k) − β,
        a_h = (k − ρh) / (h√(1 − ρ²)),   a_k = (h − ρk) / (k√(1 − ρ²)),
        β = 0 when hk > 0 or (hk = 0 and h + k ≥ 0), else ½

    (T(0, ±∞) = ±¼; Φ₂(0, 0; ρ) = ¼ + asin(ρ)/2π). p_T · p_E when ρ = 0; the copula's bounds at
    p = 0 or 1. Agrees with scipy's bivariate normal to 1e-15 (tests/test_tumour_response.py).
    """
    p_t, p_e = np.broadcast_arrays(np.asarray(p_t, dtype=float), np.asarray(p_e, dtype=float))
    if rho == 0.0:
        return p_t * p_e
    from theradose import special_functions as special

    inner = (p_t > 0) & (p_t < 1) & (p_e > 0) & (p_e < 1)
    out = np.where(p_t >= 1, p_e, np.where(p_e >= 1, p_t, 0.0))  # exact at the margins
    h, k = special.ndtri(p_t[inner]), special.ndtri(p_e[inner])
    s = np.sqrt(1.0 - rho * rho)

    def owens(x, y):  # T(x, (y − ρx) / (x√(1 − ρ²))), its limit ±¼ at x = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            t = special.owens_t(x, (y - rho * x) / (x * s))
        return np.where(x == 0, 0.25 * np.sign(y - rho * x), t)

    t_h, t_k = owens(h, k), owens(k, h)
    beta = np.where((h * k > 0) | ((h * k == 0) & (h + k >= 0)), 0.0, 0.5)
    value = 0.5 * (special.ndtr(h) + special.ndtr(k)) - t_h - t_k - beta
    value = np.where((h == 0) & (k == 0), 0.25 + np.arcsin(rho) / (2 * np.pi), value)
    out[inner] = np.clip(value, 0.0, np.minimum(p_t[inner], p_e[inner]))
    return out


def organ_truth(scenario: Scenario, design) -> object | None:
    """The scenario's patients as a DosimetryTruth covering the design's organs: organs the
    scenario does not describe behave as the design's prior expects (its median and CV)."""
    from theradose.dosimetry import DosimetryTruth, OrganTruth

    dosimetry = design.dosimetry
    organs = list(scenario.truth.organs) if scenario.truth is not None else []
    names = {o.name for o in organs}
    for model in () if dosimetry is None else dosimetry.organs:
        if model.name not in names:
            organs.append(OrganTruth.as_expected_by(model))
    if not organs:
        return None
    if scenario.truth is not None and len(organs) == len(scenario.truth.organs):
        return scenario.truth
    if scenario.truth is None:
        return DosimetryTruth(organs=tuple(organs))
    correlation = scenario.truth.correlation
    if correlation is not None:
        # the design's organs the scenario does not describe vary independently of its own
        padded = np.eye(len(organs))
        n = len(scenario.truth.organs)
        padded[:n, :n] = np.asarray(correlation)
        correlation = padded
    return DosimetryTruth(
        organs=tuple(organs),
        toxicity=scenario.truth.toxicity,
        correlation=correlation,
        efficacy=scenario.truth.efficacy,
    )


def truth_for(scenario: Scenario, design) -> DesignTruth:
    """Each level's truth for ``design`` (see :class:`DesignTruth`)."""
    from theradose.dosimetry import Dosimetry, level_truths

    dosimetry = design.dosimetry or Dosimetry(organs=(), cycles=1)
    truth = organ_truth(scenario, design)
    doses = None if design.doses is None else np.asarray(design.doses, dtype=float)
    tumour = scenario.tumour_response is not None
    received = None  # the truths on the schedules patients receive (capped, personalised)
    if scenario.uses_ntcp or tumour:
        level_dlt = None if scenario.uses_ntcp else np.asarray(scenario.dlt_prob, dtype=float)
        received = level_truths(
            truth,
            dosimetry,
            doses,
            tox_eff_correlation=scenario.tox_eff_correlation,
            dlt_prob=level_dlt,
        )
    if scenario.uses_ntcp:
        dlt_prob = np.asarray(received.dlt_prob, dtype=float)
    else:
        dlt_prob = np.asarray(scenario.dlt_prob, dtype=float)
    exceed = None
    admissible = np.ones(dlt_prob.size, dtype=bool)
    if dosimetry.organs:
        if tumour:  # the planned schedule's exceedance alone: no response truths again
            truth = dataclasses.replace(truth, efficacy=None)
        planned = level_truths(truth, dosimetry, doses, patient_cap=False)
        exceed = np.asarray(planned.exceed_prob)
        limits = np.array([o.max_exceed_prob for o in dosimetry.organs])
        admissible = (exceed <= limits).all(axis=1)
    mtd = true_mtd(dlt_prob, design.target)
    optimum = NO_LEVEL
    if mtd != NO_LEVEL and admissible.any():
        candidates = np.where(admissible, np.abs(dlt_prob - design.target), np.inf)
        optimum = int(closest_to_target(np.where(admissible, dlt_prob, np.inf), design.target))
        optimum = optimum if np.isfinite(candidates[optimum]) else NO_LEVEL
    if not scenario.efficacy:
        return DesignTruth(dlt_prob, exceed, mtd, admissible, optimum)
    if tumour:
        eff_prob = np.asarray(received.eff_prob, dtype=float)
        both = np.asarray(received.both_prob, dtype=float)
    else:
        eff_prob = np.asarray(scenario.eff_prob, dtype=float)
        both = both_prob(dlt_prob, eff_prob, scenario.tox_eff_correlation)
    utility, obd = None, NO_LEVEL
    if design.method.uses_efficacy:
        utility = np.asarray(design.method.utility(dlt_prob, eff_prob, both), dtype=float)
        obd = design.method.true_obd(dlt_prob, eff_prob, np.where(admissible, utility, -np.inf))
    return DesignTruth(dlt_prob, exceed, mtd, admissible, optimum, eff_prob, both, utility, obd)
