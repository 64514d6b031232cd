"""The Design record: a method plus the rules around it (crmPack's shape, Brock's interface)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theradose.state import TrialState


@dataclass(frozen=True)
class Design:
    """A dose-escalation design, as read from a design file.

    Attributes
    ----------
    method : the dose-finding rule (``theradose.methods``)
    constraints : masks over levels (``theradose.constraints``), combined by AND
    stopping : stopping rules (``theradose.stopping``), the first that fires gives the reason
    start_level : 0-based
    """

    name: str
    method: Any
    target: float
    n_levels: int
    start_level: int
    cohort_size: int
    max_patients: int
    doses: tuple[float, ...] | None = None
    dose_unit: str = ""
    constraints: tuple[Any, ...] = ()
    stopping: tuple[Any, ...] = ()
    timing: Any = None  # theradose.timing.Timing: accrual and DLT window, or None (no time)
    dosimetry: Any = None  # theradose.dosimetry.Dosimetry: cycles, organ limits, capping
    source: dict[str, Any] = field(default_factory=dict, compare=False)
    path: str | None = field(default=None, compare=False)

    @property
    def method_key(self) -> str:
        return self.method.key

    def allowed(self, state: TrialState) -> np.ndarray:
        """Levels every constraint and the method itself allow, [trial, level]."""
        mask = self.method.allowed(state)
        for constraint in self.constraints:
            mask = mask & constraint.allowed(state)
        return mask

    def level_label(self, level: int) -> str:
        """'3 (5.55 GBq)' for a 0-based level."""
        if self.doses is None:
            return str(level + 1)
        unit = f" {self.dose_unit}" if self.dose_unit else ""
        return f"{level + 1} ({self.doses[level]:g}{unit})"
