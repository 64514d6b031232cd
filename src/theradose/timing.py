"""Time in a trial: patient accrual, the DLT assessment window, and when DLTs occur.

Radiation toxicity is often late (blood counts within a 6–8-week cycle, kidney damage months
later), so how long a trial lasts, and how many patients are treated while others are still in
follow-up, depend on accrual and on the DLT window. Times are in months from the trial's start.

- Accrual: Poisson at ``accrual_per_month`` (exponential gaps) or fixed spacing 1/rate.
- Onset of a patient's DLT, as a fraction of the window: uniform (the TITE-CRM convention of
  Cheung & Chappell 2000, and dfcrm's ``titesim``), or "late": a Weibull with shape ``k``
  and scale equal to the window, truncated to it, so most DLTs fall in the window's second half
  for k ≥ 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAYS_PER_MONTH = 30.4375
ACCRUALS = ("poisson", "fixed")
ONSETS = ("uniform", "late")
DEFAULT_ONSET_SHAPE = 3.0


@dataclass(frozen=True)
class Timing:
    """The ``[timing]`` section of a design: accrual and the DLT assessment window."""

    accrual_per_month: float
    dlt_window_months: float
    accrual: str = "poisson"

    def gaps(self, uniform: np.ndarray) -> np.ndarray:
        """Months between consecutive arrivals, from U(0, 1) draws of the same shape."""
        if self.accrual == "fixed":
            return np.full(np.shape(uniform), 1.0 / self.accrual_per_month)
        return -np.log1p(-np.asarray(uniform)) / self.accrual_per_month


@dataclass(frozen=True)
class Onset:
    """When a DLT occurs within the window, as a fraction of it (a scenario's ``dlt_onset``)."""

    kind: str = "uniform"
    shape: float = DEFAULT_ONSET_SHAPE

    def fraction(self, uniform: np.ndarray) -> np.ndarray:
        """Onset as a fraction of the DLT window, in (0, 1], by inversion of U(0, 1) draws.

        "late": F(x) = (1 − exp(−x^k)) / (1 − exp(−1)) on [0, 1], a Weibull with scale equal to
        the window truncated to it.
        """
        uniform = np.asarray(uniform, dtype=float)
        if self.kind == "uniform":
            return uniform
        return (-np.log1p(-uniform * (1 - np.exp(-1.0)))) ** (1.0 / self.shape)

    def cdf(self, fraction: np.ndarray) -> np.ndarray:
        """P(onset ≤ fraction of the window | DLT)."""
        x = np.clip(np.asarray(fraction, dtype=float), 0.0, 1.0)
        if self.kind == "uniform":
            return x
        return -np.expm1(-(x**self.shape)) / (1 - np.exp(-1.0))
