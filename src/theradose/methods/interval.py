"""Interval designs: the decision at the current level is a table over (patients, DLTs) there.

BOIN, mTPI-2, Keyboard and i3+3 differ only in the rule that maps the n patients and y DLTs at
the current level to escalate, stay or de-escalate (Ji & Yang 2017, *On the interval-based
dose-finding designs*, arXiv:1706.03277). A subclass supplies that rule, ``decision(n, y)``, and
its paper; this base tabulates it once, for n = 0 … ``max_patients`` and y = 0 … n, and every
trial of a batch indexes the same table — the table the protocol prints
(:meth:`IntervalDesign.decision_rows`, :meth:`IntervalDesign.decision_table`).

Shared by every interval design, as the BOIN R package (2.7.2) does them:

- elimination: level d and every level above it are eliminated when n_d ≥ ``elimination_min_n``
  (3) and P(p_d > φ | y_d, n_d) > ``elimination_cutoff`` under a Beta(1, 1) prior, i.e.
  ``1 − I_φ(y_d + 1, n_d − y_d + 1) > cutoff``, also tabulated per n (the fewest DLTs that
  eliminate);
- MTD selection: weighted isotonic regression of (y + 0.05)/(n + 0.1) over the treated,
  non-eliminated levels (weights the inverse Beta(y + 0.05, n − y + 0.05) variances), then the
  level whose estimate is closest to φ; ties go to the higher level below φ and the lower one
  above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

# scipy.special, not scipy.stats: the same Boost incomplete beta as beta.sf, bit for bit, and
# a fraction of the import time (every command loads this module).
from theradose import special_functions as special
from theradose.isotonic import isotonic_increasing
from theradose.methods.base import Method
from theradose.methods.spec import DesignFields, MethodSpec, Parts
from theradose.state import NO_LEVEL, TrialState, this_and_above
from theradose.stopping import MaxAtDose, MaxPatients
from theradose.validation import OPEN_UNIT, Interval, TomlTable

MIN_N_TO_ELIMINATE = 3
NEVER = np.iinfo(np.int32).max  # a DLT count no level can reach


class Decision(IntEnum):
    """The move an interval design makes from the current level; ordered, so that more DLTs
    never give a higher decision."""

    DEESCALATE = -1
    STAY = 0
    ESCALATE = 1

    @property
    def letter(self) -> str:
        return _LETTERS[self]


_LETTERS = {Decision.ESCALATE: "E", Decision.STAY: "S", Decision.DEESCALATE: "D"}
DEESCALATE_AND_ELIMINATE = "DU"  # de-escalate; the level and all above are unacceptable
DECISION_LETTERS = ("E", "S", "D", DEESCALATE_AND_ELIMINATE)


def prob_above_target(n, y, target: float):
    """P(p > target | y DLTs in n) under a Beta(1, 1) prior.

    The posterior is Beta(y + 1, n − y + 1); for whole counts its upper tail at t is
    P(Binomial(n + 1, t) ≤ y), a finite sum — so decision tables need no special functions.
    """
    n, y = np.broadcast_arrays(np.asarray(n, dtype=np.int64), np.asarray(y, dtype=np.int64))
    out = np.empty(n.shape)
    for m in sorted(set((n + 1).ravel().tolist())):  # np.unique would import numpy.ma (10 ms)
        cdf = np.cumsum(_binomial_pmf(m, target))
        at = n + 1 == m
        out[at] = cdf[np.clip(y[at], 0, m)]
    return np.clip(out, 0.0, 1.0)


def _binomial_pmf(m: int, p: float) -> np.ndarray:
    """P(Binomial(m, p) = k) for k = 0 … m, by the ratio of successive terms."""
    k = np.arange(1, m + 1)
    if p <= 0.0 or p >= 1.0:
        return np.eye(1, m + 1, 0 if p <= 0.0 else m).ravel()
    ratios = (m - k + 1) / k * (p / (1 - p))
    return np.exp(m * np.log1p(-p) + np.concatenate([[0.0], np.cumsum(np.log(ratios))]))


def min_dlts_with_prob_above(
    n_max: int, target: float, cutoff: float, min_n: int = MIN_N_TO_ELIMINATE
) -> np.ndarray:
    """Per n (0 … n_max), the fewest DLTs with P(p > target) > cutoff (``NEVER``: none, or
    n < ``min_n``)."""
    table = np.full(n_max + 1, NEVER, dtype=np.int64)
    for n in range(max(min_n, 1), n_max + 1):
        y = np.arange(n + 1)
        hits = np.flatnonzero(prob_above_target(n, y, target) > cutoff)
        if hits.size:
            table[n] = hits[0]
    return table


DECISION_COLUMNS = {
    "n": "patients at the level",
    "escalate_if_dlt_le": "escalate if DLTs ≤",
    "deescalate_if_dlt_ge": "de-escalate if DLTs ≥",
    "eliminate_if_dlt_ge": "eliminate if DLTs ≥",
}


@dataclass(frozen=True)
class IntervalDesign(Method):
    """Base of the interval designs: a subclass gives ``decision(n, y)`` and its citation.

    Attributes
    ----------
    moves : array [n, y] of :class:`Decision` values for n = 0 … max_patients (cells y > n repeat
        y = n, so that indexing never leaves the table)
    eliminate_ge : array [n]: the level is eliminated if y ≥ this (``NEVER``: it cannot be)
    """

    n_levels: int
    target: float
    max_patients: int
    elimination_cutoff: float = field(default=0.95, kw_only=True)
    elimination_min_n: int = field(default=MIN_N_TO_ELIMINATE, kw_only=True)
    moves: np.ndarray = field(init=False, repr=False, compare=False)  # [n, y] Decision
    eliminate_ge: np.ndarray = field(init=False, repr=False, compare=False)  # [n]

    def __post_init__(self) -> None:
        size = self.max_patients + 1
        moves = np.empty((size, size), dtype=np.int8)
        for n in range(size):
            for y in range(n + 1):
                moves[n, y] = Decision(self.decision(n, y))
            moves[n, n + 1 :] = moves[n, n]
        # A table where more DLTs could move the next cohort up is not a dose-finding rule, and
        # decision_rows' thresholds would misreport it.
        if np.any(np.diff(moves, axis=1) > 0):
            n, y = np.argwhere(np.diff(moves, axis=1) > 0)[0]
            raise ValueError(
                f"{type(self).__name__}: the decision with {y + 1} DLTs in {n} patients is "
                f"higher than with {y}; decisions must not increase with the DLT count"
            )
        object.__setattr__(self, "moves", moves)
        object.__setattr__(
            self,
            "eliminate_ge",
            min_dlts_with_prob_above(
                self.max_patients, self.target, self.elimination_cutoff, self.elimination_min_n
            ),
        )

    def describe(self) -> str:
        return f"{self.rule_text()} {self.shared_text()}"

    def rule_text(self) -> str:
        """The design's own rule at the current level, in protocol language."""
        return ""

    def shared_text(self) -> str:
        """Elimination and MTD selection, shared by every interval design."""
        return (
            f"A level and every level above it are eliminated when P(DLT probability > "
            f"{self.target:g} | data) > {self.elimination_cutoff:g} under a Beta(1, 1) prior, with "
            f"at least {self.elimination_min_n} patients treated there. The MTD is the treated, "
            "non-eliminated level whose isotonic estimate of the DLT probability is closest to "
            f"the target {self.target:g}."
        )

    def decision(self, n: int, y: int) -> Decision:
        """The move after y DLTs among the n patients treated at the current level."""
        raise NotImplementedError

    def _table_at(self, table: np.ndarray, n: np.ndarray) -> np.ndarray:
        return table[np.minimum(n, self.max_patients)]

    def counts(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        """(patients, DLTs) per level that decisions may use, [trial, level] each."""
        return state.n, state.y

    def selection_counts(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        """(patients, DLTs) per level that the MTD selection and the estimates use,
        [trial, level] each."""
        return state.n, state.y

    def eliminated(self, state: TrialState) -> np.ndarray:
        """Levels eliminated by the safety rule (the lowest qualifying one and all above),
        [trial, level]."""
        n, y = self.counts(state)
        return this_and_above(y >= self._table_at(self.eliminate_ge, n))

    def allowed(self, state: TrialState) -> np.ndarray:
        """Levels not eliminated. A level eliminated at a decision stays so (BOIN's ``elimi``,
        Liu & Yuan 2015) even when outcomes seen later — backfill patients' — bring its rate
        back under the boundary; the final selection reads the complete data afresh (BOIN's
        ``select.mtd``)."""
        eliminated = self.eliminated(state)
        if state.eliminated_for_good is not None:
            eliminated |= state.eliminated_for_good
            state.eliminated_for_good = eliminated
        return ~eliminated

    def _direction(self, state: TrialState) -> np.ndarray:
        """+1 (escalate), 0 (stay) or −1 (de-escalate) by the table at the current level,
        before the edges of the dose range and elimination, [trial]."""
        n = np.minimum(state.current(state.n), self.max_patients)
        return self.moves[n, np.minimum(state.current(state.y), n)]

    def stop_reason(self, state: TrialState) -> np.ndarray:
        """The method's own reason to stop each trial (0: none), [trial]."""
        return np.zeros(state.n_trials, dtype=np.int8)

    def propose(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        d = np.maximum(state.level, 0)
        proposal = np.clip(d + self._direction(state), 0, self.n_levels - 1)
        return proposal, self.stop_reason(state)

    def decision_basis(self, state: TrialState) -> dict[str, np.ndarray]:
        """At the current level (0-based ``level``): ``n``, ``y``, ``rate`` = y/n and
        ``direction`` (+1 escalate, 0 stay, −1 de-escalate, from the decision table), [trial]
        each."""
        n, y = state.current(state.n), state.current(state.y)
        return {
            "level": np.maximum(state.level, 0),
            "n": n,
            "y": y,
            "rate": np.where(n > 0, y / np.maximum(n, 1), np.nan),
            "direction": self._direction(state),
        }

    def excluded_from_selection(self, state: TrialState) -> np.ndarray:
        """Levels the final selection may not choose, [trial, level]."""
        return self.eliminated(state)

    def isotonic_estimate(self, state: TrialState, include: np.ndarray) -> np.ndarray:
        """Isotonic DLT-rate estimates over the ``include`` levels, [trial, level] (NaN elsewhere).

        (y + 0.05)/(n + 0.1) weighted by the inverse of its Beta(y + 0.05, n − y + 0.05) variance,
        as BOIN's ``select.mtd``.
        """
        n, y = (counts.astype(float) for counts in self.selection_counts(state))
        p_hat = (y + 0.05) / (n + 0.1)
        var = (y + 0.05) * (n - y + 0.05) / ((n + 0.1) ** 2 * (n + 1.1))
        return isotonic_increasing(p_hat, np.where(include, 1.0 / var, 0.0))

    def select_mtd(self, state: TrialState) -> np.ndarray:
        excluded = self.excluded_from_selection(state)
        admissible = (self.selection_counts(state)[0] > 0) & ~excluded
        p_iso = self.isotonic_estimate(state, admissible)
        # BOIN adds i·1e-10 so that within a pooled block the higher level wins below the target
        # and the lower one above it.
        p_iso = p_iso + np.arange(1, self.n_levels + 1) * 1e-10
        distance = np.where(admissible, np.abs(p_iso - self.target), np.inf)
        selected = distance.argmin(axis=1)
        return np.where(admissible.any(axis=1) & ~excluded[:, 0], selected, NO_LEVEL)

    def level_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        n, y = self.selection_counts(state)
        treated = n > 0
        over = np.where(treated, special.betaincc(y + 0.05, n - y + 0.05, self.target), 0.0)
        return {
            "p_est": self.isotonic_estimate(state, treated),
            "p_overdose": np.where(
                treated, isotonic_increasing(over, treated.astype(float)), np.nan
            ),
            "eliminated": self.eliminated(state),
        }

    def decision_letter(self, n: int, y: int) -> str:
        """ "E", "S", "D" or "DU" (de-escalate and eliminate) for y DLTs in n at the current
        level: the move the engine makes, elimination included."""
        n = min(n, self.max_patients)
        if y >= self.eliminate_ge[n]:
            return DEESCALATE_AND_ELIMINATE
        return Decision(int(self.moves[n, min(y, n)])).letter

    def decision_table(self, n_max: int | None = None) -> list[dict[str, int | tuple | None]]:
        """The protocol's decision table: per number treated at the current level, the range
        (first, last) of DLT counts giving each decision — ``"E"``, ``"S"``, ``"D"``, ``"DU"``
        (de-escalate and eliminate the level and all above) — or None where none does."""
        n_max = self.max_patients if n_max is None else n_max
        rows = []
        for n in range(1, n_max + 1):
            letters = [self.decision_letter(n, y) for y in range(n + 1)]
            row: dict[str, int | tuple | None] = {"n": n}
            for letter in DECISION_LETTERS:
                ys = [y for y, got in enumerate(letters) if got == letter]
                row[letter] = (ys[0], ys[-1]) if ys else None
            rows.append(row)
        return rows

    def protocol_table(self, cohort_size: int, max_patients: int):
        """The decision table: per number treated, the DLT counts that give each decision."""
        return DECISION_COLUMNS, self.decision_rows()

    def decision_rows(self, n_max: int | None = None) -> list[dict[str, int | None]]:
        """The decision table as boundaries: per number treated, escalate if DLTs ≤, de-escalate
        if DLTs ≥, eliminate if DLTs ≥ (None where no count does)."""
        n_max = self.max_patients if n_max is None else n_max
        rows = []
        for n in range(1, n_max + 1):
            moves = self.moves[min(n, self.max_patients), : n + 1]
            escalate = np.flatnonzero(moves == Decision.ESCALATE)
            deescalate = np.flatnonzero(moves == Decision.DEESCALATE)
            elim = int(self.eliminate_ge[min(n, self.max_patients)])
            rows.append(
                {
                    "n": n,
                    "escalate_if_dlt_le": int(escalate[-1]) if escalate.size else None,
                    "deescalate_if_dlt_ge": int(deescalate[0]) if deescalate.size else None,
                    "eliminate_if_dlt_ge": elim if elim <= n else None,
                }
            )
        return rows


# ---------------------------------------------------------------------------------------------
# The design file


def parse_interval_options(table: TomlTable, fields: DesignFields, extra: dict[str, Interval]):
    """The options every interval design shares (``eps1``/``eps2`` around the target,
    ``elimination_cutoff``, ``elimination_min_n``, ``max_at_dose``) and the design's own numbers
    ``extra`` (key → allowed values); absent keys keep the class's defaults."""
    options: dict[str, Any] = {}
    target = fields.target
    for key, side in (("eps1", "below"), ("eps2", "above")):
        value = table.number(key, Interval(0.0, 1.0))
        if value is None:
            continue
        if target is not None and not (
            0 < target - value if side == "below" else target + value < 1
        ):
            table.value_error(
                key, value, f"must leave the interval {side} target ({target:g}) inside (0, 1)"
            )
            continue
        options[key] = value
    for key, allowed in {"elimination_cutoff": OPEN_UNIT, **extra}.items():
        value = table.number(key, allowed)
        if value is not None:
            options[key] = value
    min_n = table.integer("elimination_min_n", 1)
    if min_n is not None:
        options["elimination_min_n"] = min_n
    options["max_at_dose"] = table.integer("max_at_dose", 1)
    return options


def interval_spec(
    method_class: type[IntervalDesign], section: str, extra: dict[str, Interval] | None = None
) -> MethodSpec:
    """The :class:`~theradose.methods.spec.MethodSpec` of an interval design whose options are
    the shared ones plus the numbers ``extra`` (key → allowed values), in section ``[section]``.
    Stopping: at ``max_patients``, and (``max_at_dose``) when that many patients have been
    treated at the level the next cohort would stay at, as BOIN's ``n.earlystop``."""
    extra = extra or {}

    def parse(table: TomlTable, fields: DesignFields) -> dict[str, Any]:
        return parse_interval_options(table, fields, extra)

    def build(fields: DesignFields, options: dict[str, Any]) -> Parts:
        settings = {k: v for k, v in options.items() if k != "max_at_dose"}
        method = method_class(fields.n_levels, fields.target, fields.max_patients, **settings)
        stopping = [MaxPatients(fields.max_patients)]
        if options["max_at_dose"] is not None:
            stopping.append(MaxAtDose(options["max_at_dose"], only_when_staying=True))
        return method, (), tuple(stopping)

    keys = ("eps1", "eps2", "elimination_cutoff", "elimination_min_n", "max_at_dose", *extra)
    return MethodSpec(
        key=method_class.key,
        method_class=method_class,
        section=section,
        keys=keys,
        parse=parse,
        build=build,
    )
