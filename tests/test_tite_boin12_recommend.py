"""TITE-BOIN12 (Zhou et al. 2022, Stat Med 41:1918–1931) from a patient file: responses with the
day each was seen, who is pending for the DLT and for the response, and the decision now — the
engine's own, decision by decision, on simulated trials; the paper's Table 2 by hand; bad input
in one line; the JSON, the decision record and its verification; pathways."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from test_tite_boin12 import BOIN12, NOW, SCENARIOS, TABLE_2, TAU_E, TAU_T, _by_hand, _simulate
from test_tite_boin12 import tite_boin12 as tite_boin12_design
from theradose import engine
from theradose.cli import app
from theradose.config import design_from_dict
from theradose.decision_record import read_record, record_hash
from theradose.outcomes import format_outcomes
from theradose.pathways import pathways_from_data
from theradose.patients import PatientFileError, read_patients
from theradose.recommendation import recommend, recommend_from_patients
from theradose.state import StopReason
from theradose.study import run_patient_recommendation
from theradose.timing import DAYS_PER_MONTH
from theradose.verification import verify_record

DESIGNS = Path(__file__).resolve().parents[1] / "designs"
PSMA = DESIGNS / "tite_boin12_psma.toml"  # DLT window 1.5 months, efficacy window 3
HEADER = "level,dlt,followup_days,dlt_day,response,response_day\n"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write(tmp_path, text: str, name: str = "patients.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def patient_file(state, trial: int, when: float, places: int, after: float = 1e-6) -> str:
    """A simulated trial's first ``places`` patients as a patient file at ``after`` days past
    the engine's time ``when`` (months): the DLTs and responses seen by then, with their days."""
    rows = [HEADER.rstrip("\n")]
    for i in range(places):
        arrival = state.patient_arrival[trial, i]
        dlt_time = state.patient_dlt_time[trial, i]
        response_time = state.patient_response_time[trial, i]
        dlt = bool(state.patient_dlt[trial, i] and arrival + dlt_time <= when)
        response = bool(state.patient_response[trial, i] and arrival + response_time <= when)
        followup = float((when - arrival) * DAYS_PER_MONTH + after)
        dlt_day = repr(float(dlt_time * DAYS_PER_MONTH)) if dlt else ""
        response_day = repr(float(response_time * DAYS_PER_MONTH)) if response else ""
        level = int(state.patient_level[trial, i]) + 1
        rows.append(f"{level},{int(dlt)},{followup!r},{dlt_day},{int(response)},{response_day}")
    return "\n".join(rows) + "\n"


# -- (1) the engine's decisions, one by one ---------------------------------------------------


def test_every_engine_decision_is_recommended_from_the_patient_file(monkeypatch):
    """Each decision the engine makes in simulated TITE-BOIN12 trials (at a cohort's first
    arrival, and again at each outcome while accrual is held) is recorded with the engine's own
    state; the patient file written from the trial's patients as they stood then (DLTs and
    responses seen by then, with their days; a millionth of a day later, so that outcomes seen
    exactly then are in the file as seen) gives the same answer through the whole reading path:
    accrual held, the same stop, or the same next level. Both holding rules occur: some holds
    are for the responses alone."""
    design = tite_boin12_design()
    decisions = {}  # (trial, engine time, places taken) → (held, active, stop reason, next level)
    suspended = engine.suspended_trials

    def noting(design_, state):
        held = suspended(design_, state)
        places = state.places()
        for trial in range(state.n_trials):
            key = (trial, float(state.time[trial]), int(places[trial]))
            decisions.setdefault(
                key,
                (
                    bool(held[trial]),
                    bool(state.active[trial]),
                    int(state.stop_reason[trial]),
                    int(state.next_level[trial]),
                ),
            )
        return held

    monkeypatch.setattr(engine, "suspended_trials", noting)
    state, _ = _simulate(design, SCENARIOS[0], n_trials=40, seed=11)
    monkeypatch.undo()
    counts = {"held": 0, "held_for_responses": 0, "stop": 0, "level": 0}
    for (trial, when, places), (held, active, reason, next_level) in decisions.items():
        text = patient_file(state, trial, when, places)
        records = read_patients(io.StringIO(text), design.n_levels, name="sim.csv")
        rec = run_patient_recommendation(design, records).recommendation
        if held:
            assert rec.suspended and rec.next_level is None, (trial, when)
            counts["held"] += 1
            m, limit = rec.basis, rec.basis["max_pending_fraction"] * rec.basis["n"]
            counts["held_for_responses"] += m["m_tox"] <= limit < m["m_eff"]
        elif not active:
            assert rec.stop and rec.stop_reason == StopReason(reason), (trial, when)
            counts["stop"] += 1
        else:
            assert not rec.suspended and not rec.stop, (trial, when)
            assert rec.next_level == next_level, (trial, when)
            counts["level"] += 1
    assert counts["held"] > 500 and counts["held_for_responses"] > 200
    assert counts["stop"] > 20 and counts["level"] > 200


