"""Faults: runs interrupted (Ctrl-C, SIGTERM, SIGKILL) and continued from their run directory,
worker processes that must not outlive the run, and concurrent writers of one output.

The run-directory tests run in-process with small chunks (``CHUNK_TRIALS`` patched); the signal
tests run ``theradose simulate`` as a process, on Linux (workers found through ``/proc``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from theradose import report, simulation
from theradose.cli import app
from theradose.run_dir import MANIFEST, RunDirError, open_run_dir, run_manifest
from theradose.study import run_study

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
BOIN = DESIGNS / "boin.toml"
CRM = DESIGNS / "crm.toml"
THREE_PLUS_THREE = DESIGNS / "three_plus_three.toml"
SCENARIOS = DESIGNS / "scenarios.toml"
CLI = [sys.executable, "-c", "from theradose.cli import app; app()"]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(simulation, "CHUNK_TRIALS", 300)
    return 300


def _first_scenarios(path: Path, n: int, tmp_path: Path) -> Path:
    """A scenario file of the first ``n`` scenarios of ``path`` (fewer truths to compute)."""
    parts = path.read_text().split("[[scenario]]")
    out = tmp_path / f"first_{n}_{path.name}"
    out.write_text("[[scenario]]".join(parts[: n + 1]))
    return out


@pytest.fixture
def two_scenarios(tmp_path) -> Path:
    return _first_scenarios(SCENARIOS, 2, tmp_path)


def _json(study) -> str:
    return report.to_json(report.study_to_dict(study))


def _study(run_dir, scenarios, **options):
    args = {"n_trials": 1000, "seed": 3, **options}
    return run_study([BOIN, THREE_PLUS_THREE], scenarios, run_dir=run_dir, **args)


# --- run directories ----------------------------------------------------------------------------


def test_a_run_dir_changes_nothing_and_a_second_run_reads_every_chunk(
    tmp_path, small_chunks, two_scenarios
):
    plain = _json(_study(None, two_scenarios))
    assert _json(_study(tmp_path / "run", two_scenarios)) == plain
    chunks = sorted(p.name for p in (tmp_path / "run").glob("chunk-*.npz"))
    assert chunks == [f"chunk-{i:06d}.npz" for i in range(4)]  # 3 × 300 + 100
    manifest = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert (manifest["seed"], manifest["n_trials"], manifest["chunk_trials"]) == (3, 1000, 300)
    assert [d["source"]["method"] for d in manifest["designs"]] == ["boin", "3+3"]
    assert all(len(d["sha256"]) == 64 for d in manifest["designs"])
    # Read back, not simulated: the chunks are what the second run merges.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").glob("chunk-*.npz")}
    assert _json(_study(tmp_path / "run", two_scenarios, workers=2)) == plain
    assert {p: p.stat().st_mtime_ns for p in before} == before


@pytest.mark.parametrize("workers", [1, 2])
def test_continuing_after_lost_or_damaged_chunks_gives_identical_results(
    tmp_path, small_chunks, two_scenarios, workers
):
    plain = _json(_study(None, two_scenarios, trials_csv=tmp_path / "plain.csv"))
    run = tmp_path / "run"
    _study(run, two_scenarios)
    (run / "chunk-000001.npz").unlink()  # never finished
    data = (run / "chunk-000002.npz").read_bytes()
    (run / "chunk-000002.npz").write_bytes(data[: len(data) // 2])  # a disk that lost its tail
    (run / ".chunk-000003.npz.x1y2.tmp").write_bytes(data[:100])  # killed while writing
    # With --trials-csv the chunks also need their per-trial outcomes: simulated again.
    continued = _study(run, two_scenarios, workers=workers, trials_csv=tmp_path / "continued.csv")
    assert _json(continued) == plain
    assert (tmp_path / "continued.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()
    assert not list(run.glob(".*.tmp"))


def test_chunks_of_designs_with_timing_and_organ_limits_read_back_exactly(tmp_path, small_chunks):
    cases = [
        ([DESIGNS / "boin_timed.toml"], SCENARIOS),
        (
            [DESIGNS / "boin_psma_dosimetry.toml"],
            _first_scenarios(DESIGNS / "dosimetry_scenarios.toml", 1, tmp_path),
        ),
    ]
    for i, (designs, scenarios) in enumerate(cases):
        options = {"n_trials": 700, "seed": 5, "run_dir": tmp_path / f"run{i}"}
        simulated = _json(run_study(designs, scenarios, **options))
        (tmp_path / f"run{i}" / "chunk-000001.npz").unlink()
        assert _json(run_study(designs, scenarios, **options)) == simulated  # 0 and 2 read


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        ({"seed": 4}, "seed 3 there, 4 here"),
        ({"n_trials": 900}, "n_trials 1000 there, 900 here"),
        ({"designs": [BOIN]}, "designs ['BOIN, target 30%', '3+3 with de-escalation'] there"),
        ({"target": 0.25}, "target: 0.3 there, 0.25 here"),
        ({"scenarios": "one"}, "scenarios"),
    ],
)
def test_a_run_dir_of_another_run_is_refused_saying_what_differs(
    tmp_path, small_chunks, two_scenarios, change, difference
):
    run = tmp_path / "run"
    _study(run, two_scenarios)
    designs, scenarios = [BOIN, THREE_PLUS_THREE], two_scenarios
    if "target" in change:
        designs = [tmp_path / "boin.toml", THREE_PLUS_THREE]
        designs[0].write_text(BOIN.read_text().replace("target = 0.30", "target = 0.25"))
    if "scenarios" in change:
        scenarios = _first_scenarios(SCENARIOS, 1, tmp_path)
    designs = change.get("designs", designs)
    options = {"n_trials": 1000, "seed": 3}
    options.update({k: v for k, v in change.items() if k in options})
    with pytest.raises(RunDirError) as error:
        run_study(designs, scenarios, run_dir=run, **options)
    assert difference in str(error.value)
    assert str(error.value).startswith(f"--run-dir {run}: made by another run")


def test_the_cli_refuses_another_version_and_unusable_folders_with_exit_2(
    tmp_path, small_chunks, two_scenarios
):
    run = tmp_path / "run"
    _study(run, two_scenarios)
    manifest = json.loads((run / MANIFEST).read_text())
    (run / MANIFEST).write_text(json.dumps({**manifest, "version": "0.0.1"}))
    args = ["simulate", str(BOIN), str(THREE_PLUS_THREE), "-s", str(two_scenarios), "-n", "1000"]
    args += ["--seed", "3"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for run_dir, message in [
        (run, 'made by another run: version "0.0.1" there'),
        (other, "not a run directory"),
        (tmp_path / "missing" / "run", "does not exist"),
        (BOIN, "is a file, not a folder"),
    ]:
        result = CliRunner().invoke(app, [*args, "--run-dir", str(run_dir)])
        assert result.exit_code == 2, result.output
        assert message in result.stderr
        assert "Traceback" not in result.output
    assert (other / "notes.txt").read_text() == "mine" and len(list(other.iterdir())) == 1


def test_a_run_dir_in_use_by_another_run_is_refused(tmp_path):
    from theradose.config import load_design, load_scenarios

    manifest = run_manifest(
        [load_design(BOIN)], load_scenarios(SCENARIOS), seed=1, n_trials=10, chunk_trials=10
    )
    with open_run_dir(tmp_path / "run", manifest):
        code = (
            "import json, sys; from theradose.run_dir import open_run_dir\n"
            "with open_run_dir(sys.argv[1], json.loads(sys.argv[2])): pass"
        )
        args = [sys.executable, "-c", code, str(tmp_path / "run"), json.dumps(manifest)]
        other = subprocess.run(args, capture_output=True, text=True)
    assert other.returncode != 0
    assert "in use by another theradose run" in other.stderr


# --- signals: no orphans, clean interruptions, resuming -----------------------------------------


def _one_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "one.toml"
    path.write_text('[[scenario]]\nname = "S1"\ndlt_prob = [0.05, 0.10, 0.20, 0.30, 0.50, 0.70]\n')
    return path


def _state(pid: int) -> str | None:
    """The process's state letter (Z: ended, not yet reaped), None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2]


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _running(pids) -> list[int]:
    return [pid for pid in pids if _state(pid) not in (None, "Z")]


