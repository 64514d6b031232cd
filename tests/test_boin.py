"""BOIN against the BOIN R package 2.7.2: boundaries, select.mtd and get.oc."""

import numpy as np
import pytest

from factories import (
    assert_pct_agrees,
    assert_simulation_matches_exact,
    boin_design,
    reference,
    scenario,
)
from theradose.exact import exact_operating_characteristics
from theradose.methods.boin import boundaries
from theradose.recommendation import recommend
from theradose.state import TrialState

BOUNDARIES = reference("boin_boundaries.json")["results"]
SELECT_MTD = reference("boin_select_mtd.json")["results"]
GET_OC = reference("boin_oc.json")["results"]


@pytest.mark.parametrize(
    "ref", BOUNDARIES, ids=lambda r: f"target{r['call']['target']}-n{r['call']['ncohort']}"
)
def test_boundaries_match_get_boundary(ref):
    call = ref["call"]
    lambda_e, lambda_d = boundaries(call["target"], call["p.saf"], call["p.tox"])
    assert lambda_e == pytest.approx(ref["lambda_e"], abs=1e-12)
    assert lambda_d == pytest.approx(ref["lambda_d"], abs=1e-12)
    n_max = call["ncohort"] * call["cohortsize"]
    design = boin_design(target=call["target"], max_patients=n_max)
    rows = design.method.decision_rows()
    table = ref["full_boundary_tab"]
    assert [r["n"] for r in rows] == table["n_treated"]
    for key in ("escalate_if_dlt_le", "deescalate_if_dlt_ge", "eliminate_if_dlt_ge"):
        assert [r[key] for r in rows] == table[key], key


def _state(n, y):
    state = TrialState.start(1, len(n), 0)
    state.n[0], state.y[0] = n, y
    return state


@pytest.mark.parametrize("ref", SELECT_MTD, ids=lambda r: r["dataset"])
def test_select_mtd_matches_package(ref):
    call = ref["call"]
    design = boin_design(target=call["target"], max_patients=60, p_tox=call["p.tox"])
    state = _state(call["npts"], call["ntox"])
    selected = int(design.method.select_mtd(state)[0])
    assert selected + 1 == ref["MTD"] or (selected == -1 and ref["MTD"] == 99)
    summary = {k: v[0] for k, v in design.method.level_summary(state).items()}
    expected = np.array(
        [np.nan if v is None else v for v in ref["driver_recomputed_unrounded_isotonic_phat"]]
    )
    np.testing.assert_allclose(summary["p_est"], expected, rtol=0, atol=1e-12, equal_nan=True)
    overdose = np.array([np.nan if v is None else v for v in ref["p_overdose"]])
    np.testing.assert_allclose(
        np.round(summary["p_overdose"], 2), overdose, atol=1e-9, equal_nan=True
    )


def _get_oc_design(ref):
    call = ref["call"]
    return boin_design(
        target=ref["target"],
        max_patients=call["ncohort"] * call["cohortsize"],
        cohort_size=call["cohortsize"],
        max_at_dose=call["n.earlystop"],
        p_saf=call["p.saf"],
        p_tox=call["p.tox"],
        elimination_cutoff=call["cutoff.eli"],
        extra_safe=call["extrasafe"],
        extra_safe_offset=call["offset"],
    )


@pytest.mark.parametrize("ref", GET_OC, ids=lambda r: f"{r['scenario']}-seed{r['call']['seed']}")
def test_get_oc_within_monte_carlo_error_of_exact(ref):
    """get.oc's 10,000-trial figures against our exact enumeration: only get.oc's error counts."""
    exact = exact_operating_characteristics(_get_oc_design(ref), scenario(*ref["p_true"]))
    n_ref = ref["call"]["ntrial"]
    assert_pct_agrees(ref["selpercent"], n_ref, exact["selection_pct"], "selection")
    assert_pct_agrees(ref["percentstop"], n_ref, exact["no_selection_pct"], "no selection")
    # allocation: a per-level count's SD is at most max_patients / 2, a generous but fixed bound
    n_se = ref["call"]["ncohort"] * ref["call"]["cohortsize"] / 2 / np.sqrt(n_ref)
    assert np.all(np.abs(np.array(ref["npatients"]) - exact["patients_mean"]) <= 4 * n_se)


@pytest.mark.slow
def test_simulation_agrees_with_exact():
    refs = GET_OC[::2]
    scenarios = [scenario(*r["p_true"], name=r["scenario"]) for r in refs]
    assert_simulation_matches_exact(_get_oc_design(refs[0]), scenarios, n_trials=40_000, seed=3)


def test_exact_enumeration_sums_to_one_with_extra_safe_and_max_at_dose():
    design = boin_design(max_patients=24, extra_safe=True, max_at_dose=9)
    exact = exact_operating_characteristics(design, scenario(0.3, 0.4, 0.5, 0.6, 0.7, 0.8))
    assert exact["total_prob"] == pytest.approx(1.0, abs=1e-12)
    assert np.sum(exact["selection_pct"]) + exact["no_selection_pct"] == pytest.approx(
        100, abs=1e-9
    )


def test_recommend_replays_the_rules():
    design = boin_design()
    # 0/3 escalate; 1/3 at level 2 (0.33 ≤ λe=0.236? no; ≥ λd=0.359? no) stay.
    rec = recommend(design, [(0, (False,) * 3), (1, (False, True, False))])
    assert rec.next_level == 1
    # 3/3 at level 1 eliminates everything: stop, no MTD.
    rec = recommend(design, [(0, (True, True, True))])
    assert rec.stop and rec.mtd is None and rec.stop_reason.name == "TOO_TOXIC"
