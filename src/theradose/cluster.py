"""Simulations on a Dask cluster: the chunks of a run as tasks of a ``dask.distributed``
scheduler, for runs that outgrow one machine (``--scheduler ADDRESS``, ``--dask-local N``).

Each chunk of trials is one task running the same work as a local worker
(:class:`theradose.simulation._ChunkJob`, with one BLAS/OpenMP thread), so a cluster run gives
results bit-identical to a local one for any number of workers: each chunk draws its patients
from its own seed stream, and the chunks' statistics are merged in chunk order on the client.
The designs, scenarios and truths are sent to the cluster once (``scatter``); each task names
only its chunk. Progress follows the cluster: it advances as each task finishes, in whatever
order. With a run directory (:mod:`theradose.run_dir`) the client writes each chunk there as it
arrives, so the cluster's workers need no shared file system, and a cluster run resumes like a
local one.

``dask[distributed]`` is an optional dependency (``pip install "theradose[dask]"``); nothing here
imports it until a cluster is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from theradose.validation import ConfigError

if TYPE_CHECKING:
    from theradose.run_dir import RunDir
    from theradose.simulation import _ChunkJob

DASK_MISSING = 'needs dask.distributed, an optional dependency: pip install "theradose[dask]"'
CONNECT_TIMEOUT_S = 10


class ClusterError(ConfigError):
    """The cluster cannot be used (one line for the CLI: the flag, its value and why)."""


@dataclass(frozen=True)
class DaskCluster:
    """Where a run's chunks go: an existing scheduler, or a LocalCluster started for the run.

    Attributes
    ----------
    address : the scheduler of an existing ``dask.distributed`` cluster, e.g.
        ``"tcp://10.0.0.5:8786"`` (``--scheduler``)
    local_workers : start a LocalCluster of this many worker processes, one thread each, for
        the run and close it after (``--dask-local``)
    """

    address: str | None = None
    local_workers: int | None = None

    def __post_init__(self) -> None:
        if (self.address is None) == (self.local_workers is None):
            raise ValueError("give a scheduler address or a number of local workers, not both")
        if self.local_workers is not None and self.local_workers < 1:
            raise ValueError(f"local_workers must be at least 1, got {self.local_workers}")

    @property
    def flag(self) -> str:
        """The command-line flag that asks for this cluster, for messages."""
        if self.address is not None:
            return f"--scheduler {self.address}"
        return f"--dask-local {self.local_workers}"


def dask_installed() -> bool:
    return importlib.util.find_spec("distributed") is not None


def cluster_option(
    scheduler: str | None, dask_local: str | None, workers: str | None = None
) -> tuple[DaskCluster | None, list[str]]:
    """The cluster that ``--scheduler``/``--dask-local`` ask for (None for neither) and the
    problems of those flags as given on the command line, one line each: both given, a bad
    number of local workers, ``--workers`` above 1 beside them, dask not installed."""
    from theradose.limits import MAX_FORCED_WORKERS, integer_option

    if scheduler is None and dask_local is None:
        return None, []
    problems = []
    local = None
    if dask_local is not None:
        local, problem = integer_option("--dask-local", dask_local, 1, MAX_FORCED_WORKERS)
        problems += [problem] if problem else []
    flag = f"--scheduler {scheduler}" if scheduler is not None else f"--dask-local {dask_local}"
    if scheduler is not None and dask_local is not None:
        problems.append(
            f"--scheduler {scheduler} --dask-local {dask_local}: give one of them (an existing "
            "cluster or a local one), not both"
        )
    elif scheduler is not None and not scheduler.strip():
        problems.append("--scheduler '': give the scheduler's address, e.g. tcp://host:8786")
    if workers is not None and workers.strip() not in ("", "1"):
        problems.append(
            f"{flag}: the cluster's workers run the chunks; leave out --workers {workers}"
        )
    if not dask_installed():
        problems.append(f"{flag}: {DASK_MISSING}")
    if problems:
        return None, problems
    if scheduler is not None:
        return DaskCluster(address=scheduler.strip()), []
    return DaskCluster(local_workers=local), []


@contextlib.contextmanager
def connect(cluster: DaskCluster) -> Iterator[Any]:
    """A ``distributed.Client`` of ``cluster``, closed (with a local cluster's workers) at the end.

    Raises
    ------
    ClusterError
        When dask is not installed or the scheduler cannot be reached, naming the flag.
    """
    if not dask_installed():
        raise ClusterError(f"{cluster.flag}: {DASK_MISSING}")
    from distributed import Client, LocalCluster

    if cluster.local_workers is not None:
        before = set(multiprocessing.active_children())
        try:
            local = LocalCluster(
                n_workers=cluster.local_workers,
                threads_per_worker=1,
                processes=True,
                # Any free port: the scheduler's HTTP server starts even without a dashboard, and
                # the default port (8787) warns when another cluster holds it.
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
                preload=[__name__],  # dask_setup below, in each worker
            )
            with local, Client(local) as client:
                yield client
        finally:
            _end_leftover_workers(before)
        return
    try:
        client = Client(cluster.address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ClusterError(f"{cluster.flag}: cannot reach the scheduler: {reason}") from None
    with client:
        yield client


def _end_leftover_workers(before: set) -> None:
    """Kill the worker processes a local cluster left alive after closing (its nannies stop
    waiting for them after a timeout); Python's exit would otherwise wait for each of them
    without one (``multiprocessing`` joins its children at exit). ``before``: the children
    that were there before the cluster started, left alone."""
    for process in set(multiprocessing.active_children()) - before:
        process.kill()
        process.join(timeout=5)


def dask_setup(worker: Any) -> None:
    """Preload of the workers of ``--dask-local``: Ctrl-C reaches every process of the
    terminal's group; the workers ignore it (no traceback of theirs) and the run, interrupted,
    closes its cluster, as local workers are ended (:func:`theradose.simulation._worker_start`)."""
    import signal

    with contextlib.suppress(ValueError):  # not the main thread: leave the handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_job_of(template: _ChunkJob, chunk: int, n_trials: int):
    """A cluster task: chunk ``chunk`` of ``n_trials`` trials of the run that ``template``
    (the run's job, scattered once) describes."""
    from theradose.simulation import _run_job

    return _run_job(dataclasses.replace(template, chunk=chunk, n_trials=n_trials))


def run_chunks(
    client: Any,
    jobs: Sequence[_ChunkJob],
    run_dir: RunDir | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator:
    """The jobs' results in chunk order, computed as tasks on ``client``'s cluster.

    Each finished chunk is written to ``run_dir`` (when given) and reported to ``progress`` as
    soon as it arrives, in the cluster's order; at most about twice as many chunks as the
    cluster has threads are submitted and not yet taken, so results waiting behind a slow chunk
    stay few. Closing the iterator (an error, an interruption) cancels the tasks left.
    """
    from distributed import as_completed

    if not jobs:
        return
    template = client.scatter(dataclasses.replace(jobs[0], run_dir=None), hash=False)
    waiting = iter(jobs)
    in_flight: dict[str, tuple[_ChunkJob, Any]] = {}  # task key → (job, future)
    finished = as_completed()
    ready: dict[int, Any] = {}  # chunk → result, arrived before an earlier chunk
    order = [job.chunk for job in jobs]
    taken = 0

    def submit(count: int) -> None:
        for _ in range(count):
            job = next(waiting, None)
            if job is None:
                return
            future = client.submit(run_job_of, template, job.chunk, job.n_trials, pure=False)
            in_flight[future.key] = (job, future)
            finished.add(future)

    try:
        submit(_window(client))
        for future in finished:
            job, _ = in_flight.pop(future.key)
            result = future.result()  # a task's error is raised here, at once
            future.release()
            if run_dir is not None:
                run_dir.save(job.chunk, job.n_trials, *result)
            if progress is not None:
                progress(job.n_trials)
            ready[job.chunk] = result
            while taken < len(order) and order[taken] in ready:
                yield ready.pop(order[taken])
                taken += 1
                submit(max(_window(client) - len(in_flight) - len(ready), 1))
    finally:
        with contextlib.suppress(Exception):  # the client may be closing already
            client.cancel([future for _, future in in_flight.values()])
            template.release()


def _window(client: Any) -> int:
    """Chunks to keep submitted: twice the cluster's threads (it may grow during the run)."""
    try:
        threads = sum(client.nthreads().values())
    except Exception:  # a scheduler that does not answer: keep a small window
        threads = 0
    return max(2 * threads, 4)
