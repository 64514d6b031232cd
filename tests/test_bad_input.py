"""Bad input of every kind through the command line: refused before any work with exit code 2, one
line per problem naming the file or flag, the value and what is allowed, no traceback, no
temporary file named, nothing written; implausible but legal values warned about (exit code 0).

The bounds themselves live in :mod:`theradose.limits`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from theradose.cli import app
from theradose.limits import MAX_TOML_BYTES, cpu_count

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
BOIN = str(DESIGNS / "boin.toml")
CRM = str(DESIGNS / "crm.toml")
DOSIMETRY = str(DESIGNS / "boin_psma_dosimetry.toml")
SCENARIOS = str(DESIGNS / "scenarios.toml")
BOIN_TEXT = (DESIGNS / "boin.toml").read_text()

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_refused(result, *fragments: str, lines: int | None = None) -> list[str]:
    """Exit code 2, each fragment on stderr, every stderr line an "error: " line, no traceback
    and no temporary file named; returns the lines."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert ".tmp" not in result.output
    errors = result.stderr.splitlines()
    assert errors and all(line.startswith("error: ") for line in errors), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    if lines is not None:
        assert len(errors) == lines, result.stderr
    return errors


def design(tmp_path: Path, text: str, name: str = "d.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def boin_with(tmp_path: Path, old: str, new: str) -> str:
    assert old in BOIN_TEXT
    return design(tmp_path, BOIN_TEXT.replace(old, new))


# --- files that cannot be read -----------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "simulate", "table", "recommend"])
def test_an_integer_of_thousands_of_digits_in_a_design(tmp_path, command):
    path = boin_with(tmp_path, "start_level = 1 ", "start_level = " + "1" * 5000 + " ")
    args = {"simulate": ["-s", SCENARIOS, "-n", "10"], "recommend": ["-o", "1NNN"]}
    result = invoke(command, path, *args.get(command, []))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "line 13: an integer with 5,000 digits" in result.stderr
    assert "4300" not in result.output


@pytest.mark.parametrize(
    "value",
    ["[" * 5000 + "]" * 5000, "{a = " * 3000 + "1" + "}" * 3000, "[" * 100 + "]" * 100],
    ids=["arrays", "inline-tables", "just-too-deep"],
)
def test_values_nested_thousands_deep(tmp_path, value):
    path = design(tmp_path, f"x = {value}\n")
    for result in (invoke("validate", path), invoke("simulate", path, "-s", SCENARIOS)):
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        assert "nested" in result.stderr
        assert len(result.stderr.splitlines()) <= 2  # validate adds its INVALID line


def test_a_file_too_large_is_refused_unread(tmp_path):
    path = design(tmp_path, BOIN_TEXT + "#" * MAX_TOML_BYTES + "\n")
    assert_refused(invoke("table", path), f"larger than {MAX_TOML_BYTES:,} bytes", lines=1)


def test_a_scenario_file_given_as_a_design_is_one_line():
    errors = assert_refused(invoke("simulate", SCENARIOS, "-s", SCENARIOS), "scenario file")
    assert len(errors) == 1


# --- designs out of bounds -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("max_patients = 36", "max_patients = 1000000000", "max_patients = 1000000000: must be"),
        ("cohort_size = 3", "cohort_size = 5000", "cohort_size = 5000: must be an integer"),
        ("max_at_dose = 100 ", "max_at_dose = 99999999999 ", "max_at_dose = 99999999999"),
    ],
)
def test_design_sizes_beyond_the_limits(tmp_path, old, new, fragment):
    result = invoke("validate", boin_with(tmp_path, old, new))
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert ": must be an integer from 1 to " in result.stderr


def test_too_many_levels(tmp_path):
    doses = ", ".join(str(d) for d in range(1, 62))
    path = boin_with(
        tmp_path, "doses = [1.85, 3.7, 5.55, 7.4, 9.25, 11.1]", f"doses = [{doses}]"
    )
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert "doses: 61 levels; at most 50 are allowed" in result.stderr


def test_every_problem_of_a_design_at_once(tmp_path):
    text = BOIN_TEXT.replace("max_patients = 36", "max_patients = 100000").replace(
        "cohort_size = 3", "cohort_size = 1000"
    )
    result = invoke("simulate", design(tmp_path, text), "-s", SCENARIOS, "--seed", "-1")
    errors = assert_refused(result, "max_patients", "cohort_size", "--seed -1")
    assert len(errors) == 3


