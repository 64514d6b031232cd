"""Scenarios: the truth a simulation is run under."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from theradose.state import NO_LEVEL
from theradose.timing import Onset

# Level 1 more than this above the target means no level is acceptable: the true MTD is none.
NO_MTD_MARGIN = 0.10
_TIE = 1e-12


@dataclass(frozen=True)
class Scenario:
    """True DLT probability of each level (non-decreasing, in [0, 1])."""

    name: str
    dlt_prob: tuple[float, ...]
    onset: Onset = field(default_factory=Onset)  # when DLTs occur within the window

    @property
    def n_levels(self) -> int:
        return len(self.dlt_prob)

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
