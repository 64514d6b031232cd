"""The cohort loop over a batch of trials, and the runs built on it.

One decision pipeline for every design (after Brock's ``escalation`` and crmPack):
the method proposes a level → the method's and the design's masks remove levels (AND) → the
highest allowed level at or below the proposal is taken → stopping rules decide → at the end the
method selects the MTD. Simulation, exact enumeration and interim recommendations all call
:func:`decide`, so they cannot disagree.

Randomness: chunk ``i`` of a run draws from ``SeedSequence(seed, spawn_key=(i, stream))`` — the
same as ``SeedSequence(seed).spawn(...)`` children — so results do not depend on the number of
workers. Patients' latent tolerances are drawn patient-major, so a design with fewer patients
sees the same first patients as one with more (common random numbers across designs).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace

import numpy as np

from theradose.design import Design
from theradose.results import ChunkResult, Simulations
from theradose.scenario import DesignTruth, Scenario, truth_for
from theradose.state import NO_LEVEL, StopReason, TrialState, highest_level
from theradose.timing import Onset

CHUNK_TRIALS = 10_000
TOLERANCE_STREAM = 0
ARRIVAL_STREAM = 1
ONSET_STREAM = 2
DOSIMETRY_STREAM = 3
TURNED_AWAY_STREAM = 4


def admissible_levels(design: Design, state: TrialState) -> np.ndarray:
    """Levels the organ-dose limits admit now, [trial, level] (all when the design has none).

    This is the dose range as the design may use it: the pipeline never treats or selects a
    level outside it, and rule-based methods read it as the top of the range
    (``state.admissible``).
    """
    mask = np.ones((state.n_trials, state.n_levels), dtype=bool)
    for constraint in design.constraints:
        if constraint.organ_limits:
            mask &= constraint.allowed(state)
    return mask


def decide(design: Design, state: TrialState) -> None:
    """Choose each active trial's next level, or stop it; updates ``state`` in place."""
    levels = np.arange(state.n_levels)
    constraint_allows = np.ones((state.n_trials, state.n_levels), dtype=bool)
    admissible = np.ones_like(constraint_allows)
    for constraint in design.constraints:
        allowed = constraint.allowed(state)
        if constraint.organ_limits:
            admissible &= allowed
            if state.ruled_out_at is not None:
                first = ~allowed & (state.ruled_out_at < 0) & state.active[:, None]
                state.ruled_out_at[first] = np.broadcast_to(state.n_enrolled[:, None], first.shape)[
                    first
                ]
        constraint_allows &= allowed
    state.admissible = admissible
    proposal, method_stop = design.method.propose(state)
    below = levels[None, :] <= proposal[:, None]
    method_allows = design.method.allowed(state) & below
    at_or_below = method_allows & constraint_allows
    has_level = at_or_below.any(axis=1)
    next_level = np.maximum(highest_level(at_or_below), 0)

    reason = np.zeros(state.n_trials, dtype=np.int8)
    # Nothing allowed: the method's own rules (too toxic) or only the organ-dose constraints.
    reason[~has_level] = np.where(
        method_allows.any(axis=1), StopReason.NO_ADMISSIBLE, StopReason.TOO_TOXIC
    )[~has_level]
    reason = np.where(reason == 0, method_stop, reason)
    # A rule that ends the trial with no MTD (safety) outranks one that ends it normally, so the
    # outcome never depends on the order rules are listed in (e.g. safety on the last cohort).
    rules = sorted(design.stopping, key=lambda rule: rule.reason.selects_mtd)
    for rule in rules:
        reason[(reason == 0) & rule.fires(state, next_level)] = rule.reason

    stopping = state.active & (reason != 0)
    state.stop_reason[stopping] = reason[stopping]
    state.stopped_at[stopping] = state.time[stopping]
    carry_on = state.active & ~stopping
    state.next_level[carry_on] = next_level[carry_on]
    state.active &= ~stopping


def select_mtd(design: Design, state: TrialState) -> np.ndarray:
    """The final MTD of each trial, [trial]; none for trials stopped as too toxic.

    The method's own selection, then two guarantees the pipeline gives every design: the MTD is
    never a level the organ-dose limits rule out at the end of the trial, and, with the
    design's ``select_tried_only``, it is a level that treated patients. When the method's
    level fails either, the highest level below it that passes both is selected (none if no
    level does).

    A method with ``mtd_is_next_level`` (BLRM, EWOC's "next_dose") selects the level the
    decision pipeline would give a next cohort after all the data: its proposal, then the
    highest level at or below it that the method and every constraint allow.
    """
    levels = np.arange(state.n_levels)
    admissible = admissible_levels(design, state)
    state.admissible = admissible
    if design.method.mtd_is_next_level:
        proposal, _ = design.method.propose(state)
        mtd = highest_level(design.allowed(state) & (levels[None, :] <= proposal[:, None]))
    else:
        mtd = design.method.select_mtd(state)
    eligible = admissible & (levels[None, :] <= mtd[:, None])
    if design.selects_tried_only:
        eligible &= state.n > 0
    mtd = np.where(mtd == NO_LEVEL, NO_LEVEL, highest_level(eligible))
    no_mtd = [r.value for r in StopReason if not r.selects_mtd]
    return np.where(np.isin(state.stop_reason, no_mtd), NO_LEVEL, mtd)


