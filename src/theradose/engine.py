"""The cohort loop over a batch of trials: all trials of a chunk advance together, one decision
point at a time (:func:`run_trials`).

Without a time-to-event method each cohort is treated, its DLT window completes, and the design
decides (:func:`theradose.pipeline.decide`); a time-to-event method decides at each new
patient's arrival from the follow-up available then. Organ dosimetry is kept up to date as
patients join, and each patient's dose records are written when the trials end.
"""

from __future__ import annotations

import numpy as np

from theradose.backfill import count_patients, open_levels, see_backfill_outcomes
from theradose.design import Design
from theradose.pipeline import admissible_levels, decide
from theradose.state import StopReason, TrialState, highest_level, row_sums
from theradose.timing import Onset
from theradose.virtual_patients import VirtualPatients


def _enrol(
    design: Design,
    state: TrialState,
    rows: np.ndarray,
    size: np.ndarray,
    dlt_prob: np.ndarray,
    patients: VirtualPatients,
    onset: Onset,
    arrive_now: bool = False,
    eff_prob: np.ndarray | None = None,
    response_onset: Onset | None = None,
) -> None:
    """Treat the next ``size[row]`` patients of each trial in ``rows`` at its next level.

    With timing, they arrive one accrual gap after another from the trial's current time (the
    first of them at that time itself when ``arrive_now``), and the trial's time moves to the
    last arrival. With ``eff_prob`` [level] (the state keeps efficacy), a patient responds iff
    their latent v' < the level's response probability; when the state keeps response times
    (a method with late efficacy), each response occurs within the efficacy window as
    ``response_onset`` (the scenario's; uniform by default) says.
    """
    level = state.next_level[rows]
    p_dlt = dlt_prob[level][:, None]
    timing = design.timing
    first = state.places()[rows]
    lockstep = (size == design.cohort_size).all() and (first == first[0]).all()
    dosimetry = design.dosimetry is not None or patients.organs is not None
    n_max = state.patient_level.shape[1]
    places = None  # the places every trial fills (the cohort engine), a slice
    if timing is None and lockstep and int(first[0]) + design.cohort_size <= n_max:
        places = slice(int(first[0]), int(first[0]) + design.cohort_size)
    if places is not None and dosimetry:
        # the same places in every row: views, not [row, slot] arrays built per cohort
        in_cohort = np.arange(places.start, places.stop)
        cols = np.broadcast_to(in_cohort, (rows.size, in_cohort.size))
        enrolled = np.broadcast_to(True, cols.shape)
    elif not lockstep or dosimetry or timing is not None:
        in_cohort = np.arange(design.cohort_size)
        cols = np.minimum(first[:, None] + in_cohort[None, :], n_max - 1)
        enrolled = in_cohort[None, :] < size[:, None]
    onset_fraction = None  # each DLT's onset, when the organ causing it has its own onset model
    schedule = None  # the rows' schedules, when their DLT probabilities needed them
    if dosimetry:
        p_dlt, onset_fraction, schedule = _treat_with_dosimetry(
            design, state, patients, rows, cols, enrolled, level, p_dlt, onset, places
        )
    p_eff = None
    if eff_prob is not None:  # [row, 1], or [row, slot] from each patient's tumour dose
        p_eff = eff_prob[level][:, None]
        if dosimetry:
            p_eff = _response_prob(design, patients, rows, cols, level, eff_prob, schedule)
    if timing is None and lockstep:
        # The cohort engine: every trial fills the same places, written as rows × a slice.
        places = slice(int(first[0]), int(first[0]) + design.cohort_size)
        at = slice(None) if rows.size == state.n_trials else rows  # views while all run
        dlt = patients.tolerance[at, places] < p_dlt
        state.patient_level[at, places] = level[:, None]
        state.patient_dlt[at, places] = dlt
        if eff_prob is None:
            state.record_cohort(rows, size, count_true(dlt))
            return
        response = patients.response[at, places] < p_eff
        state.patient_response[at, places] = response
        state.record_cohort(
            rows, size, count_true(dlt), count_true(response), count_true(response & dlt)
        )
        return
    dlt = (patients.tolerance[rows[:, None], cols] < p_dlt) & enrolled
    r, c = np.broadcast_to(rows[:, None], cols.shape)[enrolled], cols[enrolled]
    lvl = np.broadcast_to(level[:, None], cols.shape)[enrolled]
    if timing is not None:
        # Judged at the decision that admits the cohort, before it joins the records.
        state.patient_while_pending[r, c] = state.pending(timing.dlt_window_months)[r].any(axis=1)
    state.patient_level[r, c] = lvl
    state.patient_dlt[r, c] = dlt[enrolled]
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
    if eff_prob is None:
        state.record_cohort(rows, size, count_true(dlt))
        return
    response = (patients.response[rows[:, None], cols] < p_eff) & enrolled
    state.patient_response[r, c] = response[enrolled]
    if state.patient_response_time is not None:
        _response_times(design, state, patients, rows, cols, enrolled, response, response_onset)
    state.record_cohort(
        rows, size, count_true(dlt), count_true(response), count_true(response & dlt)
    )


