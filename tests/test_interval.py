"""Interval designs (BOIN, mTPI-2, Keyboard, i3+3): decision tables against published tables and
other software, the table against what the engine does, and properties of every table."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import REFERENCE, reference, scenario
from theradose.design import Design
from theradose.methods import Boin, Decision
from theradose.methods.i3p3 import I3p3
from theradose.methods.interval import prob_above_target
from theradose.methods.keyboard import Keyboard
from theradose.methods.mtpi2 import Mtpi2
from theradose.pipeline import decide
from theradose.results import OperatingCharacteristics
from theradose.simulation import simulate
from theradose.state import StopReason, TrialState
from theradose.stopping import MaxPatients

ESCALATION = reference("escalation.json")
MTPI2_DECISIONS = ESCALATION["mtpi2_decisions"][0]
MTPI2_OC = ESCALATION["mtpi2_oc"]
DESIGN_CLASSES = (Boin, Mtpi2, Keyboard, I3p3)


def interval_design(method, start_level: int = 0, cohort_size: int = 3) -> Design:
    return Design(
        name=type(method).__name__,
        method=method,
        target=method.target,
        n_levels=method.n_levels,
        start_level=start_level,
        cohort_size=cohort_size,
        max_patients=method.max_patients,
        stopping=(MaxPatients(method.max_patients),),
    )


def one_level_states(cells, n_levels: int, level: int) -> TrialState:
    """One trial per (n, y) cell, all of its patients at ``level``, no one elsewhere; no one
    counts as enrolled, so the cap on patients never stops them (it is not what is tested)."""
    state = TrialState.start(len(cells), n_levels, level)
    for i, (n, y) in enumerate(cells):
        state.n[i, level], state.y[i, level] = n, y
    state.level[:] = level
    return state


# --- mTPI-2 against escalation 0.2.3 (get_mtpi2, target 0.30, every n ≤ 12 at one dose) -------


def test_mtpi2_decisions_match_escalation():
    call = MTPI2_DECISIONS
    method = Mtpi2(3, call["target"], 12, eps1=call["epsilon1"], eps2=call["epsilon2"])
    for row in call["rows"]:
        assert method.decision(row["n"], row["y"]).letter == row["decision"], row["outcomes"]


def test_mtpi2_engine_replays_escalation_fits():
    """The engine on the same data: dose 2 of 3 (``recommended_dose``), the same data at dose 1
    (the trial stops when escalation's does) and at dose 3 followed by 0/3 at dose 2 (escalation
    into dose 3 blocked when escalation excludes it). escalation excludes from two patients on,
    so ``elimination_min_n = 2`` here."""
    call = MTPI2_DECISIONS
    method = Mtpi2(
        3,
        call["target"],
        12,
        eps1=call["epsilon1"],
        eps2=call["epsilon2"],
        elimination_cutoff=call["exclusion_certainty"],
        elimination_min_n=2,
    )
    design = interval_design(method)
    rows = call["rows"]
    cells = [(r["n"], r["y"]) for r in rows]

    at_two = one_level_states(cells, 3, 1)
    decide(design, at_two)
    assert (at_two.next_level + 1).tolist() == [r["recommended_dose"] for r in rows]
    assert at_two.active.tolist() == [r["continue"] for r in rows]

    at_one = one_level_states(cells, 3, 0)
    decide(design, at_one)
    stopped = [r["lowest_dose_probe"]["stopped"] for r in rows]
    assert (~at_one.active).tolist() == stopped
    assert all(at_one.stop_reason[i] == StopReason.TOO_TOXIC for i, s in enumerate(stopped) if s)
    for i, row in enumerate(rows):
        if not stopped[i]:
            assert at_one.next_level[i] + 1 == row["lowest_dose_probe"]["recommended_dose"]

    probe = one_level_states(cells, 3, 2)
    probe.n[:, 1], probe.level[:] = 3, 1  # then 2NNN: 0/3 at dose 2 escalates unless excluded
    decide(design, probe)
    assert (probe.next_level + 1).tolist() == [
        r["exclusion_probe"]["recommended_dose"] for r in rows
    ]


@pytest.mark.parametrize("target", [0.15, 0.2, 0.25, 0.3, 0.35, 0.4])
def test_mtpi2_elimination_gives_escalations_moves(target):
    """Why theradose's elimination reproduces escalation's exclusion: an excluded level always
    de-escalates, and where escalation into an excluded level is blocked (escalation zeroes the
    UPMs below EI), EI beats every interval above it, so the trial stays."""
    method = Mtpi2(5, target, 36)
    for n in range(1, 37):
        for y in range(n + 1):
            below, equivalence, above = method.upm(n, y)
            if prob_above_target(n, y, target) >= method.elimination_cutoff:
                assert method.decision(n, y) == Decision.DEESCALATE, (n, y)
            if method.decision(n, y) == Decision.ESCALATE:
                assert equivalence >= above.max(), (n, y)


def _mc_error(p_ref, n_ref, p_ours, n_ours):
    """sqrt(p(1 − p)(1/n1 + 1/n2)) at the pooled proportion."""
    pooled = (p_ref * n_ref + p_ours * n_ours) / (n_ref + n_ours)
    return np.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_ours))


@pytest.mark.slow
@pytest.mark.parametrize("ref", MTPI2_OC, ids=lambda r: r["scenario"])
def test_mtpi2_dosing_matches_escalation_simulations(ref):
    """escalation's simulate_trials (2,000 trials) against 40,000 here: the mean patients and
    DLTs per level, each within 4 Monte Carlo standard errors. The SE of a difference of means is
    sd·sqrt(1/n1 + 1/n2) with sd the per-trial standard deviation estimated here (escalation does
    not report it); the README's proportion form, with p the share of all patients (or of the
    maximum sample size, for DLTs), bounds it from above and is asserted too.

    The final selection is not compared: escalation's plain mTPI-2 recommends the next dose after
    the last cohort, and ``select_mtpi2_mtd`` pools untested levels into its isotonic fit; here
    the MTD is the interval designs' (isotonic regression over the treated, non-eliminated
    levels, as BOIN)."""
    n_levels, max_n = len(ref["true_prob_tox"]), ref["max_n"]
    method = Mtpi2(n_levels, ref["target"], max_n, elimination_cutoff=0.95)
    design = interval_design(method, cohort_size=ref["cohort_size"])
    n_trials = 40_000
    sim = simulate([design], [scenario(*ref["true_prob_tox"])], n_trials, seed=2026)[0][0]
    oc = OperatingCharacteristics.from_simulations(sim)
    n_ref = ref["num_sims"]
    assert ref["prob_recommend_none"] == 0 and oc.values["no_selection_pct"] < 0.1
    for key, ref_key in (("patients_mean", "mean_n_at_dose"), ("dlt_mean", "mean_tox_at_dose")):
        ours, expected = np.array(oc.values[key]), np.array(ref[ref_key])
        sd = np.array(oc.se[key]) * np.sqrt(n_trials)
        se = sd * np.sqrt(1 / n_ref + 1 / n_trials)
        assert np.all(np.abs(ours - expected) <= 4 * se), (key, ours, expected, se)
        share = _mc_error(expected / max_n, n_ref, ours / max_n, n_trials) * max_n
        assert np.all(np.abs(ours - expected) <= 4 * share), (key, ours, expected, share)


# --- Keyboard against the Keyboard R package, and against mTPI-2 ------------------------------


def _keyboard_reference() -> list[dict[str, str]]:
    with open(REFERENCE / "keyboard_boundaries.csv") as lines:
        return list(csv.DictReader(line for line in lines if not line.startswith("#")))


def test_keyboard_matches_package_boundaries():
    """All six targets, n = 1 … 30; the package eliminates from one patient on."""
    rows = _keyboard_reference()
    targets = sorted({float(row["target"]) for row in rows})
    tables = {t: Keyboard(5, t, 30, elimination_min_n=1).decision_rows() for t in targets}
    for row in rows:
        got = tables[float(row["target"])][int(row["patients"]) - 1]
        expected = [None if row[k] == "NA" else int(row[k]) for k in ("escalate", "deescalate")]
        assert [got["escalate_if_dlt_le"], got["deescalate_if_dlt_ge"]] == expected, row
        eliminate = None if row["eliminate"] == "NA" else int(row["eliminate"])
        assert got["eliminate_if_dlt_ge"] == eliminate, row
    assert len(tables) == 6 and len(rows) == 180


def test_keyboard_default_eliminates_from_three_patients():
    rows = Keyboard(5, 0.3, 30).decision_rows()
    assert rows[1]["eliminate_if_dlt_ge"] is None  # 2/2: the package eliminates, BOIN does not
    assert rows[2]["eliminate_if_dlt_ge"] == 3


@pytest.mark.parametrize("target", [0.15, 0.2, 0.25, 0.3, 0.35, 0.4])
def test_keyboard_and_mtpi2_decide_alike(target):
    """Ji & Yang (2017, arXiv:1706.03277) show the strongest key and the highest-UPM interval
    coincide; they differ only where intervals tie — none does once a patient is treated (with
    none, the flat prior ties every interval: mTPI-2 escalates, Keyboard takes the higher key)."""
    keyboard, mtpi2 = Keyboard(5, target, 30), Mtpi2(5, target, 30)
    np.testing.assert_array_equal(keyboard.moves[1:], mtpi2.moves[1:])
    assert keyboard.decision_rows() == mtpi2.decision_rows()


# --- i3+3 against its paper -------------------------------------------------------------------

# Liu, Wang & Ji (2020) J Biopharm Stat 30:294-304, doi:10.1080/10543406.2019.1636811: the i3+3
# rule with target 0.30 and EI = [0.25, 0.35] (as in the paper's example), decisions per number
# of DLTs y = 0, 1, … at n = 1 … 12 worked by hand from the rule as the paper and the authors'
# R package FIND (get_decision_i3plus3) state it: E if y/n < 0.25; S if 0.25 ≤ y/n ≤ 0.35; above,
# S if (y − 1)/n < 0.25, else D; DU where P(p > 0.3 | y, n) > 0.95 with n ≥ 3 (the probabilities
# as escalation.json's prob_over_target: n = 3: y ≥ 3, 4: 3, 5: 4, 6: 4, 7: 5, 8: 5, 9: 5,
# 10: 6, 11: 6, 12: 7).
I3P3_TABLE = {
    1: "E S",
    2: "E S D",
    3: "E S D DU",
    4: "E S D DU DU",
    5: "E E S D DU DU",
    6: "E E S D DU DU DU",
    7: "E E S D D DU DU DU",
    8: "E E S D D DU DU DU DU",
    9: "E E E S D DU DU DU DU DU",
    10: "E E E S D D DU DU DU DU DU",
    11: "E E E S D D DU DU DU DU DU DU",
    12: "E E E S S D D DU DU DU DU DU DU",
}


def test_i3p3_matches_paper_rule_table():
    method = I3p3(5, 0.3, 12)
    for n, letters in I3P3_TABLE.items():
        assert [method.decision_letter(n, y) for y in range(n + 1)] == letters.split(), n


def test_i3p3_keeps_one_dlt_of_leeway_above_the_interval():
    """The rule's point: 2/5 = 0.4 is above EI, but 1/5 is below it, so stay; 2/4 de-escalates
    as 1/4 is inside EI (the bound 0.25 = 0.3 − 0.05 compared exactly)."""
    method = I3p3(5, 0.3, 12)
    assert method.decision(5, 2) == Decision.STAY
    assert method.decision(4, 2) == Decision.DEESCALATE
    assert method.decision(4, 1) == Decision.STAY
    assert method.decision(12, 3) == Decision.STAY  # 3/12 = 0.25, inside EI


# --- every interval design: the table is what the engine does, and it is monotone -------------


def _methods(max_patients: int = 18):
    return [cls(5, 0.3, max_patients) for cls in DESIGN_CLASSES] + [
        Boin(5, 0.25, max_patients, extra_safe=False),
        Mtpi2(5, 0.2, max_patients, eps1=0.05, eps2=0.1),
        I3p3(5, 0.25, max_patients, eps1=0.05, eps2=0.05),
    ]


@pytest.mark.parametrize("method", _methods(), ids=lambda m: f"{m.key}-{m.target}")
def test_table_is_what_the_engine_does(method):
    """Each (n, y) cell as a trial at level 3 of 5: E → level 4, S → 3, D → 2, DU → 2 with
    level 3 and above no longer allowed."""
    cells = [(n, y) for n in range(1, method.max_patients + 1) for y in range(n + 1)]
    state = one_level_states(cells, 5, 2)
    decide(interval_design(method), state)
    move = {"E": 3, "S": 2, "D": 1, "DU": 1}
    for i, (n, y) in enumerate(cells):
        letter = method.decision_letter(n, y)
        assert state.active[i] and state.next_level[i] == move[letter], (n, y, letter)
        assert method.allowed(state)[i, 2] == (letter != "DU"), (n, y, letter)


def test_decision_table_rows():
    rows = Mtpi2(5, 0.3, 12).decision_table()
    assert rows[2] == {"n": 3, "E": (0, 0), "S": (1, 1), "D": (2, 2), "DU": (3, 3)}
    assert rows[11] == {"n": 12, "E": (0, 2), "S": (3, 4), "D": (5, 6), "DU": (7, 12)}
    assert Mtpi2(5, 0.3, 12).decision_rows()[11] == {
        "n": 12,
        "escalate_if_dlt_le": 2,
        "deescalate_if_dlt_ge": 5,
        "eliminate_if_dlt_ge": 7,
    }


def test_boin_decision_is_its_boundaries():
    method = Boin(5, 0.3, 30)
    lambda_e, lambda_d = method.lambdas
    for n in range(1, 31):
        for y in range(n + 1):
            expected = (
                Decision.ESCALATE
                if y / n <= lambda_e
                else Decision.DEESCALATE
                if y / n >= lambda_d
                else Decision.STAY
            )
            assert method.decision(n, y) == expected, (n, y)


@settings(max_examples=30, deadline=None)
@given(
    cls=st.sampled_from(DESIGN_CLASSES),
    target=st.floats(0.1, 0.5),
    eps=st.tuples(st.floats(0.01, 0.09), st.floats(0.01, 0.09)),
    cutoff=st.sampled_from([0.95, 0.9, 0.99, 0.8]),
)
def test_more_dlts_never_give_a_higher_decision(cls, target, eps, cutoff):
    options = {} if cls is Boin else {"eps1": min(eps[0], target / 2), "eps2": eps[1]}
    method = cls(5, target, 15, elimination_cutoff=cutoff, **options)
    for n in range(1, 16):
        moves = [method.decision(n, y) for y in range(n + 1)]
        assert all(a >= b for a, b in zip(moves, moves[1:], strict=False)), (n, moves)
        assert method.moves[n, : n + 1].tolist() == moves
        eliminated = [y >= method.eliminate_ge[n] for y in range(n + 1)]
        assert all(b for a, b in zip(eliminated, eliminated[1:], strict=False) if a), n
        if n < 15:  # one more patient with a DLT keeps it out
            assert all(y + 1 >= method.eliminate_ge[n + 1] for y in range(n + 1) if eliminated[y])


def test_a_rule_that_rises_with_dlts_is_refused():
    class Backwards(I3p3):
        def decision(self, n, y):
            return Decision.ESCALATE if y == n else Decision.STAY

    with pytest.raises(ValueError, match="must not increase"):
        Backwards(3, 0.3, 6)
