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

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from theradose.design import Design
from theradose.results import ChunkResult, Simulations
from theradose.scenario import Scenario, closest_to_target
from theradose.state import NO_LEVEL, StopReason, TrialState
from theradose.timing import Onset

CHUNK_TRIALS = 10_000
TOLERANCE_STREAM = 0
ARRIVAL_STREAM = 1
ONSET_STREAM = 2


def decide(design: Design, state: TrialState) -> None:
    """Choose each active trial's next level, or stop it; updates ``state`` in place."""
    levels = np.arange(state.n_levels)
    proposal, method_stop = design.method.propose(state)
    at_or_below = design.allowed(state) & (levels[None, :] <= proposal[:, None])
    has_level = at_or_below.any(axis=1)
    next_level = np.where(has_level, state.n_levels - 1 - at_or_below[:, ::-1].argmax(axis=1), 0)

    reason = np.zeros(state.n_trials, dtype=np.int8)
    reason[~has_level] = StopReason.TOO_TOXIC
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
    """The final MTD of each trial, [trial]; none for trials stopped as too toxic."""
    mtd = design.method.select_mtd(state)
    no_mtd = [r.value for r in StopReason if not r.selects_mtd]
    return np.where(np.isin(state.stop_reason, no_mtd), NO_LEVEL, mtd)


@dataclass(frozen=True)
class VirtualPatients:
    """The random draws that make a chunk's virtual patients, [trial, patient] each.

    ``tolerance``: DLT at level d iff u < p_d (common random numbers across designs);
    ``arrival``, ``onset``: U(0, 1) draws turned into accrual gaps and DLT onset times by the
    design's timing and the scenario's onset model (None when no design needs time).
    """

    tolerance: np.ndarray
    arrival: np.ndarray | None = None
    onset: np.ndarray | None = None

    def head(self, n_patients: int) -> VirtualPatients:
        """The first ``n_patients`` patients of every trial."""
        cut = lambda a: None if a is None else a[:, :n_patients]  # noqa: E731
        return VirtualPatients(cut(self.tolerance), cut(self.arrival), cut(self.onset))


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
    dlt = (patients.tolerance[rows[:, None], cols] < dlt_prob[level][:, None]) & enrolled
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
        onset_months = window * onset.fraction(patients.onset[rows[:, None], cols])
        state.patient_dlt_time[r, c] = np.where(dlt, onset_months, np.nan)[enrolled]
        state.time[rows] = arrival.max(axis=1)
    state.record_cohort(rows, size, dlt.sum(axis=1))


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
    if getattr(design.method, "tite", False):
        _run_tite(design, state, dlt_prob, patients, onset)
        return state
    window = 0.0 if design.timing is None else design.timing.dlt_window_months
    while True:
        rows = np.flatnonzero(state.active)
        if rows.size == 0:
            break
        size = np.minimum(design.cohort_size, design.max_patients - state.n_enrolled[rows])
        _enrol(design, state, rows, size, dlt_prob, patients, onset)
        state.time[rows] += window  # the cohort's DLT window completes before the decision
        decide(design, state)
    return state


def _run_tite(design, state, dlt_prob, patients, onset) -> None:
    """Patient by patient: at the arrival that opens each cohort, decide from the follow-up
    available then; the cohort's other patients join the same level as they arrive."""
    window = design.timing.dlt_window_months
    one = np.ones(state.n_trials, dtype=np.int32)
    _enrol(design, state, np.arange(state.n_trials), one, dlt_prob, patients, onset)
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
        while suspended.any():
            # Accrual waits until the next pending patient has a DLT or completes the window.
            state.time[suspended] = _next_event(state, window)[suspended]
            decide(design, state)
            suspended = _suspended(design, state)
        rows = np.flatnonzero(state.active)
        _enrol(design, state, rows, one[rows], dlt_prob, patients, onset, arrive_now=True)
    # Everyone's follow-up completes: the final selection uses complete data.
    state.time[:] = np.nanmax(state.patient_arrival, axis=1) + window


def _suspended(design: Design, state: TrialState) -> np.ndarray:
    suspend = getattr(design.method, "suspend", None)
    if suspend is None:
        return np.zeros(state.n_trials, dtype=bool)
    waiting = np.isfinite(_next_event(state, design.timing.dlt_window_months))
    return state.active & suspend(state) & waiting


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
    tolerances below its true probability; select the level closest to the target, [trial]."""
    rate = (tolerance[:, :, None] < np.asarray(dlt_prob)[None, None, :]).mean(axis=1)
    return closest_to_target(rate, target)


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

    Each kind of draw has its own stream, so adding one never changes another.
    """
    if not timed:
        return VirtualPatients(chunk_tolerance(seed, chunk, n_trials, n_patients))
    return VirtualPatients(
        chunk_tolerance(seed, chunk, n_trials, n_patients),
        _uniforms(seed, chunk, ARRIVAL_STREAM, n_trials, n_patients),
        _uniforms(seed, chunk, ONSET_STREAM, n_trials, n_patients),
    )