def _response_times(design, state, patients, rows, cols, enrolled, response, onset) -> None:
    """When each responder's response is seen: the scenario's response onset (uniform when
    None) of the patient's own draw (its own stream), as a fraction of the efficacy window."""
    onset = Onset() if onset is None else onset
    fraction = onset.fraction(patients.response_onset[rows[:, None], cols])
    months = design.timing.efficacy_window_months * fraction
    r, c = np.broadcast_to(rows[:, None], cols.shape)[enrolled], cols[enrolled]
    state.patient_response_time[r, c] = np.where(response, months, np.nan)[enrolled]


def count_true(flags: np.ndarray) -> np.ndarray:
    """How many flags are set in each row of a short [row, k] array, int32."""
    return row_sums(flags, np.int32)


def _treat_with_dosimetry(
    design, state, patients, rows, cols, enrolled, level, p_dlt, onset, places=None
):
    """Bring the running dosimetry statistics up to date with the cohort, and return each
    patient's DLT probability: from their own organ doses (NTCP, on their schedule, capped from
    their measured Gy/GBq when the design says so) in a dosimetry-driven scenario, else the
    level's; with it, when organs have their own DLT onset and the trial has time, each
    patient's onset as a fraction of the window, from the organ that causes the DLT
    (:func:`theradose.dosimetry.dlt_cause`), else None; and, in a dosimetry-driven scenario,
    the rows' schedules (ScheduleMoments [row, slot]; else None), which a tumour-dose response
    reads instead of capping the cohort again. The patients' activity given, capping and true
    cumulative organ doses are summed (and kept per patient when asked) once, when the trials
    end (:func:`_finish_dosimetry`): they follow from each patient's level and dosimetry alone
    (the schedules a dosimetry-driven scenario caps cohort by cohort are kept as they are).
    ``places``: the slice of places every row fills in the cohort engine (where the trials
    not in ``rows`` have stopped), else None."""
    from theradose.dosimetry import (
        ScheduleMoments,
        dlt_cause,
        dlt_causes,
        dlt_prob_from_causes,
        patient_dlt_prob,
    )

    cohort_engine = places is not None  # every trial fills these places, or has stopped
    if places is None and enrolled.all() and (cols == cols[0]).all():
        places = slice(int(cols[0, 0]), int(cols[0, -1]) + 1)
    if places is not None:
        # every trial enrols the same places (the cohort engine): rows × a slice, two slices
        # (views, not copies) while every trial is running
        r = slice(None) if rows.size == state.n_trials else rows
        c = places
    else:
        r, c = rows[:, None], cols
    measured = patients.measured_gy_per_gbq
    if measured is not None:
        _add_measured(state.dosimetry_stats, measured, rows, cols, enrolled, places)
    organs = patients.organs
    if organs is not None and organs.toxicity is not None and organs.toxicity.uses_ntcp:
        take = None  # the rows' results among every trial's
        if cohort_engine and rows.size < state.n_trials:
            # Nearly every trial is still running: every trial at these places (views, whose
            # values for the stopped trials are never read), not gathers of the running ones.
            r, take, level = slice(None), rows, state.next_level
        planned = np.asarray(design.doses, dtype=float)[level][:, None] * np.ones(
            (level.size, cols.shape[1])
        )
        cohort_measured = None if measured is None else measured[r, c]
        schedule, capped = patient_schedules(design, planned, cohort_measured)
        kept = schedule, capped, cohort_measured
        _keep_schedules(state, rows, cols, enrolled, places, *kept)
        true_g = patients.true_gy_per_gbq[r, c]
        own = [o.onset(None) for o in organs.toxicity.organs]
        rows_schedule = schedule if take is None else ScheduleMoments(*(s[take] for s in schedule))
        if patients.onset is None or all(o is None for o in own):
            p = patient_dlt_prob(true_g, schedule, organs)
            return (p if take is None else p[take]), None, rows_schedule
        causes = dlt_causes(true_g, schedule, organs)  # [row, slot, cause]
        cause = dlt_cause(causes, patients.tolerance[r, c])
        uniform = patients.onset[r, c]
        fraction = onset.fraction(uniform)  # the background's (the scenario's) and the default
        for k, organ_onset in enumerate(own, start=1):
            if organ_onset is not None:
                fraction = np.where(cause == k, organ_onset.fraction(uniform), fraction)
        p = dlt_prob_from_causes(causes)
        if take is not None:
            p, fraction = p[take], fraction[take]
        return p, fraction, rows_schedule
    return p_dlt, None, None


