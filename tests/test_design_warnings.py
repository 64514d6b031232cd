"""Sense checks of designs (:mod:`theradose.sense`): warnings that leave a design valid.

Each warning fires on a design that has the problem and on none of the example designs; the
commands ``validate``, ``table`` and ``simulate`` show it (text and JSON) and exit 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from theradose.cli import app
from theradose.config import load_design
from theradose.report import design_header_lines
from theradose.scenario import Scenario
from theradose.sense import design_warnings
from theradose.study import check_file, run_study

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
runner = CliRunner()

# designs/scenarios.toml's S3: the top level is the MTD, every level below it far below target.
TOP_IS_MTD = Scenario("top is MTD", (0.01, 0.02, 0.03, 0.05, 0.10, 0.30))


def edited(tmp_path: Path, example: str, name: str, replacements: dict[str, str]) -> str:
    """An example design file with lines replaced (each old text must occur once)."""
    text = (DESIGNS / example).read_text()
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# A BLRM whose wide prior on log α puts P(overdose) at level 1 above the bound.
WIDE_BLRM = {"prior_sd = [1.0, 0.7]": "prior_sd = [3.0, 1.0]"}
# EWOC with the ewoc package's fixed bound and "nearest" rounding: the top level is the end of
# the MTD's range, so 0.25 of posterior mass is never below its midpoint with the level below.
FIXED_EWOC = {
    "feasibility_step = 0.05 ": "feasibility_step = 0.0  ",
    'rounding = "down" ': 'rounding = "nearest"',
}
WIDER_RANGE = {"mtd_prior = [1, 1] ": "mtd_range = [1.85, 14.8]\nmtd_prior = [1, 1] "}


@pytest.fixture
def wide_blrm(tmp_path) -> str:
    return edited(tmp_path, "blrm.toml", "wide_blrm.toml", WIDE_BLRM)


@pytest.fixture
def fixed_ewoc(tmp_path) -> str:
    return edited(tmp_path, "ewoc.toml", "fixed_ewoc.toml", FIXED_EWOC)


@pytest.fixture
def fixed_ewoc_wider(tmp_path) -> str:
    return edited(tmp_path, "ewoc.toml", "fixed_ewoc_wider.toml", FIXED_EWOC | WIDER_RANGE)


# --- no example design warns ----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DESIGNS.glob("*.toml")), ids=lambda p: p.name)
def test_no_example_design_warns(path):
    check = check_file(path)
    assert check.ok or check.kind != "design", check.errors
    assert check.warnings == ()


# --- BLRM: the overdose bound at the start level --------------------------------------------------


def test_blrm_prior_above_the_bound_at_the_start_level(wide_blrm):
    (warning,) = design_warnings(load_design(wide_blrm))
    assert warning.startswith(f"{wide_blrm}: [blrm] prior P(overdose) = P(DLT rate ≥ 0.33) at ")
    assert "the start level 1 (1.85 GBq) is 0.27 ≥ max_overdose_prob 0.25" in warning
    assert "one DLT among the first 3 patients stops the trial" in warning
    assert "\n" not in warning


def test_blrm_one_dlt_stops_the_trial_though_the_prior_is_below_the_bound(tmp_path):
    path = edited(
        tmp_path,
        "blrm.toml",
        "one_dlt.toml",
        {
            "prior_mean = [-0.8473, 0.0]": "prior_mean = [-1.5, 0.0]",
            "prior_sd = [1.0, 0.7]": "prior_sd = [2.0, 1.0]",
        },
    )
    design = load_design(path)
    assert design.method.prior_rows()[0]["prior_p_overdose"] == pytest.approx(0.139, abs=0.005)
    (warning,) = design_warnings(design)
    assert "[blrm] one DLT among the first 3 patients at the start level 1 (1.85 GBq) leaves " in (
        warning
    )
    assert "(prior P(overdose) there 0.14), so it stops the trial with no MTD" in warning


def test_blrm_start_above_the_bound_from_a_higher_level(tmp_path):
    path = edited(tmp_path, "blrm.toml", "start3.toml", {"start_level = 1": "start_level = 3"})
    (warning,) = design_warnings(load_design(path))
    assert "at the start level 3 (5.55 GBq) is 0.31 ≥ max_overdose_prob 0.25" in warning
    assert "only because the design starts there" in warning  # one DLT leaves lower levels
    assert warning.endswith("or start lower")


def test_a_wider_blrm_prior_raises_a_small_prior_overdose_probability(wide_blrm):
    """Why the advice is not "widen prior_sd": a P(overdose) below 0.5 moves towards 0.5."""
    narrow = load_design(DESIGNS / "blrm.toml").method.prior_rows()[0]["prior_p_overdose"]
    wide = load_design(wide_blrm).method.prior_rows()[0]["prior_p_overdose"]
    assert narrow == pytest.approx(0.094, abs=0.005)
    assert wide == pytest.approx(0.272, abs=0.005)


# --- EWOC: the top level and mtd_range ------------------------------------------------------------


def test_ewoc_top_level_unreachable_warns_and_suggests_a_range(fixed_ewoc):
    (warning,) = design_warnings(load_design(fixed_ewoc))
    assert warning.startswith(f"{fixed_ewoc}: [ewoc] the top level 6 (11.1 GBq) is never given")
    assert "none of the 30 patients has a DLT (the trial then goes no higher than level 5)" in (
        warning
    )
    assert "the MTD's range 1.85 to 11.1 GBq" in warning
    assert warning.endswith("widen [ewoc] mtd_range, e.g. mtd_range = [1.85, 12.95]")


def test_ewoc_wider_mtd_range_reaches_the_top_level(fixed_ewoc, fixed_ewoc_wider):
    narrow, wider = load_design(fixed_ewoc), load_design(fixed_ewoc_wider)
    assert wider.method.mtd_range == (1.85, 14.8)
    assert design_warnings(wider) == []
    study = run_study([narrow, wider], [TOP_IS_MTD], n_trials=300, seed=3)
    at_top = [oc.values["patients_mean"][-1] for (oc,) in study.oc]
    assert at_top[0] == 0.0  # measured 0.00 patients (2,000 trials under S3)
    assert at_top[1] > 5.0  # measured 9.46 patients, 75.5% selecting level 6 (2,000 trials)


def test_ewoc_without_mtd_range_keeps_the_default_range_and_results():
    design = load_design(DESIGNS / "ewoc.toml")
    assert design.method.mtd_limits is None
    assert design.method.mtd_range == (1.85, 11.1 + (11.1 - 9.25))


def test_ewoc_explicit_default_range_gives_the_same_posteriors(tmp_path):
    """The range is threaded into the model: spelling out the default changes nothing."""
    from theradose.state import TrialState

    default = load_design(DESIGNS / "ewoc.toml")
    low, high = default.method.mtd_range
    spelled = load_design(
        edited(
            tmp_path,
            "ewoc.toml",
            "spelled.toml",
            {"mtd_prior = [1, 1] ": f"mtd_range = [{low!r}, {high!r}]\nmtd_prior = [1, 1] "},
        )
    )
    state = TrialState.start(2, 6, 0)
    state.n[:] = [[3, 3, 3, 0, 0, 0], [3, 3, 6, 3, 0, 0]]
    state.y[:] = [[0, 0, 1, 0, 0, 0], [0, 0, 1, 2, 0, 0]]
    a = default.method.level_summary(state)
    b = spelled.method.level_summary(state)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_ewoc_range_below_level_1_moves_rho0_off_level_1(tmp_path):
    path = edited(
        tmp_path,
        "ewoc.toml",
        "low.toml",
        {"mtd_prior = [1, 1] ": "mtd_range = [1.0, 14.8]\nmtd_prior = [1, 1] "},
    )
    from theradose.state import TrialState

    method = load_design(path).method
    assert method.scaled_doses[0] > 0
    state = TrialState.start(1, 6, 0)
    # With the range starting at level 1, P(DLT rate at level 1 > target) is 0 by construction.
    assert method.prob_above_target(state, 0)[0] > 0


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("[14.8, 1.85]", "mtd_range: must be increasing, [low, high], got [14.8, 1.85]"),
        ("[0, 14.8]", "mtd_range: every value must be"),
        ("[2.0, 14.8]", "must start at or below level 1's activity (1.85)"),
        ("[1.85, 10.0]", "must reach the top level's activity (11.1), got [1.85, 10]"),
        ("[1.85, 11.1]", 'must end above the top level\'s activity (11.1) with rounding = "down"'),
        ("[1.85]", "mtd_range: must be an array of two numbers"),
    ],
)
def test_ewoc_mtd_range_errors(tmp_path, value, fragment):
    path = edited(
        tmp_path,
        "ewoc.toml",
        "bad.toml",
        {"mtd_prior = [1, 1] ": f"mtd_range = {value}\nmtd_prior = [1, 1] "},
    )
    check = check_file(path)
    assert not check.ok
    assert any(fragment in error and "[ewoc]" in error for error in check.errors), check.errors


def test_ewoc_nearest_range_may_end_at_the_top_level(fixed_ewoc, tmp_path):
    path = edited(
        tmp_path,
        "ewoc.toml",
        "nearest.toml",
        FIXED_EWOC | {"mtd_prior = [1, 1] ": "mtd_range = [1.85, 11.1]\nmtd_prior = [1, 1] "},
    )
    assert check_file(path).ok
    assert load_design(path).method.mtd_range == load_design(fixed_ewoc).method.mtd_range


# --- CRM: a skeleton that does not increase is an error, not a warning ----------------------------


@pytest.mark.parametrize("model", ["empiric", "logistic"])
def test_crm_skeleton_not_increasing_is_an_error(tmp_path, model):
    path = tmp_path / "crm.toml"
    path.write_text(
        'name = "CRM"\nmethod = "crm"\ntarget = 0.25\nlevels = 4\nmax_patients = 12\n'
        f'[crm]\nmodel = "{model}"\nskeleton = [0.05, 0.15, 0.10, 0.30]\n'
    )
    check = check_file(path)
    assert not check.ok
    assert any("skeleton: must be strictly increasing" in e for e in check.errors), check.errors


# --- stopping rules that cannot fire are not printed ----------------------------------------------


def test_boin_header_leaves_out_a_max_at_dose_beyond_max_patients(tmp_path):
    path = edited(
        tmp_path, "boin.toml", "boin30.toml", {"max_patients = 36 ": "max_patients = 30 "}
    )
    lines = design_header_lines(load_design(path))
    assert not any("Stop when 100 patients" in line for line in lines)
    assert "Stop when 30 patients have been treated." in lines
    fires = edited(tmp_path, "boin.toml", "boin12.toml", {"max_at_dose = 100": "max_at_dose = 12"})
    assert any(
        "Stop when 12 patients have been treated at" in line
        for line in design_header_lines(load_design(fires))
    )
    result = runner.invoke(app, ["table", path, "--format", "markdown"])
    assert result.exit_code == 0
    assert "Stop when 100" not in result.stdout


# --- the commands ---------------------------------------------------------------------------------


def test_validate_prints_warnings_and_exits_0(wide_blrm, fixed_ewoc, fixed_ewoc_wider):
    result = runner.invoke(app, ["validate", wide_blrm, fixed_ewoc, fixed_ewoc_wider])
    assert result.exit_code == 0, result.output
    assert f"OK {wide_blrm}" in result.stdout
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith(f"warning: {wide_blrm}: [blrm] prior P(overdose)")
    assert warnings[1].startswith(f"warning: {fixed_ewoc}: [ewoc] the top level 6")


def test_validate_example_designs_prints_no_warning():
    files = [str(p) for p in sorted(DESIGNS.glob("*.toml")) if p.name != "late_onset.toml"]
    result = runner.invoke(app, ["validate", *files])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


@pytest.mark.parametrize("fmt", ["rich", "markdown", "csv", "json"])
def test_table_warns_on_stderr_and_keeps_its_output(fixed_ewoc, fmt):
    result = runner.invoke(app, ["table", fixed_ewoc, "--format", fmt])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"warning: {fixed_ewoc}: [ewoc] the top level 6")
    assert "warning" not in result.stdout
    if fmt == "json":
        assert isinstance(json.loads(result.stdout), list)  # the contract: the bare rows


def test_simulate_shows_warnings_in_text_and_json(wide_blrm, fixed_ewoc, tmp_path):
    scenarios = tmp_path / "s.toml"
    scenarios.write_text(
        '[[scenario]]\nname = "S3"\ndlt_prob = [0.01, 0.02, 0.03, 0.05, 0.1, 0.3]\n'
    )
    out = tmp_path / "r.json"
    result = runner.invoke(
        app,
        ["simulate", fixed_ewoc, wide_blrm, "-s", str(scenarios), "-n", "20", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "Warnings" in result.stdout
    data = json.loads(out.read_text())
    assert len(data["warnings"]) == 2
    assert data["warnings"][0].startswith(f"{fixed_ewoc}: [ewoc] the top level 6")
    assert data["warnings"][1].startswith(f"{wide_blrm}: [blrm] prior P(overdose)")


def test_simulate_json_has_no_warnings_for_an_example_design(tmp_path):
    out = tmp_path / "r.json"
    result = runner.invoke(
        app,
        [
            "simulate",
            str(DESIGNS / "boin.toml"),
            "-s",
            str(DESIGNS / "scenarios.toml"),
            "-n",
            "20",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Warnings" not in result.stdout
    assert json.loads(out.read_text())["warnings"] == []


def test_a_design_without_dosimetry_under_dosimetry_driven_scenarios_is_warned_of_one_cycle():
    """Organ and tumour doses of a design without [dosimetry] are one cycle's: said once per
    design, naming the scenarios; not said for a design with [dosimetry] or under scenarios
    that give the probabilities per level."""
    from theradose.study import run_study

    root = Path(__file__).resolve().parents[1] / "designs"
    study = run_study(
        [root / "tite_boin12_psma.toml", root / "boin12_dotatate.toml"],
        root / "psma_tumour_scenarios.toml",
        n_trials=20,
        seed=1,
    )
    one_cycle = [w for w in study.warnings if "ONE cycle" in w]
    assert len(one_cycle) == 1
    assert one_cycle[0].startswith(str(root / "tite_boin12_psma.toml"))
    assert "'PSMA, tumour-dose response'" in one_cycle[0]
    plain = run_study([root / "tite_boin12_psma.toml"], root / "efficacy_scenarios.toml",
                      n_trials=20, seed=1)  # fmt: skip
    assert not [w for w in plain.warnings if "ONE cycle" in w]
