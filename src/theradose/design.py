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
    select_tried_only : the final MTD is a level that treated patients (None: the method's
        convention, ``method.select_tried_only``)
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
    select_tried_only: bool | None = None  # None: the method's convention
    backfill: Any = None  # theradose.backfill.Backfill, or None (no backfilling)
    optimisation: Any = None  # theradose.optimisation.Optimisation: randomised stage, or None
    source: dict[str, Any] = field(default_factory=dict, compare=False)
    path: str | None = field(default=None, compare=False)

    @property
    def method_key(self) -> str:
        return self.method.key

    @property
    def selects_tried_only(self) -> bool:
        """Whether the final MTD must be a level that treated patients."""
        if self.select_tried_only is None:
            return self.method.select_tried_only
        return self.select_tried_only

    @property
    def follow_up_months(self) -> float:
        """How long the escalation follows each patient before their outcomes are complete: the
        DLT window, or the longer of it and the efficacy window for a method that decides on
        responses (an efficacy window on another method's design is its randomised stage's)."""
        if self.method.uses_efficacy:
            return self.timing.follow_up_months
        return self.timing.dlt_window_months

    @property
    def n_places(self) -> int:
        """The most patients a trial can treat: ``max_patients`` and any backfill patients."""
        if self.backfill is None:
            return self.max_patients
        return self.max_patients + self.backfill.capacity(self.n_levels)

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
