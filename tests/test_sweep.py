"""``theradose sweep``: grid files and their errors, the same virtual patients for every grid
point, the table, the heat maps, and a sweep continued after an interruption or a kill."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from theradose import simulation
from theradose.cli import app
from theradose.config import ConfigError
from theradose.study import run_study
from theradose.sweep import FIGURES, plan_sweep, read_grid, run_sweep
from theradose.sweep_report import (
    heatmap_axes,
    heatmap_paths,
    plot_heatmaps,
    save_heatmaps,
    sweep_to_csv,
    sweep_to_dict,
    sweep_to_markdown,
)

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
BOIN = DESIGNS / "boin.toml"
CRM = DESIGNS / "crm.toml"
SCENARIOS = DESIGNS / "scenarios.toml"


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(simulation, "CHUNK_TRIALS", 300)


@pytest.fixture
def four_scenarios(tmp_path) -> Path:
    parts = SCENARIOS.read_text().split("[[scenario]]")
    out = tmp_path / "four.toml"
    out.write_text("[[scenario]]".join(parts[:5]))
    return out


def write_grid(tmp_path: Path, text: str, name: str = "grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def grid_text(grid: str, *, design=BOIN, scenarios=None, trials=None, seed=None) -> str:
    lines = [f'design = "{design}"']
    if scenarios is not None:
        lines.append(f'scenarios = "{scenarios}"')
    if trials is not None:
        lines.append(f"trials = {trials}")
    if seed is not None:
        lines.append(f"seed = {seed}")
    return "\n".join(lines) + "\n[grid]\n" + grid


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# --- grid files ---------------------------------------------------------------------------------


def test_the_example_grid_file_reads_with_paths_relative_to_it():
    grid = read_grid(DESIGNS / "sweep_boin.toml")
    assert grid.designs == (str(BOIN),)
    assert grid.scenarios == str(SCENARIOS)
    assert grid.parameters == ("boin.p_tox", "max_patients")
    assert [len(v) for v in grid.values] == [5, 5]
    assert grid.n_points == 25
    assert (grid.trials, grid.seed) == (2000, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trails = 5\n" + grid_text("max_patients = [30]"), "unknown key 'trails' (did you mean"),
        ("[grid]\nmax_patients = [30]\n", "missing key 'design'"),
        (
            f'design = "{BOIN}"\ndesigns = ["{BOIN}"]\n[grid]\nmax_patients = [30]\n',
            "give 'design' (one file) or 'designs'",
        ),
        (f'design = "{BOIN}"\n', "missing section [grid]"),
        (grid_text(""), "[grid] is empty"),
        (
            grid_text("max_patients = 30"),
            "[grid] max_patients: must be a non-empty array of values to try, got an integer",
        ),  # fmt: skip
        (grid_text("max_patients = []"), "got []"),
        (grid_text("max_patients = [30, 36, 30]"), "repeats the value 30"),
        (grid_text("boin.p_tox = [0.4]"), 'quote a dotted key ("boin.p_tox" = [...])'),
        (grid_text("max_patients = [30]", trials=0), "trials = 0: must be an integer >= 1"),
        (grid_text("max_patients = [30]", seed=-1), "seed = -1: must be an integer >= 0"),
    ],
)
def test_grid_file_errors_name_the_file_and_key(tmp_path, text, message):
    path = write_grid(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        read_grid(path)
    assert any(m.startswith(f"{path}: ") and message in m for m in caught.value.messages), (
        caught.value.messages
    )


def test_bad_grid_values_get_the_design_files_errors_naming_the_grid_point(tmp_path):
    path = write_grid(
        tmp_path,
        grid_text('"boin.p_tox" = [0.2, 0.42]\nmax_patients = [2, 30, 36]', scenarios=SCENARIOS),
    )
    with pytest.raises(ConfigError) as caught:
        plan_sweep(path)
    assert caught.value.messages == [
        f"{path}: grid point boin.p_tox = 0.2, max_patients = 2 (and 1 more): {BOIN}: "
        "max_patients = 2: must be an integer >= cohort_size (3)",
        f"{path}: grid point boin.p_tox = 0.2, max_patients = 2 (and 2 more): {BOIN}: "
        "[boin] p_tox = 0.2: must be above target (0.3)",
    ]


def test_a_key_through_a_value_and_a_missing_design_or_scenarios_are_reported(tmp_path):
    through = write_grid(tmp_path, grid_text('"target.low" = [1]', scenarios=SCENARIOS))
    with pytest.raises(ConfigError, match="target is a float in the design file, not a table"):
        plan_sweep(through)
    missing = write_grid(tmp_path, grid_text("max_patients = [30]", design="nope.toml"), "m.toml")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope.toml'}: file not found"):
        plan_sweep(missing)
    no_scenarios = write_grid(tmp_path, grid_text("max_patients = [30]"), "n.toml")
    with pytest.raises(ConfigError, match="no scenarios: give scenarios"):
        plan_sweep(no_scenarios)


def test_the_cli_reports_every_problem_before_any_work(tmp_path):
    path = write_grid(tmp_path, grid_text('"boin.p_tox" = [0.2]', scenarios=SCENARIOS))
    result = invoke("sweep", path, "-n", "0", "--json", tmp_path / "missing" / "r.json")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert any("--trials 0: must be an integer" in line for line in lines)
    assert any("--json" in line and "does not exist" in line for line in lines)
    assert any("[boin] p_tox = 0.2: must be above target" in line for line in lines)
    axes = invoke("sweep", DESIGNS / "sweep_boin.toml", "--axes", "target", "-n", "10")
    assert axes.exit_code == 2
    assert "--axes target: the grid does not vary 'target'" in axes.stderr


def test_validate_checks_grid_files(tmp_path):
    bad = write_grid(tmp_path, grid_text('"boin.p_tox" = [0.2]', scenarios=SCENARIOS))
    result = invoke("validate", DESIGNS / "sweep_boin.toml", bad)
    assert result.exit_code == 2
    assert result.stdout == (
        f"OK {DESIGNS / 'sweep_boin.toml'}: sweep grid, 25 grid points (5 × 5 values of "
        "boin.p_tox, max_patients) of BOIN, target 30%\n"
    )
    assert "grid point boin.p_tox = 0.2: " in result.stderr


# --- the same patients for every grid point ------------------------------------------------------


def test_a_grid_point_equal_to_the_design_file_gives_simulates_results(tmp_path):
    # max_patients 48 > the file's 36: the other grid points draw more patients per trial, and
    # the first 36 of every trial are still the plain run's (patient-major draws).
    path = write_grid(
        tmp_path,
        grid_text('"boin.p_tox" = [0.38, 0.42]\nmax_patients = [36, 48]', scenarios=SCENARIOS),
    )
    sweep = run_sweep(path, n_trials=600, seed=11)
    plain = run_study([BOIN], SCENARIOS, n_trials=600, seed=11)
    same = [p.settings for p in sweep.points].index((("boin.p_tox", 0.42), ("max_patients", 36)))
    assert sweep.oc[same] == plain.oc[0]
    assert (
        sweep.points[same].design.name == "BOIN, target 30% [boin.p_tox = 0.42, max_patients = 36]"
    )
    # Another grid point is another design on the same patients: different figures.
    assert sweep.oc[same + 1] != plain.oc[0]


def test_several_designs_and_nested_keys(tmp_path):
    path = write_grid(
        tmp_path,
        f'designs = ["{CRM}", "{CRM}"]\nscenarios = "{SCENARIOS}"\n'
        '[grid]\n"crm.skeleton.halfwidth" = [0.04, 0.06]\n',
    )
    sweep = run_sweep(path, n_trials=200)
    assert len(sweep.points) == 4
    skeletons = [p.design.method.model.skeleton for p in sweep.points]
    assert skeletons[0] != skeletons[1] and list(skeletons[0]) == list(skeletons[2])
    assert sweep.oc[0] == sweep.oc[2]  # the same design twice: the same patients, same figures


# --- the table --------------------------------------------------------------------------------


@pytest.fixture
def small_sweep(tmp_path, four_scenarios):
    path = write_grid(
        tmp_path,
        grid_text(
            '"boin.p_tox" = [0.38, 0.46]\nmax_patients = [24, 30, 36]',
            scenarios=four_scenarios,
            trials=300,
            seed=4,
        ),
    )
    return run_sweep(path)


def test_the_table_has_one_row_per_grid_point_and_scenario(small_sweep):
    rows = small_sweep.rows()
    assert len(rows) == 6 * 4
    assert list(rows[0]) == list(small_sweep.columns())
    assert small_sweep.columns() == (
        "design", "boin.p_tox", "max_patients", "scenario", "true_mtd",
        "pcs", "pcs_se", "overdose_pct", "overdose_pct_se", "n_mean", "n_mean_se",
        "no_mtd_pct", "no_mtd_pct_se",
    )  # fmt: skip
    assert [(r["boin.p_tox"], r["max_patients"], r["scenario"]) for r in rows[:5]] == [
        (0.38, 24, "S1"), (0.38, 24, "S2"), (0.38, 24, "S3"), (0.38, 24, "S4"), (0.38, 30, "S1"),
    ]  # fmt: skip
    for i in range(len(small_sweep.points)):
        for j in range(4):
            row, oc = rows[4 * i + j], small_sweep.oc[i][j]
            for key, column, _ in FIGURES:
                assert (row[column], row[f"{column}_se"]) == (oc.values[key], oc.se[key])
    assert {r["true_mtd"] for r in rows} == {4, 1, 6, 3}
    assert all(r["n_mean"] <= r["max_patients"] for r in rows)


def test_csv_json_and_markdown_hold_the_same_rows(small_sweep):
    rows = small_sweep.rows()
    parsed = list(csv.DictReader(io.StringIO(sweep_to_csv(small_sweep))))
    assert len(parsed) == len(rows)
    assert float(parsed[5]["pcs"]) == rows[5]["pcs"]
    assert parsed[5]["max_patients"] == str(rows[5]["max_patients"])
    data = json.loads(json.dumps(sweep_to_dict(small_sweep)))
    assert data["rows"] == rows
    assert data["grid"] == {"boin.p_tox": [0.38, 0.46], "max_patients": [24, 30, 36]}
    assert (data["n_trials"], data["seed"]) == (300, 4)
    markdown = sweep_to_markdown(small_sweep).splitlines()
    assert markdown[2].startswith("| design | boin.p_tox | max_patients | scenario | true MTD |")
    assert len(markdown) == 4 + len(rows)


# --- heat maps ----------------------------------------------------------------------------------


def test_heat_maps_are_drawn_against_two_settings_faceted_by_scenario(tmp_path, small_sweep):
    (title, figure), = plot_heatmaps(small_sweep)  # fmt: skip
    assert title == ""
    panels = [ax for ax in figure.axes if ax.get_images()]
    assert len(panels) == 3 * 4  # PCS, overdosing, sample size × 4 scenarios
    assert panels[0].get_images()[0].get_array().shape == (3, 2)  # max_patients × p_tox
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["0.38", "0.46"]
    written = save_heatmaps(small_sweep, tmp_path / "heat.png")
    assert written == [tmp_path / "heat.png"]
    assert (tmp_path / "heat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Swapped axes, and one setting alone.
    assert plot_heatmaps(small_sweep, ["max_patients", "boin.p_tox"])[0][1].axes[0].get_images()[
        0
    ].get_array().shape == (2, 3)
    assert len(plot_heatmaps(small_sweep, ["boin.p_tox"])) == 3  # one per max_patients


def test_heat_map_axes_and_file_names():
    assert heatmap_axes(("a", "b", "c")) == ("a", "b")
    assert heatmap_axes(("a",)) == ("a", None)
    assert heatmap_axes(("a", "b", "c"), ["c", "a"]) == ("c", "a")
    with pytest.raises(ValueError, match="does not vary 'd'"):
        heatmap_axes(("a", "b"), ["d"])
    with pytest.raises(ValueError, match="two different"):
        heatmap_axes(("a", "b"), ["a", "a"])
    assert heatmap_paths("out/h.svg", 2) == [Path("out/h-1.svg"), Path("out/h-2.svg")]


# --- interruptions -------------------------------------------------------------------------------


def test_an_interrupted_sweep_continues_with_identical_results(
    tmp_path, small_chunks, four_scenarios
):
    path = write_grid(
        tmp_path,
        grid_text(
            '"boin.p_tox" = [0.38, 0.46]\nmax_patients = [24, 36]',
            scenarios=four_scenarios,
            trials=1000,
            seed=5,
        ),
    )
    plain = run_sweep(path)
    run = tmp_path / "run"
    done = []

    def interrupt_after_two_chunks(n):
        done.append(n)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(path, run_dir=run, progress=interrupt_after_two_chunks)
    assert sorted(p.name for p in run.glob("chunk-*.npz")) == [
        "chunk-000000.npz",
        "chunk-000001.npz",
    ]
    continued = run_sweep(path, run_dir=run, workers=2)
    assert continued.rows() == plain.rows()
    assert len(list(run.glob("chunk-*.npz"))) == 4
    # Another grid is another run: refused, saying what differs.
    other = write_grid(tmp_path, path.read_text().replace("0.46", "0.5"), "other.toml")
    with pytest.raises(ConfigError, match="made by another run"):
        run_sweep(other, run_dir=run)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")
def test_the_2_by_5_by_4_sweep_resumes_after_a_kill_and_draws_its_heat_maps(
    tmp_path, four_scenarios, monkeypatch
):
    """The example grid (2 settings × 5 values) under 4 scenarios, killed (SIGKILL) once some
    chunks are kept, then run again: the JSON is byte for byte an uninterrupted run's."""
    chunk = 200
    trials = 1200
    grid = DESIGNS / "sweep_boin.toml"
    args = [grid, "-s", four_scenarios, "-n", str(trials), "--seed", "3"]
    code = f"import theradose.simulation as s; s.CHUNK_TRIALS = {chunk}; " + (
        "from theradose.cli import app; app()"
    )
    command = [sys.executable, "-c", code, "sweep", *map(str, args)]
    run = tmp_path / "run"
    process = subprocess.Popen(
        [*command, "--run-dir", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while len(list(run.glob("chunk-*.npz"))) < 2 and process.poll() is None:
        assert time.monotonic() < deadline, "no chunk kept within 60 s"
        time.sleep(0.01)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the sweep ended before it was killed"
    kept = len(list(run.glob("chunk-*.npz")))
    assert 2 <= kept
    continued = subprocess.run(
        [*command, "--run-dir", str(run), "--json", str(tmp_path / "continued.json"),
         "--plot", str(tmp_path / "heat.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert continued.returncode == 0, continued.stderr
    assert len(list(run.glob("chunk-*.npz"))) == trials // chunk
    monkeypatch.setattr(simulation, "CHUNK_TRIALS", chunk)
    plain = invoke("sweep", *args, "--json", tmp_path / "plain.json")
    assert plain.exit_code == 0, plain.output
    assert (tmp_path / "continued.json").read_bytes() == (tmp_path / "plain.json").read_bytes()
    data = json.loads((tmp_path / "plain.json").read_text())
    assert len(data["rows"]) == 5 * 5 * 4
    assert (tmp_path / "heat.png").stat().st_size > 10_000
