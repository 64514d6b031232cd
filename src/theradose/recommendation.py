"""Interim recommendations: the design's next decision for one real trial, as the engine would
make it (the same pipeline on that trial's observed state)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from theradose.design import Design
from theradose.engine import next_event, suspended_trials
from theradose.pipeline import decide, select_mtd
from theradose.state import NO_LEVEL, StopReason, TrialState


@dataclass(frozen=True)
class BackfillAdvice:
    """Which lower levels are open for backfilling at an interim (0-based levels), by the
    engine's rule (:func:`theradose.backfill.backfill_status`).

    ``when``: "now" (the escalation waits for pending patients, or a time-to-event design
    holds accrual), "next_cohort" (while the next cohort's DLT window is open, on the outcomes
    known today), "stopped" (the trial stops: no backfilling) or "needs_patients" (an outcome
    string has no follow-up: nothing computed).
    """

    when: str
    max_per_level: int
    open_levels: tuple[int, ...] = ()
    room: dict[int, int] = field(default_factory=dict)  # open level → backfill patients left
    closed: dict[int, str] = field(default_factory=dict)  # level → why closed, in words
    treated: tuple[int, ...] = ()  # [level] backfill patients treated
    pending: tuple[int, ...] = ()  # [level] backfill patients whose outcome is not known yet
    current: int | None = None  # the escalation's level the rule compares with


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
    r: tuple[int, ...] = ()  # [level] responses, for a design that uses efficacy
    # A design with [backfill]: the lower levels open for backfilling (None without [backfill]).
    backfill: BackfillAdvice | None = None
    # A design deciding on responses, given patients with follow-up: [patient] still within the
    # efficacy window without a response so far (empty when not known: an outcome string).
    pending_response: tuple[bool, ...] = ()

    @property
    def stop(self) -> bool:
        return self.stop_reason is not None

    @property
    def pending_patients(self) -> tuple[int, ...]:
        """The pending patients' 1-based numbers."""
        return tuple(i + 1 for i, flag in enumerate(self.pending) if flag)

    @property
    def pending_response_patients(self) -> tuple[int, ...]:
        """The 1-based numbers of the patients pending for the response."""
        return tuple(i + 1 for i, flag in enumerate(self.pending_response) if flag)


def recommend(
    design: Design,
    cohorts: Sequence[tuple[int, Sequence[bool]]],
    final_design: Design | None = None,
    gy_per_gbq: np.ndarray | None = None,
) -> Recommendation:
    """Replay a real trial cohort by cohort and return the design's next decision.

    ``cohorts`` are (0-based level, DLT flags) in the order treated — (level, DLT flags,
    response flags) for a design that uses efficacy. Each cohort is recorded at the level
    actually given, then :func:`decide` runs exactly as in simulation.
    ``final_design`` (the same rules, another posterior engine such as MCMC) makes the decision
    after the last cohort and the estimates; ``design`` replays the earlier ones.
    ``gy_per_gbq`` [patient, organ]: the patients' measured dosimetry, in the design's organ
    order (NaN where not measured), which updates the organ-dose constraint.
    """
    final = design if final_design is None else final_design
    state, deviations = replay(design, cohorts, final, gy_per_gbq)
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
        r=tuple(int(v) for v in state.r[0]) if state.efficacy else (),
    )


def replay(
    design: Design,
    cohorts: Sequence[tuple[int, Sequence[bool]]],
    final_design: Design | None = None,
    gy_per_gbq: np.ndarray | None = None,
    spare_patients: int = 0,
) -> tuple[TrialState, list[str]]:
    """One trial's state after its cohorts, each decision made as in simulation (the last one by
    ``final_design``), and the cohorts given another level than the design said, in words.

    The state has room for ``spare_patients`` more (dose transition pathways treat them).
    """
    final = design if final_design is None else final_design
    n_patients = sum(len(cohort[1]) for cohort in cohorts)
    state = TrialState.start(
        1, design.n_levels, design.start_level, max(n_patients + spare_patients, 1)
    )
    if design.method.uses_efficacy:
        state.with_efficacy()
    deviations = []
    one = np.array([0])
    for index, cohort in enumerate(cohorts):
        level, dlts = cohort[0], cohort[1]
        responses = cohort[2] if len(cohort) > 2 else None
        if design.method.uses_efficacy and responses is None:
            raise ValueError(
                f"cohort {index + 1}: method {design.method.key!r} decides on responses; give "
                "each patient's response (outcome letters N, T, E, B)"
            )
        if not 0 <= level < design.n_levels:
            raise ValueError(
                f"cohort {index + 1}: level {level + 1} is outside 1..{design.n_levels}"
            )
        deviations += _deviation(state, index, level)
        treat_cohort(
            design,
            state,
            one,
            np.array([level]),
            np.asarray([dlts], dtype=bool),
            None if responses is None else np.asarray([responses], dtype=bool),
        )
        # each decision sees the dosimetry of the patients treated by then, as in simulation
        known = np.arange(state.patient_level.shape[1]) < state.n_enrolled[0]
        _attach_dosimetry(design, state, gy_per_gbq, known[None, :])
        decide(final if index == len(cohorts) - 1 else design, state)
    return state, deviations


