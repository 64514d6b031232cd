"""Simulation runs: every design under every scenario on the same virtual patients, in chunks of
trials that workers may share, with results that do not depend on the number of workers."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass

import numpy as np

from theradose.design import Design
from theradose.engine import run_trials
from theradose.pipeline import select_mtd
from theradose.results import ChunkResult, Simulations
from theradose.scenario import DesignTruth, Scenario, truth_for
from theradose.virtual_patients import VirtualPatients, chunk_patients

CHUNK_TRIALS = 10_000


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
