"""Per-trial records (``simulate --trials-csv``): invariants of every row, the summary recovered
from the rows exactly, the file streamed over several chunks, identical for any number of
workers, and written atomically (a bad path fails before the run; a failed run leaves an
existing file as it was)."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from theradose import __version__, simulation
from theradose.cli import app
from theradose.state import StopReason
from theradose.study import run_study
from theradose.trial_records import TrialRecordWriter

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
BOIN = str(DESIGNS / "boin.toml")
CRM = str(DESIGNS / "crm.toml")
TITE_BOIN = str(DESIGNS / "tite_boin.toml")
BOIN_DOSIMETRY = str(DESIGNS / "boin_psma_dosimetry.toml")
SCENARIOS = str(DESIGNS / "scenarios.toml")
DOSIMETRY_SCENARIOS = str(DESIGNS / "dosimetry_scenarios.toml")
CHUNK = 400  # several chunks stream in every run below; the last one is shorter

runner = CliRunner()


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(simulation, "CHUNK_TRIALS", CHUNK)


def read_records(path: Path) -> tuple[dict, list[dict]]:
    """The provenance (``# key: value`` lines, JSON values) and the rows of a trials CSV."""
    provenance, lines = {}, path.read_text(encoding="utf-8").splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        key, value = lines.pop(0)[1:].split(":", 1)
        provenance[key.strip()] = json.loads(value)
    return provenance, list(csv.DictReader(io.StringIO("".join(lines))))


def number(text: str) -> int | None:
    return None if text == "" else int(text)


@pytest.mark.parametrize(
    ("designs", "scenarios", "n_trials"),
    [
        ([BOIN, CRM], SCENARIOS, 2500),
        # 6 and 5 levels in one file; organs in one design only; dosimetry-driven patients
        ([BOIN, BOIN_DOSIMETRY], DOSIMETRY_SCENARIOS, 2500),
        ([TITE_BOIN], SCENARIOS, 900),
    ],
    ids=["boin-crm", "dosimetry", "tite-boin"],
)
def test_rows_hold_per_trial_invariants_and_reproduce_the_summary(
    tmp_path, designs, scenarios, n_trials
):
    path = tmp_path / "trials.csv"
    study = run_study(designs, scenarios, n_trials=n_trials, seed=5, trials_csv=path)
    provenance, rows = read_records(path)
    assert provenance == {
        "version": __version__,
        "seed": 5,
        "n_trials": n_trials,
        "engine": "grid",
        "designs": [d.name for d in study.designs],
        "design_paths": designs,
        "scenarios": [s.name for s in study.scenarios],
        "scenario_path": scenarios,
    }
    n_levels = max(d.n_levels for d in study.designs)
    organs = [o for d in study.designs if d.dosimetry for o in d.dosimetry.names]
    assert len(rows) == len(study.designs) * len(study.scenarios) * n_trials
    assert [c for c in rows[0] if c.startswith("exceed_")] == [f"exceed_{o}" for o in organs]

    for design, scenario, sim, oc, _ in study.cells():
        cell = [r for r in rows if (r["design"], r["scenario"]) == (design.name, scenario.name)]
        assert [int(r["trial"]) for r in cell] == list(range(n_trials))
        k = design.n_levels
        own_organs = design.dosimetry.names if design.dosimetry else ()
        n = np.array([[number(r[f"n_{j}"]) for j in range(1, k + 1)] for r in cell])
        y = np.array([[number(r[f"dlt_{j}"]) for j in range(1, k + 1)] for r in cell])
        patients = np.array([int(r["n_patients"]) for r in cell])
        selected = [number(r["selected_level"]) for r in cell]
        reasons = [StopReason[r["stop_reason"].upper()] for r in cell]

        # per trial
        assert (n.sum(axis=1) == patients).all()
        assert (y.sum(axis=1) == [int(r["n_dlt"]) for r in cell]).all()
        assert ((0 <= y) & (y <= n)).all()
        assert (patients <= design.max_patients).all()
        beyond = [f"{c}_{j}" for c in ("n", "dlt") for j in range(k + 1, n_levels + 1)]
        assert all(r[c] == "" for r in cell for c in beyond)  # levels the design does not have
        for trial, (level, reason) in enumerate(zip(selected, reasons, strict=True)):
            assert reason is not StopReason.RUNNING
            if not reason.selects_mtd:
                assert level is None
            if level is not None:
                assert 1 <= level <= k
                if design.selects_tried_only:
                    assert n[trial, level - 1] > 0
        if design.timing is None:
            assert all(r["duration_months"] == "" for r in cell)
        else:
            duration = np.array([float(r["duration_months"]) for r in cell])
            assert (duration[patients > 0] > 0).all()
            assert duration.mean() == pytest.approx(oc.values["duration_months_mean"], rel=1e-6)
        for organ in organs:
            exceed = [number(r[f"exceed_{organ}"]) for r in cell]
            if organ not in own_organs:
                assert exceed == [None] * n_trials
            else:
                assert all(0 <= e <= p for e, p in zip(exceed, patients, strict=True))
                treated = patients > 0
                pct = 100 * np.mean(np.array(exceed)[treated] / patients[treated])
                assert pct == pytest.approx(oc.values["organ_exceed_pct"][organ], rel=1e-9)
        if own_organs:
            for j in range(1, k + 1):
                ruled = [number(r[f"ruled_out_n_{j}"]) for r in cell]
                ruled = [v for v in ruled if v is not None]
                assert all(0 <= v <= design.max_patients for v in ruled)
                assert oc.values["ruled_out_pct"][j - 1] == 100 * (len(ruled) / n_trials)
                if ruled:
                    assert oc.values["ruled_out_after_n_mean"][j - 1] == sum(ruled) / len(ruled)

        # the summary of the same run, exactly: the same counts divided the same way
        t = n_trials
        values = oc.values
        assert values["selection_pct"] == [100 * (selected.count(j) / t) for j in range(1, k + 1)]
        assert values["no_selection_pct"] == 100 * (selected.count(None) / t)
        assert values["patients_mean"] == (n.sum(axis=0) / t).tolist()
        assert values["dlt_mean"] == (y.sum(axis=0) / t).tolist()
        assert values["n_mean"] == patients.sum() / t
        for reason in StopReason:
            if reason is not StopReason.RUNNING:
                share = 100 * (reasons.count(reason) / t)
                # BOIN12's own stop has a key only where efficacy is simulated
                assert values["stop_reason_pct"].get(reason.name.lower(), 0.0) == share
        assert sim.n_trials == t


def test_rows_of_a_chunk_are_the_engine_s_trials_of_that_chunk(tmp_path):
    """Trial ``c * CHUNK_TRIALS + i`` of the file is trial ``i`` of chunk ``c``."""
    path = tmp_path / "trials.csv"
    study = run_study([BOIN], SCENARIOS, n_trials=1000, seed=9, trials_csv=path)
    design, scenario = study.designs[0], study.scenarios[1]
    patients = simulation.chunk_patients(9, 1, CHUNK, design.max_patients, timed=False)
    chunk = simulation.run_chunk(design, scenario, patients)
    _, rows = read_records(path)
    rows = [r for r in rows if r["scenario"] == scenario.name][CHUNK : 2 * CHUNK]
    assert [int(r["trial"]) for r in rows] == list(range(CHUNK, 2 * CHUNK))
    assert [number(r["selected_level"]) for r in rows] == [
        None if m < 0 else m + 1 for m in chunk.mtd.tolist()
    ]
    assert [int(r["n_1"]) for r in rows] == chunk.n[:, 0].tolist()


STAGE = str(DESIGNS / "boin_optimisation.toml")

BOIN12 = str(DESIGNS / "boin12_psma.toml")
EFFICACY_SCENARIOS = str(DESIGNS / "efficacy_scenarios.toml")
PSMA = str(DESIGNS / "boin_psma.toml")


def test_stage_columns_reproduce_the_stage_figures_and_the_engine_s_arrays(tmp_path):
    """A design with [optimisation] beside one without: per trial, the stage's arms (the
    selected level's first), their patients, DLTs, responses and both, the optimised level and
    the stage's months; over a design × scenario they give the stage's figures exactly (the
    same counts divided the same way) and the stage's sums of DLTs and responses per level; a
    re-run chunk's ChunkResult gives the same fields; the design without a stage leaves them
    empty."""
    path = tmp_path / "trials.csv"
    n_trials = 900
    study = run_study([STAGE, BOIN12], EFFICACY_SCENARIOS, n_trials=n_trials, seed=4,
                      trials_csv=path)  # fmt: skip
    _, rows = read_records(path)
    stage_columns = [c for c in rows[0] if c.startswith(("stage_", "optimised_"))]
    assert stage_columns == [
        "optimised_level",
        *(f"stage_arm{a}_{f}" for a in (1, 2) for f in ("level", "n", "dlt", "response", "both")),
        "stage_duration_months",
        *(
            f"stage_arm{a}_{f}"
            for a in (1, 2)
            for f in ("exceed_kidney", "exceed_red_marrow", "ruled_out")
        ),
    ]
    for design, scenario, sim, oc, _ in study.cells():
        cell = [r for r in rows if (r["design"], r["scenario"]) == (design.name, scenario.name)]
        if design.optimisation is None:
            assert all(r[c] == "" for r in cell for c in stage_columns)
            continue
        opt, t, k = design.optimisation, n_trials, design.n_levels
        arm = {
            (a, f): np.array([number(r[f"stage_arm{a}_{f}"]) for r in cell], dtype=object)
            for a in (1, 2)
            for f in ("level", "n", "dlt", "response", "both")
        }
        optimised = [number(r["optimised_level"]) for r in cell]
        selected = [number(r["selected_level"]) for r in cell]
        entered = np.array([s is not None for s in selected])
        two = np.array([v is not None for v in arm[2, "level"]])
        assert arm[1, "level"].tolist() == selected
        assert not (two & ~entered).any()
        assert (arm[1, "n"][entered & two] == opt.arm_sizes[0]).all()
        assert (arm[2, "n"][two] == opt.arm_sizes[1]).all()
        assert (arm[1, "n"][entered & ~two] == opt.patients_per_arm).all()
        for a in (1, 2):
            has = entered if a == 1 else two
            assert all(v is None for f in ("n", "dlt", "response", "both") for v in arm[a, f][~has])
            n, y, r, b = (arm[a, f][has].astype(int) for f in ("n", "dlt", "response", "both"))
            assert ((0 <= b) & (b <= np.minimum(y, r)) & (y <= n) & (r <= n)).all()
        for a in (1, 2):
            for f in ("exceed_kidney", "exceed_red_marrow", "ruled_out"):
                arm[a, f] = np.array([number(r[f"stage_arm{a}_{f}"]) for r in cell], dtype=object)
        for trial, level in enumerate(optimised):
            if level is not None:  # one of the trial's arms; it passed both guards
                a = 1 if level == arm[1, "level"][trial] else 2
                assert level == arm[a, "level"][trial]
                assert arm[a, "dlt"][trial] <= opt.max_dlt_rate * arm[a, "n"][trial] + 1e-9
                assert arm[a, "ruled_out"][trial] == 0
        # the organ figures: each entered trial's fraction past the limit, and the trials with
        # an arm ruled out
        for organ in ("kidney", "red_marrow"):
            past = sum(
                np.where(has, arm[a, f"exceed_{organ}"], 0).astype(int)
                for a, has in ((1, entered), (2, two))
            )
            stage_n = sum(
                np.where(has, arm[a, "n"], 0).astype(int) for a, has in ((1, entered), (2, two))
            )
            fraction = past[entered] / stage_n[entered]
            assert oc.values["optimisation_organ_exceed_pct"][organ] == pytest.approx(
                100 * fraction.mean(), rel=1e-12
            )
        ruled = sum(
            np.where(has, arm[a, "ruled_out"], 0).astype(int) for a, has in ((1, entered), (2, two))
        )
        assert oc.values["optimisation_organ_ruled_out_pct"] == pytest.approx(
            100 * (ruled > 0).mean(), rel=1e-12
        )

        # per level, from the arms
        per_level = {f: np.zeros((t, k), dtype=np.int64) for f in ("n", "dlt", "response")}
        for a in (1, 2):
            has = entered if a == 1 else two
            at = arm[a, "level"][has].astype(int) - 1
            for f, counts in per_level.items():
                counts[np.flatnonzero(has), at] += arm[a, f][has].astype(int)
        values, stage = oc.values, sim.optimisation
        selection = [100 * (optimised.count(j) / t) for j in range(1, k + 1)]
        assert values["optimised_selection_pct"] == selection
        assert values["optimised_no_selection_pct"] == 100 * (optimised.count(None) / t)
        assert values["optimisation_entered_pct"] == 100 * (entered.sum() / t)
        assert values["optimisation_one_arm_pct"] == 100 * ((entered & ~two).sum() / t)
        assert values["optimisation_patients_mean"] == (per_level["n"].sum(axis=0) / t).tolist()
        assert values["optimisation_n_mean"] == per_level["n"].sum() / t
        assert stage["stage_y_sum"].tolist() == per_level["dlt"].sum(axis=0).tolist()
        assert stage["stage_r_sum"].tolist() == per_level["response"].sum(axis=0).tolist()
        months = [float(r["stage_duration_months"]) for r in cell if r["stage_duration_months"]]
        assert len(months) == entered.sum()
        assert np.mean(months) == pytest.approx(
            values["optimisation_duration_months_mean"], rel=1e-12
        )

    # the rows of the second chunk are the engine's arrays of that chunk
    design, scenario = study.designs[0], study.scenarios[3]  # correlated DLT and response
    places = max(d.n_places for d in study.designs)
    patients = simulation.chunk_patients(4, 1, CHUNK, places, timed=True)
    chunk = simulation.run_chunk(design, scenario, patients)
    cell = [r for r in rows if (r["design"], r["scenario"]) == (design.name, scenario.name)]
    cell = cell[CHUNK : 2 * CHUNK]
    at = np.array([max(number(r["stage_arm1_level"]) or 0, 1) - 1 for r in cell])
    for f, counts in (("n", chunk.stage_n), ("dlt", chunk.stage_y),
                      ("response", chunk.stage_r), ("both", chunk.stage_b)):  # fmt: skip
        written = [number(r[f"stage_arm1_{f}"]) or 0 for r in cell]
        assert written == counts[np.arange(CHUNK), at].tolist()
    assert [number(r["optimised_level"]) for r in cell] == [
        None if m < 0 else m + 1 for m in chunk.optimised.tolist()
    ]


def test_response_columns_reproduce_the_response_figures_and_the_engine_s_arrays(tmp_path):
    """With efficacy scenarios, per trial and level the escalation's responses and patients
    with both a DLT and a response: their means are the summary's ``response_mean`` exactly, a
    patient's response and DLT bound ``both``, and a re-run chunk gives the same arrays; a run
    without efficacy has no such columns."""
    path = tmp_path / "trials.csv"
    n_trials = 600
    study = run_study([BOIN12, PSMA], EFFICACY_SCENARIOS, n_trials=n_trials, seed=5,
                      trials_csv=path)  # fmt: skip
    _, rows = read_records(path)
    k = max(design.n_levels for design in study.designs)
    assert [c for c in rows[0] if c.startswith(("response_", "both_"))] == [
        *(f"response_{j}" for j in range(1, k + 1)),
        *(f"both_{j}" for j in range(1, k + 1)),
    ]
    for design, scenario, _, oc, _ in study.cells():
        cell = [r for r in rows if (r["design"], r["scenario"]) == (design.name, scenario.name)]
        levels = range(1, design.n_levels + 1)
        r = np.array([[int(row[f"response_{j}"]) for j in levels] for row in cell])
        b = np.array([[int(row[f"both_{j}"]) for j in levels] for row in cell])
        n = np.array([[int(row[f"n_{j}"]) for j in levels] for row in cell])
        y = np.array([[int(row[f"dlt_{j}"]) for j in levels] for row in cell])
        assert ((0 <= b) & (b <= np.minimum(r, y)) & (r <= n)).all()
        assert (r.sum(axis=0) / n_trials).tolist() == oc.values["response_mean"]
    design, scenario = study.designs[0], study.scenarios[3]  # correlated DLT and response
    places = max(d.n_places for d in study.designs)  # the run's patients serve every design
    timed = design.timing is not None
    patients = simulation.chunk_patients(5, 1, n_trials - CHUNK, places, timed=timed)
    chunk = simulation.run_chunk(design, scenario, patients)
    cell = [r for r in rows if (r["design"], r["scenario"]) == (design.name, scenario.name)]
    cell = cell[CHUNK:]
    for name, counts in (("response", chunk.r), ("both", chunk.b)):
        written = [[int(r[f"{name}_{j}"]) for j in range(1, design.n_levels + 1)] for r in cell]
        assert written == counts.astype(int).tolist()

    plain = tmp_path / "plain.csv"
    run_study([BOIN], SCENARIOS, n_trials=100, seed=5, trials_csv=plain)
    _, rows = read_records(plain)
    assert not [c for c in rows[0] if c.startswith(("response_", "both_"))]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_file_is_identical_for_any_number_of_workers(tmp_path):
    paths = [tmp_path / f"trials_{workers}.csv" for workers in (1, 2)]
    for path, workers in zip(paths, ("1", "2"), strict=True):
        result = invoke(
            "simulate", BOIN, BOIN_DOSIMETRY, "-s", DOSIMETRY_SCENARIOS, "-n", "2500",
            "--seed", "3", "--workers", workers, "--trials-csv", str(path),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["trials_1.csv", "trials_2.csv"]  # no temporary file


def refuse_to_simulate(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(simulation, "simulate", fail)


def assert_bad_path(result, path) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    # before the run: the flag, then the path as given; during it: the path
    starts = (f"error: --trials-csv {path}: ", f"error: {path}: ")
    assert len(lines) == 1 and lines[0].startswith(starts)


def test_missing_folder_fails_before_the_run(tmp_path, monkeypatch):
    refuse_to_simulate(monkeypatch)
    path = tmp_path / "missing" / "trials.csv"
    result = invoke("simulate", BOIN, "-s", SCENARIOS, "-n", "100", "--trials-csv", str(path))
    assert_bad_path(result, path)
    assert "does not exist" in result.stderr
    assert not path.parent.exists()


def test_folder_as_path_fails_before_the_run(tmp_path, monkeypatch):
    refuse_to_simulate(monkeypatch)
    folder = tmp_path / "out"
    folder.mkdir()
    result = invoke("simulate", BOIN, "-s", SCENARIOS, "-n", "100", "--trials-csv", str(folder))
    assert_bad_path(result, folder)
    assert os.listdir(folder) == []


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_leaves_an_existing_file_untouched(tmp_path, monkeypatch, interruption):
    path = tmp_path / "trials.csv"
    path.write_text("the previous run's records\n")
    run_chunk, calls = simulation.run_chunk, []

    def fail_in_the_third_chunk(design, scenario, patients, truth=None):
        calls.append(scenario.name)
        if len(calls) > 2 * 5:  # two chunks of the five scenarios have been written
            raise interruption
        return run_chunk(design, scenario, patients, truth)

    monkeypatch.setattr(simulation, "run_chunk", fail_in_the_third_chunk)
    result = invoke("simulate", BOIN, "-s", SCENARIOS, "-n", "2000", "--trials-csv", str(path))
    assert result.exit_code != 0
    assert len(calls) == 11
    assert path.read_text() == "the previous run's records\n"
    assert os.listdir(tmp_path) == ["trials.csv"]  # the temporary file is gone


def test_failed_write_with_workers_leaves_an_existing_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "trials.csv"
    path.write_text("the previous run's records\n")
    write = TrialRecordWriter.__call__

    def disk_full_at_the_third_chunk(self, chunk, results):
        if chunk == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(self, chunk, results)

    monkeypatch.setattr(TrialRecordWriter, "__call__", disk_full_at_the_third_chunk)
    result = invoke(
        "simulate", BOIN, "-s", SCENARIOS, "-n", "4000", "--workers", "2",
        "--trials-csv", str(path),
    )  # fmt: skip
    assert_bad_path(result, path)
    assert "No space left on device" in result.stderr
    assert path.read_text() == "the previous run's records\n"
    assert os.listdir(tmp_path) == ["trials.csv"]