@dataclass(frozen=True)
class VirtualPatients:
    """The random draws that make a chunk's virtual patients, [trial, patient] each.

    ``tolerance``: DLT at level d iff u < p_d (common random numbers across designs);
    ``arrival``, ``onset``: U(0, 1) draws turned into accrual gaps and DLT onset times by the
    design's timing and the scenario's onset model (None when no design needs time);
    ``dosimetry_seed``: the stream of the patients' organ Gy/GBq; ``organs`` (the scenario's
    DosimetryTruth), ``true_gy_per_gbq`` [trial, patient, organ] and ``measured_gy_per_gbq``
    [trial, patient, design organ]: the patients' dosimetry for one design and scenario, with
    ``measured_log_sums``: Σ log and Σ log² of the measured values of the first k patients,
    [k, trial, design organ] for k = 0 … patients (the running statistics of the constraint);
    ``turned_away_seed``: the stream of accrual gaps after arrivals a design turns away.
    """

    tolerance: np.ndarray
    arrival: np.ndarray | None = None
    onset: np.ndarray | None = None
    dosimetry_seed: np.random.SeedSequence | None = None
    organs: object = None
    true_gy_per_gbq: np.ndarray | None = None
    measured_gy_per_gbq: np.ndarray | None = None
    turned_away_seed: np.random.SeedSequence | None = None
    measured_log_sums: tuple[np.ndarray, np.ndarray] | None = None

    def head(self, n_patients: int) -> VirtualPatients:
        """The first ``n_patients`` patients of every trial."""
        cut = lambda a: None if a is None else a[:, :n_patients]  # noqa: E731
        sums = self.measured_log_sums
        return replace(
            self,
            tolerance=cut(self.tolerance),
            arrival=cut(self.arrival),
            onset=cut(self.onset),
            true_gy_per_gbq=cut(self.true_gy_per_gbq),
            measured_gy_per_gbq=cut(self.measured_gy_per_gbq),
            measured_log_sums=None if sums is None else tuple(a[: n_patients + 1] for a in sums),
        )

    def with_dosimetry(self, design: Design, scenario: Scenario) -> VirtualPatients:
        """These patients' organ Gy/GBq for ``design`` under ``scenario`` (common random numbers:
        the same draws whatever the design's measurement error)."""
        from theradose.dosimetry import sample_patients
        from theradose.scenario import organ_truth

        truth = organ_truth(scenario, design)
        if truth is None:
            return self
        dosimetry = design.dosimetry
        cv = 0.0 if dosimetry is None else dosimetry.measurement_cv
        n_trials, n_patients = self.tolerance.shape
        seed = self.dosimetry_seed or np.random.SeedSequence(0)
        rng = np.random.default_rng(seed)
        sampled = sample_patients(
            rng,
            truth.organs,
            n_trials,
            n_patients,
            measurement_cv=cv,
            correlation=truth.correlation,
        )
        measured = sums = None
        if dosimetry is not None and dosimetry.organs:
            measured = sampled.measured_gy_per_gbq[..., truth.index(dosimetry.names)]
            # patient-major: each running sum adds a whole [trial, organ] block (numpy's cumsum
            # along a leading axis is several times slower)
            log_g = np.log(measured).transpose(1, 0, 2)
            sums = np.zeros((2, n_patients + 1) + log_g.shape[1:])
            for k in range(n_patients):
                np.add(sums[0, k], log_g[k], out=sums[0, k + 1])
                np.add(sums[1, k], np.square(log_g[k]), out=sums[1, k + 1])
            sums = (sums[0], sums[1])
        return replace(
            self,
            organs=truth,
            true_gy_per_gbq=sampled.true_gy_per_gbq,
            measured_gy_per_gbq=measured,
            measured_log_sums=sums,
        )


def _enrol(
    design: Design,
    state: TrialState,
    rows: np.ndarray,
    size: np.ndarray,
    dlt_prob: np.ndarray,
    patients: VirtualPatients,
    onset: Onset,
    arrive_now: bool = False,
) -> None:
    """Treat the next ``size[row]`` patients of each trial in ``rows`` at its next level.

    With timing, they arrive one accrual gap after another from the trial's current time (the
    first of them at that time itself when ``arrive_now``), and the trial's time moves to the
    last arrival.
    """
    n_max = state.patient_level.shape[1]
    in_cohort = np.arange(design.cohort_size)
    cols = state.n_enrolled[rows, None] + in_cohort[None, :]
    enrolled = in_cohort[None, :] < size[:, None]
    cols = np.minimum(cols, n_max - 1)
    level = state.next_level[rows]
    p_dlt = dlt_prob[level][:, None]
    onset_fraction = None  # each DLT's onset, when the organ causing it has its own onset model
    if design.dosimetry is not None or patients.organs is not None:
        p_dlt, onset_fraction = _treat_with_dosimetry(
            design, state, patients, rows, cols, enrolled, level, p_dlt, onset
        )
    dlt = (patients.tolerance[rows[:, None], cols] < p_dlt) & enrolled
    r, c = np.broadcast_to(rows[:, None], cols.shape)[enrolled], cols[enrolled]
    lvl = np.broadcast_to(level[:, None], cols.shape)[enrolled]
    timing = design.timing
    if timing is not None:
        # Judged at the decision that admits the cohort, before it joins the records.
        state.patient_while_pending[r, c] = state.pending(timing.dlt_window_months)[r].any(axis=1)
    state.patient_level[r, c] = lvl
    state.patient_dlt[r, c] = dlt[enrolled]
    if design.doses is not None:
        state.patient_activity[r, c] = np.asarray(design.doses)[lvl]
    if timing is not None:
        window = timing.dlt_window_months
        gaps = np.where(enrolled, timing.gaps(patients.arrival[rows[:, None], cols]), 0.0)
        if arrive_now:
            gaps[:, 0] = 0.0
        arrival = state.time[rows, None] + np.cumsum(gaps, axis=1)
        state.patient_arrival[r, c] = arrival[enrolled]
        if onset_fraction is None:
            onset_fraction = onset.fraction(patients.onset[rows[:, None], cols])
        onset_months = window * onset_fraction
        state.patient_dlt_time[r, c] = np.where(dlt, onset_months, np.nan)[enrolled]
        state.time[rows] = arrival.max(axis=1)
    state.record_cohort(rows, size, dlt.sum(axis=1))


