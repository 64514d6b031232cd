"""Dose constraints: boolean masks over levels, combined by AND so their order never matters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theradose.state import TrialState


@dataclass(frozen=True)
class NoSkip:
    """Never assign a level more than one above the highest level tried so far."""

    count_based = True

    def allowed(self, state: TrialState) -> np.ndarray:
        tried = state.n > 0
        highest = np.where(
            tried.any(axis=1), state.n_levels - 1 - tried[:, ::-1].argmax(axis=1), -1
        )
        return np.arange(state.n_levels)[None, :] <= (highest + 1)[:, None]

    def describe(self) -> str:
        return "Never skip an untried level when escalating."


@dataclass(frozen=True)
class EscalationStep:
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
class Coherence:
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
