"""The 3+3 design.

Storer, B. E. (1989). Design and analysis of phase I clinical trials. *Biometrics* 45:925–937.
Korn, E. L. et al. (1994). A comparison of two phase I trial designs. *Stat Med* 13:1799–1806.

Cohorts of three at the current level *d* with *y* DLTs among its *n* patients:

- 0/3, or ≤ 1/6: escalate to *d* + 1 (past the top level: stop, the top level is the MTD, as
  bcrm's ``threep3`` and escalation's ``three_plus_three``). When *d* + 1 is out of reach below
  the top — too toxic (with de-escalation) or ruled out by the organ-dose limits — the MTD needs
  six patients (Korn et al. 1994): 0/3 treats three more at *d*, ≤ 1/6 stops with MTD *d*;
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
from typing import Any

import numpy as np

from theradose.methods.base import Method
from theradose.methods.spec import DesignFields, MethodSpec
from theradose.state import StopReason, TrialState, highest_level
from theradose.stopping import MaxPatients
from theradose.validation import TomlTable

COHORT_SIZE = 3
TOO_TOXIC_DLTS = 2


def _cleared(n: np.ndarray, y: np.ndarray) -> np.ndarray:
    """0 DLTs in 3 or more, or at most 1 in 6 or more (more only when a trial deviated)."""
    return ((n >= COHORT_SIZE) & (y == 0)) | ((n >= 2 * COHORT_SIZE) & (y <= 1))


THREE_PLUS_THREE_COLUMNS = {"dlts": "DLTs at the current level", "decision": "decision"}


@dataclass(frozen=True)
class ThreePlusThree(Method):
    """The 3+3 rule (``method = "3+3"``)."""

    n_levels: int
    deescalate: bool = True
    key = "3+3"
    references = (
        (
            "Storer BE (1989). Design and analysis of phase I clinical trials. Biometrics "
            "45:925–937."
        ),
        (
            "Korn EL et al. (1994). A comparison of two phase I trial designs. Stat Med "
            "13:1799–1806."
        ),
    )
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
        too_toxic = self.lowest_too_toxic(state)
        cleared = _cleared(n_d, y_d)
        toxic_here = y_d >= TOO_TOXIC_DLTS
        at_top = d == self.n_levels - 1
        # The next level is out of reach: too toxic, or ruled out by the organ-dose limits.
        above_ruled_out = np.zeros(d.shape, dtype=bool)
        if state.admissible is not None:
            above = np.minimum(d + 1, self.n_levels - 1)
            above_ruled_out = (
                ~at_top & ~np.take_along_axis(state.admissible, above[:, None], 1)[:, 0]
            )
        # Korn et al. (1994): the MTD is a level with six patients and at most one DLT. Below a
        # ruled-out or (with de-escalation) too-toxic level the trial treats three more at a
        # level cleared on three; only the top of the dose range ends on 0/3 (bcrm's threep3
        # and escalation's three_plus_three).
        next_toxic = ~at_top & (d + 1 >= too_toxic)
        needs_six = above_ruled_out | (next_toxic & self.deescalate)
        blocked = at_top | next_toxic | above_ruled_out
        three_more = cleared & blocked & needs_six & (n_d < 2 * COHORT_SIZE)
        done = cleared & blocked & ~three_more

        proposal = np.where(cleared & ~blocked, d + 1, d)
        stop = np.zeros(d.shape, dtype=np.int8)
        if self.deescalate:
            below = np.maximum(d - 1, 0)
            n_below = np.take_along_axis(state.n, below[:, None], axis=1)[:, 0]
            done |= toxic_here & (d > 0) & (n_below >= 2 * COHORT_SIZE)
        else:
            done |= toxic_here & (d > 0)
        proposal = np.where(toxic_here, d - 1, proposal)
        stop[done] = StopReason.RULE_COMPLETE
        # d - 1 < 0 after a toxic level 1: no level is allowed, so the engine stops as too toxic.
        return np.maximum(proposal, 0), stop

    def select_mtd(self, state: TrialState) -> np.ndarray:
        levels = np.arange(self.n_levels)[None, :]
        too_toxic = self.lowest_too_toxic(state)[:, None]
        six_ok = (state.n >= 2 * COHORT_SIZE) & (state.y <= 1)
        cleared = _cleared(state.n, state.y)
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

    def protocol_table(self, cohort_size: int, max_patients: int):
        """The rule table, one row per outcome at the current level."""
        return THREE_PLUS_THREE_COLUMNS, self.rule_rows()

    def describe(self) -> str:
        toxic = (
            "de-escalate to the next lower level and treat three more there unless it already "
            "has six; the MTD is the highest level with at most 1 DLT in six patients below the "
            "lowest too-toxic level (Korn et al. 1994)"
            if self.deescalate
            else "stop; the MTD is the level below (Storer 1989)"
        )
        return (
            "3+3: patients are treated in cohorts of three. 0 DLTs in 3: escalate; 1 in 3: "
            "treat three more at the same level; at most 1 in 6: escalate; 2 or more: the level "
            f"is too toxic — {toxic}. Escalating past the top level stops with the top level as "
            "MTD; below a level ruled out by the organ-dose limits (or a too-toxic level), the "
            "MTD needs six patients. Two or more DLTs at level 1 stop the trial with no MTD."
        )

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


# ---------------------------------------------------------------------------------------------
# The design file


def parse_three_plus_three(table: TomlTable, fields: DesignFields) -> dict[str, Any]:
    return {"deescalate": table.boolean("deescalate", default=True)}


def build_three_plus_three(fields: DesignFields, options: dict[str, Any]):
    method = ThreePlusThree(fields.n_levels, deescalate=options["deescalate"])
    return method, (), (MaxPatients(fields.max_patients),)


SPEC = MethodSpec(
    method_class=ThreePlusThree,
    key="3+3",
    section="three_plus_three",
    keys=("deescalate",),
    parse=parse_three_plus_three,
    build=build_three_plus_three,
    fixed_cohort_size=3,
    max_patients_per_level=6,
)