@pytest.mark.parametrize("scenario", SCENARIOS[:2], ids=lambda s: s.name)
def test_each_cohorts_opening_decision_is_recomputed_bit_for_bit(scenario):
    """Given a simulated trial's patients with the engine's own times (follow-up = −arrival),
    the recommendation recomputes the decision that opened every cohort from the DLTs and
    responses seen at that arrival: none deviates. A cohort moved to another level is found;
    and with every response taken as seen at treatment, some decisions are not reproduced (the
    response times matter, and the replay reads them)."""
    design = tite_boin12_design()
    state, _ = _simulate(design, scenario, n_trials=60, seed=11)
    at_once = moved_found = 0
    for trial in range(state.n_trials):
        on = state.patient_level[trial] >= 0
        level = state.patient_level[trial][on].astype(np.int64)
        dlt, arrival = state.patient_dlt[trial][on], state.patient_arrival[trial][on]
        dlt_time = state.patient_dlt_time[trial][on]
        response, response_time = (
            state.patient_response[trial][on],
            state.patient_response_time[trial][on],
        )
        args = (design, level, dlt, -arrival, dlt_time)
        rec = recommend_from_patients(*args, response=response, response_time=response_time)
        assert rec.deviations == (), (trial, rec.deviations)
        early = np.where(response, 0.0, np.nan)
        at_once += bool(
            recommend_from_patients(*args, response=response, response_time=early).deviations
        )
        if level.size > 4:
            moved = level.copy()
            moved[3] = (moved[3] + 1) % design.n_levels
            deviations = recommend_from_patients(
                design,
                moved,
                dlt,
                -arrival,
                dlt_time,
                response=response,
                response_time=response_time,
            ).deviations
            assert deviations and deviations[0].startswith("patient 4 was treated")
            moved_found += 1
    assert at_once > 5 and moved_found > 50


def test_with_backfilling_each_cohorts_opening_decision_is_the_engines():
    """TITE-BOIN12 with ``[backfill]``: the backfill patients (treated while accrual is held)
    enter their level's data when treated, responses included, as in the engine; the
    recommendation recomputes every cohort's opening decision: none deviates. Without the
    backfill patients, some decisions are not reproduced (they matter, and the replay uses
    them)."""
    source = {**tite_boin12_design().source, "backfill": {"enabled": True, "max_per_level": 4}}
    design = design_from_dict(source, "bf.toml")
    state, _ = _simulate(design, SCENARIOS[0], n_trials=60, seed=11)
    assert state.patient_backfill.sum() > 200
    dropped = 0
    for trial in range(state.n_trials):
        on = state.patient_level[trial] >= 0
        flags = state.patient_backfill[trial][on]
        data = (
            state.patient_level[trial][on].astype(np.int64),
            state.patient_dlt[trial][on],
            -state.patient_arrival[trial][on],
            state.patient_dlt_time[trial][on],
            state.patient_response[trial][on],
            state.patient_response_time[trial][on],
        )
        level, dlt, followup, dlt_time, response, response_time = data
        rec = recommend_from_patients(
            design,
            level,
            dlt,
            followup,
            dlt_time,
            backfill=flags,
            response=response,
            response_time=response_time,
        )
        assert rec.deviations == (), (trial, rec.deviations)
        keep = ~flags
        alone = recommend_from_patients(
            design,
            *(values[keep] for values in data[:4]),
            response=response[keep],
            response_time=response_time[keep],
        )
        dropped += bool(alone.deviations)
    assert dropped > 5


