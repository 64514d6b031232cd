"""Simulation runs: every design under every scenario on the same virtual patients, in chunks of
trials that workers may share, with results that do not depend on the number of workers."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from theradose.design import Design
from theradose.engine import run_trials
from theradose.optimisation import optimisation_truth
from theradose.pipeline import select_mtd
from theradose.results import ChunkResult, Simulations
from theradose.scenario import DesignTruth, Scenario, truth_for
from theradose.virtual_patients import VirtualPatients, chunk_patients

if TYPE_CHECKING:
    from theradose.cluster import DaskCluster
    from theradose.run_dir import RunDir

CHUNK_TRIALS = 10_000
# BLAS/OpenMP threads of each process while it simulates: the parallelism is the processes
# (``workers``, a Dask cluster's), one per core; numpy's default of one BLAS thread per core in
# every process made them fight over the cores (16 workers on 16 cores: efficiency 0.15, not 0.67).
KERNEL_THREADS = 1


def benchmark_selection(tolerance: np.ndarray, dlt_prob: np.ndarray, target: float) -> np.ndarray:
    """Complete-information benchmark (O'Quigley, Paoletti & Maccario 2002, *Biostatistics*
    3:51–56): with every patient's tolerance known, each level's DLT rate is the fraction of
    tolerances below its true probability; select the level closest to the target, [trial].

    Levels with the same rate (few patients, close probabilities) are equally close; the tie
    goes to the one whose true probability is closest to the target — with every rate below
    the target, the highest of them, not the lowest.
    """
    p = np.asarray(dlt_prob, dtype=float)
    rate = np.empty((tolerance.shape[0], p.size))
    for level, prob in enumerate(p):  # level by level: no [trial, patient, level] array
        rate[:, level] = np.count_nonzero(tolerance < prob, axis=1) / tolerance.shape[1]
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
    patients = patients.head(design.n_places).with_dosimetry(design, scenario)
    patients = patients.with_efficacy(scenario)
    state = run_trials(
        design,
        truth.dlt_prob,
        patients,
        scenario.onset,
        truth.eff_prob,
        scenario.response_onset,
        dose_records=False,
    )
    enrolled = state.patient_level >= 0
    extra = {}
    if design.timing is not None:
        window = design.follow_up_months  # the last patient's outcomes known
        onset_time = state.patient_arrival + state.patient_dlt_time
        late = state.patient_dlt & (onset_time > state.stopped_at[:, None])
        with np.errstate(all="ignore"):
            last = np.nanmax(np.where(enrolled, state.patient_arrival, -np.inf), axis=1)
        extra.update(
            duration=np.where(np.isfinite(last), last + window, 0.0),
            while_pending=state.patient_while_pending.sum(1) / np.maximum(enrolled.sum(1), 1),
            dlt_after_last_decision=late.sum(axis=1),
        )
    if state.dose_summary is not None:
        extra.update(vars(state.dose_summary), ruled_out_at=state.ruled_out_at)
    if state.efficacy:
        extra.update(r=state.r, b=state.b)
    if state.n_backfill is not None:
        extra.update(backfill=state.n_backfill)
    # the benchmark sees the escalation's sample size, with backfilling or without
    tolerance = patients.tolerance[:, : design.max_patients]
    mtd = select_mtd(design, state)
    if design.optimisation is not None:  # the randomised stage, on its own stream
        from theradose.optimisation import run_stage

        rho = scenario.tox_eff_correlation
        extra.update(run_stage(design, truth, state, mtd, patients, rho))
    return ChunkResult(
        n=state.n,
        y=state.y,
        mtd=mtd,
        stop_reason=state.stop_reason,
        benchmark_mtd=benchmark_selection(tolerance, truth.dlt_prob, design.target),
        **extra,
    )


def simulate_chunk(
    design: Design, scenario: Scenario, patients: VirtualPatients, truth: DesignTruth
) -> tuple[Simulations, ChunkResult]:
    """What a worker does with a chunk of trials: :func:`run_chunk`, and the per-trial outcomes
    reduced to the sufficient statistics of the operating characteristics."""
    sim = empty_simulations(design, scenario, truth)
    chunk = run_chunk(design, scenario, patients, truth)
    sim.add(chunk)
    return sim, chunk


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
    run_dir: RunDir | None = None  # keep the finished chunk there (``simulate --run-dir``)

    def __call__(self) -> tuple[list[list[Simulations]], list[list[ChunkResult]] | None]:
        n_patients = max(d.n_places for d in self.designs)
        timed = any(d.timing is not None for d in self.designs)
        patients = chunk_patients(self.seed, self.chunk, self.n_trials, n_patients, timed)
        out, chunks = [], []
        for design, truths in zip(self.designs, self.truths, strict=True):
            row, chunk_row = [], []
            for scenario, truth in zip(self.scenarios, truths, strict=True):
                sim, chunk = simulate_chunk(design, scenario, patients, truth)
                row.append(sim)
                if self.keep_chunks:  # else each chunk's per-trial arrays are freed at once
                    chunk_row.append(chunk)
            out.append(row)
            chunks.append(chunk_row)
        kept = chunks if self.keep_chunks else None
        if self.run_dir is not None:
            self.run_dir.save(self.chunk, self.n_trials, out, kept)
        return out, kept


def _run_job(job: _ChunkJob) -> tuple[list[list[Simulations]], list[list[ChunkResult]] | None]:
    """Run a chunk with :data:`KERNEL_THREADS` BLAS/OpenMP threads, in whatever process."""
    with kernel_threads():
        return job()


def kernel_threads(limit: int | None = None):
    """A context in which the numerical libraries (OpenBLAS, MKL, OpenMP) use ``limit`` threads
    (default :data:`KERNEL_THREADS`), restored after; ~1 ms to enter (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=KERNEL_THREADS if limit is None else limit)


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
        max_patients=design.max_patients,
        **efficacy_truth(design, truth),
        **optimisation_truth(design, truth),
    )


