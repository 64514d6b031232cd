"""Stopping rules: pure functions of the trial state that say whether, and why, to stop.

A design holds a tuple of rules; the engine stops a trial at the first rule that fires, in the
order of the tuple, and records that rule's :class:`~theradose.state.StopReason`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theradose.state import StopReason, TrialState, any_level


class StoppingRule:
    """Base of the stopping rules.

    ``fires(state, next_level) -> bool [trial]``: stop now; ``reason``: the
    :class:`~theradose.state.StopReason` recorded; ``describe()``: the rule as protocol text;
    ``state_text(state, trial)``: where one trial stands against it, in words;
    ``can_fire(max_patients)``: whether a trial of at most that many patients can meet it (rules
    that cannot are left out of protocol text); ``count_based``: decides on the counts alone.
    """

    reason: StopReason
    count_based: bool = True

    def fires(self, state: TrialState, next_level: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def state_text(self, state: TrialState, trial: int) -> str:
        raise NotImplementedError

    def can_fire(self, max_patients: int) -> bool:
        return True


@dataclass(frozen=True)
class MaxPatients(StoppingRule):
    """Stop once ``n`` patients have been enrolled."""

    n: int
    reason = StopReason.MAX_PATIENTS
    count_based = True

    def fires(self, state: TrialState, next_level: np.ndarray) -> np.ndarray:
        return state.n_enrolled >= self.n

    def describe(self) -> str:
        return f"Stop when {self.n} patients have been treated."

    def state_text(self, state: TrialState, trial: int) -> str:
        return f"maximum sample size: {state.n_enrolled[trial]} of {self.n} patients treated"


@dataclass(frozen=True)
class MaxAtDose(StoppingRule):
    """Stop when ``n`` patients have been treated at the level about to be assigned.

    ``only_when_staying``: stop only if that level is the current one (BOIN's ``n.earlystop``,
    Liu & Yuan 2015), so a trial moving to another level carries on. ``any_level``: stop as soon
    as any level has treated ``n`` (BOIN12's rule, ``escalation``'s
    ``stop_when_n_at_dose(dose = "any")``), wherever the next cohort would go.
    """

    n: int
    only_when_staying: bool = False
    any_level: bool = False
    reason = StopReason.MAX_AT_DOSE
    count_based = True

    def fires(self, state: TrialState, next_level: np.ndarray) -> np.ndarray:
        if self.any_level:
            return any_level(state.n >= self.n)
        n_next = np.take_along_axis(state.n, next_level[:, None], axis=1)[:, 0]
        fired = n_next >= self.n
        if self.only_when_staying:
            fired &= next_level == state.level
        return fired

    def can_fire(self, max_patients: int) -> bool:
        return self.n <= max_patients

    def describe(self) -> str:
        where = (
            "any one level"
            if self.any_level
            else "the current level, when the next cohort would stay there"
            if self.only_when_staying
            else "the level about to be assigned"
        )
        return f"Stop when {self.n} patients have been treated at {where}."

    def state_text(self, state: TrialState, trial: int) -> str:
        most = int(state.n[trial].max())
        return f"patients at one level: at most {most} so far (stop at {self.n})"


@dataclass(frozen=True)
class SafetyStop(StoppingRule):
    """Stop with no MTD when P(p_1 > target | data) > ``cutoff`` after at least ``min_n`` patients.

    Needs a model-based method offering ``prob_above_target(state, level)`` (CRM, EWOC, BLRM).
    """

    method: object
    cutoff: float
    min_n: int = 3
    reason = StopReason.SAFETY
    count_based = True

    def fires(self, state: TrialState, next_level: np.ndarray) -> np.ndarray:
        eligible = state.active & (state.n_enrolled >= self.min_n)
        if not eligible.any():
            return eligible
        return eligible & (self.method.prob_above_target(state, 0) > self.cutoff)

    def can_fire(self, max_patients: int) -> bool:
        return self.min_n <= max_patients

    def state_text(self, state: TrialState, trial: int) -> str:
        one = state.take(np.array([trial]))
        prob = float(self.method.prob_above_target(one, 0)[0])
        return (
            f"safety: P(DLT probability at level 1 > target) = {prob:.3f} "
            f"(stop above {self.cutoff:g} after at least {self.min_n} patients)"
        )

    def describe(self) -> str:
        return (
            f"Stop with no MTD when P(DLT probability at level 1 > target) > {self.cutoff:g} "
            f"after at least {self.min_n} patients."
        )
