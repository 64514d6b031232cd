"""Interim recommendations for a design with [backfill] (BF-BOIN, Zhao et al. 2024): the levels
open for backfilling at a meeting, their room, and why the others are closed; time-to-event
designs (TITE-BOIN, TITE-CRM) with backfill patients, replayed against simulated trials."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from factories import example_source
from theradose import engine
from theradose.backfill import backfill_status, open_levels
from theradose.cli import app
from theradose.config import design_from_dict
from theradose.decision_record import read_record
from theradose.engine import run_trials
from theradose.recommendation import recommend_from_patients
from theradose.study import run_patient_recommendation, run_recommendation
from theradose.timing import Onset
from theradose.verification import verify_record
from theradose.virtual_patients import chunk_patients

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


# ---------------------------------------------------------------------------------------------
# Time-to-event designs: backfill patients' pending follow-up enters the design's data at their
# level from treatment, as in the engine


S1 = (0.05, 0.10, 0.20, 0.30, 0.50, 0.70)
TOXIC = (0.25, 0.35, 0.45, 0.55, 0.65, 0.75)
LATE = Onset("late", 3.0)


def tite_backfill_design(key: str = "tite-boin", window: float = 1.5, max_per_level: int = 3):
    source = {
        **example_source(key),
        "max_patients": 24,
        "timing": {"accrual_per_month": 2.0, "dlt_window_months": window},
        "backfill": {"enabled": True, "max_per_level": max_per_level},
    }
    return design_from_dict(source, f"bf-{key}.toml")


def simulated(design, dlt_prob, n_trials: int = 200, seed: int = 3):
    patients = chunk_patients(seed, 0, n_trials, design.n_places, True)
    return run_trials(design, np.asarray(dlt_prob), patients, LATE)


def trial_patients(state, trial: int, before: int | None = None):
    """One simulated trial's patients in order of arrival (the engine's places): level, DLT,
    arrival, DLT time, backfill flag — the first ``before`` of them when given."""
    treated = np.flatnonzero(state.patient_level[trial] >= 0)[:before]
    return (
        state.patient_level[trial][treated],
        state.patient_dlt[trial][treated],
        state.patient_arrival[trial][treated],
        state.patient_dlt_time[trial][treated],
        state.patient_backfill[trial][treated],
    )


@pytest.mark.parametrize("dlt_prob", [S1, TOXIC], ids=["S1", "toxic"])
def test_tite_replay_of_simulated_backfill_trials_agrees_decision_by_decision(dlt_prob):
    """Given a simulated TITE-BOIN trial with backfilling patient by patient, the recommendation
    recomputes the decision that opened every escalation cohort (suspensions included) from the
    data known at that arrival, backfill patients' partial follow-up included: none deviates.
    Without the backfill patients, or with them taken for escalation patients, the same
    decisions are not reproduced — they matter to the decisions, and the replay uses them."""
    design = tite_backfill_design()
    state = simulated(design, dlt_prob)
    assert state.patient_backfill.sum() > 150
    dropped = as_escalation = moved_found = 0
    for trial in range(state.n_trials):
        level, dlt, arrival, dlt_time, flags = trial_patients(state, trial)
        # follow-up = −arrival: each decision's time is an arrival, the engine's bit for bit
        rec = recommend_from_patients(design, level, dlt, -arrival, dlt_time, backfill=flags)
        assert rec.deviations == (), (trial, rec.deviations)
        if flags.any():
            keep = ~flags
            alone = recommend_from_patients(
                design, level[keep], dlt[keep], -arrival[keep], dlt_time[keep]
            )
            dropped += bool(alone.deviations)
            mixed = recommend_from_patients(design, level, dlt, -arrival, dlt_time)
            as_escalation += bool(mixed.deviations)
        openers = np.flatnonzero(~flags)[design.cohort_size :: design.cohort_size]
        if openers.size:
            moved = level.copy()
            moved[openers[0]] = (moved[openers[0]] + 1) % design.n_levels
            deviations = recommend_from_patients(
                design, moved, dlt, -arrival, dlt_time, backfill=flags
            ).deviations
            assert deviations and deviations[0].startswith(f"patient {openers[0] + 1} was")
            moved_found += 1
    assert dropped > 0 and as_escalation > 50 and moved_found > 150


def test_tite_backfill_advice_at_each_simulated_backfill_arrival(monkeypatch):
    """At each backfill patient's arrival in simulated TITE-BOIN trials, the recommendation on
    the data known then holds accrual and offers the levels open for backfilling: the patient's
    level is the highest of them whenever the design's current level is the engine's.

    The engine decides at arrivals and outcome events only, so at a backfill arrival it holds
    the decision made at the last of them; the recommendation decides at the arrival itself.
    With no event in between, only the pending patients' follow-up has grown, which lowers
    TITE-BOIN's imputed rate: the current level (the escalation's level, or the level it would
    de-escalate to) can only be higher now — more levels cleared, the patient's still open."""
    design = tite_backfill_design()
    seen_by_engine = {}  # (trial, arrival time) → the engine's current level for backfilling
    arrive = engine.Backfilling.arrive

    def noting(self, state, rows, when):
        current = np.minimum(state.level[rows], state.next_level[rows])
        for row, time, level in zip(rows.tolist(), when.tolist(), current.tolist(), strict=True):
            seen_by_engine[row, time] = level
        return arrive(self, state, rows, when)

    monkeypatch.setattr(engine.Backfilling, "arrive", noting)
    state = simulated(design, S1)  # 643 backfill patients: 641 the same, 2 later
    same = later = 0
    for trial, place in zip(*np.nonzero(state.patient_backfill), strict=True):
        when = state.patient_arrival[trial, place]
        level, dlt, arrival, dlt_time, flags = trial_patients(state, trial, before=place)
        seen = dlt & (arrival + dlt_time <= when)  # the DLTs known at the arrival
        rec = recommend_from_patients(
            design, level, seen, when - arrival, np.where(seen, dlt_time, np.nan), backfill=flags
        )
        advice, given = rec.backfill, int(state.patient_level[trial, place])
        assert rec.suspended and advice.when == "now"
        if advice.current == seen_by_engine[trial, when]:
            assert max(advice.open_levels) == given
            same += 1
        else:
            assert advice.current > seen_by_engine[trial, when]
            assert given in advice.open_levels
            later += 1
    assert same > 600 and later < same / 50