def _keep_schedules(state, rows, cols, enrolled, places, schedule, capped, measured) -> None:
    """Write a cohort's schedules (activity given, its squares, capping) and, with
    ``state.dose_records``, measured Gy/GBq [.., slot, organ] into [trial, patient] arrays,
    where :func:`_finish_dosimetry` finds them instead of capping every patient again (a
    dosimetry-driven scenario caps each cohort for its DLT probabilities). With ``places``, the
    values are every trial's at those places (a stopped trial's places there are empty; they
    are blanked at the end when the records are kept, and dropped otherwise)."""
    if state.patient_total_activity is None:
        shape = state.patient_level.shape  # zeros: a place nobody takes holds 0 GBq
        state.patient_total_activity = np.zeros(shape)
        state.patient_total_activity_sq = np.zeros(shape)
        state.patient_capped = np.zeros(shape, dtype=bool)
        if measured is not None and state.dose_records:
            state.patient_measured_gy_per_gbq = np.ones(shape + measured.shape[-1:])
    records = [
        (state.patient_total_activity, schedule.total),
        (state.patient_total_activity_sq, schedule.total_sq),
        (state.patient_capped, capped),
    ]
    if measured is not None and state.dose_records:
        records.append((state.patient_measured_gy_per_gbq, measured))
    if places is not None:
        at = slice(None) if schedule.total.shape[0] == state.n_trials else rows
        for record, values in records:
            record[at, places] = values
        return
    r, c = np.broadcast_to(rows[:, None], cols.shape)[enrolled], cols[enrolled]
    for record, values in records:
        record[r, c] = values[enrolled]


def _add_measured(stats, measured, rows, cols, enrolled, places) -> None:
    """Add the new patients' measured log Gy/GBq (``measured`` [trial, patient, organ]) to the
    running statistics of their trials, one patient after another in the order they joined, so
    that every sum is the one over the patients treated so far, to the last bit.

    ``places``: the slice of places every row fills (the cohort engine), else None (``cols`` and
    ``enrolled`` [row, slot] say who joined where). Each log is taken over a contiguous block.
    """
    by_organ = measured.transpose(2, 1, 0)  # [organ, patient, trial]: contiguous per patient
    n_trials = stats.count.shape[0]
    if places is not None:
        _add_measured_places(stats, by_organ, rows, places, n_trials)
        return
    for slot in range(cols.shape[1]):  # who joined where, gathered
        joined = enrolled[:, slot]
        who, at = rows[joined], cols[joined, slot]
        stats.count[who] += 1
        for j in range(by_organ.shape[0]):
            log_g = np.log(by_organ[j, at, who])
            stats.sum_log[who, j] += log_g
            np.square(log_g, out=log_g)
            stats.sum_sq_log[who, j] += log_g


