"""3+3: exact enumeration against bcrm's threep3, and simulation against exact."""

import numpy as np
import pytest

from factories import (
    assert_simulation_matches_exact,
    reference,
    scenario,
    three_plus_three_design,
)
from theradose.engine import recommend
from theradose.exact import exact_operating_characteristics

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
