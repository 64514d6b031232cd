"""Backfilling: patients who arrive while the current cohort is pending are treated at a lower
level already cleared as safe (BF-BOIN).

Zhao Y, Yuan Y, Korn EL, Freidlin B (2024). Backfilling patients in phase I dose-escalation trials
using Bayesian optimal interval design (BOIN). *Clin Cancer Res* 30(4):673–679.

Any design with ``[timing]`` may backfill (``[backfill] enabled = true, max_per_level``). While
accrual to the dose escalation is held — a cohort's DLT window is open (designs that wait for
complete data), or a time-to-event design suspends accrual or turns arrivals away — each new
arrival is treated at the highest level ``b`` that is open for backfilling at that moment
(BF-BOIN's default assignment, ``backfill.assign = "highest"`` of the ``bfboin`` R package), or
turned away when none is. Level ``b`` is open when

- it is below the current level (the escalation's) and has treated escalation patients: the
  trial has escalated past it ("cleared");
- the design allowed it at its last decision, nor any level below it was ruled out (method
  elimination, organ-dose limits, every constraint of the design);
- the observed data there — every patient, escalation and backfill, whose outcome is known
  now: a DLT seen, or the window complete — do not call for de-escalation or elimination
  (BF-BOIN: y_b < λd·n_b), nor do those of any level below it (a level that closes closes
  every level above it);
- fewer than ``max_per_level`` backfill patients have been treated there.

Backfill patients' outcomes join the level's counts once observed (a time-to-event design sees
them as it sees any patient, with partial follow-up), so the design's decisions, its
elimination and the final selection use them. Backfill patients do not count towards
``max_patients``, the escalation's sample size, as in BF-BOIN (its ``ncohort``).

"Calls for de-escalation" is the design's own decision table for an interval design (BOIN,
TITE-BOIN, mTPI-2, Keyboard, i3+3: de-escalate, or eliminate by its elimination rule); for any
other design it is BOIN's, for the design's target with φ2 = 1.4φ (Liu & Yuan 2015), the rule
BF-BOIN uses.

Deviations from the paper: the escalation decision at the current level uses the pooled data of
that level alone (BF-BOIN also resolves conflicts between the current level's data and a lower
backfilled level's by pooling them, its rules for b* … d); backfilling needs no response observed
at the level (BF-BOIN's optional efficacy requirement); the pooled check of a level with the one
above it (a level closes only on its own data and those below it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from theradose.state import TrialState, this_and_above

REFERENCE = (
    "Zhao Y, Yuan Y, Korn EL, Freidlin B (2024). Backfilling patients in phase I "
    "dose-escalation trials using Bayesian optimal interval design (BOIN). Clin Cancer Res "
    "30(4):673–679."
)


@dataclass(frozen=True)
class Backfill:
    """The ``[backfill]`` section of a design (present only when ``enabled = true``).

    Attributes
    ----------
    max_per_level : the most backfill patients treated at one level
    closes : [n, y] bool: y DLTs among n patients with known outcomes close a level for
        backfilling (the design's de-escalation or elimination), for n = 0 … the most patients a
        level can hold (cells y > n repeat y = n)
    """

    max_per_level: int
    closes: np.ndarray = field(repr=False, compare=False)

    def capacity(self, n_levels: int) -> int:
        """The most backfill patients a trial can treat (none at the top level)."""
        return self.max_per_level * max(n_levels - 1, 0)

    def describe(self) -> str:
        return (
            "Backfilling (Zhao et al. 2024, BF-BOIN): while the current cohort is pending, new "
            "patients are treated at the highest lower level the trial has escalated past whose "
            "observed data (and those of every level below it) do not call for de-escalation, "
            f"up to {self.max_per_level} backfill patients per level; their outcomes are used "
            "once observed."
        )


def closes_table(method, target: float, n_max: int) -> np.ndarray:
    """[n, y] for n, y = 0 … ``n_max``: whether y DLTs in n patients close a level for
    backfilling — the method's own de-escalation or elimination for an interval design, BOIN's
    (φ2 = 1.4φ, elimination at P(p > φ) > 0.95) for any other."""
    from theradose.methods.boin import Boin
    from theradose.methods.interval import Decision, IntervalDesign

    if isinstance(method, IntervalDesign):
        rule = dataclasses.replace(method, max_patients=max(n_max, method.max_patients))
    else:
        rule = Boin(1, target, n_max)
    moves = rule.moves[: n_max + 1, : n_max + 1]
    y = np.arange(n_max + 1)
    eliminate = y[None, :] >= rule.eliminate_ge[: n_max + 1, None]
    return (moves == Decision.DEESCALATE) | eliminate


def outcome_known(
    state: TrialState,
    rows: np.ndarray,
    when: np.ndarray,
    window: float,
    dlt_ends_follow_up: bool = True,
) -> np.ndarray:
    """Whether each patient's DLT outcome is known at times ``when`` [row], [row, patient]: a
    patient with a DLT once it has occurred (arrival + DLT time ≤ when), one without once the
    DLT window has closed (arrival + ``window`` ≤ when); False at places nobody took. The DLTs
    seen by then are ``known & state.patient_dlt[rows]``. Without ``dlt_ends_follow_up`` (a
    design deciding on DLT and response together, whose response is known only when its
    window closes), every patient is known at arrival + ``window``, DLT or not.

    One rule for the engine (backfill outcomes joining the counts, the levels open for
    backfilling) and for an interim recommendation's replay of a real trial. An outcome, once
    known, is final: a DLT recorded after the window (real data only; the engine's onsets lie
    within it) is known when it occurs, not at the window's end without it.
    """
    if not dlt_ends_follow_up:
        return state.patient_arrival[rows] + window <= when[:, None]
    event = np.where(state.patient_dlt[rows], state.patient_dlt_time[rows], window)
    return state.patient_arrival[rows] + event <= when[:, None]


def observed_counts(state: TrialState, rows: np.ndarray, when: np.ndarray, window: float):
    """(patients with known outcomes, DLTs seen) per level at times ``when`` [row], [row, level]
    each (:func:`outcome_known`)."""
    known = outcome_known(state, rows, when, window)
    seen_dlt = known & state.patient_dlt[rows]
    level = state.patient_level[rows]
    n = np.zeros((rows.size, state.n_levels), dtype=np.int64)
    y = np.zeros_like(n)
    for b in range(state.n_levels):
        here = level == b
        n[:, b] = (known & here).sum(axis=1)
        y[:, b] = (seen_dlt & here).sum(axis=1)
    return n, y


def see_backfill_outcomes(
    state: TrialState,
    window: float,
    rows: np.ndarray | None = None,
    dlt_ends_follow_up: bool = True,
):
    """Add to the counts the backfill patients (of a design that decides on complete data) whose
    outcome is known at each trial's time (:func:`outcome_known`; a design that decides on
    responses too passes ``dlt_ends_follow_up=False``: a DLT does not make the response known)
    — or, without ``rows``, every one of them (the trials' follow-up completes)."""
    unseen = state.backfill_unseen
    if rows is None:
        known = unseen.copy()
    else:
        known = np.zeros_like(unseen)
        now = state.time[rows]
        known[rows] = unseen[rows] & outcome_known(state, rows, now, window, dlt_ends_follow_up)
    if not known.any():
        return
    t, c = np.nonzero(known)
    response = None if state.patient_response is None else state.patient_response[t, c]
    count_patients(
        state, t, state.patient_level[t, c].astype(np.intp), state.patient_dlt[t, c], response
    )
    unseen &= ~known


def count_patients(state: TrialState, rows, level, dlt, response=None) -> None:
    """Add one patient per row at ``level`` [row] to the counts per level (``dlt``, ``response``
    [row] their outcomes)."""
    np.add.at(state.n, (rows, level), 1)
    np.add.at(state.y, (rows, level), dlt.astype(state.y.dtype))
    if state.r is not None and response is not None:
        np.add.at(state.r, (rows, level), response.astype(state.r.dtype))
        np.add.at(state.b, (rows, level), (response & dlt).astype(state.b.dtype))


@dataclass(frozen=True)
class BackfillStatus:
    """Why each level is open or closed for backfilling, [row, level] bool each: the parts of
    :func:`open_levels`' rule, for an interim recommendation to explain it."""

    cleared: np.ndarray  # below the current level and treated escalation patients
    unsafe: np.ndarray  # its known outcomes call for de-escalation or elimination
    ruled_out: np.ndarray  # the design did not allow it at its last decision
    closed: np.ndarray  # unsafe or ruled out, itself or a level below it
    room: np.ndarray  # fewer than max_per_level backfill patients treated there

    @property
    def open(self) -> np.ndarray:
        return self.cleared & ~self.closed & self.room


def backfill_status(
    backfill: Backfill, state: TrialState, rows: np.ndarray, when: np.ndarray, window: float
) -> BackfillStatus:
    """The parts of the backfilling rule in trials ``rows`` at times ``when`` [row]
    (:func:`open_levels` is their ``open``)."""
    levels = np.arange(state.n_levels)
    current = np.minimum(state.level[rows], state.next_level[rows])
    escalation = (state.patient_level[rows] >= 0) & ~state.patient_backfill[rows]
    treated = np.zeros((rows.size, state.n_levels), dtype=bool)
    for b in range(state.n_levels):
        treated[:, b] = (escalation & (state.patient_level[rows] == b)).any(axis=1)
    cleared = treated & (levels[None, :] < current[:, None])
    n, y = observed_counts(state, rows, when, window)
    top = backfill.closes.shape[0] - 1
    n = np.minimum(n, top)
    unsafe = backfill.closes[n, np.minimum(y, n)]
    ruled_out = ~state.backfill_allowed[rows]
    closed = this_and_above(unsafe | ruled_out)
    room = state.n_backfill[rows] < backfill.max_per_level
    return BackfillStatus(cleared, unsafe, ruled_out, closed, room)


def open_levels(
    backfill: Backfill, state: TrialState, rows: np.ndarray, when: np.ndarray, window: float
) -> np.ndarray:
    """Levels open for backfilling in trials ``rows`` at times ``when`` [row], [row, level]."""
    return backfill_status(backfill, state, rows, when, window).open