def _add_measured_places(stats, by_organ, rows, places, n_trials) -> None:
    """:func:`_add_measured` in the cohort engine: every trial's patients at ``places`` (whole
    contiguous blocks, no scatter; the trials not in ``rows`` add 0, and x + 0 is x to the
    bit), each organ's logs of the cohort in one call, added patient by patient."""
    idle = None
    if rows.size < n_trials:
        idle = np.ones(n_trials, dtype=bool)
        idle[rows] = False
    n_slots = places.stop - places.start
    # the count is a whole number: + n_slots is the same as n_slots times + 1
    np.add(stats.count, n_slots if idle is None else n_slots * ~idle[:, None], out=stats.count)
    for j in range(by_organ.shape[0]):
        log_g = np.log(by_organ[j, places])  # [slot, trial]
        if idle is not None:
            np.copyto(log_g, 0.0, where=idle)
        sum_log, sum_sq_log = stats.sum_log[:, j], stats.sum_sq_log[:, j]
        for slot in range(n_slots):
            np.add(sum_log, log_g[slot], out=sum_log)
        np.square(log_g, out=log_g)
        for slot in range(n_slots):
            np.add(sum_sq_log, log_g[slot], out=sum_sq_log)


def _response_prob(design, patients, rows, cols, level, eff_prob, schedule=None) -> np.ndarray:
    """Each patient's response probability: the level's, [row, 1], or, when the scenario's
    responses follow each patient's own tumour dose, from their true tumour Gy/GBq on the
    schedule they receive (capped or personalised as for their organs at risk), [row, slot]
    (:func:`theradose.dosimetry.patient_response_prob`). ``schedule``: the rows' schedules
    when the DLT probabilities already needed them (:func:`_treat_with_dosimetry`)."""
    organs = patients.organs
    if organs is None or organs.efficacy is None:
        return eff_prob[level][:, None]
    from theradose.dosimetry import patient_response_prob

    r, c = rows[:, None], cols
    if schedule is None:
        planned = np.asarray(design.doses, dtype=float)[level][:, None] * np.ones(cols.shape)
        measured = patients.measured_gy_per_gbq
        cohort_measured = None if measured is None else measured[r, c]
        schedule, _ = patient_schedules(design, planned, cohort_measured)
    return patient_response_prob(patients.true_gy_per_gbq[r, c], schedule, organs)


def patient_schedules(design: Design, planned: np.ndarray, measured: np.ndarray | None):
    """Patients' schedules (as ScheduleMoments) from their level's value [...] — the planned
    activity per cycle, capped from their measured Gy/GBq [..., design organ] when the design
    says so, or, when the levels are prescribed absorbed doses, each patient's own activity
    from their measured Gy/GBq (:func:`theradose.dosimetry.prescribed_activity`) — and
    whether each was capped. The moments are new arrays (the caller may write into them)."""
    from theradose.dosimetry import ScheduleMoments, _capped_moments, prescribed_activity

    dosimetry = design.dosimetry
    if dosimetry is not None and dosimetry.personalised:
        planned = prescribed_activity(dosimetry, planned, measured)
    if dosimetry is not None and dosimetry.capping and measured is not None:
        # the engine's activities and Gy/GBq are valid by construction: no checks per call
        organ_g = [measured[..., j] for j in range(measured.shape[-1])]
        return _capped_moments(planned, organ_g, dosimetry, dosimetry.cap_rule)
    cycles = 1 if dosimetry is None else dosimetry.cycles
    uncapped = np.zeros(planned.shape, dtype=bool)
    return ScheduleMoments(cycles * planned, cycles * planned * planned), uncapped


FINISH_BLOCK = 16_384  # patients' records computed this many places at a time (in cache)


