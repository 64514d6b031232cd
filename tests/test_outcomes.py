"""Outcome strings "1NNN 2NTN" (Brock's escalation convention) ⇄ cohorts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theradose.outcomes import OutcomeError, format_outcomes, parse_outcomes


def test_parses_levels_and_patients_in_order():
    assert parse_outcomes("1NNN 2NTN 2TTN") == [
        (0, (False, False, False)),
        (1, (False, True, False)),
        (1, (True, True, False)),
    ]


def test_accepts_lower_case_and_any_whitespace():
    assert parse_outcomes("  1nnn\t2nTn\n") == [(0, (False,) * 3), (1, (False, True, False))]


def test_empty_string_is_a_trial_with_no_patients():
    assert parse_outcomes("") == []
    assert parse_outcomes("   ") == []


def test_multi_digit_levels_and_cohorts_of_any_size():
    assert parse_outcomes("12T 3NNNNNN") == [(11, (True,)), (2, (False,) * 6)]


@pytest.mark.parametrize(
    ("text", "n_levels", "message"),
    [
        ("1NNN 2NXN", None, "outcome token 2 '2NXN': 'X' is not N (no DLT) or T (DLT)"),
        ("1NNN 3", None, "outcome token 2 '3': the cohort has no patients"),
        ("0NNN", None, "outcome token 1 '0NNN': level 0 is not a dose level"),
        ("1NNN 7NNN", 6, "outcome token 2 '7NNN': level 7 is above the design's 6 levels"),
        ("NNN", None, "outcome token 1 'NNN': a cohort starts with its dose level"),
        ("1N-N", None, "outcome token 1 '1N-N': '-' is not N"),
        ("1NNN,2NTN", None, "outcome token 1 '1NNN,2NTN': ',' is not N"),
    ],
)
def test_errors_name_the_token_and_what_is_allowed(text, n_levels, message):
    with pytest.raises(OutcomeError) as caught:
        parse_outcomes(text, n_levels)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_level_error_says_the_allowed_range():
    with pytest.raises(OutcomeError, match=r"allowed 1\.\.6"):
        parse_outcomes("7N", n_levels=6)


def test_outcome_error_is_a_value_error():
    assert issubclass(OutcomeError, ValueError)


def test_format_writes_upper_case_one_space():
    cohorts = [(0, (False, False, False)), (1, (False, True, False))]
    assert format_outcomes(cohorts) == "1NNN 2NTN"
    assert format_outcomes([]) == ""


cohorts_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=20),
        st.lists(st.booleans(), min_size=1, max_size=8).map(tuple),
    ),
    max_size=12,
)


@given(cohorts_strategy)
def test_format_then_parse_is_the_identity(cohorts):
    assert parse_outcomes(format_outcomes(cohorts)) == cohorts