def test_tite_boin_basis_counts_a_pending_backfill_patient_by_hand():
    """TITE-BOIN (Yuan et al. 2018) at the current level with backfill patients there, one
    pending: n, m and STFT include them (window 3 months; φ = 0.3, prior π̂ = (y + φ/2)/(n − m +
    1)). Cohort 3 at level 3 saw 2 DLTs in 3 and the trial came back to level 2, where two
    backfill patients had been treated meanwhile."""
    design = tite_backfill_design(window=3.0)
    level = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 2, 2, 2, 2]) - 1
    dlt = np.zeros(13, dtype=bool)
    dlt[[6, 7]] = True
    followup = np.array(
        [11, 10.75, 10.625, 7.5, 7.25, 7.125, 4, 3.875, 3.75, 3.25, 1, 0.5, 0.25]
    )
    dlt_time = np.where(dlt, [0.0] * 6 + [0.5, 1.0] + [0.0] * 5, np.nan)
    backfill = np.zeros(13, dtype=bool)
    backfill[[9, 10]] = True
    rec = recommend_from_patients(design, level, dlt, followup, dlt_time, backfill=backfill)
    assert rec.deviations == ()
    # at level 2: patients 4-6 and 10 complete, 11 (backfill), 12 and 13 pending
    n, y, m, stft = 7, 0, 3, (1 + 0.5 + 0.25) / 3
    pi_hat = (y + 0.15) / (n - m + 1)
    p_tilde = (y + (m - stft) * pi_hat / (1 - pi_hat)) / n
    basis = rec.basis
    assert (basis["level"], basis["n"], basis["y"], basis["m"]) == (1, n, y, m)
    assert basis["stft"] == pytest.approx(stft, rel=1e-12)
    assert basis["p_tilde"] == pytest.approx(p_tilde, rel=1e-12)
    assert p_tilde <= design.method.lambdas[0] and rec.next_level == 2  # escalate to level 3
    assert not rec.suspended  # 3 of 7 pending: not more than half
    assert rec.n == (3, 7, 3, 0, 0, 0) and rec.y == (0, 0, 2, 0, 0, 0)
    assert rec.pending_patients == (11, 12, 13)
    assert rec.backfill.treated == (0, 2, 0, 0, 0, 0) and rec.backfill.pending == (0, 1, 0, 0, 0, 0)
    assert any("2 backfill patients are not escalation cohorts" in note for note in rec.notes)
    # Without the backfill patients the level holds n = 5 with m = 2: another basis.
    alone = recommend_from_patients(
        design, level[~backfill], dlt[~backfill], followup[~backfill], dlt_time[~backfill]
    )
    assert (alone.basis["n"], alone.basis["m"]) == (5, 2)


def test_tite_crm_model_uses_backfill_patients_as_any_patient():
    """TITE-CRM (Cheung & Chappell 2000): the weighted likelihood takes every patient at their
    level with their follow-up, so marking patients as backfill changes the posterior not at all
    (the flags decide only the escalation's cohorts, its current level and max_patients)."""
    design = tite_backfill_design("tite-crm", window=3.0)
    level = np.array([0, 0, 1, 1, 2, 0, 1, 2, 2])
    dlt = np.array([False, False, False, True, False, False, False, False, False])
    followup = np.array([6, 5.5, 5, 4.5, 2.5, 2.25, 2, 1, 0.5])
    dlt_time = np.where(dlt, 1.0, np.nan)
    flags = np.zeros(9, dtype=bool)
    flags[[5, 6]] = True
    marked = recommend_from_patients(design, level, dlt, followup, dlt_time, backfill=flags)
    plain = recommend_from_patients(design, level, dlt, followup, dlt_time)
    assert marked.model_summary == plain.model_summary and marked.model_summary
    assert marked.next_level == plain.next_level and marked.mtd == plain.mtd
    assert marked.n == plain.n and marked.pending == plain.pending
    assert any("2 backfill patients" in note for note in marked.notes)


def test_tite_design_takes_a_patient_file_with_backfill_patients(tmp_path):
    design_path = tmp_path / "tite_boin_backfill.toml"
    text = (DESIGNS / "tite_boin.toml").read_text(encoding="utf-8")
    design_path.write_text(text + "\n[backfill]\nenabled = true\nmax_per_level = 4\n")
    trial = HEADER + (
        "1,0,300,,0\n" * 3 + "2,0,200,,0\n" * 3 + "3,0,60,,0\n3,0,50,,0\n3,0,40,,0\n"
        + "2,0,30,,1\n"
    )
    out = tmp_path / "out.json"
    result = invoke("recommend", design_path, "--patients", write(tmp_path, trial), "--json", out)
    assert result.exit_code == 0, result.output
    answer = json.loads(out.read_text())
    assert answer["suspended"] is True  # 3 of 3 pending at level 3
    assert answer["backfill"]["when"] == "now" and answer["backfill"]["treated"][1] == 1
    assert answer["levels"][1]["n"] == 4