def _treat_with_dosimetry(design, state, patients, rows, cols, enrolled, level, p_dlt, onset):
    """Bring the running dosimetry statistics up to date with the cohort, and return each
    patient's DLT probability: from their own organ doses (NTCP, on their schedule, capped from
    their measured Gy/GBq when the design says so) in a dosimetry-driven scenario, else the
    level's; with it, when organs have their own DLT onset and the trial has time, each
    patient's onset as a fraction of the window, from the organ that causes the DLT
    (:func:`theradose.dosimetry.dlt_cause`), else None. The patients' records (activity given,
    capping, true cumulative organ doses) are written once, when the trials end
    (:func:`_finish_dosimetry`): they follow from each patient's level and dosimetry alone."""
    from theradose.dosimetry import (
        dlt_cause,
        dlt_causes,
        dlt_prob_from_causes,
        patient_dlt_prob,
    )

    if enrolled.all() and (cols == cols[0]).all():
        # every trial enrols the same places (the cohort engine): rows × a slice, two slices
        # (views, not copies) while every trial is running
        r = slice(None) if rows.size == state.n_trials else rows
        c = slice(int(cols[0, 0]), int(cols[0, -1]) + 1)
    else:
        r, c = rows[:, None], cols
    measured = patients.measured_gy_per_gbq
    if measured is not None:
        # patients join in order, so the statistics are the chunk's running sums at the count
        stats, (sum_log, sum_sq_log) = state.dosimetry_stats, patients.measured_log_sums
        after = state.n_enrolled[rows] + enrolled.sum(axis=1)
        if rows.size == state.n_trials and (after == after[0]).all():
            at, after = slice(None), int(after[0])  # every trial: no gather
        else:
            at = rows
        stats.count[at] = after[:, None] if isinstance(after, np.ndarray) else after
        stats.sum_log[at] = sum_log[after, at]
        stats.sum_sq_log[at] = sum_sq_log[after, at]
    organs = patients.organs
    if organs is not None and organs.toxicity is not None and organs.toxicity.uses_ntcp:
        planned = np.asarray(design.doses, dtype=float)[level][:, None] * np.ones(cols.shape)
        schedule, _ = _schedules(design, planned, None if measured is None else measured[r, c])
        true_g = patients.true_gy_per_gbq[r, c]
        own = [o.onset(None) for o in organs.toxicity.organs]
        if patients.onset is None or all(o is None for o in own):
            return patient_dlt_prob(true_g, schedule, organs), None
        causes = dlt_causes(true_g, schedule, organs)  # [row, slot, cause]
        cause = dlt_cause(causes, patients.tolerance[r, c])
        uniform = patients.onset[r, c]
        fraction = onset.fraction(uniform)  # the background's (the scenario's) and the default
        for k, organ_onset in enumerate(own, start=1):
            if organ_onset is not None:
                fraction = np.where(cause == k, organ_onset.fraction(uniform), fraction)
        return dlt_prob_from_causes(causes), fraction
    return p_dlt, None


def _schedules(design: Design, planned: np.ndarray, measured: np.ndarray | None):
    """Patients' schedules (as ScheduleMoments) from their planned activity per cycle [...] —
    capped from their measured Gy/GBq [..., design organ] when the design says so — and
    whether each was capped."""
    from theradose.dosimetry import ScheduleMoments, capped_moments

    dosimetry = design.dosimetry
    if dosimetry is not None and dosimetry.capping and measured is not None:
        return capped_moments(planned, measured, dosimetry)
    cycles = 1 if dosimetry is None else dosimetry.cycles
    uncapped = np.zeros(planned.shape, dtype=bool)
    return ScheduleMoments(cycles * planned, cycles * planned * planned), uncapped


def _finish_dosimetry(design: Design, state: TrialState, patients: VirtualPatients) -> None:
    """After the trials, every treated patient's records: activity given over the cycles,
    capping, measured Gy/GBq and, per organ with a limit in the design, the TRUE cumulative dose
    (or BED) and whether it passes the limit (NaN, False for places nobody took)."""
    from theradose.dosimetry import EXACT_LIMIT_RTOL, true_cumulative

    if state.dosimetry_stats is None:
        return
    enrolled = state.patient_level >= 0
    n = enrolled.shape[1]
    planned = np.where(enrolled, np.asarray(design.doses, dtype=float)[state.patient_level], 0.0)
    measured = patients.measured_gy_per_gbq
    measured = None if measured is None else measured[:, :n]
    schedule, capped = _schedules(design, planned, measured)
    state.patient_total_activity = np.where(enrolled, schedule.total, np.nan)
    state.patient_total_activity_sq = np.where(enrolled, schedule.total_sq, np.nan)
    state.patient_capped = capped & enrolled
    n_organs = state.dosimetry_stats.count.shape[1]
    state.patient_cumulative = np.full(enrolled.shape + (n_organs,), np.nan)
    state.patient_exceeds = np.zeros(enrolled.shape + (n_organs,), dtype=bool)
    if measured is None:
        return
    state.patient_measured_gy_per_gbq = measured.copy()
    state.patient_measured_gy_per_gbq[~enrolled] = np.nan
    truth = patients.organs
    index = truth.index(design.dosimetry.names)
    for j, model in enumerate(design.dosimetry.organs):
        true_g = patients.true_gy_per_gbq[:, :n, index[j]]
        cumulative = true_cumulative(model, truth.organs[index[j]], schedule, true_g)
        state.patient_cumulative[..., j] = np.where(enrolled, cumulative, np.nan)
        # as passes_limit: a patient capped exactly onto the limit does not pass it
        state.patient_exceeds[..., j] = enrolled & (
            cumulative > model.limit * (1 + EXACT_LIMIT_RTOL)
        )


def run_trials(
    design: Design,
    dlt_prob: np.ndarray,
    tolerance: np.ndarray | VirtualPatients,
    onset: Onset | None = None,
) -> TrialState:
    """Simulate one trial per row of the patients' draws [trial, patient].

    Without a time-to-event method, each cohort is treated, its DLT window completes (accrual
    suspended), then the design decides. A time-to-event method (``method.tite``) decides at each
    new patient's arrival from the data available then, weighting incomplete follow-up.
    """
    patients = tolerance if isinstance(tolerance, VirtualPatients) else VirtualPatients(tolerance)
    onset = Onset() if onset is None else onset
    if design.timing is not None and patients.arrival is None:
        raise ValueError(f"design {design.name!r} has [timing]: arrival and onset draws needed")
    n_trials = patients.tolerance.shape[0]
    dlt_prob = np.asarray(dlt_prob, dtype=float)
    state = TrialState.start(n_trials, design.n_levels, design.start_level, design.max_patients)
    if design.dosimetry is not None or patients.organs is not None:
        n_organs = 0 if design.dosimetry is None else len(design.dosimetry.organs)
        state.with_dosimetry(n_organs)
        _admit_start(design, state)
    if design.method.tite:
        _run_tite(design, state, dlt_prob, patients, onset)
    else:
        window = 0.0 if design.timing is None else design.timing.dlt_window_months
        while True:
            rows = np.flatnonzero(state.active)
            if rows.size == 0:
                break
            size = np.minimum(design.cohort_size, design.max_patients - state.n_enrolled[rows])
            _enrol(design, state, rows, size, dlt_prob, patients, onset)
            state.time[rows] += window  # the cohort's DLT window completes before the decision
            decide(design, state)
    _finish_dosimetry(design, state, patients)
    return state


def _admit_start(design: Design, state: TrialState) -> None:
    """Start at the highest level at or below the start level that the organ-dose limits admit
    under the prior; stop with no MTD when none is admissible."""
    levels = np.arange(state.n_levels)
    allowed = levels[None, :] <= state.next_level[:, None]
    allowed &= admissible_levels(design, state)
    none = ~allowed.any(axis=1)
    state.next_level = np.maximum(highest_level(allowed), 0).astype(np.int32)
    state.stop_reason[none] = StopReason.NO_ADMISSIBLE
    state.stopped_at[none] = 0.0
    state.active &= ~none


