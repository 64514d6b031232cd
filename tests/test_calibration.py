"""CRM skeleton calibration (Lee & Cheung 2009): candidates on the same patients."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factories import scenario
from theradose.calibration import CalibrationError, calibrate_skeleton, parse_grid
from theradose.cli import app
from theradose.config import load_design
from theradose.results import OperatingCharacteristics
from theradose.simulation import simulate

DESIGNS = Path(__file__).resolve().parents[1] / "designs"
CRM = DESIGNS / "crm.toml"
SCENARIOS = [
    scenario(0.05, 0.1, 0.2, 0.3, 0.5, 0.7, name="S1"),
    scenario(0.1, 0.15, 0.3, 0.45, 0.6, 0.75, name="S4"),
]


def test_parse_grid():
    assert parse_grid("0.02:0.20:0.01") == pytest.approx([0.02 + 0.01 * i for i in range(19)])
    assert parse_grid("0.04,0.06") == [0.04, 0.06]
    with pytest.raises(CalibrationError, match="start:stop:step"):
        parse_grid("0.2:0.1:0.01")


def test_each_candidate_is_the_design_with_that_skeleton_on_the_same_patients():
    design = load_design(CRM)
    result = calibrate_skeleton(design, SCENARIOS, [0.03, 0.05, 0.08], n_trials=600, seed=4)
    assert [c.halfwidth for c in result.candidates] == [0.03, 0.05, 0.08]
    # halfwidth 0.05, prior MTD 3 is the design file's own skeleton: identical figures alone.
    alone = simulate([design], SCENARIOS, 600, seed=4)[0]
    pcs_alone = [OperatingCharacteristics.from_simulations(s).values["pcs"] for s in alone]
    assert result.candidates[1].pcs == pytest.approx(pcs_alone, abs=1e-12)
    assert result.candidates[1].skeleton == pytest.approx(design.method.model.skeleton)
    assert result.best.mean_pcs == max(c.mean_pcs for c in result.candidates)


def test_degenerate_candidates_are_skipped_with_the_reason():
    design = load_design(CRM)
    result = calibrate_skeleton(design, SCENARIOS[:1], [0.05, 0.29], [3], n_trials=100)
    assert [c.halfwidth for c in result.candidates] == [0.05]
    assert len(result.skipped) == 1 and "0.29" in result.skipped[0]


def test_cli_calibrate_writes_json(tmp_path):
    out = tmp_path / "cal.json"
    result = CliRunner().invoke(
        app,
        [
            "calibrate",
            str(CRM),
            "--scenarios",
            str(DESIGNS / "scenarios.toml"),
            "--halfwidth",
            "0.04:0.06:0.01",
            "--trials",
            "200",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Best: halfwidth" in result.stdout
    data = json.loads(out.read_text())
    assert [c["halfwidth"] for c in data["candidates"]] == [0.04, 0.05, 0.06]
    assert sum(c["best"] for c in data["candidates"]) == 1
    assert data["n_trials"] == 200 and data["seed"] == 1 and data["version"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--halfwidth", "abc"], "expected start:stop:step"),
        (["--prior-mtd", "x"], "expected levels"),
        (["--prior-mtd", "9"], "outside 1..6"),
    ],
)
def test_cli_calibrate_bad_input(args, message):
    result = CliRunner().invoke(
        app, ["calibrate", str(CRM), "--scenarios", str(DESIGNS / "scenarios.toml"), *args]
    )
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_cli_calibrate_needs_a_crm_design():
    result = CliRunner().invoke(
        app,
        ["calibrate", str(DESIGNS / "boin.toml"), "--scenarios", str(DESIGNS / "scenarios.toml")],
    )
    assert result.exit_code == 2 and 'is for method = "crm"' in result.stderr