def test_missing_keys_of_dosimetry_records_are_the_files_own_errors(tmp_path):
    text = Path(DOSIMETRY).read_text().replace('name = "kidney"\n', "", 1)
    errors = assert_refused(invoke("table", design(tmp_path, text)), "missing key 'name'")
    assert not any("__init__" in line for line in errors)
    scenarios = (DESIGNS / "dosimetry_scenarios.toml").read_text()
    scenarios = scenarios.replace("td50_gy = 1.6", "", 1)
    path = design(tmp_path, scenarios, "s.toml")
    errors = assert_refused(invoke("simulate", DOSIMETRY, "-s", path), "missing key 'td50_gy'")
    assert not any("__init__" in line for line in errors)


def test_allowed_keys_are_listed_once(tmp_path):
    result = invoke("validate", boin_with(tmp_path, "dose_unit =", "zzzzzzzz = 1\ndose_unit ="))
    assert result.exit_code == 2
    (line,) = [line for line in result.stderr.splitlines() if "allowed:" in line]
    allowed = line.split("allowed: ")[1].rstrip(")").split(", ")
    assert len(allowed) == len(set(allowed))


# --- flags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "fragment"),
    [
        ("--seed", "-1", "--seed -1: must be an integer 0 <= seed < 2^128"),
        ("--seed", str(2**128), "0 <= seed < 2^128"),
        ("--seed", "abc", "--seed 'abc': must be an integer"),
        ("--trials", "1e9", "--trials '1e9': must be an integer from 1 to 100,000,000"),
        ("--trials", "0", "--trials 0: must be an integer from 1 to 100,000,000"),
        ("--trials", "1e3", "write 1000 in digits"),
        ("--workers", "0", "--workers 0: must be an integer"),
        ("--workers", str(cpu_count() + 1), "(or add --force-workers)"),
    ],
)
def test_bad_numbers_on_the_command_line(tmp_path, flag, value, fragment):
    out = tmp_path / "r.json"
    result = invoke("simulate", BOIN, "-s", SCENARIOS, "-n", "10", flag, value, "--json", out)
    if flag == "--trials":
        result = invoke("simulate", BOIN, "-s", SCENARIOS, flag, value, "--json", out)
    assert_refused(result, fragment, lines=1)
    assert not out.exists()


def test_the_largest_seed_is_accepted(tmp_path):
    result = invoke("simulate", BOIN, "-s", SCENARIOS, "-n", "10", "--seed", str(2**128 - 1))
    assert result.exit_code == 0, result.output


def test_force_workers_allows_more_workers_than_cpus():
    workers = str(cpu_count() + 1)
    args = ("simulate", BOIN, "-s", SCENARIOS, "-n", "10", "--workers", workers)
    assert invoke(*args, "--force-workers").exit_code == 0
    assert_refused(invoke(*args, "--workers", "100000", "--force-workers"), "at most 256")


def test_trials_times_patients_is_bounded(tmp_path):
    path = boin_with(tmp_path, "max_patients = 36", "max_patients = 1000")
    result = invoke("simulate", path, "-s", SCENARIOS, "-n", "100000000")
    assert_refused(result, "give at most 10,000,000 trials", lines=1)


def test_recommend_and_calibrate_check_their_numbers(tmp_path):
    assert_refused(invoke("recommend", BOIN, "-o", "1NNN", "--seed", "-3"), "--seed -3", lines=1)
    result = invoke("calibrate", CRM, "-s", SCENARIOS, "-n", "2.5", "--seed", "x")
    assert_refused(result, "--trials '2.5'", "--seed 'x'", lines=2)


# --- output paths, checked before the run --------------------------------------------------------

SIMULATE = ("simulate", BOIN, "-s", SCENARIOS, "-n", "10")