def run_chunk(
    design: Design, scenario: Scenario, patients: VirtualPatients | np.ndarray
) -> ChunkResult:
    if not isinstance(patients, VirtualPatients):
        patients = VirtualPatients(patients)
    patients = patients.head(design.max_patients)
    state = run_trials(design, np.asarray(scenario.dlt_prob), patients, scenario.onset)
    timing = {}
    if design.timing is not None:
        window = design.timing.dlt_window_months
        enrolled = state.patient_level >= 0
        onset_time = state.patient_arrival + state.patient_dlt_time
        late = state.patient_dlt & (onset_time > state.stopped_at[:, None])
        timing = {
            "duration": np.nanmax(state.patient_arrival, axis=1) + window,
            "while_pending": state.patient_while_pending.sum(1) / np.maximum(enrolled.sum(1), 1),
            "dlt_after_last_decision": late.sum(axis=1),
        }
    return ChunkResult(
        n=state.n,
        y=state.y,
        mtd=select_mtd(design, state),
        stop_reason=state.stop_reason,
        benchmark_mtd=benchmark_selection(patients.tolerance, scenario.dlt_prob, design.target),
        **timing,
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

    def __call__(self) -> list[list[Simulations]]:
        n_patients = max(d.max_patients for d in self.designs)
        timed = any(d.timing is not None for d in self.designs)
        patients = chunk_patients(self.seed, self.chunk, self.n_trials, n_patients, timed)
        out = []
        for design in self.designs:
            row = []
            for scenario in self.scenarios:
                sim = empty_simulations(design, scenario)
                sim.add(run_chunk(design, scenario, patients))
                row.append(sim)
            out.append(row)
        return out


def _run_job(job: _ChunkJob) -> list[list[Simulations]]:
    return job()


def empty_simulations(design: Design, scenario: Scenario) -> Simulations:
    return Simulations(
        design=design.name,
        scenario=scenario.name,
        target=design.target,
        dlt_prob=tuple(scenario.dlt_prob),
        true_mtd=scenario.true_mtd(design.target),
    )


def simulate(
    designs: Sequence[Design],
    scenarios: Sequence[Scenario],
    n_trials: int,
    seed: int,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[list[Simulations]]:
    """Simulate every design under every scenario on the same virtual patients.

    Returns ``[design][scenario]`` :class:`Simulations`. ``progress(n)`` is called with the number
    of trials finished after each chunk.
    """
    for design in designs:
        for scenario in scenarios:
            if scenario.n_levels != design.n_levels:
                raise ValueError(
                    f"scenario {scenario.name!r} has {scenario.n_levels} levels, "
                    f"design {design.name!r} has {design.n_levels}"
                )
    jobs = [
        _ChunkJob(tuple(designs), tuple(scenarios), seed, i, size)
        for i, size in enumerate(chunk_sizes(n_trials))
    ]
    totals = [[empty_simulations(d, s) for s in scenarios] for d in designs]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_run_job, jobs)
            _collect(totals, results, jobs, progress)
    else:
        _collect(totals, map(_run_job, jobs), jobs, progress)
    return totals


def _collect(totals, results, jobs, progress) -> None:
    for job, result in zip(jobs, results, strict=True):
        for row_total, row in zip(totals, result, strict=True):
            for total, sim in zip(row_total, row, strict=True):
                total.merge(sim)
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

    @property
    def stop(self) -> bool:
        return self.next_level is None


def recommend(design: Design, cohorts: Sequence[tuple[int, Sequence[bool]]]) -> Recommendation:
    """Replay a real trial cohort by cohort and return the design's next decision.

    ``cohorts`` are (0-based level, DLT flags) in the order treated. Each cohort is recorded at
    the level actually given, then :func:`decide` runs exactly as in simulation.
    """
    n_patients = sum(len(dlts) for _, dlts in cohorts)
    state = TrialState.start(1, design.n_levels, design.start_level, max(n_patients, 1))
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
        if design.doses is not None:
            state.patient_activity[0, k : k + size] = design.doses[level]
        state.next_level[0] = level
        state.record_cohort(np.array([0]), size, np.array([int(np.sum(dlts))]))
        state.active[0] = True
        state.stop_reason[0] = StopReason.RUNNING
        decide(design, state)
    mtd = int(select_mtd(design, state)[0]) if cohorts else NO_LEVEL
    summary = {k: np.asarray(v)[0] for k, v in design.method.level_summary(state).items()}
    model_summary = {}
    if cohorts and hasattr(design.method, "model_summary"):
        model_summary = {k: float(v[0]) for k, v in design.method.model_summary(state).items()}
    rule_states = tuple(
        rule.state_text(state, 0) for rule in design.stopping if hasattr(rule, "state_text")
    )
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
    )
