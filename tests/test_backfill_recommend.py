"""Interim recommendations for a design with [backfill] (BF-BOIN, Zhao et al. 2024): the levels
open for backfilling at a meeting, their room, and why the others are closed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from theradose.backfill import backfill_status, open_levels
from theradose.cli import app
from theradose.decision_record import read_record
from theradose.study import run_patient_recommendation, run_recommendation
from theradose.verification import verify_record

DESIGNS = Path(__file__).resolve().parents[1] / "designs"
BACKFILL = DESIGNS / "boin_backfill.toml"  # BOIN target 0.3, cohorts of 3, 9 backfill per level
TIMED = DESIGNS / "boin_timed.toml"  # the same BOIN without [backfill]
runner = CliRunner()

HEADER = "level,dlt,followup_days,dlt_day,backfill\n"
# Levels 1 and 2 cleared (3 patients each, no DLT, windows of 91.3 days closed); the cohort at
# level 3 pending (20 days); two backfill patients at level 2, both with a DLT seen.
INTERIM = HEADER + (
    "1,0,200,,0\n" * 3 + "2,0,110,,0\n" * 3 + "3,0,20,,0\n" * 3 + "2,1,15,10,1\n2,1,14,12,true\n"
)


def write(tmp_path: Path, text: str, name: str = "trial.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_hand_checked_interim(tmp_path):
    # Hand check (BOIN, φ = 0.3: λd = 0.358). Level 2 has 5 patients with known outcomes
    # (3 escalation, 2 backfill) and 2 DLTs: 2/5 = 0.4 ≥ λd, de-escalate: closed. Level 1: 0/3,
    # open, no backfill patient yet: room 9. Levels 3-6: at or above the pending cohort's level.
    trial = write(tmp_path, INTERIM)
    out = tmp_path / "out.json"
    result = invoke("recommend", BACKFILL, "--patients", trial, "--json", out)
    assert result.exit_code == 0, result.output
    assert "Backfill now: open at level 1 (1.85 GBq): 9 more" in result.output
    assert "closed: level 2: its known outcomes call for de-escalation" in result.output
    answer = json.loads(out.read_text())
    assert answer["wait"] is True and answer["pending_patients"] == [7, 8, 9]
    assert [entry["n"] for entry in answer["levels"]] == [3, 5, 3, 0, 0, 0]
    assert [entry["dlt"] for entry in answer["levels"]] == [0, 2, 0, 0, 0, 0]
    not_cleared = "not yet cleared (at or above the current level 3)"
    assert answer["backfill"] == {
        "when": "now",
        "max_per_level": 9,
        "current_level": 3,
        "open_levels": [1],
        "room": {"1": 9},
        "closed": {
            "2": "its known outcomes call for de-escalation (2 DLTs in 5 patients with known "
            "outcomes)",
            "3": not_cleared,
            "4": not_cleared,
            "5": not_cleared,
            "6": not_cleared,
        },
        "treated": [0, 2, 0, 0, 0, 0],
        "pending": [0, 0, 0, 0, 0, 0],
        "note": None,
    }
    assert answer["record"]["decision"]["backfill"] == answer["backfill"]
    assert [p["backfill"] for p in answer["patients"]] == [False] * 9 + [True, True]


def test_open_levels_are_the_engines():
    # The answer's open levels are the engine's open_levels on the same state.
    import io

    from theradose.config import load_design
    from theradose.patients import read_patients
    from theradose.recommendation import _backfill_replay
    from theradose.timing import DAYS_PER_MONTH

    design = load_design(BACKFILL)
    records = read_patients(io.StringIO(INTERIM), design.n_levels)
    window = design.timing.dlt_window_months
    followup = records.followup_days / DAYS_PER_MONTH
    onset = np.where(np.isnan(records.dlt_day), records.followup_days, records.dlt_day)
    event = np.where(records.dlt, onset / DAYS_PER_MONTH, window)
    state, _, waiting = _backfill_replay(
        design, records.level, records.dlt, -followup, event, records.backfill, None, window
    )
    assert waiting
    rows, now = np.array([0]), np.zeros(1)
    assert open_levels(design.backfill, state, rows, now, window).tolist() == [
        [True, False, False, False, False, False]
    ]
    status = backfill_status(design.backfill, state, rows, now, window)
    assert status.unsafe[0].tolist()[:2] == [False, True]


def test_room_and_next_cohort(tmp_path):
    # Everyone complete: levels 1-3 cleared with 0/3, the next cohort escalates to 4; four
    # backfill patients at level 3 (one with a DLT: 1/7 < λd) → room 5 there; level 1 and 2
    # open with room 9.
    text = HEADER + (
        "1,0,400,,0\n" * 3 + "2,0,300,,0\n" * 3 + "3,0,200,,0\n" * 3
        + "3,0,150,,1\n" * 3 + "3,1,140,30,1\n"
    )
    result = run_patient_recommendation(BACKFILL, write(tmp_path, text))
    rec = result.recommendation
    assert rec.next_level == 3 and not rec.wait
    assert rec.n[:4] == (3, 3, 7, 0) and rec.y[:4] == (0, 0, 1, 0)
    advice = rec.backfill
    assert advice.when == "next_cohort" and advice.current == 3
    assert advice.open_levels == (0, 1, 2)
    assert advice.room == {0: 9, 1: 9, 2: 5}
    assert result.cohorts == ((0, (False,) * 3), (1, (False,) * 3), (2, (False,) * 3))


def test_a_backfill_outcome_not_yet_known_is_not_counted(tmp_path):
    # A backfill patient within the window without a DLT: treated (room falls) but not counted.
    text = HEADER + "1,0,200,,0\n" * 3 + "2,0,20,,0\n" * 3 + "1,0,10,,1\n"
    rec = run_patient_recommendation(BACKFILL, write(tmp_path, text)).recommendation
    assert rec.wait and rec.pending_patients == (4, 5, 6)
    assert rec.n[:2] == (3, 3)
    assert rec.backfill.room == {0: 8} and rec.backfill.pending[0] == 1


def test_record_round_trip(tmp_path):
    trial = write(tmp_path, INTERIM)
    record_path = tmp_path / "record.json"
    result = invoke("recommend", BACKFILL, "--patients", trial, "--record", record_path)
    assert result.exit_code == 0, result.output
    record = read_record(record_path)
    assert record["decision"]["backfill"]["open_levels"] == [1]
    assert verify_record(record).ok
    edited = json.loads(record_path.read_text())
    edited["decision"]["backfill"]["room"]["1"] = 8
    from theradose.decision_record import record_hash

    edited["record_sha256"] = record_hash(edited, parsed=True)
    check = verify_record(edited)
    assert not check.ok
    assert any("backfill.room.1" in line for line in check.differences)


def test_design_without_backfill_is_unchanged(tmp_path):
    text = INTERIM.replace(",backfill\n", "\n").replace(",0\n", "\n")
    text = "".join(line + "\n" for line in text.splitlines() if not line.endswith(("1", "true")))
    out = tmp_path / "out.json"
    result = invoke("recommend", TIMED, "--patients", write(tmp_path, text), "--json", out)
    assert result.exit_code == 0, result.output
    assert "Backfill" not in result.output
    answer = json.loads(out.read_text())
    assert sorted(answer) == sorted(
        "basis complete_in_days design design_path deviations engine levels mcmc method mtd "
        "mtd_activity mtd_on_complete_data next_activity next_level notes outcomes patients "
        "patients_path pending_patients record review_in_days review_on rule_states "
        "start_up_wait stop stop_reason stop_reason_text suspended target version wait "
        "warnings".split()
    )
    assert "backfill" not in answer["record"]["decision"]
    assert sorted(answer["patients"][0]) == [
        "dlt", "dlt_day", "followup_days", "level", "patient", "pending"
    ]


def test_backfill_patients_need_a_backfill_design(tmp_path):
    result = invoke("recommend", TIMED, "--patients", write(tmp_path, INTERIM))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "patients 10 and 11" not in lines[0]  # listed as "patients 10, 11"
    assert "column 'backfill' marks patients 10, 11 as backfill patients" in lines[0]
    assert "has no [backfill]" in lines[0]


def test_a_zero_backfill_column_is_accepted_anywhere(tmp_path):
    text = HEADER + "1,0,200,,0\n" * 3
    result = invoke("recommend", TIMED, "--patients", write(tmp_path, text))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("bad", ["2", "yes"])
def test_a_bad_backfill_flag_is_named(tmp_path, bad):
    trial = write(tmp_path, HEADER + f"1,0,9,,{bad}\n")
    result = invoke("recommend", BACKFILL, "--patients", trial)
    assert result.exit_code == 2
    assert "column 'backfill'" in result.output


def test_outcome_string_says_backfill_needs_the_patient_file(tmp_path):
    result = run_recommendation(BACKFILL, "1NNN 2NNN")
    assert result.recommendation.backfill.when == "needs_patients"
    out = tmp_path / "out.json"
    cli = invoke("recommend", BACKFILL, "--outcomes", "1NNN 2NNN", "--json", out)
    assert cli.exit_code == 0, cli.output
    assert "Backfill: backfilling needs the patient file (--patients)" in cli.output
    answer = json.loads(out.read_text())
    assert answer["next_level"] == 3
    assert answer["backfill"]["open_levels"] is None
    assert "needs the patient file" in answer["backfill"]["note"]