@pytest.mark.parametrize("flag", ["--json", "--csv", "--plot", "--trials-csv"])
def test_simulate_checks_each_output_before_the_run(tmp_path, flag):
    good = tmp_path / "good.json"
    other = "--csv" if flag == "--json" else "--json"
    good_args = (other, good)
    missing = tmp_path / "no_such_dir" / "out.png"
    result = invoke(*SIMULATE, flag, missing, *good_args)
    assert_refused(result, f"{flag} {missing}: folder", lines=1)
    assert not result.stdout  # refused before the run: no tables printed
    assert not good.exists()
    result = invoke(*SIMULATE, flag, tmp_path, *good_args)
    assert_refused(result, f"{flag} {tmp_path}: is a folder, not a file", lines=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_plot_format_is_checked_before_the_run(tmp_path):
    for name in ("out.xyz", "x.txt"):
        result = invoke(*SIMULATE, "--plot", tmp_path / name, "--json", tmp_path / "r.json")
        assert_refused(result, "cannot write format", "png", lines=1)
    assert list(tmp_path.iterdir()) == []


def test_plot_formats_are_ones_matplotlib_writes():
    from matplotlib.figure import Figure

    from theradose.plots import PLOT_FORMATS

    assert set(PLOT_FORMATS) <= set(Figure().canvas.get_supported_filetypes())


def test_every_bad_output_reported_at_once_and_nothing_written(tmp_path):
    (tmp_path / "a.json").write_text("old")
    result = invoke(
        *SIMULATE,
        "--json", tmp_path / "a.json",
        "--csv", tmp_path / "nope" / "b.csv",
        "--plot", tmp_path / "c.bmp",
        "--trials-csv", tmp_path / "a.json",
    )  # fmt: skip
    assert_refused(result, "--csv", "--plot", "--trials-csv", lines=3)
    assert (tmp_path / "a.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_recommend_and_calibrate_check_outputs_first(tmp_path):
    missing = tmp_path / "none" / "r.json"
    assert_refused(invoke("recommend", BOIN, "-o", "1NNN", "--json", missing), str(missing))
    result = invoke("calibrate", CRM, "-s", SCENARIOS, "-n", "10", "--json", tmp_path)
    assert_refused(result, "is a folder", lines=1)


# --- outcome strings and patient files ---------------------------------------------------------


def test_an_outcome_level_of_thousands_of_digits():
    result = invoke("recommend", BOIN, "-o", "1" * 5000 + "NNN")
    errors = assert_refused(result, "is not a dose level (levels are 1..6)", lines=1)
    assert len(errors[0]) < 300


def test_an_outcome_string_too_long_for_any_trial():
    result = invoke("recommend", BOIN, "-o", " ".join(["1" + "N" * 1000] * 101))
    assert_refused(result, "more than 100,000 patients", lines=1)


def test_outcome_cohorts_of_another_size_get_a_note():
    result = invoke("recommend", BOIN, "-o", "1NN 1NNNN")
    assert result.exit_code == 0
    assert "2 cohorts of a size other than the design's cohort_size = 3" in result.stdout


def test_thousands_of_deviations_print_a_handful_of_lines(tmp_path):
    out = tmp_path / "r.json"
    result = invoke("recommend", BOIN, "-o", " ".join(["1NNN"] * 10_000), "--json", out)
    assert result.exit_code == 0
    assert result.stdout.count("Deviation") <= 6
    assert "9,994 more" in result.stdout
    import json

    assert len(json.loads(out.read_text())["deviations"]) == 9_999


def test_patient_file_level_of_thousands_of_digits(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("level,dlt,followup_days\n" + "1" * 5000 + ",0,30\n")
    result = invoke("recommend", BOIN, "-p", path, "--dlt-window-days", "30")
    errors = assert_refused(result, "is not a whole number", lines=1)
    assert len(errors[0]) < 300


def test_a_measured_gy_per_gbq_unlike_any_radiopharmaceutical_is_a_warning(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("level,dlt,followup_days,kidney_gy_per_gbq\n1,0,60,5000\n1,0,60,0.4\n")
    result = invoke("recommend", DOSIMETRY, "-p", path, "--dlt-window-days", "30")
    assert result.exit_code == 0, result.output
    assert "kidney_gy_per_gbq = 5000 (patient 1) is outside 0.001..1000 Gy/GBq" in result.stdout


# --- warnings for legal but implausible designs ------------------------------------------------


def test_a_cv_given_in_percent_and_an_implausible_median_are_warnings(tmp_path):
    text = Path(DOSIMETRY).read_text()
    text = text.replace("gy_per_gbq_cv = 0.37", "gy_per_gbq_cv = 35")
    text = text.replace("gy_per_gbq_median = 0.40", "gy_per_gbq_median = 5000")
    result = invoke("validate", design(tmp_path, text))
    assert result.exit_code == 0, result.output
    warnings = result.stderr.splitlines()
    assert any("gy_per_gbq_cv = 35" in w and "write 0.35" in w for w in warnings)
    assert any("gy_per_gbq_median = 5000" in w for w in warnings)
    assert all(w.startswith("warning: ") for w in warnings)


# --- help text ---------------------------------------------------------------------------------


def test_help_shows_brackets_and_the_designs_with_exact_values():
    result = invoke("simulate", "--help")
    assert "[[scenario]]" in result.stdout
    assert "CRM" in result.stdout and "EWOC" in result.stdout


# --- start-up: heavy modules only where used ------------------------------------------------------


def test_cli_and_validating_every_example_import_no_heavy_module():
    code = (
        "import sys, glob, theradose.cli\n"
        "from theradose.study import check_file\n"
        f"for path in sorted(glob.glob({str(DESIGNS / '*.toml')!r})):\n"
        "    assert check_file(path).ok, path\n"
        "heavy = ('matplotlib', 'pymc', 'arviz', 'scipy.stats', 'scipy.optimize')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_beta_tail_without_special_functions_is_scipy_stats():
    """The Beta(1, 1) posterior tail as a binomial sum (no scipy import at start-up) equals
    scipy.stats' to 1e-12, and gives the same elimination tables."""
    from scipy.stats import beta

    from theradose.methods.interval import min_dlts_with_prob_above, prob_above_target

    n = np.arange(0, 60)[:, None]
    y = np.minimum(np.arange(0, 60)[None, :], n)
    for target in (0.1, 0.2, 0.25, 0.3, 1 / 3):
        expected = beta.sf(target, y + 1, n - y + 1)
        np.testing.assert_allclose(prob_above_target(n, y, target), expected, rtol=0, atol=1e-12)
        for cutoff in (0.9, 0.95, 0.99):
            table = min_dlts_with_prob_above(200, target, cutoff)
            for m in range(3, 201):
                ys = np.arange(m + 1)
                hits = np.flatnonzero(beta.sf(target, ys + 1, m - ys + 1) > cutoff)
                assert table[m] == (hits[0] if hits.size else table[0]), (target, cutoff, m)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("simulat",), "No such command 'simulat'. Did you mean 'simulate'? (see 'theradose "),
        (("simulate", BOIN, "--bogus"), "No such option: --bogus (see 'theradose simulate --"),
        (("simulate",), "Missing argument"),
        (("table", BOIN, "--format", "xyz"), "'xyz' is not one of"),
    ],
)
def test_usage_errors_are_one_line_like_every_other_bad_input(args, fragment):
    result = CliRunner().invoke(app, [str(a) for a in args], prog_name="theradose")
    assert_refused(result, fragment, lines=1)
    assert "╭" not in result.output and "Usage:" not in result.output


def test_ctrl_c_where_a_command_has_no_handler_of_its_own_is_one_line_and_130(monkeypatch):
    import theradose.decision_record as decision_record

    def interrupted(*args, **kwargs):  # Ctrl-C during a long (MCMC) recommendation
        raise KeyboardInterrupt

    monkeypatch.setattr(decision_record, "recommend_recorded", interrupted)
    result = invoke("recommend", BOIN, "--outcomes", "1NNN")
    assert result.exit_code == 130
    assert result.stderr == "interrupted\n"
    assert "Traceback" not in result.output


def test_a_bug_in_a_command_surfaces_as_itself_and_an_abort_as_interrupted(monkeypatch):
    """An exception the CLI does not expect reaches the user as itself (a report can name
    it), not hidden behind an error of the CLI's own handling; click's Abort (a prompt's Ctrl-C)
    is one line and exit code 130."""
    import typer

    import theradose.decision_record as decision_record

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(decision_record, "recommend_recorded", broken)
    result = invoke("recommend", BOIN, "--outcomes", "1NNN")
    assert isinstance(result.exception, ZeroDivisionError)

    def aborted(*args, **kwargs):
        raise typer.Abort()

    monkeypatch.setattr(decision_record, "recommend_recorded", aborted)
    result = invoke("recommend", BOIN, "--outcomes", "1NNN")
    assert result.exit_code == 130
    assert result.stderr == "interrupted: nothing written\n"