def _run_tite(design, state, dlt_prob, patients, onset) -> None:
    """Patient by patient: at the arrival that opens each cohort, decide from the follow-up
    available then; the cohort's other patients join the same level as they arrive."""
    window = design.timing.dlt_window_months
    turns_away = design.method.turns_away
    spare_gaps = np.random.default_rng(patients.turned_away_seed or np.random.SeedSequence(0))
    one = np.ones(state.n_trials, dtype=np.int32)
    rows = np.flatnonzero(state.active)
    _enrol(design, state, rows, one[rows], dlt_prob, patients, onset)
    while True:
        rows = np.flatnonzero(state.active)
        if rows.size == 0:
            break
        if np.all(state.n_enrolled[rows] >= design.max_patients):
            state.stop_reason[rows] = StopReason.MAX_PATIENTS
            state.stopped_at[rows] = state.time[rows]
            state.active[rows] = False
            break
        # The next patient arrives one gap later; decide with the data available then.
        state.time[rows] += design.timing.gaps(patients.arrival[rows, state.n_enrolled[rows]])
        if state.n_enrolled[rows[0]] % design.cohort_size:
            _enrol(design, state, rows, one[rows], dlt_prob, patients, onset, arrive_now=True)
            continue
        decide(design, state)
        suspended = _suspended(design, state)
        if turns_away and suspended.any():
            # This arrival and the next ones are turned away until the design may go on; the
            # first patient to arrive after that is enrolled (dfcrm's two-stage titesim).
            while suspended.any():
                gap = design.timing.gaps(spare_gaps.random(int(suspended.sum())))
                state.time[suspended] += gap
                suspended = _suspended(design, state)
            decide(design, state)
        while suspended.any():
            # Accrual waits until the next pending patient has a DLT or completes the window.
            state.time[suspended] = _next_event(state, window)[suspended]
            decide(design, state)
            suspended = _suspended(design, state)
        rows = np.flatnonzero(state.active)
        _enrol(design, state, rows, one[rows], dlt_prob, patients, onset, arrive_now=True)
    # Everyone's follow-up completes: the final selection uses complete data.
    with np.errstate(all="ignore"):
        last = np.nanmax(
            np.where(np.isnan(state.patient_arrival), -np.inf, state.patient_arrival), 1
        )
    state.time[:] = np.where(np.isfinite(last), last + window, 0.0)


def _suspended(design: Design, state: TrialState) -> np.ndarray:
    if not design.method.holds_accrual:
        return np.zeros(state.n_trials, dtype=bool)
    held = state.active & design.method.suspend(state)
    if design.method.turns_away:
        return held  # time moves on with each arrival turned away
    return held & np.isfinite(_next_event(state, design.timing.dlt_window_months))


def _next_event(state: TrialState, window: float) -> np.ndarray:
    """The next time a pending patient's outcome becomes known (DLT onset or window end)."""
    pending = state.pending(window)
    onset = state.patient_arrival + state.patient_dlt_time
    end = state.patient_arrival + window
    event = np.where(state.patient_dlt & (onset < end), onset, end)
    event = np.where(pending & (event > state.time[:, None]), event, np.inf)
    return event.min(axis=1)


def benchmark_selection(tolerance: np.ndarray, dlt_prob: np.ndarray, target: float) -> np.ndarray:
    """Complete-information benchmark (O'Quigley, Paoletti & Maccario 2002, *Biostatistics*
    3:51–56): with every patient's tolerance known, each level's DLT rate is the fraction of
    tolerances below its true probability; select the level closest to the target, [trial].

    Levels with the same rate (few patients, close probabilities) are equally close; the tie
    goes to the one whose true probability is closest to the target — with every rate below
    the target, the highest of them, not the lowest.
    """
    p = np.asarray(dlt_prob, dtype=float)
    rate = (tolerance[:, :, None] < p[None, None, :]).mean(axis=1)
    distance = np.abs(rate - target)
    tied = distance <= distance.min(axis=1, keepdims=True) + 1e-12
    return np.where(tied, np.abs(p - target)[None, :], np.inf).argmin(axis=1)


def _uniforms(seed: int, chunk: int, stream: int, n_trials: int, n_patients: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk, stream)))
    return rng.random((n_patients, n_trials)).T


def chunk_tolerance(seed: int, chunk: int, n_trials: int, n_patients: int) -> np.ndarray:
    """Latent tolerances u ~ U(0, 1) of chunk ``chunk``, [trial, patient]."""
    return _uniforms(seed, chunk, TOLERANCE_STREAM, n_trials, n_patients)


def chunk_patients(
    seed: int, chunk: int, n_trials: int, n_patients: int, timed: bool
) -> VirtualPatients:
    """The virtual patients of chunk ``chunk``; arrival and onset draws only when ``timed``.

    Each kind of draw has its own stream, so adding one never changes another; organ Gy/GBq are
    drawn from their stream when a design or scenario needs them (``with_dosimetry``).
    """
    dosimetry_seed = np.random.SeedSequence(seed, spawn_key=(chunk, DOSIMETRY_STREAM))
    tolerance = chunk_tolerance(seed, chunk, n_trials, n_patients)
    if not timed:
        return VirtualPatients(tolerance, dosimetry_seed=dosimetry_seed)
    return VirtualPatients(
        tolerance,
        _uniforms(seed, chunk, ARRIVAL_STREAM, n_trials, n_patients),
        _uniforms(seed, chunk, ONSET_STREAM, n_trials, n_patients),
        dosimetry_seed=dosimetry_seed,
        turned_away_seed=np.random.SeedSequence(seed, spawn_key=(chunk, TURNED_AWAY_STREAM)),
    )


