"""3+3: exact enumeration against bcrm's threep3, and simulation against exact."""

import numpy as np
import pytest

from factories import (
    assert_simulation_matches_exact,
    reference,
    scenario,
    three_plus_three_design,
)
from theradose.config import design_from_dict
from theradose.engine import run_trials
from theradose.exact import exact_operating_characteristics
from theradose.pipeline import select_mtd
from theradose.recommendation import recommend
from theradose.state import StopReason
from theradose.virtual_patients import chunk_tolerance

THREEP3 = reference("three_plus_three_exact.json")["results"]


@pytest.mark.parametrize(
    "ref", THREEP3, ids=lambda r: f"{r['scenario']}-esc_only={r['call']['threep3.esc.only']}"
)
def test_exact_matches_bcrm_threep3(ref):
    design = three_plus_three_design(deescalate=not ref["call"]["threep3.esc.only"])
    exact = exact_operating_characteristics(design, scenario(*ref["p_true"]))
    np.testing.assert_allclose(exact["selection_pct"], ref["selpercent"], rtol=0, atol=1e-9)
    assert exact["no_selection_pct"] == pytest.approx(ref["selpercent_none"], abs=1e-9)
    np.testing.assert_allclose(exact["patients_mean"], ref["npatients"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(exact["dlt_mean"], ref["ntox"], rtol=0, atol=1e-9)
    assert exact["n_mean"] == pytest.approx(ref["totaln"], abs=1e-9)


def test_exact_textbook_example():
    """The issue's check: p = (0.1, ..., 0.5) with de-escalation."""
    exact = exact_operating_characteristics(
        three_plus_three_design(n_levels=5), scenario(0.1, 0.2, 0.3, 0.4, 0.5)
    )
    probs = np.array([exact["no_selection_pct"], *exact["selection_pct"]]) / 100
    np.testing.assert_allclose(probs, [0.10, 0.28, 0.33, 0.20, 0.06, 0.02], atol=0.0075)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("deescalate", [True, False])
def test_simulation_agrees_with_exact(deescalate):
    design = three_plus_three_design(deescalate=deescalate)
    scenarios = [scenario(*r["p_true"], name=r["scenario"]) for r in THREEP3[::2]]
    assert_simulation_matches_exact(design, scenarios, n_trials=40_000, seed=11)


@pytest.mark.parametrize(
    ("outcomes", "deescalate", "next_level", "mtd"),
    [
        ([(0, "NNN")], True, 1, None),
        ([(0, "NNN"), (1, "NTN")], True, 1, None),
        ([(0, "NNN"), (1, "NTN"), (1, "NNN")], True, 2, None),
        # 2/6 at level 2: de-escalate to level 1, which has only 3.
        ([(0, "NNN"), (1, "NTN"), (1, "TNN")], True, 0, None),
        ([(0, "NNN"), (1, "NTN"), (1, "TNN"), (0, "NNT")], True, None, 0),
        # escalation-only: stop at once, MTD = the level below.
        ([(0, "NNN"), (1, "TTN")], False, None, 0),
        ([(0, "TTN")], True, None, None),
        # escalating past the top level selects it.
        ([(0, "NNN"), (1, "NNN")], True, None, 1),
    ],
)
def test_rules_step_by_step(outcomes, deescalate, next_level, mtd):
    n_levels = 2 if outcomes[-1] == (1, "NNN") and len(outcomes) == 2 else 6
    design = three_plus_three_design(n_levels=n_levels, deescalate=deescalate)
    cohorts = [(level, tuple(c == "T" for c in letters)) for level, letters in outcomes]
    rec = recommend(design, cohorts)
    assert rec.next_level == next_level
    if rec.stop:
        assert rec.mtd == mtd


def _cohorts(text):
    return [(level, tuple(c == "T" for c in letters)) for level, letters in text]


@pytest.mark.parametrize(
    ("outcomes", "next_level", "mtd"),
    [
        # Started at level 2, too toxic there: 0/3 at level 1 is not yet an MTD (Korn et al.
        # 1994 need six), so three more are treated there — as escalation's Korn variant.
        ([(1, "NTT"), (0, "NNN")], 0, None),
        ([(1, "NTT"), (0, "NNN"), (0, "NNN")], None, 0),
        ([(1, "NTT"), (0, "NNT"), (0, "NNN")], None, 0),
        ([(1, "NTT"), (0, "NNN"), (0, "NTT")], None, None),
    ],
)
def test_deescalation_from_a_higher_start_needs_six_below(outcomes, next_level, mtd):
    design = three_plus_three_design(n_levels=5, start_level=1)
    rec = recommend(design, _cohorts(outcomes))
    assert rec.next_level == next_level
    assert rec.mtd == mtd


def test_higher_start_exact_selects_an_mtd_when_level_1_is_safe():
    """p = 0.05, 0.6, …: starting at level 2 the trial now goes on at level 1 to six patients;
    before, 85% of trials ended with no MTD (exact and simulated alike)."""
    design = three_plus_three_design(n_levels=5, start_level=1)
    exact = exact_operating_characteristics(design, scenario(0.05, 0.6, 0.7, 0.8, 0.9))
    # P(≥ 2 DLTs in six at p = 0.05, after 2/3 at level 2 or level 1 too toxic first) is small
    assert exact["no_selection_pct"] < 5.0
    assert exact["selection_pct"][0] > 90.0
    # (simulation vs exact on a scenario that visits every level: at 0.05, 0.6, … levels 4–5
    # see 1e-4 patients, too rare for a standard error)
    scenarios = [scenario(0.1, 0.2, 0.3, 0.4, 0.5), scenario(0.05, 0.15, 0.3, 0.45, 0.6)]
    assert_simulation_matches_exact(design, scenarios, n_trials=20_000, seed=5)


def _three_plus_three_with_kidney_limit(limit_gy):
    source = {
        "method": "3+3",
        "target": 0.3,
        "doses": [3.7, 5.55, 7.4, 9.25, 11.1],
        "dosimetry": {
            "cycles": 4,
            "organ": [
                {
                    "name": "kidney",
                    "gy_per_gbq_median": 0.43,
                    "gy_per_gbq_cv": 0.37,
                    "limit_gy": limit_gy,
                    "max_exceed_prob": 0.10,
                }
            ],
        },
    }
    return design_from_dict(source, "tpt_k.toml")


@pytest.mark.parametrize(
    ("outcomes", "next_level", "mtd"),
    [
        ([(0, "NNN")], 0, 0),  # 0/3 below a ruled-out level: three more there
        ([(0, "NNN"), (0, "NNN")], None, 0),  # 0/6: stop, MTD = the highest admissible level
        ([(0, "NNT"), (0, "NNN")], None, 0),  # 1/6 as well
        ([(0, "NNN"), (0, "NTT")], None, None),  # 2/6: level 1 too toxic
    ],
)
def test_a_level_ruled_out_by_organ_limits_is_the_top_of_the_range(outcomes, next_level, mtd):
    """Kidney limit 12 Gy over 4 cycles (0.43 Gy/GBq, CV 37%): only level 1 is admissible under
    the prior (P(> 12 Gy) at level 2 ≈ 0.26 > 0.10), and the 3+3 treats it as the top."""
    design = _three_plus_three_with_kidney_limit(12.0)
    rec = recommend(design, _cohorts(outcomes))
    assert rec.level_summary["admissible"].tolist() == [True, False, False, False, False]
    assert rec.next_level == next_level
    assert rec.mtd == mtd


def test_three_plus_three_under_organ_limits_stops_by_its_own_rule():
    """Simulated: trials end by the 3+3's rule (never by running to max n at the highest
    admissible level), with six patients at the selected level and none above it."""
    design = _three_plus_three_with_kidney_limit(12.0)
    state = run_trials(
        design, np.array([0.05, 0.1, 0.2, 0.3, 0.4]), chunk_tolerance(3, 0, 2000, 30)
    )
    mtd = select_mtd(design, state)
    assert set(np.unique(state.stop_reason)) <= {StopReason.RULE_COMPLETE, StopReason.TOO_TOXIC}
    assert (state.n[:, 1:] == 0).all()
    chosen = mtd == 0
    assert chosen.mean() > 0.9
    assert (state.n[chosen, 0] == 6).all()