def efficacy_truth(design: Design, truth: DesignTruth) -> dict:
    """The efficacy fields of a :class:`Simulations` (none when the scenario gives no efficacy):
    true response probabilities, P(DLT and response), and for a method that uses efficacy its
    utility weights, the true utility of each level and the true OBD."""
    if truth.eff_prob is None:
        return {}
    fields = {
        "eff_prob": tuple(float(p) for p in truth.eff_prob),
        "both_prob": tuple(float(p) for p in truth.both_prob),
    }
    if truth.utility is not None:
        fields.update(
            utility=tuple(float(u) for u in truth.utility),
            obd=truth.obd,
            utility_weights=design.method.utility_weights,
        )
    return fields


def simulate(
    designs: Sequence[Design],
    scenarios: Sequence[Scenario],
    n_trials: int,
    seed: int,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    on_chunk: Callable[[int, list[list[ChunkResult]]], None] | None = None,
    run_dir: RunDir | None = None,
    cluster: DaskCluster | None = None,
) -> list[list[Simulations]]:
    """Simulate every design under every scenario on the same virtual patients.

    Returns ``[design][scenario]`` :class:`Simulations`. ``progress(n)`` is called with the number
    of trials finished after each chunk. ``on_chunk(chunk, results)`` receives each chunk's
    per-trial outcomes, ``[design][scenario]`` :class:`ChunkResult`, in chunk order whatever the
    number of workers (trial ``t`` of chunk ``c`` is trial ``c * CHUNK_TRIALS + t`` of the run),
    so that per-trial records can be streamed without holding every trial. ``run_dir``
    (:func:`theradose.run_dir.open_run_dir`): each finished chunk is kept there, and the chunks
    already there are read instead of simulated, merged in chunk order like the others, so a
    continued run gives the same results as one never interrupted.

    ``cluster`` (:class:`theradose.cluster.DaskCluster`): the chunks run as tasks of a Dask
    cluster instead of local workers (``workers`` is then ignored), with the same results;
    ``progress`` then advances as the cluster finishes chunks, in its order.

    Every chunk runs with :data:`KERNEL_THREADS` BLAS/OpenMP threads, so that ``workers``
    processes use ``workers`` cores. Workers die with this process, whatever ends it
    (:func:`_worker_start`); an error or an interruption (KeyboardInterrupt) ends them at once,
    without waiting for their chunks.
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
            if scenario.tumour_response is not None and design.doses is None:
                raise ValueError(
                    f"scenario {scenario.name!r} derives responses from tumour doses: design "
                    f"{design.name!r} must give the activity of each level (doses)"
                )
    truths = tuple(tuple(truth_for(s, d) for s in scenarios) for d in designs)
    keep = on_chunk is not None
    jobs = [
        _ChunkJob(tuple(designs), tuple(scenarios), seed, i, size, truths, keep, run_dir)
        for i, size in enumerate(chunk_sizes(n_trials))
    ]
    totals = [
        [empty_simulations(d, s, t) for s, t in zip(scenarios, row, strict=True)]
        for d, row in zip(designs, truths, strict=True)
    ]
    stored = set()
    if run_dir is not None:
        stored = {job.chunk for job in jobs if run_dir.has(job.chunk, job.n_trials, keep)}
    todo = [job for job in jobs if job.chunk not in stored]
    if cluster is not None:
        _on_cluster(cluster, jobs, todo, stored, run_dir, totals, keep, progress, on_chunk)
    elif workers > 1 and len(todo) > 1:
        # fork on Linux (Python 3.14 defaults to forkserver): each worker is this process's own
        # child, which _worker_start relies on; elsewhere the default, spawn, gives the same.
        context = multiprocessing.get_context("fork") if sys.platform == "linux" else None
        pool = ProcessPoolExecutor(
            workers, context, initializer=_worker_start, initargs=(os.getpid(),)
        )
        try:
            computed = _in_order(pool, todo, 2 * workers)
            results = _with_stored(jobs, stored, computed, run_dir, totals, keep)
            _collect(totals, results, jobs, progress, on_chunk)
        except BaseException:  # an error or an interruption: end the workers now
            _end_workers(pool)
            raise
        pool.shutdown()
    else:
        with kernel_threads():  # the whole run: one switch (~1 ms), not one per chunk
            results = _with_stored(jobs, stored, (job() for job in todo), run_dir, totals, keep)
            _collect(totals, results, jobs, progress, on_chunk)
    return totals


def _on_cluster(cluster, jobs, todo, stored, run_dir, totals, keep, progress, on_chunk) -> None:
    """``simulate``'s chunks ``todo`` as tasks of a Dask cluster (:mod:`theradose.cluster`); the
    client writes each to ``run_dir`` as it arrives and reports it to ``progress`` then."""
    from theradose.cluster import connect, run_chunks

    if progress is not None and stored:
        progress(sum(job.n_trials for job in jobs if job.chunk in stored))
    with connect(cluster) as client:
        computed = run_chunks(client, todo, run_dir, progress)
        try:
            results = _with_stored(jobs, stored, computed, run_dir, totals, keep)
            _collect(totals, results, jobs, None, on_chunk)
        finally:
            computed.close()  # cancels the tasks left, before the client closes


def _with_stored(jobs, stored, computed: Iterator, run_dir, templates, keep) -> Iterator:
    """Every job's result in chunk order: read from ``run_dir`` for the ``stored`` chunks (one
    that cannot be read after all is simulated here), the next of ``computed`` for the others."""
    for job in jobs:
        if job.chunk not in stored:
            yield next(computed)
            continue
        loaded = run_dir.load(job.chunk, templates, keep)
        yield _run_job(job) if loaded is None else loaded


def _worker_start(parent: int) -> None:
    """Tie a worker's life to the process that started it, whatever ends that process.

    On Linux the kernel kills the worker when its parent dies (``prctl(PR_SET_PDEATHSIG)``, even
    after SIGKILL); everywhere a thread also ends it within a second of the parent's death (its
    parent id changes), in case the parent died before the prctl or the platform has none.
    Ctrl-C reaches every process of the terminal's group: workers ignore it and the parent ends
    them (:func:`_end_workers`). ``parent``: the process id of the run, the workers' parent.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, if it set one
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int, interval: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's workers now (their chunks are abandoned) and shut it down."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API < 3.14
    manager = getattr(pool, "_executor_manager_thread", None)  # shutdown forgets them
    result_queue = getattr(pool, "_result_queue", None)
    pool.shutdown(wait=False, cancel_futures=True)  # start no other chunk
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=5)
    # A worker killed while sending a result leaves half a message in the result pipe, and the
    # pool's manager thread waits for the rest for ever — and Python's exit waits for that thread
    # (seen: SIGTERM under load, the run said "interrupted" and never ended). With every worker
    # gone, closing this process's copy of the pipe's write end ends the wait (end of file).
    with contextlib.suppress(AttributeError, OSError):
        result_queue._writer.close()
    if manager is not None:
        manager.join(timeout=5)
    pool.shutdown(wait=True, cancel_futures=True)


def _in_order(pool: ProcessPoolExecutor, jobs: Sequence[_ChunkJob], ahead: int):
    """The jobs' results in chunk order, at most ``ahead`` jobs submitted and not yet taken, so
    that finished chunks waiting behind a slow one (or a slow ``on_chunk``) stay few."""
    # On an error or an interruption the caller ends the pool (_end_workers) and the futures
    # left here fail with it; cancelling them first upsets Python 3.11's clean-up thread.
    pending = deque(pool.submit(_run_job, job) for job in jobs[:ahead])
    for job in jobs[ahead:]:
        result = pending.popleft().result()
        pending.append(pool.submit(_run_job, job))
        yield result
    while pending:
        yield pending.popleft().result()


def _collect(totals, results, jobs, progress, on_chunk=None) -> None:
    for job, (sims, chunks) in zip(jobs, results, strict=True):
        for row_total, row in zip(totals, sims, strict=True):
            for total, sim in zip(row_total, row, strict=True):
                total.merge(sim)
        if on_chunk is not None:
            on_chunk(job.chunk, chunks)
        if progress is not None:
            progress(job.n_trials)
