"""Runs on a Dask cluster (``--scheduler``, ``--dask-local``): results bit-identical to local
runs, progress as the cluster finishes chunks, run directories written by the client and
continued, and one-line errors when dask is missing or the scheduler cannot be reached.

One LocalCluster of 2 processes (one thread each), in a process of its own, serves the module;
chunks are made small (``CHUNK_TRIALS`` patched in the process where the chunks are cut) so that
every run has several tasks. Skipped when ``dask[distributed]`` is not installed (CI installs
the dev extra).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from theradose import cluster as cluster_module
from theradose import simulation
from theradose.cli import app
from theradose.cluster import ClusterError, DaskCluster, connect
from theradose.study import run_study
from theradose.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
BOIN = DESIGNS / "boin.toml"
CRM = DESIGNS / "crm.toml"
SCENARIOS = DESIGNS / "scenarios.toml"

needs_dask = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason='dask.distributed is not installed (pip install "theradose[dask]")',
)


CLUSTER_PROCESS = """
import logging, sys
from distributed import LocalCluster
with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                  dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as local:
    print(local.scheduler_address, flush=True)
    sys.stdin.read()  # until the test module closes our stdin
"""


SMALL_CHUNKS_CLI = """
import sys
from theradose import simulation
from theradose.cli import app
simulation.CHUNK_TRIALS = 300
app(sys.argv[1:], prog_name="theradose")
"""


@pytest.fixture(scope="module")
def scheduler():
    """The address of a LocalCluster of 2 worker processes, one thread each, run by a process of
    its own: none of its threads, processes or exit handlers are left in the test process."""
    process = subprocess.Popen(
        [sys.executable, "-c", CLUSTER_PROCESS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its workers in its group: killed with it if it hangs
    )
    try:
        address = process.stdout.readline().strip()
        assert address.startswith("tcp://"), "the cluster process did not start"
        yield address
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(simulation, "CHUNK_TRIALS", 300)


@pytest.fixture
def two_scenarios(tmp_path) -> Path:
    parts = SCENARIOS.read_text().split("[[scenario]]")
    out = tmp_path / "two.toml"
    out.write_text("[[scenario]]".join(parts[:3]))
    return out


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@needs_dask
def test_simulate_on_a_cluster_writes_the_local_json_byte_for_byte(
    tmp_path, scheduler, small_chunks, two_scenarios
):
    common = (BOIN, CRM, "-s", two_scenarios, "-n", "1000", "--seed", "7")
    runs = {
        "local": (),
        "workers": ("--workers", "2"),
        "cluster": ("--scheduler", scheduler),
    }
    for name, extra in runs.items():
        result = invoke("simulate", *common, *extra, "--json", tmp_path / f"{name}.json")
        assert result.exit_code == 0, result.output
    local = (tmp_path / "local.json").read_bytes()
    assert (tmp_path / "workers.json").read_bytes() == local
    assert (tmp_path / "cluster.json").read_bytes() == local


@needs_dask
def test_progress_follows_the_cluster_and_the_client_writes_the_run_directory(
    tmp_path, scheduler, small_chunks, two_scenarios
):
    seen: list[int] = []
    options = {"n_trials": 1000, "seed": 3}
    address = DaskCluster(address=scheduler)
    plain = run_study([BOIN], two_scenarios, **options)
    run = tmp_path / "run"
    on_cluster = run_study(
        [BOIN], two_scenarios, run_dir=run, cluster=address, progress=seen.append, **options
    )
    assert sorted(seen) == [100, 300, 300, 300]  # one report per chunk, as each finished
    assert on_cluster.oc == plain.oc
    assert sorted(p.name for p in run.glob("chunk-*.npz")) == [
        f"chunk-{i:06d}.npz" for i in range(4)
    ]
    # A lost chunk is simulated again on the cluster; the others are read back.
    (run / "chunk-000002.npz").unlink()
    seen.clear()
    again = run_study(
        [BOIN], two_scenarios, run_dir=run, cluster=address, progress=seen.append, **options
    )
    assert again.oc == plain.oc
    assert sorted(seen) == [300, 700]  # the 3 chunks read, then the one computed
    assert (run / "chunk-000002.npz").exists()


@needs_dask
def test_sweep_on_a_cluster_continues_a_local_run_directory(
    tmp_path, scheduler, small_chunks, two_scenarios
):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        f'design = "{BOIN}"\nscenarios = "{two_scenarios}"\ntrials = 700\nseed = 2\n'
        '[grid]\n"boin.p_tox" = [0.38, 0.42]\nmax_patients = [30, 36]\n'
    )
    plain = run_sweep(grid)
    run = tmp_path / "run"
    run_sweep(grid, run_dir=run)
    (run / "chunk-000001.npz").unlink()
    continued = run_sweep(grid, run_dir=run, cluster=DaskCluster(address=scheduler))
    assert continued.rows() == plain.rows()


@needs_dask
def test_calibrate_on_a_local_cluster_gives_the_local_json(tmp_path, small_chunks, two_scenarios):
    common = ("calibrate", CRM, "-s", two_scenarios, "--halfwidth", "0.04,0.08", "-n", "700")
    local = invoke(*common, "--json", tmp_path / "local.json")
    assert local.exit_code == 0, local.output
    # --dask-local starts its cluster in the running process: run it as a process of its own.
    args = [*common, "--dask-local", "2", "--json", tmp_path / "cluster.json"]
    on_cluster = subprocess.Popen(
        [sys.executable, "-c", SMALL_CHUNKS_CLI, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = on_cluster.communicate(timeout=300)
    finally:
        if on_cluster.poll() is None:
            os.killpg(on_cluster.pid, signal.SIGKILL)
    assert on_cluster.returncode == 0, output
    assert (tmp_path / "cluster.json").read_bytes() == (tmp_path / "local.json").read_bytes()
    assert len(json.loads((tmp_path / "local.json").read_text())["candidates"]) == 2


@needs_dask
def test_an_unreachable_scheduler_is_one_line_and_exit_code_2(monkeypatch, two_scenarios):
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 1)
    result = invoke("simulate", BOIN, "-s", two_scenarios, "-n", "10", "--scheduler",
                    "tcp://127.0.0.1:1")  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --scheduler tcp://127.0.0.1:1: cannot reach")
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(ClusterError, match="cannot reach the scheduler"):
        with connect(DaskCluster(address="tcp://127.0.0.1:1")):
            pass


# --- without a cluster ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["simulate", "calibrate", "sweep"])
def test_without_dask_the_flags_give_one_line_naming_the_extra(monkeypatch, command):
    monkeypatch.setattr(cluster_module, "dask_installed", lambda: False)
    first = {"simulate": BOIN, "calibrate": CRM, "sweep": DESIGNS / "sweep_boin.toml"}[command]
    for flag in (("--scheduler", "tcp://host:8786"), ("--dask-local", "2")):
        result = invoke(command, first, "-s", SCENARIOS, "-n", "10", *flag)
        assert result.exit_code == 2, result.output
        assert result.stderr == (
            f"error: {' '.join(flag)}: needs dask.distributed, an optional dependency: "
            'pip install "theradose[dask]"\n'
        )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--scheduler", "tcp://h:1", "--dask-local", "2"), "give one of them"),
        (("--dask-local", "0"), "--dask-local 0: must be an integer from 1 to 256"),
        (("--dask-local", "2", "--workers", "2"), "leave out --workers 2"),
    ],
)
def test_bad_cluster_flags_are_refused_before_any_work(flags, message):
    result = invoke("simulate", BOIN, "-s", SCENARIOS, "-n", "10", *flags)
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_cluster_is_an_address_or_a_number_of_local_workers():
    assert DaskCluster(address="tcp://h:1").flag == "--scheduler tcp://h:1"
    assert DaskCluster(local_workers=3).flag == "--dask-local 3"
    with pytest.raises(ValueError, match="not both"):
        DaskCluster(address="tcp://h:1", local_workers=2)
    with pytest.raises(ValueError, match="not both"):
        DaskCluster()
