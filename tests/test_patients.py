"""Patient files: reading one real trial's patients, and every problem named by row and column."""

from __future__ import annotations

import io

import numpy as np
import pytest

from theradose.patients import COLUMNS, PatientFileError, read_patients


def read(text: str, n_levels: int = 6):
    return read_patients(io.StringIO(text), n_levels, name="trial.csv")


def problems(text: str, n_levels: int = 6) -> list[str]:
    with pytest.raises(PatientFileError) as caught:
        read(text, n_levels)
    return caught.value.messages


def test_reads_plain_arrays_in_enrolment_order():
    records = read(
        "level,dlt,followup_days,dlt_day\n3,0,178,\n3,1,168,30\n\n4,0,24.5,\n", n_levels=6
    )
    assert records.n_patients == 3
    np.testing.assert_array_equal(records.level, [2, 2, 3])  # 0-based inside
    np.testing.assert_array_equal(records.dlt, [False, True, False])
    np.testing.assert_array_equal(records.followup_days, [178, 168, 24.5])
    np.testing.assert_array_equal(records.dlt_day, [np.nan, 30, np.nan])
    assert records.path == "trial.csv"


def test_columns_in_any_order_and_dlt_day_optional(tmp_path):
    path = tmp_path / "p.csv"
    # a byte-order mark, as spreadsheets write it, and spaces around names and values
    path.write_text("\ufefffollowup_days , level, dlt\n 90 , 2 , 1\n", encoding="utf-8")
    records = read_patients(path, 6)
    assert (records.level.tolist(), records.dlt.tolist()) == ([1], [True])
    assert np.isnan(records.dlt_day).all() and records.path == str(path)


def test_a_trial_with_nobody_treated_yet():
    assert read("level,dlt,followup_days\n").n_patients == 0


def test_every_column_is_declared_once():
    names = [c.name for c in COLUMNS]
    assert names == [
        "level",
        "dlt",
        "followup_days",
        "dlt_day",
        "backfill",
        "response",
        "response_day",
    ]
    assert len(set(names)) == 7
    assert [c.name for c in COLUMNS if c.required] == ["level", "dlt", "followup_days"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "level,dlt\n1,0\n",
            "trial.csv: row 1: missing column 'followup_days' (days since the patient's "
            "treatment, as of today)",
        ),
        (
            "level,dlt,followup_days\n1,0,10\n7,0,5\n",
            "trial.csv: row 3 (patient 2), column 'level': 7 is not a level of the design (1..6)",
        ),
        (
            "level,dlt,followup_days\n0,0,10\n",
            "trial.csv: row 2 (patient 1), column 'level': 0 is not a level of the design (1..6)",
        ),
        (
            "level,dlt,followup_days\n1,2,10\n",
            "trial.csv: row 2 (patient 1), column 'dlt': '2' must be 0 (no DLT) or 1 (DLT)",
        ),
        (
            "level,dlt,followup_days\n1,yes,10\n",
            "trial.csv: row 2 (patient 1), column 'dlt': 'yes' must be 0 (no DLT) or 1 (DLT)",
        ),
        (
            "level,dlt,followup_days\n1,0,-3\n",
            "trial.csv: row 2 (patient 1), column 'followup_days': '-3' must be a number of "
            "days ≥ 0",
        ),
        (
            "level,dlt,followup_days,dlt_day\n1,1,10,12\n",
            "trial.csv: row 2 (patient 1), column 'dlt_day': 12 is after the follow-up of 10 "
            "days (must be ≤ followup_days)",
        ),
        (
            "level,dlt,followup_days,dlt_day\n1,0,10,5\n",
            "trial.csv: row 2 (patient 1), column 'dlt_day': 5 given for a patient without a "
            "DLT (dlt 0)",
        ),
        (
            "level,dlt,folowup_days\n1,0,10\n",
            "trial.csv: row 1: unknown column 'folowup_days' (did you mean 'followup_days'?)",
        ),
        (
            "level,dlt,followup_days,weight_kg\n1,0,10,70\n",
            "trial.csv: row 1: unknown column 'weight_kg' (allowed: level, dlt, followup_days, "
            "dlt_day, backfill, response, response_day)",
        ),
        (
            "level,dlt,followup_days\n1,0\n",
            "trial.csv: row 2 (patient 1): 2 fields, but the header names 3",
        ),
        (
            "level,dlt,followup_days\n1,,10\n",
            "trial.csv: row 2 (patient 1), column 'dlt': empty (1 if the patient has had a "
            "DLT, else 0)",
        ),
        ("", "trial.csv: empty file; the first row names the columns"),
        (
            "level,dlt,followup_days,level\n1,0,10,1\n",
            "trial.csv: row 1: column 'level' appears more than once",
        ),
    ],
)
def test_each_problem_names_file_row_and_column(text, message):
    assert any(line.startswith(message) for line in problems(text)), problems(text)