def _wait_for(condition, timeout: float = 30.0, what: str = "") -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def _start_simulation(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, list[int]]:
    """A long CRM run with two workers, in its own process group; returns it once both workers
    exist."""
    command = [*CLI, "simulate", str(CRM), "-s", str(_one_scenario(tmp_path)), "-n", "200000"]
    process = subprocess.Popen(
        [*command, "--workers", "2", *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _wait_for(lambda: len(_children(process.pid)) >= 2, what="two workers")
    workers = _children(process.pid)
    time.sleep(0.5)  # into the chunks
    return process, workers


@linux_only
def test_workers_die_when_the_run_is_killed(tmp_path):
    process, workers = _start_simulation(tmp_path)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    waited = _wait_for(lambda: not _running(workers), timeout=5, what="orphaned workers to end")
    assert waited < 5  # PR_SET_PDEATHSIG: a few milliseconds


@linux_only
def test_workers_die_with_their_parent_where_the_kernel_does_not_kill_them(tmp_path):
    # Without PR_SET_PDEATHSIG (as off Linux), the workers' own watch of their parent ends them.
    code = textwrap.dedent(
        """
        import os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        from theradose import simulation
        sys.platform = "elsewhere"
        start = simulation._worker_start
        with ProcessPoolExecutor(1, initializer=start, initargs=(os.getpid(),)) as pool:
            print(pool.submit(os.getpid).result(), flush=True)
            time.sleep(60)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(process.stdout.readline())
    assert _running([worker])
    process.kill()
    process.wait(timeout=10)
    assert _wait_for(lambda: not _running([worker]), timeout=5, what="the worker to end") < 5


@linux_only
def test_ending_the_workers_frees_a_pool_waiting_on_half_a_result():
    """A worker killed while it sends a result leaves half a message in the result pipe; the
    pool's manager thread then waits for the rest for ever, and the process's exit waits for
    that thread (seen under load: SIGTERM, "interrupted: nothing written", and no end). Here the
    half message is written by hand: a length header with no body."""
    import multiprocessing
    import struct
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(1, multiprocessing.get_context("fork"))
    assert pool.submit(int, "7").result() == 7  # the worker and the manager thread are running
    manager = pool._executor_manager_thread
    os.write(pool._result_queue._writer.fileno(), struct.pack("!i", 100))
    time.sleep(0.2)  # the manager thread is now reading the 100 bytes that will never come
    simulation._end_workers(pool)
    manager.join(timeout=10)
    assert not manager.is_alive()


@linux_only
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_ends_at_once_and_leaves_existing_outputs(tmp_path, sig, code):
    (tmp_path / "oc.json").write_text("earlier results\n")
    (tmp_path / "trials.csv").write_text("earlier trials\n")
    process, workers = _start_simulation(
        tmp_path, "--json", "oc.json", "--trials-csv", "trials.csv"
    )
    assert any(p.name.startswith(".trials.csv.") for p in tmp_path.iterdir())  # being streamed
    start = time.monotonic()
    os.killpg(process.pid, sig)  # Ctrl-C reaches the whole group, workers included
    _, stderr = process.communicate(timeout=30)
    assert time.monotonic() - start < 10
    assert process.returncode == code
    assert stderr.strip() == "interrupted: nothing written"
    assert not _running(workers)
    assert (tmp_path / "oc.json").read_text() == "earlier results\n"
    assert (tmp_path / "trials.csv").read_text() == "earlier trials\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oc.json", "one.toml", "trials.csv"]


@linux_only
def test_a_run_killed_midway_continues_from_its_run_dir_with_identical_results(tmp_path):
    scenarios = _one_scenario(tmp_path)
    command = [*CLI, "simulate", str(CRM), "-s", str(scenarios), "-n", "15000", "--seed", "7"]
    killed = subprocess.Popen(
        [*command, "--run-dir", "run", "--json", "killed.json"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(lambda: (tmp_path / "run" / "chunk-000000.npz").exists(), what="the first chunk")
    killed.kill()
    killed.wait(timeout=10)
    assert not (tmp_path / "killed.json").exists()
    kept = sorted(p.name for p in (tmp_path / "run").glob("chunk-*"))
    assert kept == ["chunk-000000.npz"]  # killed midway, before the last chunk
    options = {"cwd": tmp_path, "capture_output": True, "text": True, "check": True}
    subprocess.run([*command, "--run-dir", "run", "--workers", "2", "--json", "r.json"], **options)
    subprocess.run([*command, "--json", "uninterrupted.json"], **options)
    resumed = (tmp_path / "r.json").read_bytes()
    assert resumed == (tmp_path / "uninterrupted.json").read_bytes()


def test_an_interruption_reports_the_chunks_kept(
    tmp_path, small_chunks, two_scenarios, monkeypatch
):
    from theradose.trial_records import TrialRecordWriter

    def interrupted(self, chunk, results):  # Ctrl-C while chunk 2's rows are written
        if chunk == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrialRecordWriter, "__call__", interrupted)
    args = ["simulate", str(BOIN), "-s", str(two_scenarios), "-n", "1000", "--run-dir"]
    args += [str(tmp_path / "run"), "--trials-csv", str(tmp_path / "t.csv")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130
    assert result.stderr.strip() == (
        f"interrupted: kept 3 of 4 chunks in run directory {tmp_path / 'run'} "
        "(run the same command to continue)"
    )
    assert not (tmp_path / "t.csv").exists()


# --- concurrent writers -------------------------------------------------------------------------


def test_concurrent_writers_of_one_path_leave_one_complete_file(tmp_path):
    target = tmp_path / "out.json"
    code = textwrap.dedent(
        """
        import sys
        from theradose.report import write_atomic
        text = sys.argv[2] * 200_000
        for _ in range(40):
            write_atomic(sys.argv[1], text)
        """
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", code, str(target), letter]) for letter in "ab"
    ]
    complete = {"a" * 200_000, "b" * 200_000}
    while any(w.poll() is None for w in writers):
        if target.exists():
            text = target.read_text()
            assert text in complete  # never a mixture, never a part
    assert all(w.wait() == 0 for w in writers)
    assert target.read_text() in complete
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_two_simulations_writing_one_json_leave_one_of_their_results(tmp_path):
    command = [*CLI, "simulate", str(BOIN), "-s", str(SCENARIOS), "-n", "2000", "--json", "r.json"]
    runs = [
        subprocess.Popen([*command, "--seed", seed], cwd=tmp_path, stdout=subprocess.DEVNULL)
        for seed in ("1", "2")
    ]
    assert [run.wait(timeout=120) for run in runs] == [0, 0]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["seed"] in (1, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