def test_at_the_end_the_stop_and_the_obd_are_the_engines():
    """Once every window has closed after the last patient of trials that reached
    max_patients, the recommendation's stop (the maximum sample size, or no acceptable level
    on complete data) and its OBD estimate are the engine's final ones."""
    design = tite_boin12_design(max_at_dose=36)
    state, obd = _simulate(design, SCENARIOS[3], n_trials=80, seed=3)  # "inactive"
    full = np.flatnonzero(state.n_enrolled == design.max_patients)
    assert full.size > 40
    reasons = set()
    for trial in full:
        end = float(np.nanmax(state.patient_arrival[trial])) + design.timing.follow_up_months
        text = patient_file(state, trial, end, design.max_patients)
        records = read_patients(io.StringIO(text), design.n_levels, name="end.csv")
        rec = run_patient_recommendation(design, records).recommendation
        assert rec.stop and rec.stop_reason == StopReason(int(state.stop_reason[trial]))
        assert not any(rec.pending) and not any(rec.pending_response)
        assert (rec.mtd if rec.mtd is not None else -1) == obd[trial]
        reasons.add(rec.stop_reason)
    assert reasons == {StopReason.MAX_PATIENTS, StopReason.NONE_ACCEPTABLE}


def test_a_batch_whose_last_trials_all_stop_at_one_decision_ends():
    """When the last running trials of a batch all stop at the same decision (here every trial
    stops at 12 patients on a level, none reaches max_patients), the engine ends the batch (it
    once went on to enrol patients in no trial and failed)."""
    design = tite_boin12_design()
    for n_trials in (1, 10):
        state, _ = _simulate(design, SCENARIOS[1], n_trials=n_trials, seed=3)
        assert not state.active.any()
        assert (state.stop_reason == StopReason.MAX_AT_DOSE).all()


# -- (2) the paper's Table 2 at day 315, by hand ----------------------------------------------


def table_2_file() -> str:
    """Table 2 as a patient file at day 315: follow-up 315 − arrival; the DLTs and responses
    seen by then with their days (patient 13's response, at day 30, is seen that very day;
    patient 14's, at day 55, is still to come)."""
    rows = [HEADER.rstrip("\n")]
    for level, arrival, dlt_day, response_day in TABLE_2:
        followup = NOW - arrival
        dlt = dlt_day is not None and dlt_day <= followup
        response = response_day is not None and response_day <= followup
        rows.append(
            f"{level},{int(dlt)},{followup:g},{dlt_day if dlt else ''},{int(response)},"
            f"{response_day if response else ''}"
        )
    return "\n".join(rows) + "\n"


def table_2_design():
    windows = {
        "accrual_per_month": 2.0,
        "dlt_window_months": TAU_T / DAYS_PER_MONTH,
        "efficacy_window_months": TAU_E / DAYS_PER_MONTH,
    }
    design = tite_boin12_design(windows)
    return design_from_dict({**design.source, "levels": 4}, "table2.toml")


def test_the_papers_table_2_as_a_patient_file_at_day_315(tmp_path):
    """Effective sample sizes, rates, quasi-responses, desirability and acceptability per level
    as written out by hand (``_by_hand``: the paper's approximated likelihood, patient by
    patient), the decision (p̂ = 2/(14/3) = 3/7 ≥ λd: de-escalate to level 2), and who is
    pending: patients 14 and 15 for the DLT and for the response (patient 13's DLT and its
    response, seen at day 30 exactly, complete it)."""
    design = table_2_design()
    result = run_patient_recommendation(design, write(tmp_path, table_2_file()))
    rec = result.recommendation
    hand = _by_hand(design.method)
    for level, want in hand.items():
        j = level - 1
        assert rec.n[j] == want["n"] and rec.y[j] == want["y"] and rec.r[j] == want["r"]
        assert rec.level_summary["p_tox"][j] == pytest.approx(want["p_t"], rel=1e-12)
        assert rec.level_summary["p_eff"][j] == pytest.approx(want["p_e"], rel=1e-12)
        assert rec.level_summary["desirability"][j] == pytest.approx(want["desirability"], rel=1e-9)
        assert rec.level_summary["acceptable"][j] == want["acceptable"]
    basis = rec.basis
    assert (basis["level"], basis["n"], basis["y"], basis["r"]) == (2, 6, 2, 2)
    assert (basis["m_tox"], basis["m_eff"]) == (2, 2)
    assert basis["ess_tox"] == pytest.approx(4 + 20 / 45 + 10 / 45, rel=1e-12)
    assert basis["ess_eff"] == pytest.approx(4 + 20 / 60 + 10 / 60, rel=1e-12)
    assert basis["ess_tox"] == pytest.approx(hand[3]["ess_t"], rel=1e-12)
    assert basis["rate"] == pytest.approx(3 / 7, rel=1e-12) and basis["rate"] >= basis["lambda_d"]
    assert not rec.suspended and not rec.stop and rec.next_level == 1
    assert rec.pending_patients == (14, 15) and rec.pending_response_patients == (14, 15)
    assert rec.mtd_on_complete_data