def treat_cohort(
    design: Design,
    state: TrialState,
    rows: np.ndarray,
    level: np.ndarray,
    dlts: np.ndarray,
    responses: np.ndarray | None = None,
) -> None:
    """Record a cohort at ``level`` [row] with DLT flags ``dlts`` [row, patient] (and, in a
    state that keeps efficacy, response flags ``responses`` [row, patient]) in each trial state
    of ``rows``, whatever the design said, and let those trials go on.

    An outcome carries no times: every window has closed (complete follow-up), so time-to-event
    designs see every DLT. The cohort takes the next free places (after any backfill patients).
    """
    size = dlts.shape[1]
    cols = state.places()[rows, None] + np.arange(size)  # [row, patient]
    at = rows[:, None]
    state.patient_level[at, cols] = level[:, None]
    state.patient_dlt[at, cols] = dlts
    if design.timing is not None:
        state.patient_arrival[at, cols] = -design.timing.dlt_window_months
        state.patient_dlt_time[at, cols] = np.where(dlts, 0.0, np.nan)
    state.next_level[rows] = level
    if state.efficacy and responses is not None:
        state.patient_response[at, cols] = responses
        state.record_cohort(
            rows, size, dlts.sum(axis=1), responses.sum(axis=1), (responses & dlts).sum(axis=1)
        )
    else:
        state.record_cohort(rows, size, dlts.sum(axis=1))
    state.active[rows] = True
    state.stop_reason[rows] = StopReason.RUNNING


def _basis(design: Design, state: TrialState) -> dict[str, float | int | bool]:
    """The method's decision basis for the first trial state, as plain numbers."""
    return {k: np.asarray(v)[0].item() for k, v in design.method.decision_basis(state).items()}


def patient_cohorts(
    cohort_size: int, level: np.ndarray, dlt: np.ndarray, response: np.ndarray | None = None
) -> list[tuple]:
    """Patients in enrolment order grouped into cohorts of (0-based level, DLT flags) — with
    ``response``, (level, DLT flags, response flags): runs of the same level, at most
    ``cohort_size`` patients each."""
    cohorts: list[tuple[int, list[bool], list[bool]]] = []
    level, dlt = np.asarray(level).tolist(), np.asarray(dlt).tolist()
    responded = [False] * len(level) if response is None else np.asarray(response).tolist()
    for lvl, had_dlt, had_response in zip(level, dlt, responded, strict=True):
        if cohorts and cohorts[-1][0] == lvl and len(cohorts[-1][1]) < cohort_size:
            cohorts[-1][1].append(bool(had_dlt))
            cohorts[-1][2].append(bool(had_response))
        else:
            cohorts.append((int(lvl), [bool(had_dlt)], [bool(had_response)]))
    if response is None:
        return [(lvl, tuple(flags)) for lvl, flags, _ in cohorts]
    return [(lvl, tuple(flags), tuple(resp)) for lvl, flags, resp in cohorts]


