"""Time in a trial: patient accrual, the DLT assessment window, and when DLTs occur.

Radiation toxicity is often late (blood counts within a 6–8-week cycle, kidney damage months
later), so how long a trial lasts, and how many patients are treated while others are still in
follow-up, depend on accrual and on the DLT window. Times are in months from the trial's start.

- Accrual: Poisson at ``accrual_per_month`` (exponential gaps) or fixed spacing 1/rate.
- Onset of a patient's DLT, as a fraction of the window: uniform (the TITE-CRM convention of
  Cheung & Chappell 2000, and dfcrm's ``titesim``), "late": a Weibull with shape ``k``
  and scale equal to the window, truncated to it, so most DLTs fall in the window's second half
  for k ≥ 2, or "early": its mirror image (fraction 1 − x for a "late" x), most DLTs in the
  first half (e.g. blood counts after a radiopharmaceutical, with kidney damage "late").
- Onset of a patient's response within the efficacy window (a scenario's ``response_onset``):
  the same three shapes, for a method that sees responses only when they occur (TITE-BOIN12);
  a radioligand's PSA or radiological response is typically assessed months after the first
  cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAYS_PER_MONTH = 30.4375
ACCRUALS = ("poisson", "fixed")
ONSETS = ("uniform", "late", "early")
DEFAULT_ONSET_SHAPE = 3.0


@dataclass(frozen=True)
class Timing:
    """The ``[timing]`` section of a design: accrual, the DLT assessment window and, for a
    method that decides on responses, the efficacy assessment window (None: responses are
    known when the DLT window closes)."""

    accrual_per_month: float
    dlt_window_months: float
    accrual: str = "poisson"
    efficacy_window_months: float | None = None

    @property
    def follow_up_months(self) -> float:
        """How long each patient's outcomes take to be known: the longer of the two windows."""
        if self.efficacy_window_months is None:
            return self.dlt_window_months
        return max(self.dlt_window_months, self.efficacy_window_months)

    def describe(self) -> str:
        how = "Poisson" if self.accrual == "poisson" else "fixed spacing"
        days = self.dlt_window_months * DAYS_PER_MONTH
        text = (
            f"Accrual {self.accrual_per_month:g} patient(s) a month ({how}); DLT window "
            f"{self.dlt_window_months:g} months ({days:.0f} days)"
        )
        if self.efficacy_window_months is not None:
            days = self.efficacy_window_months * DAYS_PER_MONTH
            text += (
                f"; response assessed within {self.efficacy_window_months:g} months "
                f"({days:.0f} days)"
            )
        return text + "."

    def gaps(self, uniform: np.ndarray) -> np.ndarray:
        """Months between consecutive arrivals, from U(0, 1) draws of the same shape."""
        if self.accrual == "fixed":
            return np.full(np.shape(uniform), 1.0 / self.accrual_per_month)
        return -np.log1p(-np.asarray(uniform)) / self.accrual_per_month


@dataclass(frozen=True)
class Onset:
    """When a DLT (or a response) occurs within its window, as a fraction of it (a scenario's
    ``dlt_onset``, ``response_onset``)."""

    kind: str = "uniform"
    shape: float = DEFAULT_ONSET_SHAPE

    def fraction(self, uniform: np.ndarray) -> np.ndarray:
        """Onset as a fraction of the DLT window, in [0, 1], by inversion of U(0, 1) draws
        (increasing in the draw for every kind).

        "late": F(x) = (1 − exp(−x^k)) / (1 − exp(−1)) on [0, 1], a Weibull with scale equal to
        the window truncated to it; "early": 1 − F(1 − x).
        """
        uniform = np.asarray(uniform, dtype=float)
        if self.kind == "uniform":
            return uniform
        if self.kind == "early":
            return 1.0 - _late_fraction(1.0 - uniform, self.shape)
        return _late_fraction(uniform, self.shape)

    def cdf(self, fraction: np.ndarray) -> np.ndarray:
        """P(onset ≤ fraction of the window | DLT)."""
        x = np.clip(np.asarray(fraction, dtype=float), 0.0, 1.0)
        if self.kind == "uniform":
            return x
        if self.kind == "early":
            return 1.0 - _late_cdf(1.0 - x, self.shape)
        return _late_cdf(x, self.shape)


def _late_fraction(uniform: np.ndarray, shape: float) -> np.ndarray:
    return (-np.log1p(-uniform * (1 - np.exp(-1.0)))) ** (1.0 / shape)


def _late_cdf(x: np.ndarray, shape: float) -> np.ndarray:
    return -np.expm1(-(x**shape)) / (1 - np.exp(-1.0))