def run_chunk(
    design: Design,
    scenario: Scenario,
    patients: VirtualPatients | np.ndarray,
    truth: DesignTruth | None = None,
) -> ChunkResult:
    """Simulate a chunk of trials of ``design`` under ``scenario`` and keep what the operating
    characteristics need; ``truth``: :func:`theradose.scenario.truth_for` (computed if None)."""
    if not isinstance(patients, VirtualPatients):
        patients = VirtualPatients(patients)
    truth = truth_for(scenario, design) if truth is None else truth
    patients = patients.head(design.max_patients).with_dosimetry(design, scenario)
    state = run_trials(design, truth.dlt_prob, patients, scenario.onset)
    enrolled = state.patient_level >= 0
    extra = {}
    if design.timing is not None:
        window = design.timing.dlt_window_months
        onset_time = state.patient_arrival + state.patient_dlt_time
        late = state.patient_dlt & (onset_time > state.stopped_at[:, None])
        with np.errstate(all="ignore"):
            last = np.nanmax(np.where(enrolled, state.patient_arrival, -np.inf), axis=1)
        extra.update(
            duration=np.where(np.isfinite(last), last + window, 0.0),
            while_pending=state.patient_while_pending.sum(1) / np.maximum(enrolled.sum(1), 1),
            dlt_after_last_decision=late.sum(axis=1),
        )
    if state.patient_total_activity is not None:
        extra.update(
            total_activity=np.where(enrolled, state.patient_total_activity, 0.0),
            capped=state.patient_capped,  # the records are NaN / False where nobody was treated
            cumulative=state.patient_cumulative,
            exceeds=state.patient_exceeds,
            ruled_out_at=state.ruled_out_at,
        )
    return ChunkResult(
        n=state.n,
        y=state.y,
        mtd=select_mtd(design, state),
        stop_reason=state.stop_reason,
        benchmark_mtd=benchmark_selection(patients.tolerance, truth.dlt_prob, design.target),
        **extra,
    )


def chunk_sizes(n_trials: int) -> list[int]:
    full, rest = divmod(n_trials, CHUNK_TRIALS)
    return [CHUNK_TRIALS] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class _ChunkJob:
    designs: tuple[Design, ...]
    scenarios: tuple[Scenario, ...]
    seed: int
    chunk: int
    n_trials: int
    truths: tuple[tuple[DesignTruth, ...], ...]  # [design][scenario], computed once per run
    keep_chunks: bool = False  # also return the per-trial ChunkResults (``simulate``'s on_chunk)

    def __call__(self) -> tuple[list[list[Simulations]], list[list[ChunkResult]] | None]:
        n_patients = max(d.max_patients for d in self.designs)
        timed = any(d.timing is not None for d in self.designs)
        patients = chunk_patients(self.seed, self.chunk, self.n_trials, n_patients, timed)
        out, chunks = [], []
        for design, truths in zip(self.designs, self.truths, strict=True):
            row, chunk_row = [], []
            for scenario, truth in zip(self.scenarios, truths, strict=True):
                sim = empty_simulations(design, scenario, truth)
                chunk = run_chunk(design, scenario, patients, truth)
                sim.add(chunk)
                row.append(sim)
                if self.keep_chunks:  # else each chunk's per-patient arrays are freed at once
                    chunk_row.append(chunk)
            out.append(row)
            chunks.append(chunk_row)
        return out, (chunks if self.keep_chunks else None)


def _run_job(job: _ChunkJob) -> tuple[list[list[Simulations]], list[list[ChunkResult]] | None]:
    return job()


def empty_simulations(
    design: Design, scenario: Scenario, truth: DesignTruth | None = None
) -> Simulations:
    truth = truth_for(scenario, design) if truth is None else truth
    organs = () if design.dosimetry is None else design.dosimetry.names
    limits = () if design.dosimetry is None else tuple(o.limit for o in design.dosimetry.organs)
    return Simulations(
        design=design.name,
        scenario=scenario.name,
        target=design.target,
        dlt_prob=tuple(float(p) for p in truth.dlt_prob),
        true_mtd=truth.true_mtd,
        optimum=truth.optimum,
        organs=organs,
        organ_limits=limits,
    )


def simulate(
    designs: Sequence[Design],
    scenarios: Sequence[Scenario],
    n_trials: int,
    seed: int,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    on_chunk: Callable[[int, list[list[ChunkResult]]], None] | None = None,
) -> list[list[Simulations]]:
    """Simulate every design under every scenario on the same virtual patients.

    Returns ``[design][scenario]`` :class:`Simulations`. ``progress(n)`` is called with the number
    of trials finished after each chunk. ``on_chunk(chunk, results)`` receives each chunk's
    per-trial outcomes, ``[design][scenario]`` :class:`ChunkResult`, in chunk order whatever the
    number of workers (trial ``t`` of chunk ``c`` is trial ``c * CHUNK_TRIALS + t`` of the run),
    so that per-trial records can be streamed without holding every trial.
    """
    for design in designs:
        for scenario in scenarios:
            if scenario.n_levels is not None and scenario.n_levels != design.n_levels:
                raise ValueError(
                    f"scenario {scenario.name!r} has {scenario.n_levels} levels, "
                    f"design {design.name!r} has {design.n_levels}"
                )
            if scenario.uses_ntcp and design.doses is None:
                raise ValueError(
                    f"scenario {scenario.name!r} derives DLTs from organ doses: design "
                    f"{design.name!r} must give the activity of each level (doses)"
                )
    truths = tuple(tuple(truth_for(s, d) for s in scenarios) for d in designs)
    keep = on_chunk is not None
    jobs = [
        _ChunkJob(tuple(designs), tuple(scenarios), seed, i, size, truths, keep_chunks=keep)
        for i, size in enumerate(chunk_sizes(n_trials))
    ]
    totals = [
        [empty_simulations(d, s, t) for s, t in zip(scenarios, row, strict=True)]
        for d, row in zip(designs, truths, strict=True)
    ]
    if workers > 1 and len(jobs) > 1:
        # closing (first): an error or an interruption cancels the chunks not yet started
        with (
            ProcessPoolExecutor(max_workers=workers) as pool,
            closing(_in_order(pool, jobs, 2 * workers)) as results,
        ):
            _collect(totals, results, jobs, progress, on_chunk)
    else:
        _collect(totals, map(_run_job, jobs), jobs, progress, on_chunk)
    return totals


def _in_order(pool: ProcessPoolExecutor, jobs: Sequence[_ChunkJob], ahead: int):
    """The jobs' results in chunk order, at most ``ahead`` jobs submitted and not yet taken, so
    that finished chunks waiting behind a slow one (or a slow ``on_chunk``) stay few."""
    pending = deque(pool.submit(_run_job, job) for job in jobs[:ahead])
    try:
        for job in jobs[ahead:]:
            result = pending.popleft().result()
            pending.append(pool.submit(_run_job, job))
            yield result
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # an error or an interruption: do not start the rest
            future.cancel()


def _collect(totals, results, jobs, progress, on_chunk=None) -> None:
    for job, (sims, chunks) in zip(jobs, results, strict=True):
        for row_total, row in zip(totals, sims, strict=True):
            for total, sim in zip(row_total, row, strict=True):
                total.merge(sim)
        if on_chunk is not None:
            on_chunk(job.chunk, chunks)
        if progress is not None:
            progress(job.n_trials)