def recommend_from_patients(
    design: Design,
    level: np.ndarray,
    dlt: np.ndarray,
    followup: np.ndarray,
    dlt_time: np.ndarray | None = None,
    gy_per_gbq: np.ndarray | None = None,
    window: float | None = None,
    backfill: np.ndarray | None = None,
    response: np.ndarray | None = None,
    response_time: np.ndarray | None = None,
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
    backfill : [patient] whether each patient was treated by backfilling (a design with
        ``[backfill]``; default none). Backfill patients form no cohort and do not count
        towards ``max_patients``. With a design that decides on complete data each joins its
        level's counts once the outcome is known (a DLT seen, or the window closed), and the
        decision after each cohort sees those known by then (the last decision: today); a
        time-to-event design sees each one from treatment, its follow-up weighted as any
        patient's at that level — both as in the engine. The answer's ``backfill`` says which
        lower levels are open for backfilling (:class:`BackfillAdvice`).
    response : [patient] whether each patient has responded so far; required by a design that
        decides on responses (``method.uses_efficacy``), ignored by the others
    response_time : [patient] months from treatment to the response; NaN (or no array) where not
        known, taken as now or the efficacy window's end, whichever is earlier

    A patient is *pending for the response* while within the efficacy window (``[timing]
    efficacy_window_months``; the DLT window when not given) without a response so far.

    A time-to-event design (``method.tite``) decides as the engine does at a new patient's
    arrival: the trial state is built at "now" = time 0, each patient arriving at −follow-up,
    and :func:`decide` runs on it; then the design's suspension rule may hold accrual
    (``suspended``, ``next_level`` None). A design with late responses (TITE-BOIN12, Zhou et al.
    2022) sees each response from its time, and the responses pending as the engine does
    (``pending_response``). The decision that opened each earlier cohort (the
    engine's cohorts: ``cohort_size`` escalation patients in enrolment order) is recomputed
    from the data known at that patient's arrival — the patients above it in the file, backfill
    ones included — in the same batch of trial states, to list deviations.

    Other designs decide on complete data, as in simulation, where each cohort's window closes
    before the next decision. While a patient without a DLT is within the window (a patient
    with a DLT is complete whatever the follow-up) the answer is to wait (``wait``, no
    ``next_level``, ``review_in`` until the first pending window closes, ``complete_in`` until
    the last); the MTD estimate and the estimates then use the patients with complete data
    (``mtd_on_complete_data``), the counts and deviations every patient. With no patient
    pending the answer is :func:`recommend` on the cohorts (:func:`patient_cohorts`). A design
    deciding on responses (BOIN12) also waits while a patient is pending for the response.

    Raises
    ------
    ValueError
        Without a window (no ``window`` and no ``[timing]``), or with a ``window`` other than a
        time-to-event design's own; without ``response`` for a design that decides on
        responses; for a design with ``[backfill]`` that decides on responses on complete data.
    """
    from theradose.timing import DAYS_PER_MONTH

    level = np.asarray(level, dtype=np.int64)
    dlt = np.asarray(dlt, dtype=bool)
    followup = np.asarray(followup, dtype=float)
    unknown = np.full(level.shape, np.nan) if dlt_time is None else np.asarray(dlt_time, float)
    n, size = level.size, design.cohort_size
    days = lambda months: f"{months * DAYS_PER_MONTH:.4g}"  # noqa: E731
    tite = design.method.tite
    efficacy = design.method.uses_efficacy
    if efficacy and response is None and n:
        raise ValueError(
            f"design {design.name!r}: method {design.method.key!r} decides on responses; give "
            "each patient's response so far"
        )
    own = None if design.timing is None else design.timing.dlt_window_months
    if window is None and own is None:
        raise ValueError(f"design {design.name!r}: patients' follow-up needs the DLT window")
    if tite and window is not None and window != own:
        raise ValueError(
            f"design {design.name!r}: the DLT window of a time-to-event design is its own "
            f"({own:g} months, not {window:g}); build the design with that window"
        )
    window = own if window is None else window
    flagged = np.zeros(level.shape, dtype=bool) if backfill is None else np.asarray(backfill, bool)
    if flagged.any() and design.backfill is None:
        raise ValueError(
            f"design {design.name!r} has no [backfill]: no patient can be a backfill one"
        )
    responses = None
    if efficacy:
        given = np.zeros(n, dtype=bool) if response is None else response
        responses = _Responses.of(design, window, followup, given, response_time)
    if design.backfill is not None and not tite and efficacy and n:
        raise ValueError(
            f"design {design.name!r}: a patient file for a design with [backfill] that decides "
            f"on responses (method {design.method.key!r}) is not supported yet; give --outcomes "
            "(complete follow-up)"
        )
    if design.backfill is not None and not tite:
        return _recommend_with_backfill(
            design, level, dlt, followup, unknown, flagged, gy_per_gbq, window
        )
    escalation = np.flatnonzero(~flagged)  # a time-to-event design's cohorts: blocks of these
    n_escalation = escalation.size
    # The engine's cohorts: blocks of enrolment for time-to-event designs, else cohorts treated.
    if tite or n == 0:
        last_cohort = n_escalation % size or size
    else:
        last_cohort = len(patient_cohorts(size, level, dlt)[-1][1])
    notes = []
    waiting = not tite and _pending(dlt, followup, window).any()
    waiting = waiting or (not tite and responses is not None and responses.pending.any())
    if n_escalation < design.max_patients and last_cohort < size and not waiting:
        notes.append(
            f"the data end within a cohort of {size}: this is the design's decision on the data "
            "so far; in simulation the cohort's remaining patients join the same level first"
        )
    if responses is not None:
        notes += responses.notes(tite)
    if not tite:
        return _wait_for_complete_data(
            design, level, dlt, followup, window, gy_per_gbq, tuple(notes), responses
        )
    if n_escalation == 0:
        return recommend(design, [])
    if flagged.any():
        notes.append(
            f"{int(flagged.sum())} backfill patients are not escalation cohorts: each enters its "
            "level's data when treated, its follow-up weighted as any patient's there, and none "
            "counts towards max_patients"
        )

    onset = np.where(np.isnan(unknown), followup, unknown)
    openers = escalation[size::size]  # the patients whose arrival opened a later cohort
    known = np.append(openers, n)  # patients enrolled at each decision, the last one now
    state = _patient_states(design, level, dlt, -followup, onset, known, flagged, responses)
    enrolled = np.arange(n)[None, :] < known[:, None]
    _attach_dosimetry(design, state, gy_per_gbq, enrolled)
    decide(design, state)
    suspended = suspended_trials(design, state)

    deviations = []
    if level[escalation[0]] != design.start_level:
        deviations.append(
            f"patient {escalation[0] + 1} was treated at level {level[escalation[0]] + 1}; the "
            f"design starts at {design.start_level + 1}"
        )
    for e in range(1, n_escalation):  # escalation patients only: backfill ones form no cohort
        j = escalation[e]
        row = e // size - 1  # the decision that opened patient j's cohort
        if e % size:
            first = escalation[e - e % size]
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
    awaiting = np.zeros(n, dtype=bool)  # [patient] pending for the response
    if responses is not None:
        awaiting = now.efficacy_pending(responses.window)[0]
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
        mtd_on_complete_data=bool(now.pending(window).any() or awaiting.any())
        and design.method.selects_on_complete_data,
        backfill=_tite_backfill_advice(design, now, window, stopped, held),
        r=tuple(int(v) for v in now.r[0]) if now.efficacy else (),
        pending_response=tuple(awaiting.tolist()) if responses is not None else (),
    )


@dataclass(frozen=True)
class _Responses:
    """A patient file's responses as a design deciding on them reads them, [patient] each: the
    flags, the months from treatment to each response (NaN without one), the patients pending
    for it, and the efficacy window (months)."""

    response: np.ndarray
    onset: np.ndarray
    pending: np.ndarray
    window: float
    no_day: np.ndarray  # responders without a response day (taken as seen at ``onset``)

    @classmethod
    def of(cls, design, dlt_window, followup, response, response_time) -> _Responses:
        window = efficacy_window(design, dlt_window)
        response = np.asarray(response, dtype=bool)
        given = np.full(response.shape, np.nan) if response_time is None else response_time
        given = np.asarray(given, dtype=float)
        no_day = response & np.isnan(given)
        # without its day, a response is taken as seen at the latest it can have been: today,
        # or the window's end when that is earlier (a response counts only within the window)
        onset = np.where(np.isnan(given), np.minimum(followup, window), given)
        return cls(
            response=response,
            onset=np.where(response, onset, np.nan),
            pending=~response & (followup < window),
            window=window,
            no_day=no_day,
        )

    def notes(self, tite: bool) -> list[str]:
        if not (tite and self.no_day.any()):
            return []
        return [
            f"no response_day for {_listed('patient', np.flatnonzero(self.no_day) + 1)}: the "
            "response is taken to have been seen today, or at the efficacy window's end when "
            "that is earlier (earlier decisions are replayed without it)"
        ]


def efficacy_window(design: Design, dlt_window: float | None = None) -> float | None:
    """The efficacy window of a design that decides on responses, months: ``[timing]
    efficacy_window_months`` (TITE-BOIN12's own), else the DLT window (``dlt_window``, or the
    design's); None when neither is known."""
    if design.method.late_efficacy:
        return design.method.efficacy_window
    if design.timing is not None and design.timing.efficacy_window_months is not None:
        return design.timing.efficacy_window_months
    if dlt_window is not None:
        return dlt_window
    return None if design.timing is None else design.timing.dlt_window_months


def _tite_backfill_advice(design, now: TrialState, window: float, stopped: bool, held: bool):
    """The backfill answer of a time-to-event design with ``[backfill]`` (its state holds the
    backfill patients, :func:`_patient_states`): it backfills while it holds accrual ("now"),
    else once it does."""
    if design.backfill is None:
        return None
    state = now.take(np.array([0]))
    state.backfill_allowed = design.allowed(state)
    when = "stopped" if stopped else "now" if held else "next_cohort"
    return _backfill_advice(design, state, window, when)


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
    responses: _Responses | None = None,
) -> Recommendation:
    """A design deciding on complete data, given patients with their follow-up (months): its
    decision when nobody is pending, else the answer to wait (:func:`recommend_from_patients`).
    With ``responses`` (a design deciding on them, BOIN12) a patient is complete once both
    outcomes are known: the DLT seen or its window closed, the response seen or the efficacy
    window closed."""
    size = design.cohort_size
    pending = _pending(dlt, followup, window)
    # months until each patient's outcomes are all known (0: known)
    left = np.where(pending, window - followup, 0.0)
    response = None
    awaiting = np.zeros(level.shape, dtype=bool)
    if responses is not None:
        response, awaiting = responses.response, responses.pending
        left = np.maximum(left, np.where(awaiting, responses.window - followup, 0.0))
    waiting = pending | awaiting
    everyone = recommend(
        design, patient_cohorts(size, level, dlt, response), gy_per_gbq=gy_per_gbq
    )
    shown = {
        "pending": tuple(pending.tolist()),
        "pending_response": () if responses is None else tuple(awaiting.tolist()),
    }
    if not waiting.any():
        return replace(everyone, notes=notes, **shown)
    done = ~waiting
    measured = None if gy_per_gbq is None else np.asarray(gy_per_gbq)[done]
    complete = recommend(
        design,
        patient_cohorts(size, level[done], dlt[done], None if response is None else response[done]),
        gy_per_gbq=measured,
    )
    # The organ-dose constraint reads every measurement, pending patients' included.
    is_organ = lambda name: name.startswith("p_exceed_") or name == "admissible"  # noqa: E731
    estimates = {k: v for k, v in complete.level_summary.items() if not is_organ(k)}
    organs = {k: v for k, v in everyone.level_summary.items() if is_organ(k)}
    known = "a DLT, or the window closed" if responses is None else "both outcomes known"
    notes += (
        f"the MTD estimate and the estimates per level use the {int(done.sum())} patients with "
        f"complete data ({known}); the counts include the pending patients",
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
        review_in=float(left[waiting].min()),
        complete_in=float(left[waiting].max()),
        wait=True,
        mtd_on_complete_data=True,
        r=everyone.r,
        **shown,
    )


def _review_in(design: Design, now: TrialState) -> float:
    """Months from now (time 0) until a suspension may lift: the end of a start-up wait, or
    the next pending patient's window closing."""
    if design.method.turns_away:
        return float(design.method.start_up_wait_ends(now)[0] - now.time[0])
    late = efficacy_window(design) if design.method.late_efficacy else None
    return float(next_event(now, design.timing.dlt_window_months, late)[0])


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


def _patient_states(
    design, level, dlt, arrival, onset, known, backfill=None, responses: _Responses | None = None
) -> TrialState:
    """One trial state per decision ``r``: the first ``known[r]`` patients as they stood when
    patient ``known[r]`` arrived (the last: now, time 0) — follow-up so far, DLTs seen by then
    (and, with ``responses``, the responses seen by then, each at its time).

    With ``backfill`` [patient] flags (a design with ``[backfill]``), the backfill patients among
    them are held as the engine holds them: at their level from treatment (their follow-up
    weighted as any patient's), outside the escalation's count and its current level."""
    n = level.size
    state = TrialState.start(known.size, design.n_levels, design.start_level, n)
    enrolled = np.arange(n)[None, :] < known[:, None]  # [decision, patient]
    escalating = enrolled if backfill is None else enrolled & ~backfill
    state.time[:] = np.append(arrival[known[:-1]], 0.0)
    state.patient_level[:] = np.where(enrolled, level, NO_LEVEL)
    state.patient_dlt[:] = enrolled & dlt
    state.patient_arrival[:] = np.where(enrolled, arrival, np.nan)
    state.patient_dlt_time[:] = np.where(enrolled & dlt, onset, np.nan)
    at_level = level[None, :, None] == np.arange(design.n_levels)  # [., patient, level]
    if design.backfill is not None:
        state.with_backfill()
        state.patient_backfill[:] = enrolled & ~escalating
        state.n_backfill[:] = (state.patient_backfill[:, :, None] & at_level).sum(axis=1)
    seen = state.observed_dlt(design.timing.dlt_window_months) & enrolled
    state.n[:] = (enrolled[:, :, None] & at_level).sum(axis=1)
    state.y[:] = (seen[:, :, None] & at_level).sum(axis=1)
    if responses is not None:
        state.with_efficacy().with_response_times()
        responded = enrolled & responses.response
        state.patient_response[:] = responded
        state.patient_response_time[:] = np.where(responded, responses.onset, np.nan)
        # the responses seen by each decision's time (the method reads the per-patient records)
        shown = state.observed_response(responses.window) & enrolled
        state.r[:] = (shown[:, :, None] & at_level).sum(axis=1)
        state.b[:] = ((shown & seen)[:, :, None] & at_level).sum(axis=1)
    # each decision's last escalation patient (every decision has one: see the caller)
    last = n - 1 - np.argmax(escalating[:, ::-1], axis=1)
    state.level[:] = level[last]
    state.next_level[:] = level[last]
    state.n_enrolled[:] = escalating.sum(axis=1)
    # The engine enrols time-to-event designs one patient at a time.
    state.last_cohort_n[:] = 1
    state.last_cohort_y[:] = seen[np.arange(known.size), last]
    return state


# ---------------------------------------------------------------------------------------------
# Backfilling (designs with [backfill]: Zhao et al. 2024, BF-BOIN)


def backfill_needs_patients(design: Design) -> BackfillAdvice | None:
    """The backfill answer for an outcome string: none computed (no follow-up, no backfill
    flags), or None for a design without ``[backfill]``."""
    if design.backfill is None:
        return None
    return BackfillAdvice("needs_patients", design.backfill.max_per_level)


def _backfill_replay(
    design, level, dlt, arrival, event, backfill, gy_per_gbq, window, spare_patients: int = 0
):
    """One trial's state after its patients, as the engine would hold it with backfilling, and
    the cohorts given another level than the design said.

    Escalation patients (``~backfill``, in enrolment order) form the cohorts; the decision
    after each cohort whose patients all have known outcomes is made as in simulation: at the
    cohort's window end (today for the last one), with the backfill patients treated by then
    (arrival ≤ that time) and, for a design that decides on complete data, those whose outcome
    is known by then (:func:`theradose.backfill.outcome_known`, ``event`` months after arrival)
    in the counts — a time-to-event design counts each one when treated, as the engine does.
    The levels the design allows then are kept for backfilling. Cohorts from the first one with
    a pending patient on are treated without a decision (the design waits for them). At the end
    every backfill patient is treated and those with outcomes known today are counted.

    Returns (state, deviations, waiting): ``waiting`` whether a cohort awaits its decision. The
    state's per-patient places hold the patients in the order the replay treats them (as the
    engine's), with room for ``spare_patients`` more (dose transition pathways treat them).
    """
    from theradose.backfill import count_patients, outcome_known, see_backfill_outcomes

    n = level.size
    escalation, extra = np.flatnonzero(~backfill), np.flatnonzero(backfill)
    size = design.cohort_size
    cohorts = patient_cohorts(size, level[escalation], dlt[escalation])
    ends = np.cumsum([len(cohort[1]) for cohort in cohorts], dtype=np.int64)
    starts = ends - [len(cohort[1]) for cohort in cohorts]
    state = TrialState.start(1, design.n_levels, design.start_level, max(n + spare_patients, 1))
    state.with_backfill()
    order = np.full(state.patient_level.shape[1], -1)  # [place] the patient's row in the input
    treated = np.zeros(extra.size, dtype=bool)
    one, today = np.array([0]), np.zeros(1)

    def backfill_until(t: float) -> None:
        new = ~treated & (arrival[extra] <= t)
        rows = extra[new]
        cols = state.places()[0] + np.arange(rows.size)
        order[cols] = rows
        state.patient_level[0, cols] = level[rows]
        state.patient_dlt[0, cols] = dlt[rows]
        state.patient_arrival[0, cols] = arrival[rows]
        state.patient_dlt_time[0, cols] = np.where(dlt[rows], event[rows], np.nan)
        state.patient_backfill[0, cols] = True
        np.add.at(state.n_backfill[0], level[rows], 1)
        treated[new] = True
        state.time[0] = t
        if design.method.tite:
            count_patients(state, np.zeros(rows.size, dtype=np.intp), level[rows], dlt[rows])
        else:
            state.backfill_unseen[0, cols] = True
            see_backfill_outcomes(state, window, one)

    deviations = []
    waiting = False
    for k, (lvl, flags) in enumerate(cohorts):
        deviations += _deviation(state, k, lvl)
        cols = state.places()[0] + np.arange(len(flags))
        treat_cohort(design, state, one, np.array([lvl]), np.asarray([flags], dtype=bool))
        members = escalation[starts[k] : ends[k]]
        order[cols] = members
        state.patient_arrival[0, cols] = arrival[members]
        state.patient_dlt_time[0, cols] = np.where(dlt[members], event[members], np.nan)
        waiting = waiting or not outcome_known(state, one, today, window)[0, cols].all()
        if waiting:
            continue
        last = k == len(cohorts) - 1
        backfill_until(0.0 if last else min(float(arrival[members].max()) + window, 0.0))
        if gy_per_gbq is not None:
            # the dosimetry of the patients treated by then, in the state's places
            given = np.asarray(gy_per_gbq)
            placed = int(state.places()[0])
            measured = np.full((order.size, given.shape[1]), np.nan)
            measured[:placed] = given[order[:placed]]
            filled = np.arange(order.size) < placed
            _attach_dosimetry(design, state, measured, filled[None, :])
        decide(design, state)
        state.backfill_allowed = design.allowed(state)
    backfill_until(0.0)
    return state, deviations, waiting


def replay_complete_with_backfill(
    design: Design,
    level: np.ndarray,
    dlt: np.ndarray,
    followup: np.ndarray,
    dlt_time: np.ndarray,
    backfill: np.ndarray,
    gy_per_gbq: np.ndarray | None = None,
    spare_patients: int = 0,
) -> TrialState:
    """One trial's state with its backfill patients once every patient's outcome is known — the
    trial as it will stand when the last DLT window closes, if nobody else is treated meanwhile
    (dose transition pathways' complete follow-up). Arguments as
    :func:`recommend_from_patients` (``dlt_time`` NaN where not known: taken as today).

    Every follow-up is lengthened by the same amount, so the earlier decisions keep their times
    relative to the patients' (:func:`_backfill_replay`), and the last decision counts every
    patient."""
    window = design.timing.dlt_window_months
    onset = np.where(np.isnan(dlt_time), followup, dlt_time)  # a DLT without a day: today
    event = np.where(dlt, onset, window)  # months after treatment until the outcome is known
    later = max(float(np.max(event - followup, initial=0.0)), 0.0)
    followup = np.maximum(followup + later, event)  # (the maximum: rounding of the sum)
    state, _, _ = _backfill_replay(
        design, level, dlt, -followup, event, backfill, gy_per_gbq, window, spare_patients
    )
    return state


def _backfill_advice(design: Design, state: TrialState, window: float, when: str):
    """The backfill answer from a trial state (:func:`_backfill_replay`) at time 0 (today)."""
    from theradose.backfill import backfill_status, observed_counts, outcome_known

    rule = design.backfill
    treated = tuple(int(v) for v in state.n_backfill[0])
    rows, now = np.array([0]), np.zeros(1)
    unknown = state.patient_backfill[0] & ~outcome_known(state, rows, now, window)[0]
    pending = tuple(
        int(v) for v in np.bincount(state.patient_level[0][unknown], minlength=state.n_levels)
    )
    if when == "stopped":
        closed = {b: "the trial stops: no backfilling" for b in range(state.n_levels)}
        return BackfillAdvice(when, rule.max_per_level, (), {}, closed, treated, pending)
    status = backfill_status(rule, state, rows, now, window)
    n_known, y_known = observed_counts(state, rows, now, window)
    current = int(min(state.level[0], state.next_level[0]))
    admissible = None if state.admissible is None else state.admissible[0]
    blocking = (status.unsafe | status.ruled_out)[0]
    open_at, closed = [], {}
    for b in range(state.n_levels):
        if status.open[0, b]:
            open_at.append(b)
        elif not status.cleared[0, b]:
            closed[b] = (
                f"not yet cleared (at or above the current level {current + 1})"
                if b >= current
                else "not yet cleared (no escalation patients treated there)"
            )
        elif status.ruled_out[0, b]:
            closed[b] = (
                "ruled out by the organ-dose limits"
                if admissible is not None and not admissible[b]
                else "eliminated: the design did not allow it at its last decision"
            )
        elif status.unsafe[0, b]:
            closed[b] = (
                f"its known outcomes call for de-escalation ({y_known[0, b]} DLTs in "
                f"{n_known[0, b]} patients with known outcomes)"
            )
        elif status.closed[0, b]:
            below = int(np.flatnonzero(blocking[:b])[0])
            closed[b] = f"level {below + 1} below it is closed"
        else:
            closed[b] = f"full ({rule.max_per_level} backfill patients treated)"
    room = {b: rule.max_per_level - treated[b] for b in open_at}
    return BackfillAdvice(
        when, rule.max_per_level, tuple(open_at), room, closed, treated, pending, current
    )


def _recommend_with_backfill(design, level, dlt, followup, dlt_time, backfill, gy_per_gbq, window):
    """:func:`recommend_from_patients` for a design with ``[backfill]`` that decides on
    complete data: the escalation patients' cohorts decide (a pending escalation patient means
    wait), backfill patients join the counts once their outcome is known, as in the engine; the
    answer says which lower levels are open for backfilling."""
    onset = np.where(np.isnan(dlt_time), followup, dlt_time)  # a DLT without a day: today
    event = np.where(dlt, onset, window)  # months after treatment until the outcome is known
    arrival = -followup
    escalating = ~backfill
    pending = escalating & _pending(dlt, followup, window)
    state, deviations, waiting = _backfill_replay(
        design, level, dlt, arrival, event, backfill, gy_per_gbq, window
    )
    notes = []
    cohorts = patient_cohorts(design.cohort_size, level[escalating], dlt[escalating])
    if (
        cohorts
        and int(escalating.sum()) < design.max_patients
        and len(cohorts[-1][1]) < design.cohort_size
        and not waiting
    ):
        notes.append(
            f"the data end within a cohort of {design.cohort_size}: this is the design's "
            "decision on the data so far; in simulation the cohort's remaining patients join "
            "the same level first"
        )
    counted = f"{int(backfill.sum())} backfill patients"
    notes.append(
        f"{counted} are not escalation cohorts: each joins its level's counts once the outcome "
        "is known (a DLT, or the window closed), and none counts towards max_patients"
    )
    summary = {k: np.asarray(v)[0] for k, v in design.method.level_summary(state).items()}
    summary.update(_organ_summary(design, state))
    common = dict(
        n=tuple(int(v) for v in state.n[0]),
        y=tuple(int(v) for v in state.y[0]),
        deviations=tuple(deviations),
        pending=tuple(pending.tolist()),
    )
    if waiting:
        done = ~pending
        complete, _, _ = _backfill_replay(
            design,
            level[done],
            dlt[done],
            arrival[done],
            event[done],
            backfill[done],
            None if gy_per_gbq is None else np.asarray(gy_per_gbq)[done],
            window,
        )
        mtd = int(select_mtd(design, complete)[0]) if escalating[done].any() else NO_LEVEL
        estimates = {k: np.asarray(v)[0] for k, v in design.method.level_summary(complete).items()}
        left = window - followup[pending]
        notes.append(
            "the MTD estimate and the estimates per level use the patients with complete data "
            "(a DLT, or the window closed); the counts include the pending escalation patients"
        )
        return Recommendation(
            next_level=None,
            stop_reason=None,
            mtd=None if mtd == NO_LEVEL else mtd,
            level_summary={**estimates, **_organ_summary(design, state)},
            model_summary={
                k: float(v[0]) for k, v in design.method.model_summary(complete).items()
            },
            notes=tuple(notes),
            review_in=float(left.min()),
            complete_in=float(left.max()),
            wait=True,
            mtd_on_complete_data=True,
            backfill=_backfill_advice(design, state, window, "now"),
            **common,
        )
    stopped = not state.active[0]
    has_cohorts = bool(cohorts)
    mtd = int(select_mtd(design, state)[0]) if has_cohorts else NO_LEVEL
    if stopped:
        advice = _backfill_advice(design, state, window, "stopped")
    else:
        ahead = state.take(np.array([0]))
        ahead.level[:] = ahead.next_level  # the next cohort treated, its window open
        advice = _backfill_advice(design, ahead, window, "next_cohort")
    return Recommendation(
        next_level=None if stopped else int(state.next_level[0]),
        stop_reason=StopReason(int(state.stop_reason[0])) if stopped else None,
        mtd=None if mtd == NO_LEVEL else mtd,
        level_summary=summary,
        model_summary={k: float(v[0]) for k, v in design.method.model_summary(state).items()}
        if has_cohorts
        else {},
        rule_states=tuple(rule.state_text(state, 0) for rule in design.stopping),
        notes=tuple(notes),
        basis=_basis(design, state) if has_cohorts else {},
        backfill=advice,
        **common,
    )


def _deviation(state: TrialState, index: int, level: int) -> list[str]:
    """Whether cohort ``index`` (0-based), treated at ``level``, went where the design said
    (one trial's state before the cohort): none, or the one line that says how it did not."""
    if not state.active[0]:
        return [f"cohort {index + 1} was treated after the design said stop"]
    expected = int(state.next_level[0])
    if level != expected:
        return [
            f"cohort {index + 1} was treated at level {level + 1}; the design said {expected + 1}"
        ]
    return []