def _finish_dosimetry(design: Design, state: TrialState, patients: VirtualPatients) -> None:
    """After the trials, every treated patient's activity given over the cycles, capping and,
    per organ with a limit in the design, TRUE cumulative dose (or BED) and whether it passes
    the limit, reduced trial by trial into ``state.dose_summary``
    (:class:`theradose.dose_summary.DoseSummary`); with ``state.dose_records``, also kept as
    per-patient records (NaN, False for places nobody took).

    A block of trials at a time, one organ at a time: each block's intermediate arrays stay
    small and in cache (new memory costs a page fault per 4 KiB), and only the records, when
    asked for, are whole-chunk arrays."""
    from theradose.dose_summary import DoseSummary
    from theradose.dosimetry import EXACT_LIMIT_RTOL, _true_limit_factor

    if state.dosimetry_stats is None:
        return
    level = state.patient_level
    n_trials, n = level.shape
    n_organs = state.dosimetry_stats.count.shape[1]
    measured = patients.measured_gy_per_gbq
    records = state.dose_records
    # a dosimetry-driven scenario's schedules, kept as the cohorts were treated
    kept = state.patient_total_activity is not None
    if kept:
        total_all, capped_all = state.patient_total_activity, state.patient_capped
        total_sq_all = state.patient_total_activity_sq
    elif records:
        total_all = state.patient_total_activity = np.empty(level.shape)
        total_sq_all = state.patient_total_activity_sq = np.empty(level.shape)
        capped_all = state.patient_capped = np.empty(level.shape, dtype=bool)
    shape = level.shape + (n_organs,)
    if records:
        cumulative_all = state.patient_cumulative = np.empty(shape)
        exceeds_all = state.patient_exceeds = np.empty(shape, dtype=bool)
    record_all = None
    organs = []  # (position in the records, true Gy/GBq [trial, patient], k, limit (Gy))
    if measured is not None:
        # the record, C-ordered [trial, patient, organ]; the capping reads its organ columns
        if records:
            if kept:
                record_all = state.patient_measured_gy_per_gbq
            else:
                record_all = np.empty(level.shape + (measured.shape[-1],))
                state.patient_measured_gy_per_gbq = record_all
        truth = patients.organs
        index = truth.index(design.dosimetry.names)
        for j, model in enumerate(design.dosimetry.organs):
            k = _true_limit_factor(model, truth.organs[index[j]])
            organs.append((j, patients.true_gy_per_gbq[:, :n, index[j]], k, model.limit))
    elif records:  # no design organ measured: no cumulative dose records
        cumulative_all.fill(np.nan)
        exceeds_all.fill(False)
    summary = state.dose_summary = DoseSummary.empty(n_trials, n_organs)
    doses = np.append(np.asarray(design.doses, dtype=float), 0.0)  # level −1: nobody, 0 GBq
    step = max(1, FINISH_BLOCK // max(n, 1))
    for lo in range(0, n_trials, step):
        block = slice(lo, lo + step)
        enrolled = level[block] >= 0
        if kept:
            total, total_sq, capped = total_all[block], total_sq_all[block], capped_all[block]
        else:
            record = None
            if measured is not None:
                record = measured[block, :n]
                if record_all is not None:
                    np.copyto(record_all[block], record)
                    record = record_all[block]
            (total, total_sq), capped = patient_schedules(design, doses[level[block]], record)
            if records:
                total_all[block] = total
                total_sq_all[block] = total_sq
                capped_all[block] = capped
        summary.add_schedules(block, enrolled, total, capped)
        for j, true_gy_per_gbq, k, limit in organs:
            # true_cumulative's g·S1 + k·g²·S2
            true_g = true_gy_per_gbq[block]
            cumulative = np.multiply(true_g, total)
            if k != 0:
                bed_term = np.multiply(k, true_g)
                bed_term *= true_g
                bed_term *= total_sq
                cumulative += bed_term
            exceeds = np.greater(cumulative, limit * (1 + EXACT_LIMIT_RTOL))
            summary.add_organ(block, j, enrolled, cumulative, exceeds, limit)
            if records:
                cumulative_all[block, :, j] = cumulative
                exceeds_all[block, :, j] = exceeds
    if not records:  # the schedules kept cohort by cohort were for the summary alone
        state.patient_total_activity = state.patient_total_activity_sq = None
        state.patient_capped = None
        return
    nobody = np.flatnonzero(level < 0)  # flat [trial, patient] places nobody took
    total_all.reshape(-1)[nobody] = np.nan
    total_sq_all.reshape(-1)[nobody] = np.nan
    capped_all.reshape(-1)[nobody] = False
    cumulative_all.reshape(n_trials * n, n_organs)[nobody] = np.nan
    exceeds_all.reshape(n_trials * n, n_organs)[nobody] = False
    if record_all is not None:
        record_all.reshape(n_trials * n, record_all.shape[-1])[nobody] = np.nan


def run_trials(
    design: Design,
    dlt_prob: np.ndarray,
    tolerance: np.ndarray | VirtualPatients,
    onset: Onset | None = None,
    eff_prob: np.ndarray | None = None,
    response_onset: Onset | None = None,
    dose_records: bool = True,
) -> TrialState:
    """Simulate one trial per row of the patients' draws [trial, patient].

    Without a time-to-event method, each cohort is treated, its DLT window completes (accrual
    suspended), then the design decides. A time-to-event method (``method.tite``) decides at each
    new patient's arrival from the data available then, weighting incomplete follow-up.

    ``eff_prob`` [level]: the true response probabilities (the patients then need their
    response variables, :meth:`VirtualPatients.with_efficacy`); the state keeps responses. A
    method that uses efficacy needs them. A method with late efficacy (``late_efficacy``) sees
    each response when it occurs within ``[timing] efficacy_window_months``, as the scenario's
    ``response_onset`` says (uniform when None), from the patients' response-time draws
    (:meth:`VirtualPatients.with_response_draws`).

    With dosimetry, the patients' dose records are reduced into ``state.dose_summary`` when the
    trials end; ``dose_records=False`` keeps only that (a simulation's operating
    characteristics need no more), not the per-patient records (``state.patient_cumulative``,
    ``patient_exceeds``, ``patient_measured_gy_per_gbq``, …).
    """
    patients = tolerance if isinstance(tolerance, VirtualPatients) else VirtualPatients(tolerance)
    onset = Onset() if onset is None else onset
    if design.timing is not None and patients.arrival is None:
        raise ValueError(f"design {design.name!r} has [timing]: arrival and onset draws needed")
    if eff_prob is None and design.method.uses_efficacy:
        raise ValueError(
            f"design {design.name!r}: method {design.method.key!r} decides on responses; "
            "give the scenario's response probabilities (eff_prob)"
        )
    if eff_prob is not None and patients.response is None:
        raise ValueError("response probabilities given without the patients' response draws")
    n_trials = patients.tolerance.shape[0]
    dlt_prob = np.asarray(dlt_prob, dtype=float)
    state = TrialState.start(
        n_trials, design.n_levels, design.start_level, design.n_places, design.timing is not None
    )
    state.dose_records = dose_records
    if design.backfill is not None:
        state.with_backfill()
    if eff_prob is not None:
        eff_prob = np.asarray(eff_prob, dtype=float)
        state.with_efficacy()
        if design.method.late_efficacy:
            patients = patients.with_response_draws()
            state.with_response_times()
    if design.dosimetry is not None or patients.organs is not None:
        n_organs = 0 if design.dosimetry is None else len(design.dosimetry.organs)
        state.with_dosimetry(n_organs)
        _admit_start(design, state)
    if design.method.tite:
        _run_tite(design, state, dlt_prob, patients, onset, eff_prob, response_onset)
    else:
        # every outcome known before the decision: responses too, with an efficacy window
        window = 0.0 if design.timing is None else design.follow_up_months
        backfilling = None
        if design.backfill is not None:
            backfilling = Backfilling(design, dlt_prob, patients, onset, eff_prob)
        while True:
            rows = np.flatnonzero(state.active)
            if rows.size == 0:
                break
            size = np.minimum(design.cohort_size, design.max_patients - state.n_enrolled[rows])
            _enrol(design, state, rows, size, dlt_prob, patients, onset, eff_prob=eff_prob)
            if backfilling is not None:
                # arrivals while the cohort's window is open; before, the cohort was filling
                backfilling.arrivals(state, rows, state.time[rows] + window)
            state.time[rows] += window  # the cohort's DLT window completes before the decision
            if backfilling is not None:
                # a design deciding on responses too waits for each one's window, DLT or not
                see_backfill_outcomes(state, window, rows, not design.method.uses_efficacy)
            decide(design, state)
            _note_allowed(design, state)
        if design.backfill is not None:
            see_backfill_outcomes(state, window)  # everyone's follow-up completes
    _finish_dosimetry(design, state, patients)
    return state


class Backfilling:
    """Arrivals while a design holds accrual, treated at a level open for backfilling
    (:mod:`theradose.backfill`) or turned away. Their accrual gaps come from the patients'
    backfill stream, so a design without backfilling draws exactly what it drew before. (The
    rule and the counting of outcomes are :mod:`theradose.backfill`'s; treating a patient —
    dosimetry, response, onset, as :func:`_enrol` does — is the engine's, hence here.)"""

    def __init__(self, design, dlt_prob, patients, onset, eff_prob, response_onset=None) -> None:
        self.design, self.dlt_prob, self.patients = design, dlt_prob, patients
        self.onset, self.eff_prob, self.response_onset = onset, eff_prob, response_onset
        self.rng = np.random.default_rng(patients.backfill_seed or np.random.SeedSequence(0))

    def arrivals(self, state: TrialState, rows: np.ndarray, until: np.ndarray) -> None:
        """Patients arriving after ``state.time[rows]`` and before ``until`` [row]: one accrual
        gap after another, each backfilled at the highest open level or turned away."""
        timing = self.design.timing
        clock = state.time[rows].copy()
        live = np.ones(rows.size, dtype=bool)
        while True:
            clock[live] += timing.gaps(self.rng.random(int(live.sum())))
            live &= clock < until
            if not live.any():
                return
            self.arrive(state, rows[live], clock[live])

    def arrive(self, state: TrialState, rows: np.ndarray, when: np.ndarray) -> None:
        """One arrival at ``when`` [row] in each trial of ``rows``: backfilled when a level is
        open and the trial has room, else turned away."""
        window = self.design.timing.dlt_window_months
        level = highest_level(open_levels(self.design.backfill, state, rows, when, window))
        going = (level >= 0) & (state.places()[rows] < state.patient_level.shape[1])
        if going.any():
            self._treat(state, rows[going], level[going].astype(np.int32), when[going])

    def _treat(self, state, rows, level, when) -> None:
        design, patients = self.design, self.patients
        cols = state.places()[rows][:, None]
        enrolled = np.ones(cols.shape, dtype=bool)
        p_dlt = self.dlt_prob[level][:, None]
        fraction = schedule = None
        if design.dosimetry is not None or patients.organs is not None:
            p_dlt, fraction, schedule = _treat_with_dosimetry(
                design, state, patients, rows, cols, enrolled, level, p_dlt, self.onset
            )
        r, c = rows, cols[:, 0]
        dlt = patients.tolerance[r, c] < np.reshape(p_dlt, -1)
        if fraction is None:
            fraction = self.onset.fraction(patients.onset[r, c])
        fraction = np.reshape(fraction, -1)
        window = design.timing.dlt_window_months
        state.patient_level[r, c] = level
        state.patient_dlt[r, c] = dlt
        state.patient_arrival[r, c] = when
        state.patient_dlt_time[r, c] = np.where(dlt, window * fraction, np.nan)
        state.patient_while_pending[r, c] = True  # backfilled because others are pending
        state.patient_backfill[r, c] = True
        response = None
        if self.eff_prob is not None:
            p_eff = _response_prob(design, patients, rows, cols, level, self.eff_prob, schedule)
            response = patients.response[r, c] < np.reshape(p_eff, -1)
            state.patient_response[r, c] = response
            if state.patient_response_time is not None:
                flags = response[:, None]
                _response_times(
                    design, state, patients, rows, cols, enrolled, flags, self.response_onset
                )
        state.n_backfill[r, level] += 1
        if design.method.tite:
            # a time-to-event design counts a patient when treated and weighs the follow-up
            count_patients(state, r, level, dlt, response)
        else:
            state.backfill_unseen[r, c] = True


def _note_allowed(design: Design, state: TrialState) -> None:
    """The levels the design allows at this decision, for backfilling until the next one."""
    if design.backfill is not None:
        state.backfill_allowed = design.allowed(state)


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


def _run_tite(design, state, dlt_prob, patients, onset, eff_prob=None, response_onset=None):
    """Patient by patient: at the arrival that opens each cohort, decide from the follow-up
    available then; the cohort's other patients join the same level as they arrive."""
    window = design.timing.dlt_window_months
    efficacy_window = _late_efficacy_window(design)
    turns_away = design.method.turns_away
    spare_gaps = np.random.default_rng(patients.turned_away_seed or np.random.SeedSequence(0))
    one = np.ones(state.n_trials, dtype=np.int32)
    backfilling = None
    if design.backfill is not None:
        backfilling = Backfilling(design, dlt_prob, patients, onset, eff_prob, response_onset)
    late = {"eff_prob": eff_prob, "response_onset": response_onset}
    rows = np.flatnonzero(state.active)
    _enrol(design, state, rows, one[rows], dlt_prob, patients, onset, **late)
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
            _enrol(design, state, rows, one[rows], dlt_prob, patients, onset, True, **late)
            continue
        decide(design, state)
        suspended = suspended_trials(design, state)
        if turns_away and suspended.any():
            # This arrival and the next ones are turned away until the design may go on; the
            # first patient to arrive after that is enrolled (dfcrm's two-stage titesim).
            while suspended.any():
                gap = design.timing.gaps(spare_gaps.random(int(suspended.sum())))
                state.time[suspended] += gap
                suspended = suspended_trials(design, state)
            decide(design, state)
        while suspended.any():
            # Accrual waits until the next pending patient has a DLT or completes the window;
            # with backfilling, the patients arriving meanwhile are backfilled. (Arrivals that a
            # start-up turns away are not: its wait runs from the last arrival.)
            until = next_event(state, window, efficacy_window)
            if backfilling is not None:
                held = np.flatnonzero(suspended)
                _note_allowed(design, state)
                backfilling.arrivals(state, held, until[held])
            state.time[suspended] = until[suspended]
            decide(design, state)
            suspended = suspended_trials(design, state)
        rows = np.flatnonzero(state.active)
        if rows.size == 0:
            break  # the last running trials all stopped at this decision
        _enrol(design, state, rows, one[rows], dlt_prob, patients, onset, True, **late)
    # Everyone's follow-up completes: the final selection uses complete data.
    with np.errstate(all="ignore"):
        last = np.nanmax(
            np.where(np.isnan(state.patient_arrival), -np.inf, state.patient_arrival), 1
        )
    follow_up = design.follow_up_months
    state.time[:] = np.where(np.isfinite(last), last + follow_up, 0.0)
    if design.method.late_efficacy:
        _last_decision(design, state)


def _last_decision(design: Design, state: TrialState) -> None:
    """The method's decision after the last patient, on complete data, for the trials that
    reached ``max_patients`` (which the loop above ends without one): a stop that selects no
    level (BOIN12's "no acceptable level near the current one") replaces MAX_PATIENTS, as
    BOIN12's decision after its last cohort does."""
    ended = np.flatnonzero(state.stop_reason == StopReason.MAX_PATIENTS)
    if ended.size == 0:
        return
    last = state.take(ended)
    last.active[:] = True
    _, stop = design.method.propose(last)
    no_level = np.isin(stop, [r.value for r in StopReason if not r.selects_mtd])
    state.stop_reason[ended[no_level]] = stop[no_level]


def suspended_trials(design: Design, state: TrialState) -> np.ndarray:
    if not design.method.holds_accrual:
        return np.zeros(state.n_trials, dtype=bool)
    held = state.active & design.method.suspend(state)
    if design.method.turns_away:
        return held  # time moves on with each arrival turned away
    window = design.timing.dlt_window_months
    return held & np.isfinite(next_event(state, window, _late_efficacy_window(design)))


def _late_efficacy_window(design: Design) -> float | None:
    """The efficacy window of a method that sees responses as they occur, else None."""
    return design.timing.efficacy_window_months if design.method.late_efficacy else None


def next_event(state: TrialState, window: float, efficacy_window: float | None = None):
    """The next time a pending patient's outcome becomes known (DLT onset or window end), [trial];
    with ``efficacy_window``, a pending response too (its onset or the efficacy window's end)."""
    pending = state.pending(window)
    onset = state.patient_arrival + state.patient_dlt_time
    end = state.patient_arrival + window
    event = np.where(state.patient_dlt & (onset < end), onset, end)
    event = np.where(pending & (event > state.time[:, None]), event, np.inf)
    soonest = event.min(axis=1)
    if efficacy_window is None or state.patient_response_time is None:
        return soonest
    pending = state.efficacy_pending(efficacy_window)
    seen = state.patient_arrival + state.patient_response_time
    end = state.patient_arrival + efficacy_window
    event = np.where(state.patient_response & (seen < end), seen, end)
    event = np.where(pending & (event > state.time[:, None]), event, np.inf)
    return np.minimum(soonest, event.min(axis=1))
