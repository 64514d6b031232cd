"""The state of a batch of trials: arrays over trials, levels and patients.

Every simulated trial of a chunk lives in the same arrays, so the engine advances all of them
with a handful of numpy operations per cohort. Levels are 0-based here; user-facing code adds 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

NO_LEVEL = -1


def highest_level(mask: np.ndarray) -> np.ndarray:
    """The highest level where ``mask[trial, level]`` is True, NO_LEVEL where none is, [trial]."""
    # Level by level: a few levels and many trials, where reductions along the short axis are
    # several times slower than whole-column operations.
    top = np.full(mask.shape[0], NO_LEVEL, dtype=np.int64)
    for level in range(mask.shape[1]):
        np.copyto(top, level, where=mask[:, level])
    return top


def any_level(mask: np.ndarray) -> np.ndarray:
    """Whether any level of ``mask[trial, level]`` is True, [trial] (column by column, as
    :func:`highest_level`)."""
    out = mask[:, 0].copy()
    for level in range(1, mask.shape[1]):
        out |= mask[:, level]
    return out


def row_sums(values: np.ndarray, dtype=None) -> np.ndarray:
    """Each row of a short [row, k] array (counts per level, flags per cohort place) summed,
    [row], as ``dtype`` (the values' own when None); zeros when k = 0. Column by column: numpy's
    sum along a short trailing axis is several times slower (for integers, in any order the
    same)."""
    dtype = values.dtype if dtype is None else dtype
    if values.shape[1] == 0:
        return np.zeros(values.shape[0], dtype=dtype)
    out = values[:, 0].astype(dtype)
    for j in range(1, values.shape[1]):
        out += values[:, j]
    return out


def this_and_above(mask: np.ndarray) -> np.ndarray:
    """True at each level where ``mask[trial, level]`` or any level below it is True (e.g. a level
    and every level above it eliminated), [trial, level]."""
    out = mask.copy()
    for level in range(1, mask.shape[1]):
        out[:, level] |= out[:, level - 1]
    return out


class StopReason(IntEnum):
    """Why a trial stopped (0 while it is still running)."""

    RUNNING = 0
    MAX_PATIENTS = 1
    TOO_TOXIC = 2  # the lowest level is too toxic (eliminated): no MTD
    RULE_COMPLETE = 3  # the design's own rule ended the trial (3+3)
    MAX_AT_DOSE = 4
    SAFETY = 5  # the model says the lowest level is too toxic: no MTD
    NO_ADMISSIBLE = 6  # no level meets the organ-dose constraints: no MTD
    NONE_ACCEPTABLE = 7  # no level near the current one is safe and active enough (BOIN12)

    @property
    def label(self) -> str:
        return _STOP_LABELS[self]

    @property
    def selects_mtd(self) -> bool:
        """False when stopping this way means that no level is selected."""
        return self not in (
            StopReason.TOO_TOXIC,
            StopReason.SAFETY,
            StopReason.NO_ADMISSIBLE,
            StopReason.NONE_ACCEPTABLE,
        )


_STOP_LABELS = {
    StopReason.RUNNING: "running",
    StopReason.MAX_PATIENTS: "maximum sample size reached",
    StopReason.TOO_TOXIC: "lowest level too toxic",
    StopReason.RULE_COMPLETE: "design rule complete",
    StopReason.MAX_AT_DOSE: "maximum patients at the assigned level",
    StopReason.SAFETY: "lowest level too toxic by the model (safety stop)",
    StopReason.NO_ADMISSIBLE: "no level meets the organ-dose constraints",
    StopReason.NONE_ACCEPTABLE: "no acceptable level (toxicity or efficacy) near the current one",
}


@dataclass
class TrialState:
    """Counts and per-patient records of a batch of trials.

    Count arrays are what count-based designs (3+3, BOIN, CRM) decide on; per-patient arrays keep
    the order of enrolment for designs and summaries that need it (timing, dosimetry).
    """

    n: np.ndarray  # [trial, level] patients treated
    y: np.ndarray  # [trial, level] DLTs observed
    level: np.ndarray  # [trial] level of the last cohort treated (NO_LEVEL before the first)
    next_level: np.ndarray  # [trial] level the next cohort will receive
    n_enrolled: np.ndarray  # [trial]
    active: np.ndarray  # [trial] bool
    stop_reason: np.ndarray  # [trial] StopReason values
    last_cohort_n: np.ndarray  # [trial] size of the last cohort
    last_cohort_y: np.ndarray  # [trial] DLTs in the last cohort
    patient_level: np.ndarray | None = None  # [trial, patient] NO_LEVEL when not enrolled
    patient_dlt: np.ndarray | None = None  # [trial, patient] bool
    patient_arrival: np.ndarray | None = (
        None  # [trial, patient] months; NaN until timing is modelled
    )
    patient_dlt_time: np.ndarray | None = None  # [trial, patient] months after arrival; NaN if none
    patient_while_pending: np.ndarray | None = None  # [trial, patient] enrolled with others pending
    # Dosimetry records: the engine writes them when its trials end (they follow from each
    # patient's level and dosimetry); during a trial the constraint reads dosimetry_stats.
    patient_measured_gy_per_gbq: np.ndarray | None = None  # [trial, patient, organ] (design's)
    patient_total_activity: np.ndarray | None = None  # [trial, patient] over all cycles, capped
    patient_total_activity_sq: np.ndarray | None = None  # [trial, patient] Σ over cycles of a²
    patient_capped: np.ndarray | None = None  # [trial, patient] later cycles reduced
    patient_cumulative: np.ndarray | None = None  # [trial, patient, organ] true dose or BED
    patient_exceeds: np.ndarray | None = None  # [trial, patient, organ] true value > limit
    dosimetry_stats: object = None  # running DosimetryStats [trial, organ] of measured Gy/GBq
    # The dose records reduced trial by trial (theradose.dose_summary.DoseSummary) when the
    # trials end; the per-patient records above are kept only with dose_records.
    dose_summary: object = None
    dose_records: bool = True
    ruled_out_at: np.ndarray | None = None  # [trial, level] patients enrolled when first
    # ruled out by the organ-dose constraint (-1: never)
    admissible: np.ndarray | None = None  # [trial, level] levels the organ-dose limits admit
    # at the last decision (None: every level), for rules that depend on the top of the range
    memo: dict | None = None  # results computed for the state as it is now (e.g. a posterior)
    time: np.ndarray | None = None  # [trial] months since the trial started (decision time)
    stopped_at: np.ndarray | None = None  # [trial] time of the decision that ended the trial
    # Efficacy (scenarios with eff_prob; None otherwise): responses and patients with both a DLT
    # and a response per level, and each patient's response.
    r: np.ndarray | None = None  # [trial, level] responses observed
    b: np.ndarray | None = None  # [trial, level] patients with a DLT and a response
    patient_response: np.ndarray | None = None  # [trial, patient] bool
    # months after arrival until the response is seen; NaN without one (a method with late
    # efficacy only, :meth:`with_response_times`; None: every response is known at once)
    patient_response_time: np.ndarray | None = None
    # Backfilling (designs with [backfill]; None otherwise): backfill patients take places in the
    # per-patient arrays in order of arrival, but not in n_enrolled (the escalation's patients).
    n_backfill: np.ndarray | None = None  # [trial, level] backfill patients treated
    patient_backfill: np.ndarray | None = None  # [trial, patient] bool
    backfill_unseen: np.ndarray | None = None  # [trial, patient] outcome not yet in n, y
    backfill_allowed: np.ndarray | None = None  # [trial, level] the design allowed at its last
    # decision
    eliminated_for_good: np.ndarray | None = None  # [trial, level] levels an interval design
    # eliminated at some decision (kept only with backfill, whose late outcomes could lower an
    # eliminated level's rate: without it an eliminated level's counts never change)

    @classmethod
    def start(
        cls,
        n_trials: int,
        n_levels: int,
        start_level: int,
        max_patients: int | None = None,
        timed: bool = True,
    ) -> TrialState:
        """A fresh batch of trials about to treat their first cohort at ``start_level``.

        ``max_patients=None`` keeps counts only (exact enumeration, recommendations from counts).
        ``timed=False`` (a design without ``[timing]``): no arrival, onset or pending records,
        which such a design never reads (three [trial, patient] arrays less to fill).
        """
        per_patient = {}
        if max_patients is not None:
            shape = (n_trials, max_patients)
            per_patient = {
                "patient_level": np.full(shape, NO_LEVEL, dtype=np.int16),
                "patient_dlt": np.zeros(shape, dtype=bool),
            }
            if timed:
                per_patient.update(
                    patient_arrival=np.full(shape, np.nan),
                    patient_dlt_time=np.full(shape, np.nan),
                    patient_while_pending=np.zeros(shape, dtype=bool),
                )
        return cls(
            n=np.zeros((n_trials, n_levels), dtype=np.int32),
            y=np.zeros((n_trials, n_levels), dtype=np.int32),
            level=np.full(n_trials, NO_LEVEL, dtype=np.int32),
            next_level=np.full(n_trials, start_level, dtype=np.int32),
            n_enrolled=np.zeros(n_trials, dtype=np.int32),
            active=np.ones(n_trials, dtype=bool),
            stop_reason=np.zeros(n_trials, dtype=np.int8),
            last_cohort_n=np.zeros(n_trials, dtype=np.int32),
            last_cohort_y=np.zeros(n_trials, dtype=np.int32),
            time=np.zeros(n_trials),
            memo={},
            stopped_at=np.full(n_trials, np.nan),
            **per_patient,
        )

    @property
    def n_trials(self) -> int:
        return self.n.shape[0]

    @property
    def n_levels(self) -> int:
        return self.n.shape[1]

    def current(self, counts: np.ndarray) -> np.ndarray:
        """``counts[trial, level]`` at each trial's current level, [trial]."""
        return np.take_along_axis(counts, np.maximum(self.level, 0)[:, None], axis=1)[:, 0]

    def record_cohort(
        self,
        trials: np.ndarray,
        size: int,
        n_dlt: np.ndarray,
        n_response: np.ndarray | None = None,
        n_both: np.ndarray | None = None,
    ) -> None:
        """Add a cohort of ``size`` patients with ``n_dlt`` DLTs at each trial's next level (and,
        when the state keeps efficacy, ``n_response`` responses, ``n_both`` of them with a DLT)."""
        lvl = self.next_level[trials]
        # flat indices into the [trial, level] counts: a 1-d scatter is twice as fast
        cell = trials * self.n_levels + lvl
        self.n.reshape(-1)[cell] += size
        self.y.reshape(-1)[cell] += n_dlt
        if self.r is not None and n_response is not None:
            self.r.reshape(-1)[cell] += n_response
            self.b.reshape(-1)[cell] += n_both
        self.level[trials] = lvl
        self.n_enrolled[trials] += size
        self.last_cohort_n[trials] = size
        self.last_cohort_y[trials] = n_dlt

    def with_efficacy(self) -> TrialState:
        """Add the efficacy records: responses per level and per patient (all zero)."""
        self.r = np.zeros_like(self.n)
        self.b = np.zeros_like(self.n)
        if self.patient_level is not None:
            self.patient_response = np.zeros(self.patient_level.shape, dtype=bool)
        return self

    def with_response_times(self) -> TrialState:
        """Add when each response is seen (none yet), for a method with late efficacy."""
        self.patient_response_time = np.full(self.patient_level.shape, np.nan)
        return self

    def with_backfill(self) -> TrialState:
        """Add the backfill records (none treated yet; every level allowed before the first
        decision)."""
        self.n_backfill = np.zeros_like(self.n)
        self.patient_backfill = np.zeros(self.patient_level.shape, dtype=bool)
        self.backfill_unseen = np.zeros(self.patient_level.shape, dtype=bool)
        self.backfill_allowed = np.ones(self.n.shape, dtype=bool)
        self.eliminated_for_good = np.zeros(self.n.shape, dtype=bool)
        return self

    def places(self) -> np.ndarray:
        """Places taken in the per-patient arrays: escalation and backfill patients, [trial]."""
        if self.n_backfill is None:
            return self.n_enrolled
        return self.n_enrolled + self.n_backfill.sum(axis=1, dtype=np.int32)

    @property
    def efficacy(self) -> bool:
        """Whether the state keeps responses."""
        return self.r is not None

    def with_dosimetry(self, n_organs: int) -> TrialState:
        """Add the running dosimetry statistics and when levels were ruled out; the engine writes
        the per-patient dosimetry records when the trials end."""
        self.ruled_out_at = np.full((self.n_trials, self.n_levels), -1, dtype=np.int32)
        from theradose.dosimetry import DosimetryStats

        self.dosimetry_stats = DosimetryStats.empty(self.n_trials, n_organs)
        return self

    def followup(self, window: float) -> np.ndarray:
        """Follow-up of each enrolled patient at the trial's current time, as a fraction of the
        DLT window in [0, 1] (0 for places not yet enrolled), [trial, patient]."""
        elapsed = self.time[:, None] - self.patient_arrival
        fraction = np.clip(np.nan_to_num(elapsed / window, nan=0.0), 0.0, 1.0)
        return np.where(self.patient_level >= 0, fraction, 0.0)

    def observed_dlt(self, window: float) -> np.ndarray:
        """DLTs that have occurred by the trial's current time, [trial, patient] (read-only:
        kept for the state as it is now)."""

        def compute():
            onset_time = self.patient_arrival + self.patient_dlt_time
            return self.patient_dlt & (onset_time <= self.time[:, None])

        return self._now("observed_dlt", window, compute)

    def pending(self, window: float) -> np.ndarray:
        """Enrolled patients still in follow-up without a DLT so far, [trial, patient]
        (read-only: kept for the state as it is now)."""

        def compute():
            # Times, not fractions: a window that closes exactly now must count as complete.
            open_window = self.time[:, None] < self.patient_arrival + window
            return (self.patient_level >= 0) & open_window & ~self.observed_dlt(window)

        return self._now("pending", window, compute)

    def observed_response(self, window: float) -> np.ndarray:
        """Responses seen by the trial's current time, [trial, patient] (read-only): every
        response when the state keeps no response times (an outcome string: complete data)."""

        def compute():
            if self.patient_response_time is None:
                return self.patient_response.copy()
            seen = self.patient_arrival + self.patient_response_time
            return self.patient_response & (seen <= self.time[:, None])

        return self._now("observed_response", window, compute)

    def efficacy_pending(self, window: float) -> np.ndarray:
        """Enrolled patients still within the efficacy window ``window`` without a response so
        far, [trial, patient] (read-only; none without response times)."""

        def compute():
            if self.patient_response_time is None:
                return np.zeros(self.patient_level.shape, dtype=bool)
            open_window = self.time[:, None] < self.patient_arrival + window
            return (self.patient_level >= 0) & open_window & ~self.observed_response(window)

        return self._now("efficacy_pending", window, compute)

    def _now(self, name: str, window: float, compute) -> np.ndarray:
        """``compute()``, kept in the memo while the trials' times and enrolments are what they
        were: a time-to-event design asks for the same follow-up several times per decision
        (its counts, its current level, whether to hold accrual, the next event). Patients'
        records change only when patients join (the places taken change)."""
        if self.memo is None:
            return compute()
        key = (window, self.time.tobytes(), self.places().tobytes())
        kept = self.memo.get(name)
        if kept is not None and kept[0] == key:
            return kept[1]
        value = compute()
        value.setflags(write=False)
        self.memo[name] = (key, value)
        return value

    def take(self, trials: np.ndarray) -> TrialState:
        """A new state holding only ``trials`` (copies)."""
        fields = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "memo":
                fields[name] = {}
            elif value is None:
                fields[name] = None
            elif isinstance(value, np.ndarray):
                fields[name] = value[trials].copy()
            elif isinstance(value, bool):
                fields[name] = value
            elif name == "dose_summary":  # a summary of the whole batch: not a trial's
                fields[name] = None
            else:  # a record of [trial, ...] arrays (the running dosimetry statistics)
                fields[name] = type(value)(*(a[trials].copy() for a in vars(value).values()))
        return TrialState(**fields)