def test_every_problem_of_a_file_is_reported():
    lines = problems("level,dlt,followup_days\n9,0,10\n1,3,10\n1,0,-1\n")
    assert [line.split(",")[0] for line in lines] == [
        "trial.csv: row 2 (patient 1)",
        "trial.csv: row 3 (patient 2)",
        "trial.csv: row 4 (patient 3)",
    ]


def test_missing_file(tmp_path):
    missing = tmp_path / "none.csv"
    with pytest.raises(PatientFileError) as caught:
        read_patients(missing, 6)
    assert caught.value.messages == [f"{missing}: file not found"]


# --- recommending from patients: a design deciding on complete data waits --------------------


def test_a_design_deciding_on_complete_data_waits_for_pending_patients():
    from factories import boin_design
    from theradose.recommendation import recommend, recommend_from_patients

    design = boin_design()  # no [timing]: the window is given
    level, dlt = np.array([0, 0, 0, 1, 1, 1]), np.array([False, False, True, False, False, True])
    days = np.array([200, 190, 180, 40, 20, 10]) / 30.4375
    rec = recommend_from_patients(design, level, dlt, days, window=90 / 30.4375)
    assert rec.wait and rec.next_level is None and not rec.stop and not rec.suspended
    assert rec.pending_patients == (4, 5)  # patient 6 had a DLT: complete at day 10
    assert rec.review_in * 30.4375 == pytest.approx(50) and rec.complete_in * 30.4375 == (
        pytest.approx(70)
    )
    assert rec.n == (3, 3, 0, 0, 0, 0) and rec.y == (1, 1, 0, 0, 0, 0) and rec.basis == {}
    # estimates on complete data: "1NNT 2T"
    complete = recommend(design, [(0, (False, False, True)), (1, (True,))])
    assert rec.mtd == complete.mtd and rec.mtd_on_complete_data
    np.testing.assert_array_equal(rec.level_summary["p_est"], complete.level_summary["p_est"])
    # complete follow-up: the complete-data decision, exactly
    done = recommend_from_patients(design, level, dlt, days + 3, window=90 / 30.4375)
    expected = recommend(design, [(0, (False, False, True)), (1, (False, False, True))])
    assert not done.wait and done.next_level == expected.next_level == 1
    assert (done.mtd, done.n, done.y, done.basis) == (
        expected.mtd, expected.n, expected.y, expected.basis
    )  # fmt: skip


def test_following_patients_needs_the_dlt_window():
    from factories import boin_design
    from theradose.recommendation import recommend_from_patients

    with pytest.raises(ValueError, match="needs the DLT window"):
        recommend_from_patients(boin_design(), np.array([0]), np.array([False]), np.array([1.0]))


def test_a_dlt_after_the_dlt_window_is_an_error():
    text = "level,dlt,followup_days,dlt_day\n1,1,120,95\n1,1,120,28\n"
    read_patients(io.StringIO(text), 6, name="trial.csv")  # no window known: not checked
    with pytest.raises(PatientFileError) as caught:
        read_patients(io.StringIO(text), 6, name="trial.csv", dlt_window_days=91.3)
    assert caught.value.messages == [
        "trial.csv: row 2 (patient 1), column 'dlt_day': 95 is beyond the DLT window of 91.3 "
        "days (a DLT counts only within it: [timing] dlt_window_months, or --dlt-window-days)"
    ]
    on_the_edge = "level,dlt,followup_days,dlt_day\n1,1,120,91.3\n"
    read_patients(io.StringIO(on_the_edge), 6, name="trial.csv", dlt_window_days=91.3)
