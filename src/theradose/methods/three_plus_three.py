"""The 3+3 design.

Storer, B. E. (1989). Design and analysis of phase I clinical trials. *Biometrics* 45:925–937.
Korn, E. L. et al. (1994). A comparison of two phase I trial designs. *Stat Med* 13:1799–1806.

Cohorts of three at the current level *d* with *y* DLTs among its *n* patients:

- 0/3, or ≤ 1/6: escalate to *d* + 1 (past the top level: stop, the top level is the MTD);
- 1/3: treat three more at *d*;
- ≥ 2 DLTs: *d* is too toxic. Escalation-only form (Storer): stop; the MTD is *d* − 1.
  With de-escalation (the common textbook form): treat three more at *d* − 1 unless it already
  has six, and apply the same rules there; the MTD is the highest level with six patients and at
  most one DLT below the lowest too-toxic level.

≥ 2 DLTs at level 1 ends the trial with no MTD. The rules depend on the counts only, which is
what lets :mod:`theradose.exact` enumerate every pathway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theradose.state import StopReason, TrialState, highest_level

COHORT_SIZE = 3
TOO_TOXIC_DLTS = 2


@dataclass(frozen=True)
class ThreePlusThree:
    """The 3+3 rule (``method = "3+3"``)."""

    n_levels: int
    deescalate: bool = True
    key = "3+3"
    count_based = True

    def lowest_too_toxic(self, state: TrialState) -> np.ndarray:
        """Lowest level with ≥ 2 DLTs, or ``n_levels`` when none, [trial]."""
        toxic = state.y >= TOO_TOXIC_DLTS
        return np.where(toxic.any(axis=1), toxic.argmax(axis=1), self.n_levels)

    def allowed(self, state: TrialState) -> np.ndarray:
        levels = np.arange(self.n_levels)
        return levels[None, :] < self.lowest_too_toxic(state)[:, None]

    def propose(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        d = np.maximum(state.level, 0)
        n_d, y_d = state.current(state.n), state.current(state.y)
        top = self.n_levels - 1
        too_toxic = self.lowest_too_toxic(state)
        cleared = ((n_d == 3) & (y_d == 0)) | ((n_d == 6) & (y_d <= 1))
        toxic_here = y_d >= TOO_TOXIC_DLTS

        proposal = d.copy()
        stop = np.zeros(d.shape, dtype=np.int8)
        done = cleared & ((d == top) | (d + 1 >= too_toxic))
        proposal = np.where(cleared & ~done, d + 1, proposal)
        if self.deescalate:
            below = np.maximum(d - 1, 0)
            n_below = np.take_along_axis(state.n, below[:, None], axis=1)[:, 0]
            done |= toxic_here & (d > 0) & (n_below >= 2 * COHORT_SIZE)
            proposal = np.where(toxic_here, d - 1, proposal)
        else:
            done |= toxic_here & (d > 0)
            proposal = np.where(toxic_here, d - 1, proposal)
        stop[done] = StopReason.RULE_COMPLETE
        # d - 1 < 0 after a toxic level 1: no level is allowed, so the engine stops as too toxic.
        return np.maximum(proposal, 0), stop

    def select_mtd(self, state: TrialState) -> np.ndarray:
        levels = np.arange(self.n_levels)[None, :]
        too_toxic = self.lowest_too_toxic(state)[:, None]
        six_ok = (state.n == 6) & (state.y <= 1)
        cleared = ((state.n == 3) & (state.y == 0)) | six_ok
        if self.deescalate:
            # Below a too-toxic level the MTD needs six patients; with none too toxic the trial
            # ended by escalating past the top level.
            eligible = np.where(too_toxic < self.n_levels, six_ok, cleared) & (levels < too_toxic)
        else:
            eligible = cleared & (levels < too_toxic)
        return highest_level(eligible)

    def level_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(state.n > 0, state.y / np.maximum(state.n, 1), np.nan)
        return {"dlt_rate": rate, "too_toxic": ~self.allowed(state)}

    def rule_rows(self) -> list[dict[str, str]]:
        """The protocol's rule table, one row per outcome at the current level."""
        below = (
            "treat 3 more at the next lower level (unless it has 6); MTD = highest level with "
            "≤ 1/6 below"
            if self.deescalate
            else "stop; MTD = next lower level"
        )
        return [
            {"dlts": "0 of 3", "decision": "escalate to the next level"},
            {"dlts": "1 of 3", "decision": "treat 3 more at this level"},
            {"dlts": "≤ 1 of 6", "decision": "escalate to the next level"},
            {"dlts": "≥ 2 of 3 or 6", "decision": f"level too toxic: {below}"},
            {"dlts": "escalating past the top", "decision": "stop; MTD = top level"},
            {"dlts": "≥ 2 at level 1", "decision": "stop; no MTD"},
        ]