# -- (3) bad input: one line, exit code 2 ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "level,dlt,followup_days\n1,0,95\n",
            "patients.csv: row 1: missing column 'response' (1 if the patient has responded so "
            "far, else 0): method 'tite-boin12' decides on responses",
        ),
        (
            HEADER + "1,0,120,,1,95\n",
            "patients.csv: row 2 (patient 1), column 'response_day': 95 is beyond the efficacy "
            "window of 91.31 days",
        ),
        (
            HEADER + "1,0,95,,0,40\n",
            "patients.csv: row 2 (patient 1), column 'response_day': 40 given for a patient "
            "without a response (response 0 or empty)",
        ),
        (
            HEADER + "1,0,30,,1,40\n",
            "patients.csv: row 2 (patient 1), column 'response_day': 40 is after the follow-up "
            "of 30 days (must be ≤ followup_days)",
        ),
        (
            HEADER + "1,0,95,,2,\n",
            "patients.csv: row 2 (patient 1), column 'response': '2' must be 0 (no response so "
            "far) or 1 (response)",
        ),
        (
            HEADER + "1,0,95,,,\n",
            "patients.csv: row 2 (patient 1), column 'response': empty (1 if the patient has "
            "responded so far, else 0): method 'tite-boin12' decides on responses",
        ),
        (
            "level,dlt,followup_days,response_day\n1,0,95,\n",
            "patients.csv: row 1: missing column 'response'",
        ),
        (
            HEADER + "1,0,95,,1,-3\n",
            "patients.csv: row 2 (patient 1), column 'response_day': '-3' must be a number of "
            "days ≥ 0",
        ),
    ],
)
def test_bad_response_columns_give_one_line_and_exit_code_2(tmp_path, text, message):
    patients = write(tmp_path, text)
    result = invoke("recommend", PSMA, "--patients", patients)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {patients.parent}/" + message), lines


def test_existing_files_stay_valid_and_a_response_column_is_ignored_by_toxicity_designs(
    tmp_path,
):
    """A patient file without response columns reads as before for a design on DLTs only; with
    them, the responses are read, checked and not used (a note says so); the decision is the
    same."""
    design = DESIGNS / "tite_boin.toml"
    plain = write(tmp_path, "level,dlt,followup_days,dlt_day\n1,0,95,\n1,1,80,20\n1,0,60,\n")
    with_responses = write(
        tmp_path, HEADER + "1,0,95,,1,40\n1,1,80,20,0,\n1,0,60,,0,\n", "responses.csv"
    )
    a = run_patient_recommendation(design, plain).recommendation
    b = run_patient_recommendation(design, with_responses).recommendation
    assert (a.next_level, a.suspended, a.mtd, a.n, a.y) == (
        b.next_level,
        b.suspended,
        b.mtd,
        b.n,
        b.y,
    )
    assert any("column 'response' is not used" in note for note in b.notes)
    assert b.pending_response == () and a.pending_response == ()


# -- (4) JSON, the decision record, verify ----------------------------------------------------

SUSPENDED = (  # level 2's patients 4-6: two of three pending for the response
    HEADER
    + "1,0,120,,1,60\n1,0,110,,0,\n1,0,100,,1,70\n"
    + "2,0,60,,0,\n2,1,50,20,1,45\n2,0,40,,0,\n"
)