@dataclass(frozen=True)
class Recommendation:
    """The design's decision for one real trial after the data so far (0-based levels)."""

    next_level: int | None  # None when the trial should stop
    stop_reason: StopReason | None
    mtd: int | None  # current MTD estimate by the design's final selection rule
    n: tuple[int, ...]  # [level]
    y: tuple[int, ...]  # [level]
    level_summary: dict[str, np.ndarray]  # name → [level] estimates of the method
    deviations: tuple[str, ...]  # cohorts given another level than the design said
    model_summary: dict[str, float] = field(default_factory=dict)  # e.g. posterior of β
    rule_states: tuple[str, ...] = ()  # where each stopping rule stands, in words
    warnings: tuple[str, ...] = ()  # the decision rests on doubtful ground
    notes: tuple[str, ...] = ()  # how the data were read, in words
    suspended: bool = False  # accrual waits for more follow-up (next_level is None)
    review_in: float | None = None  # months until a pending window closes, if suspended or wait
    # (for a start-up wait: until the last patient has been followed long enough)
    start_up_wait: bool = False  # the suspension is a two-stage start-up's wait before moving up
    pending: tuple[bool, ...] = ()  # [patient] still in the DLT window without a DLT (when known)
    # A design that decides on complete data with patients pending: no decision until they
    # complete (next_level None); review_in: months until the first pending window closes,
    # complete_in: until the last one does.
    wait: bool = False
    complete_in: float | None = None
    # The quantities that decided at the current level (the method's ``decision_basis``, "level"
    # 0-based), e.g. TITE-BOIN's n, y, m, STFT, p̃, λe, λd and its suspension rule.
    basis: dict[str, float | int | bool] = field(default_factory=dict)
    mtd_on_complete_data: bool = False  # the MTD estimate and estimates leave pending patients out

    @property
    def stop(self) -> bool:
        return self.stop_reason is not None

    @property
    def pending_patients(self) -> tuple[int, ...]:
        """The pending patients' 1-based numbers."""
        return tuple(i + 1 for i, flag in enumerate(self.pending) if flag)


def recommend(
    design: Design,
    cohorts: Sequence[tuple[int, Sequence[bool]]],
    final_design: Design | None = None,
    gy_per_gbq: np.ndarray | None = None,
) -> Recommendation:
    """Replay a real trial cohort by cohort and return the design's next decision.

    ``cohorts`` are (0-based level, DLT flags) in the order treated. Each cohort is recorded at
    the level actually given, then :func:`decide` runs exactly as in simulation.
    ``final_design`` (the same rules, another posterior engine such as MCMC) makes the decision
    after the last cohort and the estimates; ``design`` replays the earlier ones.
    ``gy_per_gbq`` [patient, organ]: the patients' measured dosimetry, in the design's organ
    order (NaN where not measured), which updates the organ-dose constraint.
    """
    final = design if final_design is None else final_design
    n_patients = sum(len(dlts) for _, dlts in cohorts)
    state = TrialState.start(1, design.n_levels, design.start_level, max(n_patients, 1))
    _attach_dosimetry(design, state, gy_per_gbq, np.ones((1, max(n_patients, 1)), dtype=bool))
    deviations = []
    for index, (level, dlts) in enumerate(cohorts):
        if not 0 <= level < design.n_levels:
            raise ValueError(
                f"cohort {index + 1}: level {level + 1} is outside 1..{design.n_levels}"
            )
        expected = int(state.next_level[0]) if state.active[0] else None
        if expected is None:
            deviations.append(f"cohort {index + 1} was treated after the design said stop")
        elif level != expected:
            deviations.append(
                f"cohort {index + 1} was treated at level {level + 1}; "
                f"the design said {expected + 1}"
            )
        k = int(state.n_enrolled[0])
        size = len(dlts)
        state.patient_level[0, k : k + size] = level
        state.patient_dlt[0, k : k + size] = np.asarray(dlts, dtype=bool)
        if design.timing is not None:
            # An outcome string carries no times: every window has closed (complete follow-up),
            # so time-to-event designs see every DLT.
            state.patient_arrival[0, k : k + size] = -design.timing.dlt_window_months
            state.patient_dlt_time[0, k : k + size] = np.where(dlts, 0.0, np.nan)
        if design.doses is not None:
            state.patient_activity[0, k : k + size] = design.doses[level]
        state.next_level[0] = level
        state.record_cohort(np.array([0]), size, np.array([int(np.sum(dlts))]))
        state.active[0] = True
        state.stop_reason[0] = StopReason.RUNNING
        decide(final if index == len(cohorts) - 1 else design, state)
    mtd = int(select_mtd(final, state)[0]) if cohorts else NO_LEVEL
    summary = {k: np.asarray(v)[0] for k, v in final.method.level_summary(state).items()}
    summary.update(_organ_summary(design, state))
    model_summary = {}
    if cohorts:
        model_summary = {k: float(v[0]) for k, v in final.method.model_summary(state).items()}
    rule_states = tuple(rule.state_text(state, 0) for rule in final.stopping)
    stopped = not state.active[0]
    return Recommendation(
        next_level=None if stopped else int(state.next_level[0]),
        stop_reason=StopReason(int(state.stop_reason[0])) if stopped else None,
        mtd=None if mtd == NO_LEVEL else mtd,
        n=tuple(int(v) for v in state.n[0]),
        y=tuple(int(v) for v in state.y[0]),
        level_summary=summary,
        deviations=tuple(deviations),
        model_summary=model_summary,
        rule_states=rule_states,
        basis=_basis(final, state) if cohorts else {},
    )


def _basis(design: Design, state: TrialState) -> dict[str, float | int | bool]:
    """The method's decision basis for the first trial state, as plain numbers."""
    return {k: np.asarray(v)[0].item() for k, v in design.method.decision_basis(state).items()}


def patient_cohorts(
    cohort_size: int, level: np.ndarray, dlt: np.ndarray
) -> list[tuple[int, tuple[bool, ...]]]:
    """Patients in enrolment order grouped into cohorts of (0-based level, DLT flags): runs of
    the same level, at most ``cohort_size`` patients each."""
    cohorts: list[tuple[int, list[bool]]] = []
    for lvl, had_dlt in zip(np.asarray(level).tolist(), np.asarray(dlt).tolist(), strict=True):
        if cohorts and cohorts[-1][0] == lvl and len(cohorts[-1][1]) < cohort_size:
            cohorts[-1][1].append(bool(had_dlt))
        else:
            cohorts.append((int(lvl), [bool(had_dlt)]))
    return [(lvl, tuple(flags)) for lvl, flags in cohorts]


