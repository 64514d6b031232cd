"""The ``theradose`` command line, run in-process with typer's CliRunner on the example files."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from theradose import __version__
from theradose.cli import app

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
THREE_PLUS_THREE = str(DESIGNS / "three_plus_three.toml")
BOIN = str(DESIGNS / "boin.toml")
CRM = str(DESIGNS / "crm.toml")
SCENARIOS = str(DESIGNS / "scenarios.toml")

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_bad_input(result, *fragments: str) -> None:
    """Exit code 2, the message(s) on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert all(line.startswith("error: ") for line in result.stderr.splitlines())


@pytest.fixture
def two_scenarios(tmp_path) -> str:
    path = tmp_path / "two.toml"
    path.write_text(
        '[[scenario]]\nname = "A"\ndlt_prob = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7]\n'
        '[[scenario]]\nname = "B"\ndlt_prob = [0.45, 0.55, 0.65, 0.75, 0.85, 0.95]\n'
    )
    return str(path)


# --- version and help ---------------------------------------------------------------------------


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"theradose {__version__}"


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("simulate", "table", "recommend", "validate"):
        assert command in result.stdout


def test_importing_the_cli_loads_no_heavy_module():
    code = (
        "import sys, theradose.cli; "
        "print(sorted(m for m in ('numpy', 'scipy', 'matplotlib', 'pymc', 'arviz') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- simulate -----------------------------------------------------------------------------------


def test_simulate_prints_tables_and_writes_json_csv_plot(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = invoke(
        "simulate", THREE_PLUS_THREE, BOIN, "--scenarios", SCENARIOS, "--trials", "300",
        "--seed", "7", "--json", str(out / "r.json"), "--csv", str(out / "r.csv"),
        "--plot", str(out / "r.png"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("S1", "S2", "S3", "S4", "S5"):
        assert f"Scenario {name}: true DLT probability" in result.stdout
    assert "3+3 with de-escalation" in result.stdout and "BOIN, target 30%" in result.stdout
    assert "300 simulated trials per design and scenario, seed 7" in result.stdout
    # no temporary files left; --plot r.png writes the allocation chart beside the selection's
    assert sorted(os.listdir(out)) == ["r-allocation.png", "r.csv", "r.json", "r.png"]

    data = json.loads((out / "r.json").read_text())
    assert {"version", "seed", "n_trials", "designs", "scenarios", "results"} <= set(data)
    assert (data["version"], data["seed"], data["n_trials"]) == (__version__, 7, 300)
    assert [d["path"] for d in data["designs"]] == [THREE_PLUS_THREE, BOIN]
    assert data["designs"][1]["source"]["boin"]["p_saf"] == 0.18  # the parsed TOML
    assert data["designs"][1]["method"] == "boin"
    assert [s["name"] for s in data["scenarios"]] == ["S1", "S2", "S3", "S4", "S5"]
    assert len(data["results"]) == 10
    s1 = data["results"][0]
    assert (s1["design"], s1["scenario"], s1["true_mtd"]) == ("3+3 with de-escalation", "S1", 4)
    for key in ("selection_pct", "patients_mean", "dlt_mean", "benchmark_selection_pct"):
        assert len(s1[key]) == 6 and len(s1["se"][key]) == 6
    for key in ("no_selection_pct", "n_mean", "dlt_total_mean", "pcs"):
        assert isinstance(s1[key], float) and key in s1["se"]
    assert data["results"][-1]["true_mtd"] is None  # S5: no acceptable level
    assert all("exact" not in r for r in data["results"])

    rows = list(csv.DictReader(io.StringIO((out / "r.csv").read_text())))
    assert len(rows) == 2 * 5 * 8  # 6 levels, "none", "summary"
    assert rows[0]["activity"] == "1.85" and rows[6]["level"] == "none"
    assert rows[7]["level"] == "summary" and float(rows[7]["pcs"]) == pytest.approx(s1["pcs"])
    assert float(rows[3]["selection_pct"]) == pytest.approx(s1["selection_pct"][3])
    assert (out / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_simulate_with_exact_adds_exact_values(tmp_path, two_scenarios):
    result = invoke(
        "simulate", THREE_PLUS_THREE, BOIN, "-s", two_scenarios, "-n", "200", "--exact",
        "--json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "exact " in result.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    for entry in data["results"]:
        exact = entry["exact"]
        assert {"selection_pct", "no_selection_pct", "patients_mean", "dlt_mean"} <= set(exact)
        assert sum(exact["selection_pct"]) + exact["no_selection_pct"] == pytest.approx(100)


def test_simulate_is_reproducible_and_independent_of_workers(tmp_path, two_scenarios):
    paths = [tmp_path / f"{k}.json" for k in range(2)]
    for path, workers in zip(paths, ("1", "2"), strict=True):
        result = invoke(
            "simulate", BOIN, "-s", two_scenarios, "-n", "12000", "--seed", "3",
            "--workers", workers, "--json", str(path),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    first, second = (json.loads(p.read_text())["results"] for p in paths)
    assert first == second


def test_simulate_missing_design_file(tmp_path):
    missing = str(tmp_path / "nope.toml")
    result = invoke("simulate", missing, "--scenarios", SCENARIOS, "--trials", "10")
    assert_bad_input(result, f"{missing}: file not found")


def test_simulate_missing_scenario_file(tmp_path):
    missing = str(tmp_path / "nope.toml")
    result = invoke("simulate", BOIN, "--scenarios", missing, "--trials", "10")
    assert_bad_input(result, f"{missing}: file not found")


def test_simulate_bad_design_key(tmp_path):
    bad = tmp_path / "bad.toml"
    text = Path(BOIN).read_text().replace("cohort_size = 3", "cohort_sise = 3")
    bad.write_text(text.replace("target = 0.30", "target = 1.5"))
    result = invoke("simulate", str(bad), "--scenarios", SCENARIOS, "--trials", "10")
    assert_bad_input(result, "unknown key 'cohort_sise'", "target = 1.5")
    assert len(result.stderr.splitlines()) >= 2  # every problem of the file, one line each


def test_simulate_scenario_length_mismatch(tmp_path):
    short = tmp_path / "short.toml"
    short.write_text('[[scenario]]\nname = "short"\ndlt_prob = [0.1, 0.2, 0.3, 0.4]\n')
    result = invoke("simulate", BOIN, "--scenarios", str(short), "--trials", "10")
    assert_bad_input(result, '("short") dlt_prob: has 4 values', "has 6 levels")


def test_simulate_unwritable_output_is_bad_input(tmp_path, two_scenarios):
    target = str(tmp_path / "no-such-dir" / "r.json")
    result = invoke("simulate", BOIN, "-s", two_scenarios, "-n", "10", "--json", target)
    assert_bad_input(result, "no-such-dir' does not exist")


def test_simulate_rejects_zero_trials():
    result = invoke("simulate", BOIN, "--scenarios", SCENARIOS, "--trials", "0")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# --- table --------------------------------------------------------------------------------------


def test_table_boin_rich_has_header_and_boundaries():
    result = invoke("table", BOIN)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Decision table: BOIN, target 30%" in out
    assert "λe = 0.2365" in out and "λd = 0.3585" in out
    assert "1 (1.85 GBq), 2 (3.7 GBq)" in out
    assert "escalate if DLTs ≤" in out and "—" in out
    assert __version__ in out


def test_table_boin_json_is_the_list_of_rows():
    result = invoke("table", BOIN, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 36  # up to max_patients
    assert list(rows[0]) == [
        "n", "escalate_if_dlt_le", "deescalate_if_dlt_ge", "eliminate_if_dlt_ge",
    ]  # fmt: skip
    assert rows[2] == {
        "n": 3,
        "escalate_if_dlt_le": 0,
        "deescalate_if_dlt_ge": 2,
        "eliminate_if_dlt_ge": 3,
    }
    assert rows[0]["eliminate_if_dlt_ge"] is None


def test_table_markdown_and_csv():
    markdown = invoke("table", BOIN, "-f", "markdown").stdout
    assert "| 3 | 0 | 2 | 3 |" in markdown and markdown.startswith("# Decision table")
    rows = list(csv.DictReader(io.StringIO(invoke("table", BOIN, "-f", "csv").stdout)))
    assert rows[0]["eliminate_if_dlt_ge"] == "" and rows[2]["eliminate_if_dlt_ge"] == "3"


def test_table_three_plus_three():
    result = invoke("table", THREE_PLUS_THREE, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0] == {"dlts": "0 of 3", "decision": "escalate to the next level"}
    assert "treat 3 more at this level" in invoke("table", THREE_PLUS_THREE).stdout


DESIGN_FILES = sorted(p for p in DESIGNS.glob("*.toml") if "scenarios" not in p.name)
DESIGN_FILES = [p for p in DESIGN_FILES if p.name != "late_onset.toml"]  # scenario files
DESIGN_FILES = [p for p in DESIGN_FILES if not p.name.startswith("sweep_")]  # sweep grid files


@pytest.mark.parametrize("design", DESIGN_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("fmt", ["rich", "json"])
def test_table_works_for_every_example_design(design, fmt):
    result = invoke("table", str(design), "--format", fmt)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


def test_table_unknown_format_is_a_usage_error():
    result = invoke("table", BOIN, "--format", "html")
    assert result.exit_code == 2


def test_table_of_crm_shows_skeleton_and_indifference_intervals():
    result = invoke("table", CRM, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["level"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[2]["skeleton"] == pytest.approx(0.3)
    # Lee & Cheung skeleton with halfwidth 0.05: every inner interval is target ± 0.05.
    for row in rows[1:-1]:
        assert row["indifference_low"] == pytest.approx(0.25, abs=1e-9)
        assert row["indifference_high"] == pytest.approx(0.35, abs=1e-9)
    assert rows[0]["indifference_high"] is None and rows[-1]["indifference_low"] is None


def test_recommend_crm_json_has_posterior_summaries(tmp_path):
    out = tmp_path / "rec.json"
    result = invoke("recommend", CRM, "--outcomes", "1NNN 2NNT", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["next_level"] == 2
    assert data["beta_mean"] == pytest.approx(-0.0174, abs=1e-3)
    assert data["beta_var"] > 0
    for level in data["levels"]:
        assert 0 <= level["p_lower"] <= level["p_est"] <= level["p_upper"] <= 1
        assert 0 <= level["p_overdose"] <= 1
    assert any("safety" in text for text in data["rule_states"])


def test_table_missing_file(tmp_path):
    missing = str(tmp_path / "x.toml")
    assert_bad_input(invoke("table", missing), f"{missing}: file not found")


# --- recommend ----------------------------------------------------------------------------------


def test_recommend_boin(tmp_path):
    target = tmp_path / "rec.json"
    result = invoke("recommend", BOIN, "--outcomes", "1NNN 2NTN", "--json", str(target))
    assert result.exit_code == 0, result.output
    assert "Next cohort: level 2 (3.7 GBq)." in result.stdout
    data = json.loads(target.read_text())
    assert {"next_level", "stop", "stop_reason", "mtd", "levels", "deviations", "version",
            "design"} <= set(data)  # fmt: skip
    assert (data["next_level"], data["stop"], data["mtd"]) == (2, False, 2)
    assert data["design"] == "BOIN, target 30%" and data["version"] == __version__
    assert data["levels"][1] | {"p_est": None, "p_overdose": None} == {
        "level": 2, "activity": 3.7, "n": 3, "dlt": 1, "p_est": None, "p_overdose": None,
        "eliminated": False,
    }  # fmt: skip
    assert data["levels"][3]["p_est"] is None  # untreated level
    assert os.listdir(tmp_path) == ["rec.json"]


def test_recommend_three_plus_three_escalates_and_stops():
    result = invoke("recommend", THREE_PLUS_THREE, "-o", "1NNN")
    assert "Next cohort: level 2 (3.7 GBq)." in result.stdout
    result = invoke("recommend", THREE_PLUS_THREE, "-o", "1NTT")
    assert result.exit_code == 0
    assert "Stop the trial: lowest level too toxic." in result.stdout


def test_recommend_without_outcomes_gives_the_start_level():
    result = invoke("recommend", BOIN)
    assert result.exit_code == 0, result.output
    assert "Next cohort: level 1 (1.85 GBq)." in result.stdout


def test_recommend_malformed_outcomes():
    result = invoke("recommend", BOIN, "--outcomes", "1NNN 2NXN")
    assert_bad_input(result, "outcome token 2 '2NXN': 'X' is not N (no DLT) or T (DLT)")
    assert len(result.stderr.splitlines()) == 1


def test_recommend_level_above_the_design():
    result = invoke("recommend", BOIN, "--outcomes", "1NNN 7NNN")
    assert_bad_input(result, "level 7 is above the design's 6 levels")


def test_recommend_empty_cohort():
    assert_bad_input(invoke("recommend", BOIN, "-o", "1NNN 2"), "outcome token 2 '2'")


# --- validate -----------------------------------------------------------------------------------


def test_validate_example_files():
    result = invoke("validate", THREE_PLUS_THREE, BOIN, CRM, SCENARIOS)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"OK {THREE_PLUS_THREE}: design '3+3 with de-escalation'")
    assert lines[1] == f"OK {BOIN}: design 'BOIN, target 30%', method boin, 6 levels"
    assert lines[2] == f"OK {CRM}: design 'CRM, target 30%', method crm, 6 levels"
    assert lines[3] == f"OK {SCENARIOS}: 5 scenarios (S1, S2, S3, S4, S5)"


def test_every_example_file_is_valid():
    files = sorted(str(p) for p in DESIGNS.glob("*.toml"))
    result = invoke("validate", *files)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(files)


def test_validate_reports_every_problem_and_exits_2(tmp_path):
    bad_design = tmp_path / "bad.toml"
    bad_design.write_text('method = "boin"\ntarget = 1.5\nlevels = 3\nmax_patients = 9\nfoo = 1\n')
    bad_scenarios = tmp_path / "scen.toml"
    bad_scenarios.write_text('[[scenario]]\nname = "S"\ndlt_prob = [0.3, 0.2]\n')
    missing = tmp_path / "missing.toml"
    result = invoke("validate", BOIN, str(bad_design), str(bad_scenarios), str(missing))
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        f"OK {BOIN}: design 'BOIN, target 30%', method boin, 6 levels"
    ]
    err = result.stderr
    assert f"INVALID {bad_design}" in err and f"INVALID {bad_scenarios}" in err
    assert "target = 1.5" in err and "unknown key 'foo'" in err
    assert "dlt_prob: must be non-decreasing" in err
    assert f"{missing}: file not found" in err
    assert "Traceback" not in result.output


# --- time-to-event designs: simulate with duration figures, recommend from a patient file ----

TITE_CRM = str(DESIGNS / "tite_crm.toml")
TITE_BOIN = str(DESIGNS / "tite_boin.toml")
BOIN_TIMED = str(DESIGNS / "boin_timed.toml")
LATE_ONSET = str(DESIGNS / "late_onset.toml")
TIMING_KEYS = (
    "duration_months_mean",
    "duration_months_p95",
    "enrolled_while_pending_pct",
    "dlt_after_last_decision_mean",
)


def test_simulate_time_to_event_designs_reports_duration(tmp_path):
    result = invoke(
        "simulate", TITE_CRM, TITE_BOIN, BOIN_TIMED, BOIN, "-s", LATE_ONSET, "-n", "100",
        "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for word in ("duration, months", "95th percentile", "enrolled while", "after the last"):
        assert word in result.stdout

    data = json.loads((tmp_path / "r.json").read_text())
    by_design = {(r["design"], r["scenario"]): r for r in data["results"]}
    tite_boin = by_design["TITE-BOIN, target 30%", "S1-late"]
    waits = by_design["BOIN (waits for complete data)", "S1-late"]
    untimed = by_design["BOIN, target 30%", "S1-late"]
    for key in TIMING_KEYS:
        assert isinstance(tite_boin[key], float) and isinstance(tite_boin["se"][key], float)
        assert untimed[key] is None and untimed["se"][key] is None
    assert tite_boin["duration_months_mean"] < waits["duration_months_mean"]
    assert waits["enrolled_while_pending_pct"] == 0 < tite_boin["enrolled_while_pending_pct"]

    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert len(rows) == 4 * 3 * 8  # 6 levels, "none", "summary"
    timing_columns = [
        "duration_months_mean", "duration_months_se", "duration_months_p95",
        "duration_months_p95_se", "enrolled_while_pending_pct", "enrolled_while_pending_se",
        "dlt_after_last_decision_mean", "dlt_after_last_decision_se",
    ]  # fmt: skip
    start = list(rows[0]).index(timing_columns[0])  # then the summary rows' columns
    assert list(rows[0])[start : start + 8] == timing_columns
    cell = [r for r in rows if (r["design"], r["scenario"]) == ("TITE-BOIN, target 30%", "S1-late")]
    assert len(cell) == 8 and len({r["duration_months_mean"] for r in cell}) == 1
    assert float(cell[-1]["duration_months_p95"]) == pytest.approx(tite_boin["duration_months_p95"])
    assert float(cell[0]["enrolled_while_pending_se"]) == pytest.approx(
        tite_boin["se"]["enrolled_while_pending_pct"]
    )
    untimed_rows = [r for r in rows if r["design"] == "BOIN, target 30%"]
    assert all(r[c] == "" for r in untimed_rows for c in timing_columns)


def test_simulate_without_timing_has_no_duration_columns(tmp_path, two_scenarios):
    out = str(tmp_path / "r.csv")
    result = invoke("simulate", BOIN, "-s", two_scenarios, "-n", "50", "--csv", out)
    assert result.exit_code == 0, result.output
    assert "duration" not in result.stdout
    assert "duration_months_mean" not in (tmp_path / "r.csv").read_text()


# The example of dfcrm 0.2-2.1's ?titecrm: 10 patients of a 180-day window.
DFCRM_PATIENTS = """level,dlt,followup_days
3,0,178
3,0,181
3,1,168
4,0,181
4,1,24
3,0,181
2,0,179
2,0,102
2,0,42
3,0,3
"""


@pytest.fixture
def dfcrm_design(tmp_path) -> str:
    path = tmp_path / "titecrm.toml"
    path.write_text(
        'name = "dfcrm titecrm example"\nmethod = "tite-crm"\ntarget = 0.2\nlevels = 6\n'
        "cohort_size = 1\nmax_patients = 30\n"
        "[crm]\nskeleton = [0.05, 0.10, 0.20, 0.35, 0.50, 0.70]\nno_skip = false\n"
        "[timing]\naccrual_per_month = 1.0\n"
        f"dlt_window_months = {180 / 30.4375!r}\n"
    )
    return str(path)


def write(tmp_path, text: str, name: str = "patients.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_recommend_patients_reproduces_the_dfcrm_titecrm_example(tmp_path, dfcrm_design):
    patients = write(tmp_path, DFCRM_PATIENTS)
    out = tmp_path / "rec.json"
    result = invoke("recommend", dfcrm_design, "--patients", patients, "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "Next cohort: level 3." in result.stdout
    assert f"10 patients from {patients}, 5 still in their DLT window" in result.stdout
    data = json.loads(out.read_text())
    assert (data["next_level"], data["mtd"]) == (3, 3)
    assert not data["stop"] and not data["suspended"]
    assert data["beta_mean"] == pytest.approx(-0.133, abs=5e-4)
    assert data["patients_path"] == patients and data["warnings"] == []
    assert data["patients"][4] == {
        "patient": 5, "level": 4, "dlt": 1, "followup_days": 24.0, "dlt_day": None,
        "pending": False,
    }  # fmt: skip
    assert [level["pending"] for level in data["levels"]] == [0, 3, 2, 0, 0, 0]
    assert data["outcomes"] == "3N 3N 3T 4N 4T 3N 2N 2N 2N 3N"  # cohorts of 1


def test_recommend_patients_tite_boin_suspends_accrual(tmp_path):
    patients = write(
        tmp_path, "level,dlt,followup_days,dlt_day\n1,0,200,\n1,0,190,\n1,0,180,\n"
        "2,0,20,\n2,1,15,12\n2,0,10,\n",
    )  # fmt: skip
    out = tmp_path / "rec.json"
    result = invoke("recommend", TITE_BOIN, "--patients", patients, "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "Suspend accrual" in result.stdout and "Next cohort" not in result.stdout
    data = json.loads(out.read_text())
    assert (data["suspended"], data["next_level"], data["stop"]) == (True, None, False)
    assert data["review_in_days"] == pytest.approx(3 * 30.4375 - 20)
    assert data["levels"][1]["pending"] == 2 and data["levels"][1]["dlt"] == 1
    assert data["deviations"] == [] and data["warnings"] == []


# Patient 3 is at day 40 of the window without a DLT.
PENDING_AT_DAY_40 = "level,dlt,followup_days\n1,0,200\n1,0,190\n1,0,40\n"


@pytest.mark.parametrize(
    ("design", "options", "window_days"),
    [
        (BOIN_TIMED, (), 3 * 30.4375),  # [timing] dlt_window_months = 3
        (BOIN, ("--dlt-window-days", "90"), 90.0),
        (CRM, ("--dlt-window-days", "90"), 90.0),
    ],
)
def test_recommend_patients_waits_while_a_design_deciding_on_complete_data_has_pending(
    tmp_path, design, options, window_days
):
    import datetime
    import math

    patients = write(tmp_path, PENDING_AT_DAY_40)
    out = tmp_path / "rec.json"
    result = invoke("recommend", design, "--patients", patients, *options, "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "Wait: patient 3 (followed for 40 days) is still in the DLT window" in result.stdout
    assert "Next cohort" not in result.stdout and "WARNING" not in result.stdout
    assert f"closes in {window_days - 40:.4g} days" in result.stdout
    data = json.loads(out.read_text())
    assert (data["wait"], data["next_level"], data["stop"], data["suspended"]) == (
        True, None, False, False
    )  # fmt: skip
    assert data["pending_patients"] == [3]
    assert data["review_in_days"] == pytest.approx(window_days - 40)
    assert data["complete_in_days"] == pytest.approx(window_days - 40)
    today = datetime.date.today()
    assert data["review_on"] == str(today + datetime.timedelta(math.ceil(window_days - 40)))
    assert [p["pending"] for p in data["patients"]] == [False, False, True]
    assert data["levels"][0]["n"] == 3 and data["levels"][0]["pending"] == 1
    assert data["basis"] is None and data["mtd_on_complete_data"] and data["warnings"] == []


@pytest.mark.parametrize(
    ("design", "options"),
    [(BOIN_TIMED, ()), (BOIN, ("--dlt-window-days", "90")), (CRM, ("--dlt-window-days", "90"))],
)
@pytest.mark.parametrize(
    ("rows", "outcomes"),
    [
        ("1,0,200\n1,0,190\n1,0,95\n", "1NNN"),  # patient 3's window has closed
        ("1,0,200\n1,0,190\n1,1,40\n", "1NNT"),  # a DLT completes a patient at once
        ("1,0,200\n1,1,190\n1,0,180\n2,0,100\n", "1NTN 2N"),  # within a cohort
    ],
)
def test_recommend_patients_with_nobody_pending_is_the_complete_data_decision(
    tmp_path, design, options, rows, outcomes
):
    patients = write(tmp_path, "level,dlt,followup_days\n" + rows)
    out, reference = tmp_path / "rec.json", tmp_path / "ref.json"
    result = invoke("recommend", design, "--patients", patients, *options, "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "Wait" not in result.stdout and "Next cohort: level" in result.stdout
    assert invoke("recommend", design, "-o", outcomes, "--json", str(reference)).exit_code == 0
    data, expected = json.loads(out.read_text()), json.loads(reference.read_text())
    assert not data["wait"] and data["pending_patients"] == [] and data["outcomes"] == outcomes
    for key in ("next_level", "stop", "stop_reason", "mtd", "basis", "rule_states", "deviations"):
        assert data[key] == expected[key], key
    for level, reference_level in zip(data["levels"], expected["levels"], strict=True):
        assert level.pop("pending") == 0
        assert level == reference_level


def test_recommend_patients_needs_the_dlt_window(tmp_path):
    patients = write(tmp_path, PENDING_AT_DAY_40)
    for design in (BOIN, CRM):
        assert_bad_input(
            invoke("recommend", design, "--patients", patients),
            f"error: {design}: --patients needs the DLT window: add [timing] dlt_window_months "
            "to the design or pass --dlt-window-days",
        )
    # a bad patient file and no window: both problems at once
    bad = write(tmp_path, "level,dlt,followup_days\n9,0,10\n", "bad.csv")
    result = invoke("recommend", BOIN, "--patients", bad)
    assert_bad_input(result, "needs the DLT window", "column 'level': 9 is not a level")
    assert_bad_input(
        invoke("recommend", BOIN, "-o", "1NNN", "--dlt-window-days", "90"),
        "--dlt-window-days goes with --patients",
    )
    assert_bad_input(
        invoke("recommend", BOIN, "--patients", patients, "--dlt-window-days", "0"),
        "the DLT window must be days > 0",
    )


def test_dlt_window_days_overrides_the_design_with_a_note(tmp_path):
    patients = write(tmp_path, PENDING_AT_DAY_40)
    out = tmp_path / "rec.json"
    # a 30-day window: patient 3 (day 40) has completed it
    args = ("recommend", BOIN_TIMED, "--patients", patients, "--dlt-window-days", "30")
    result = invoke(*args, "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert not data["wait"] and data["next_level"] == 2
    assert data["notes"][0] == (
        "the DLT window is 30 days (--dlt-window-days), not the design's 91.31 days "
        "([timing] dlt_window_months = 3)"
    )
    # the same window as the design's: no note
    same = ("recommend", BOIN_TIMED, "-p", patients, "--dlt-window-days", "91.3125")
    assert invoke(*same, "--json", str(out)).exit_code == 0
    assert json.loads(out.read_text())["notes"] == [
        "the MTD estimate and the estimates per level use the 2 patients with complete data "
        "(a DLT, or the window closed); the counts include the pending patients"
    ]
    # a time-to-event design is rebuilt with the window: patients 4 to 6 complete at 15 days
    rows = "level,dlt,followup_days\n1,0,200\n1,0,190\n1,0,180\n2,0,20\n2,0,18\n2,0,16\n"
    tite = write(tmp_path, rows, "tite.csv")
    invoke("recommend", TITE_BOIN, "-p", tite, "--json", str(out))
    assert json.loads(out.read_text())["suspended"]
    invoke("recommend", TITE_BOIN, "-p", tite, "--dlt-window-days", "15", "--json", str(out))
    data = json.loads(out.read_text())
    assert not data["suspended"] and data["next_level"] == 3 and data["pending_patients"] == []


def test_a_dlt_day_beyond_the_dlt_window_in_effect_is_one_line_and_exit_code_2(tmp_path):
    """A DLT counts only within the DLT window: the design's, or --dlt-window-days."""
    rows = "level,dlt,followup_days,dlt_day\n1,0,200,\n1,1,190,40\n1,0,180,\n"
    patients = write(tmp_path, rows)
    assert invoke("recommend", TITE_BOIN, "-p", patients).exit_code == 0  # 40 of 91.31 days
    result = invoke("recommend", TITE_BOIN, "-p", patients, "--dlt-window-days", "30")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        f"error: {patients}: row 3 (patient 2), column 'dlt_day': 40 is beyond the DLT window "
        "of 30 days (a DLT counts only within it: [timing] dlt_window_months, or "
        "--dlt-window-days)"
    ]


def test_recommend_patients_tite_boin_shows_the_basis_of_its_decision(tmp_path):
    """De-escalation from the level of the MTD estimate, with the quantities that decided."""
    patients = write(
        tmp_path, "level,dlt,followup_days,dlt_day\n1,0,300,\n1,0,290,\n1,0,280,\n"
        "2,0,250,\n2,0,240,\n2,0,230,\n3,0,150,\n3,1,140,20\n3,0,130,\n3,1,40,10\n"
        "3,0,30,\n3,0,20,\n",
    )  # fmt: skip
    out = tmp_path / "rec.json"
    result = invoke("recommend", TITE_BOIN, "--patients", patients, "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    # Yuan et al. (2018) by hand at level 3: n = 6, y = 2, m = 2 (days 30 and 20 of 91.3125)
    window = 3 * 30.4375
    stft = 30 / window + 20 / window
    pi_hat = (2 + 0.3 / 2) / (6 - 2 + 1)
    p_tilde = (2 + (2 - stft) * pi_hat / (1 - pi_hat)) / 6
    basis = data["basis"]
    assert (basis["level"], basis["n"], basis["y"], basis["m"]) == (3, 6, 2, 2)
    assert basis["stft"] == pytest.approx(stft, rel=1e-12)
    assert basis["p_tilde"] == pytest.approx(p_tilde, rel=1e-12)
    assert (basis["lambda_e"], basis["lambda_d"]) == pytest.approx((0.2365, 0.3585), abs=1e-4)
    assert basis["direction"] == -1 and p_tilde >= basis["lambda_d"]
    assert not basis["suspended"] and not basis["too_many_pending"]
    assert data["next_level"] == 2 and data["mtd"] == 3 and data["mtd_on_complete_data"]
    # the estimate leaves the pending patients out: level 3 has 2 DLTs in 4 complete
    assert data["levels"][2]["p_est"] == pytest.approx((2 + 0.05) / (4 + 0.1))
    assert "Current MTD estimate on complete data (pending patients left out): level 3" in (
        result.stdout
    )
    assert (
        f"Decision basis at level 3: n = 6, y = 2 DLTs observed, m = 2 pending, "
        f"STFT = {stft:.3f}, p̃ = {p_tilde:.3f}; λe = 0.236, λd = 0.359 (p̃ ≥ λd: de-escalate)"
    ) in result.stdout
    assert "The next cohort goes below the MTD estimate" in result.stdout


def test_recommend_outcomes_boin_shows_the_basis(tmp_path):
    out = tmp_path / "rec.json"
    result = invoke("recommend", BOIN, "-o", "1NNN 2NTN", "--json", str(out))
    basis = json.loads(out.read_text())["basis"]
    assert (basis["level"], basis["n"], basis["y"], basis["direction"]) == (2, 3, 1, 0)
    assert basis["rate"] == pytest.approx(1 / 3)
    assert "Decision basis at level 2: n = 3, y = 1, y/n = 0.333" in result.stdout
    assert "(λe < y/n < λd: stay)" in result.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("level,dlt\n1,0\n", "row 1: missing column 'followup_days'"),
        ("level,dlt,followup_days\n7,0,10\n", "row 2 (patient 1), column 'level': 7 is not a"),
        ("level,dlt,followup_days\n1,2,10\n", "row 2 (patient 1), column 'dlt': '2' must be 0"),
        ("level,dlt,followup_days\n1,0,-1\n", "column 'followup_days': '-1' must be a number"),
        (
            "level,dlt,followup_days,dlt_day\n1,0,50,\n1,1,10,30\n",
            "row 3 (patient 2), column 'dlt_day': 30 is after the follow-up of 10 days",
        ),
        (
            "level,dlt,followup_day\n1,0,10\n",
            "row 1: unknown column 'followup_day' (did you mean 'followup_days'?)",
        ),
    ],
)
def test_recommend_patients_bad_file(tmp_path, text, message):
    patients = write(tmp_path, text)
    result = invoke("recommend", TITE_BOIN, "--patients", patients)
    assert_bad_input(result, f"{patients}: ", message)


def test_recommend_takes_outcomes_or_patients_not_both(tmp_path):
    patients = write(tmp_path, "level,dlt,followup_days\n1,0,100\n")
    result = invoke("recommend", BOIN, "--outcomes", "1N", "--patients", patients)
    assert_bad_input(result, "--outcomes or with --patients, not both")


def test_recommend_outcomes_for_a_time_to_event_design_take_follow_up_as_complete():
    # Outcome strings carry no times: every DLT counts (3 of 3 at level 2 → de-escalate).
    result = invoke("recommend", TITE_BOIN, "--outcomes", "1NNN 2TTT")
    assert result.exit_code == 0, result.output
    assert "Next cohort: level 1 (1.85 GBq)." in result.stdout
