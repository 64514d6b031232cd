"""Dose constraints: boolean masks over levels, combined by AND so their order never matters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theradose.state import TrialState, highest_level


class Constraint:
    """Base of the dose constraints: ``allowed(state) -> bool [trial, level]``.

    ``count_based``: depends on the counts alone (exact enumeration needs it). ``organ_limits``:
    the mask is the dose range the organ-dose limits admit — the pipeline records when each level
    is first ruled out, keeps the final MTD inside it and gives it to the method as
    ``state.admissible``.
    """

    count_based: bool = True
    organ_limits: bool = False

    def allowed(self, state: TrialState) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class NoSkip(Constraint):
    """Never assign a level more than one above the highest level tried so far."""

    count_based = True

    def allowed(self, state: TrialState) -> np.ndarray:
        highest = highest_level(state.n > 0)  # NO_LEVEL (−1) before any patient
        return np.arange(state.n_levels)[None, :] <= (highest + 1)[:, None]

    def describe(self) -> str:
        return "Never skip an untried level when escalating."


@dataclass(frozen=True)
class EscalationStep(Constraint):
    """Never assign a level more than ``max_step`` above the last cohort's level (dfcrm's
    ``restrict``; Cheung 2011, §3.4)."""

    max_step: int = 1
    count_based = True

    def allowed(self, state: TrialState) -> np.ndarray:
        cap = np.maximum(state.level, 0) + self.max_step
        return np.arange(state.n_levels)[None, :] <= cap[:, None]

    def describe(self) -> str:
        return f"Never escalate more than {self.max_step} level(s) above the last cohort's level."


@dataclass(frozen=True)
class MaxIncrement(Constraint):
    """Never give an activity above (1 + ``factor``) × the highest activity given so far
    (relative increments: Neuenschwander, Branson & Gsponer 2008, *Stat Med* 27:2420–2439; crmPack
    ``IncrementsRelative``). Before anyone is treated, every level is allowed."""

    doses: tuple[float, ...]
    factor: float
    count_based = True

    def allowed(self, state: TrialState) -> np.ndarray:
        doses = np.asarray(self.doses, dtype=float)
        tried = state.n > 0
        highest = np.where(tried, doses[None, :], -np.inf).max(axis=1)
        cap = np.where(tried.any(axis=1), (1 + self.factor) * highest, np.inf)
        # A relative tolerance keeps, e.g., 2 × 5 = 10 within the cap despite rounding.
        return doses[None, :] <= cap[:, None] * (1 + 1e-9)

    def describe(self) -> str:
        return (
            f"Never give more than {1 + self.factor:g} × the highest activity given so far "
            f"(an increment of at most {100 * self.factor:g}%)."
        )


@dataclass(frozen=True)
class Coherence(Constraint):
    """No escalation right after a cohort whose DLT fraction is at least the target
    (coherence in escalation, Cheung 2005, *Biometrika* 92:863–873)."""

    target: float
    count_based = True

    def allowed(self, state: TrialState) -> np.ndarray:
        toxic = state.last_cohort_y >= self.target * np.maximum(state.last_cohort_n, 1)
        cap = np.where(toxic, np.maximum(state.level, 0), state.n_levels - 1)
        return np.arange(state.n_levels)[None, :] <= cap[:, None]

    def describe(self) -> str:
        return (
            f"Never escalate right after a cohort whose DLT fraction is at least {self.target:g}."
        )


@dataclass(frozen=True)
class OrganDoseLimits(Constraint):
    """Levels at which a new patient's cumulative organ dose stays within the limits.

    Each organ's population of log Gy/GBq is learnt from the dosimetry measured in the patients
    treated so far (conjugate normal–scaled-inverse-χ², see
    :func:`theradose.dosimetry.update_posterior`);
    a level is admissible while the posterior-predictive probability that a new patient's
    cumulative absorbed dose (or BED) over the planned cycles passes the limit is at most the
    organ's ``max_exceed_prob``, for every organ (Menda et al., *JNM* 2018;59:1692; Bodei et al.,
    *EJNMMI* 2008;35:1847 for the limits).
    """

    dosimetry: object  # theradose.dosimetry.Dosimetry
    activities: tuple[float, ...]  # per level, per cycle (planned)
    count_based = False
    organ_limits = True

    def exceedance(self, state: TrialState) -> np.ndarray:
        """P(a new patient passes each organ's limit) per level, [trial, level, organ]."""
        from theradose.dosimetry import exceedance_prob

        return exceedance_prob(self._posterior(state), self.dosimetry, np.asarray(self.activities))

    def allowed(self, state: TrialState) -> np.ndarray:
        from theradose.dosimetry import admissible_levels

        return admissible_levels(
            self._posterior(state), self.dosimetry, np.asarray(self.activities)
        )

    def _posterior(self, state: TrialState):
        from theradose.dosimetry import DosimetryStats, update_posterior

        measured = state.patient_measured_gy_per_gbq
        if state.dosimetry_stats is not None:  # kept up to date by the engine as patients join
            stats = state.dosimetry_stats
        elif measured is None:  # counts only (no patients' dosimetry): the prior
            stats = DosimetryStats.empty(state.n_trials, len(self.dosimetry.organs))
        else:
            stats = DosimetryStats.from_measured(measured, state.patient_level >= 0)
        return update_posterior(self.dosimetry, stats)

    def describe(self) -> str:
        return self.dosimetry.describe()