def recommend_from_patients(
    design: Design,
    level: np.ndarray,
    dlt: np.ndarray,
    followup: np.ndarray,
    dlt_time: np.ndarray | None = None,
    gy_per_gbq: np.ndarray | None = None,
    window: float | None = None,
) -> Recommendation:
    """The design's next decision for a real trial given patient by patient, as of now.

    Parameters
    ----------
    design : Design
    level : [patient] 0-based levels, in enrolment order
    dlt : [patient] whether each patient has had a DLT so far
    followup : [patient] months since each patient's treatment, as of now
    dlt_time : [patient] months from treatment to the DLT; NaN (or no array) where not known,
        taken as now
    gy_per_gbq : [patient, organ] measured dosimetry in the design's organ order (NaN: none)
    window : the DLT window, months; default the design's ``[timing]``. A time-to-event
        design's window is part of its method: give it a design built with that window.

    A time-to-event design (``method.tite``) decides as the engine does at a new patient's
    arrival: the trial state is built at "now" = time 0, each patient arriving at −follow-up,
    and :func:`decide` runs on it; then the design's suspension rule may hold accrual
    (``suspended``, ``next_level`` None). The decision that opened each earlier cohort (the
    engine's cohorts: ``cohort_size`` patients in enrolment order) is recomputed from the data
    known at that patient's arrival — in the same batch of trial states — to list deviations.

    Other designs decide on complete data, as in simulation, where each cohort's window closes
    before the next decision. While a patient without a DLT is within the window (a patient
    with a DLT is complete whatever the follow-up) the answer is to wait (``wait``, no
    ``next_level``, ``review_in`` until the first pending window closes, ``complete_in`` until
    the last); the MTD estimate and the estimates then use the patients with complete data
    (``mtd_on_complete_data``), the counts and deviations every patient. With no patient
    pending the answer is :func:`recommend` on the cohorts (:func:`patient_cohorts`).

    Raises
    ------
    ValueError
        Without a window (no ``window`` and no ``[timing]``), or with a ``window`` other than a
        time-to-event design's own.
    """
    from theradose.timing import DAYS_PER_MONTH

    level = np.asarray(level, dtype=np.int64)
    dlt = np.asarray(dlt, dtype=bool)
    followup = np.asarray(followup, dtype=float)
    unknown = np.full(level.shape, np.nan) if dlt_time is None else np.asarray(dlt_time, float)
    n, size = level.size, design.cohort_size
    days = lambda months: f"{months * DAYS_PER_MONTH:.4g}"  # noqa: E731
    tite = design.method.tite
    own = None if design.timing is None else design.timing.dlt_window_months
    if window is None and own is None:
        raise ValueError(f"design {design.name!r}: patients' follow-up needs the DLT window")
    if tite and window is not None and window != own:
        raise ValueError(
            f"design {design.name!r}: the DLT window of a time-to-event design is its own "
            f"({own:g} months, not {window:g}); build the design with that window"
        )
    window = own if window is None else window
    # The engine's cohorts: blocks of enrolment for time-to-event designs, else cohorts treated.
    if tite or n == 0:
        last_cohort = n % size or size
    else:
        last_cohort = len(patient_cohorts(size, level, dlt)[-1][1])
    notes = []
    waiting = not tite and _pending(dlt, followup, window).any()
    if n < design.max_patients and last_cohort < size and not waiting:
        notes.append(
            f"the data end within a cohort of {size}: this is the design's decision on the data "
            "so far; in simulation the cohort's remaining patients join the same level first"
        )
    if not tite:
        return _wait_for_complete_data(
            design, level, dlt, followup, window, gy_per_gbq, tuple(notes)
        )
    if n == 0:
        return recommend(design, [])

    onset = np.where(np.isnan(unknown), followup, unknown)
    openers = np.arange(size, n, size)  # the patients whose arrival opened a later cohort
    known = np.append(openers, n)  # patients enrolled at each decision, the last one now
    state = _patient_states(design, level, dlt, -followup, onset, known)
    enrolled = np.arange(n)[None, :] < known[:, None]
    _attach_dosimetry(design, state, gy_per_gbq, enrolled)
    decide(design, state)
    suspended = _suspended(design, state)

    deviations = []
    if level[0] != design.start_level:
        deviations.append(
            f"patient 1 was treated at level {level[0] + 1}; the design starts at "
            f"{design.start_level + 1}"
        )
    for j in range(1, n):
        row = j // size - 1  # the decision that opened patient j's cohort
        if j % size:
            first = j - j % size
            if level[j] != level[first]:
                deviations.append(
                    f"patient {j + 1} was treated at level {level[j] + 1}; its cohort (from "
                    f"patient {first + 1}) was at level {level[first] + 1}"
                )
        elif not state.active[row]:
            reason = StopReason(int(state.stop_reason[row])).label
            deviations.append(f"patient {j + 1} was treated after the design said stop ({reason})")
        elif suspended[row]:
            deviations.append(
                f"patient {j + 1} was treated while the design held accrual for more follow-up"
            )
        elif level[j] != state.next_level[row]:
            deviations.append(
                f"patient {j + 1} was treated at level {level[j] + 1}; the design said "
                f"{state.next_level[row] + 1}"
            )
    if np.any(np.diff(followup) > 0):
        j = int(np.flatnonzero(np.diff(followup) > 0)[0]) + 1
        notes.append(
            f"follow-up rises down the file (patient {j + 1}: {days(followup[j])} days after "
            f"patient {j}: {days(followup[j - 1])}); rows are taken to be in enrolment order"
        )
    no_day = np.flatnonzero(dlt & np.isnan(unknown))
    if no_day.size:
        notes.append(
            f"no dlt_day for {_listed('patient', no_day + 1)}: the DLT is taken to have occurred "
            "today (earlier decisions are replayed without it)"
        )

    now = state.take(np.array([known.size - 1]))
    stopped, held = not now.active[0], bool(suspended[-1])
    mtd = int(select_mtd(design, now)[0])
    model_summary = {k: float(v[0]) for k, v in design.method.model_summary(now).items()}
    return Recommendation(
        next_level=None if stopped or held else int(now.next_level[0]),
        stop_reason=StopReason(int(now.stop_reason[0])) if stopped else None,
        mtd=None if mtd == NO_LEVEL else mtd,
        n=tuple(int(v) for v in now.n[0]),
        y=tuple(int(v) for v in now.y[0]),
        level_summary={
            **{k: np.asarray(v)[0] for k, v in design.method.level_summary(now).items()},
            **_organ_summary(design, now),
        },
        deviations=tuple(deviations),
        model_summary=model_summary,
        rule_states=tuple(rule.state_text(now, 0) for rule in design.stopping),
        notes=tuple(notes),
        suspended=held,
        review_in=_review_in(design, now) if held else None,
        start_up_wait=held and design.method.turns_away,
        pending=tuple(now.pending(window)[0].tolist()),
        basis=_basis(design, now),
        mtd_on_complete_data=bool(now.pending(window).any())
        and design.method.selects_on_complete_data,
    )