def test_json_and_record_hold_who_is_pending_and_verify_recomputes_it(tmp_path):
    patients = write(tmp_path, SUSPENDED)
    out, record_path = tmp_path / "answer.json", tmp_path / "record.json"
    result = invoke(
        "recommend", PSMA, "--patients", patients, "--json", out, "--record", record_path
    )
    assert result.exit_code == 0, result.output
    assert "Suspend accrual" in result.output
    assert (
        "Pending for the response (efficacy window open, no response so far): patients 4 "
        "and 6" in result.output
    )
    answer = json.loads(out.read_text())
    assert answer["suspended"] and answer["next_level"] is None
    assert answer["pending_patients"] == [6] and answer["pending_response_patients"] == [4, 6]
    # the next window to close: patient 6's DLT window (45.66 − 40 days)
    assert answer["review_in_days"] == pytest.approx(1.5 * DAYS_PER_MONTH - 40, rel=1e-12)
    assert [p["pending_response"] for p in answer["patients"]] == [False] * 3 + [
        True,
        False,
        True,
    ]
    fifth = answer["patients"][4]
    assert (fifth["response"], fifth["response_day"], fifth["dlt_day"]) == (1, 45.0, 20.0)
    assert answer["patients"][3]["response_day"] is None
    assert [entry["pending_response"] for entry in answer["levels"]] == [0, 2, 0, 0, 0]
    assert [entry["response"] for entry in answer["levels"]] == [2, 1, 0, 0, 0]
    basis = answer["basis"]
    assert (basis["level"], basis["n"], basis["m_tox"], basis["m_eff"]) == (2, 3, 1, 2)
    assert basis["suspended"] is True
    record = read_record(record_path)
    decision = record["decision"]
    assert decision["action"] == "suspend" and decision["pending_response_patients"] == [4, 6]
    assert "for the response" in decision["rule"]
    assert record["data"]["patients"][3]["pending_response"] is True
    assert verify_record(record).ok
    # a record whose pending list was edited (and re-hashed) no longer verifies
    edited = json.loads(record_path.read_text())
    edited["decision"]["pending_response_patients"] = [6]
    edited["record_sha256"] = record_hash(edited, parsed=True)
    check = verify_record(edited)
    assert not check.ok
    assert any("pending_response_patients" in line for line in check.differences)
    cli = invoke("verify", record_path)
    assert cli.exit_code == 0, cli.output


def test_other_answers_keep_their_keys(tmp_path):
    """Only an answer that knows the pending responses has the new keys."""
    out = tmp_path / "a.json"
    trial = write(tmp_path, "level,dlt,followup_days,dlt_day\n1,0,95,\n1,1,80,20\n")
    result = invoke("recommend", DESIGNS / "tite_boin.toml", "--patients", trial, "--json", out)
    assert result.exit_code == 0, result.output
    answer = json.loads(out.read_text())
    assert "pending_response_patients" not in answer
    assert "pending_response_patients" not in answer["record"]["decision"]
    assert "response" not in answer["patients"][0]
    assert "pending_response" not in answer["levels"][0]


# -- (5) paths ------------------------------------------------------------------------------


def test_paths_from_a_patient_file_are_those_of_its_outcome_letters(tmp_path):
    """Pathways show time-to-event designs with complete follow-up: a pending patient counts as
    without the event awaited. The pathways from the file are those from the outcome string of
    its letters (N, T, E, B), node for node."""
    design = tite_boin12_design()
    trial = write(tmp_path, SUSPENDED)
    from_file = pathways_from_data(design, patients=str(trial), n_cohorts=1)
    from_letters = pathways_from_data(design, outcomes="1ENE 2NBN", n_cohorts=1)
    assert from_file == from_letters and len(from_file) == 21
    result = invoke("paths", PSMA, "--patients", trial, "--cohorts", "1")
    assert result.exit_code == 0 and "1ENE 2NBN → treat at level" in result.output


def test_paths_refuse_backfill_patients_in_one_line(tmp_path):
    source = {**tite_boin12_design().source, "backfill": {"enabled": True, "max_per_level": 3}}
    design = design_from_dict(source, "bf.toml")
    text = HEADER.rstrip("\n") + ",backfill\n" + "1,0,100,,0,,0\n" * 3 + "2,0,20,,0,,0\n"
    text += "1,0,10,,0,,1\n"
    with pytest.raises(PatientFileError, match="pathways from them are not supported") as info:
        pathways_from_data(design, patients=str(write(tmp_path, text)), n_cohorts=1)
    assert len(info.value.messages) == 1


# -- properties ------------------------------------------------------------------------------


