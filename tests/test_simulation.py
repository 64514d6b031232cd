"""The engine's threads: every chunk runs with one BLAS/OpenMP thread, in the main process
(``workers=1``) and in each worker, so that ``--workers N`` uses N cores; the main process gets
its own setting back after the run."""

from __future__ import annotations

import sys

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from factories import boin_design, scenario
from theradose import simulation
from theradose.results import OperatingCharacteristics


def _blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def _ocs(sims):
    return [OperatingCharacteristics.from_simulations(s).values for row in sims for s in row]


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(simulation, "CHUNK_TRIALS", 50)


def test_a_run_with_one_worker_uses_one_blas_thread_and_restores_the_setting(small_chunks):
    if not _blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    seen = []
    with threadpool_limits(limits=2):
        before = _blas_threads()
        simulation.simulate(
            [boin_design()],
            [scenario(0.05, 0.1, 0.2, 0.3, 0.5, 0.7)],
            120,
            seed=1,
            on_chunk=lambda chunk, results: seen.append(_blas_threads()),
        )
        assert _blas_threads() == before == {2}
    assert seen == [{1}] * 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers")
def test_each_worker_runs_its_chunks_with_one_blas_thread(small_chunks, monkeypatch):
    # Forked workers inherit this patch: each chunk reports its worker's BLAS threads.
    original = simulation._ChunkJob.__call__

    def reporting(job):
        sims, _ = original(job)
        return sims, [[_blas_threads()]]

    monkeypatch.setattr(simulation._ChunkJob, "__call__", reporting)
    seen = []
    with threadpool_limits(limits=2):
        simulation.simulate(
            [boin_design()],
            [scenario(0.05, 0.1, 0.2, 0.3, 0.5, 0.7)],
            200,
            seed=1,
            workers=2,
            on_chunk=lambda chunk, results: seen.append(results[0][0]),
        )
    assert seen in ([{1}] * 4, [set()] * 4)  # set(): no BLAS library visible


def test_results_do_not_depend_on_the_workers_or_the_thread_limit(small_chunks, monkeypatch):
    designs, scenarios = [boin_design()], [scenario(0.05, 0.1, 0.2, 0.3, 0.5, 0.7)]
    one = _ocs(simulation.simulate(designs, scenarios, 230, seed=4))
    assert _ocs(simulation.simulate(designs, scenarios, 230, seed=4, workers=2)) == one
    monkeypatch.setattr(simulation, "KERNEL_THREADS", 2)
    assert _ocs(simulation.simulate(designs, scenarios, 230, seed=4)) == one