def _pending(dlt: np.ndarray, followup: np.ndarray, window: float) -> np.ndarray:
    """Patients without a DLT whose window has not closed, [patient] (a DLT completes a
    patient's follow-up whenever it occurs)."""
    return ~dlt & (followup < window)


def _wait_for_complete_data(
    design: Design,
    level: np.ndarray,
    dlt: np.ndarray,
    followup: np.ndarray,
    window: float,
    gy_per_gbq: np.ndarray | None,
    notes: tuple[str, ...],
) -> Recommendation:
    """A design deciding on complete data, given patients with their follow-up (months): its
    decision when nobody is pending, else the answer to wait (:func:`recommend_from_patients`)."""
    size = design.cohort_size
    pending = _pending(dlt, followup, window)
    everyone = recommend(design, patient_cohorts(size, level, dlt), gy_per_gbq=gy_per_gbq)
    if not pending.any():
        return replace(everyone, notes=notes, pending=tuple(pending.tolist()))
    done = ~pending
    measured = None if gy_per_gbq is None else np.asarray(gy_per_gbq)[done]
    complete = recommend(design, patient_cohorts(size, level[done], dlt[done]), gy_per_gbq=measured)
    left = window - followup[pending]
    # The organ-dose constraint reads every measurement, pending patients' included.
    is_organ = lambda name: name.startswith("p_exceed_") or name == "admissible"  # noqa: E731
    estimates = {k: v for k, v in complete.level_summary.items() if not is_organ(k)}
    organs = {k: v for k, v in everyone.level_summary.items() if is_organ(k)}
    notes += (
        f"the MTD estimate and the estimates per level use the {int(done.sum())} patients with "
        "complete data (a DLT, or the window closed); the counts include the pending patients",
    )
    return Recommendation(
        next_level=None,
        stop_reason=None,
        mtd=complete.mtd,
        n=everyone.n,
        y=everyone.y,
        level_summary={**estimates, **organs},
        deviations=everyone.deviations,
        model_summary=complete.model_summary,
        notes=notes,
        review_in=float(left.min()),
        complete_in=float(left.max()),
        pending=tuple(pending.tolist()),
        wait=True,
        mtd_on_complete_data=True,
    )


def _review_in(design: Design, now: TrialState) -> float:
    """Months from now (time 0) until a suspension may lift: the end of a start-up wait, or
    the next pending patient's window closing."""
    if design.method.turns_away:
        return float(design.method.start_up_wait_ends(now)[0] - now.time[0])
    return float(_next_event(now, design.timing.dlt_window_months)[0])


def _attach_dosimetry(design, state, gy_per_gbq, enrolled) -> None:
    """Give the organ-dose constraint the patients' measured Gy/GBq ([patient, organ]), as known
    in each trial state (``enrolled`` [state, patient])."""
    if gy_per_gbq is None or design.dosimetry is None or not design.dosimetry.organs:
        return
    from theradose.dosimetry import DosimetryStats

    n_organs = len(design.dosimetry.organs)
    measured = np.full(state.patient_level.shape + (n_organs,), np.nan)
    given = np.asarray(gy_per_gbq, dtype=float)
    measured[:, : given.shape[0]] = np.where(
        enrolled[:, : given.shape[0], None], given[None], np.nan
    )
    state.patient_measured_gy_per_gbq = measured
    state.dosimetry_stats = DosimetryStats.from_measured(measured)


def _organ_summary(design, state) -> dict[str, np.ndarray]:
    """Per level, each organ's P(a new patient's cumulative dose or BED > limit) and whether the
    level is admissible, for the first trial state."""
    limits = [c for c in design.constraints if c.organ_limits]
    summary = {}
    for constraint in limits:
        exceed = constraint.exceedance(state)[0]  # [level, organ]
        for j, organ in enumerate(constraint.dosimetry.names):
            summary[f"p_exceed_{organ}"] = exceed[:, j]
        summary["admissible"] = constraint.allowed(state)[0]
    return summary


def _listed(noun: str, items) -> str:
    """'patient 3', 'patients 3 and 5', 'patients 4, 5 and 6' ('' noun: the items only)."""
    items = [str(item) for item in items]
    text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    if not noun:
        return text
    return f"{noun}{'' if len(items) == 1 else 's'} {text}"


def _patient_states(design, level, dlt, arrival, onset, known) -> TrialState:
    """One trial state per decision ``r``: the first ``known[r]`` patients as they stood when
    patient ``known[r]`` arrived (the last: now, time 0) — follow-up so far, DLTs seen by then."""
    n = level.size
    state = TrialState.start(known.size, design.n_levels, design.start_level, n)
    enrolled = np.arange(n)[None, :] < known[:, None]  # [decision, patient]
    state.time[:] = np.append(arrival[known[:-1]], 0.0)
    state.patient_level[:] = np.where(enrolled, level, NO_LEVEL)
    state.patient_dlt[:] = enrolled & dlt
    state.patient_arrival[:] = np.where(enrolled, arrival, np.nan)
    state.patient_dlt_time[:] = np.where(enrolled & dlt, onset, np.nan)
    if design.doses is not None:
        state.patient_activity[:] = np.where(enrolled, np.asarray(design.doses)[level], np.nan)
    seen = state.observed_dlt(design.timing.dlt_window_months) & enrolled
    at_level = level[None, :, None] == np.arange(design.n_levels)  # [., patient, level]
    state.n[:] = (enrolled[:, :, None] & at_level).sum(axis=1)
    state.y[:] = (seen[:, :, None] & at_level).sum(axis=1)
    last = known - 1
    state.level[:] = level[last]
    state.next_level[:] = level[last]
    state.n_enrolled[:] = known
    # The engine enrols time-to-event designs one patient at a time.
    state.last_cohort_n[:] = 1
    state.last_cohort_y[:] = seen[np.arange(known.size), last]
    return state