@given(
    cohorts=st.lists(
        st.tuples(
            st.integers(0, 4),
            st.lists(st.sampled_from("NTEB"), min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_with_every_window_closed_a_patient_file_is_its_outcome_string(cohorts):
    """With every patient followed beyond both windows, nothing is pending, and the decision,
    the stop, the OBD estimate and the estimates are those of the outcome string of the same
    letters (TITE-BOIN12 with nothing pending is BOIN12)."""
    design = tite_boin12_design()
    letters = " ".join(f"{level + 1}{''.join(flags)}" for level, flags in cohorts)
    level = np.repeat([lvl for lvl, _ in cohorts], 3)
    flags = [f for _, fs in cohorts for f in fs]
    dlt = np.array([f in "TB" for f in flags])
    response = np.array([f in "EB" for f in flags])
    followup = np.linspace(40.0, 4.0, level.size)  # months, beyond 1.5 and 3 months
    rec = recommend_from_patients(
        design,
        level,
        dlt,
        followup,
        np.where(dlt, 0.5, np.nan),
        response=response,
        response_time=np.where(response, 2.0, np.nan),
    )
    parsed = [
        (lvl, tuple(f in "TB" for f in fs), tuple(f in "EB" for f in fs)) for lvl, fs in cohorts
    ]
    want = recommend(design, parsed)
    assert format_outcomes(parsed) == letters
    assert not any(rec.pending) and not any(rec.pending_response) and not rec.suspended
    assert (rec.next_level, rec.stop_reason, rec.mtd, rec.n, rec.y, rec.r) == (
        want.next_level,
        want.stop_reason,
        want.mtd,
        want.n,
        want.y,
        want.r,
    )
    for name, values in want.level_summary.items():
        np.testing.assert_allclose(rec.level_summary[name], values, rtol=1e-12, err_msg=name)


# -- BOIN12 (complete data) from a patient file ----------------------------------------------


def boin12_design():
    source = {
        **BOIN12,
        "method": "boin12",
        "timing": {
            "accrual_per_month": 2.0,
            "dlt_window_months": 1.5,
            "efficacy_window_months": 3.0,
        },
    }
    return design_from_dict(source, "boin12.toml")


def test_boin12_waits_for_responses_and_then_decides_as_its_outcome_string(tmp_path):
    """BOIN12 decides on complete data: while a patient is pending for the response (within the
    efficacy window without one) the answer is to wait, until that window closes; once nobody
    is pending the answer is the outcome string's."""
    design = boin12_design()
    text = HEADER + "1,0,200,,1,60\n1,1,190,10,0,\n1,0,180,,0,\n2,0,60,,1,50\n2,0,55,,0,\n"
    rec = run_patient_recommendation(design, write(tmp_path, text)).recommendation
    assert rec.wait and rec.next_level is None
    assert rec.pending_patients == () and rec.pending_response_patients == (5,)
    assert rec.review_in == pytest.approx(3.0 - 55 / DAYS_PER_MONTH, rel=1e-12)
    later = text.replace("2,0,55,,0,", "2,0,95,,0,")
    done = run_patient_recommendation(design, write(tmp_path, later, "b.csv")).recommendation
    want = recommend(
        design,
        [(0, (False, True, False), (True, False, False)), (1, (False, False), (True, False))],
    )
    assert not done.wait and (done.next_level, done.mtd) == (want.next_level, want.mtd)


def test_an_efficacy_window_left_to_the_dlt_window_follows_dlt_window_days(tmp_path):
    """A design that leaves its efficacy window to the DLT window: --dlt-window-days moves both
    (a patient 50 days in, without a response, is pending for it under a 60-day window, not
    under the design's 45.7 days); a design that states its efficacy window keeps it."""
    source = PSMA.read_text().replace("efficacy_window_months = 3.0", "")
    design = write(tmp_path, source, "defaulted.toml")
    patients = write(tmp_path, HEADER + "1,0,50,,0,\n")
    out = tmp_path / "answer.json"
    result = invoke("recommend", design, "--patients", patients, "--dlt-window-days", 60,
                    "--json", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    answer = json.loads(out.read_text())
    assert answer["pending_patients"] == [1]
    assert answer["pending_response_patients"] == [1]
    assert "so is the efficacy window" in result.output
    stated = invoke("recommend", PSMA, "--patients", patients, "--dlt-window-days", 40,
                    "--json", out)  # fmt: skip
    assert stated.exit_code == 0, stated.output
    answer = json.loads(out.read_text())
    assert answer["pending_patients"] == [] and answer["pending_response_patients"] == [1]
    assert "so is the efficacy window" not in stated.output
