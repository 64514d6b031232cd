"""The vectorised engine against the one-trial-at-a-time reference simulator (``reference_sim``).

Both run on the same latent tolerances, so every trial must agree exactly: the level and DLT of
every patient (hence n and y per level), the selected MTD and the stop reason.

Stop reasons are compared one to one, with a single mapping: BOIN's ``get.oc`` does not check
elimination after the cohort that reaches the maximum sample size (the reference follows it and
says ``max_patients``), while the engine does and says ``TOO_TOXIC`` when that cohort eliminates
level 1. The MTD is none either way, as ``select.mtd`` rechecks elimination on all the data.

The reference decides BOIN moves by the ratio y/n against λe, λd and the engine by the decision
table (y ≤ ⌊nλe⌋, y ≥ ⌈nλd⌉); they differ only when nλ rounds onto an integer (λ within an ulp
of k/n), which random designs do not hit. MTDs in failure messages are 1-based, 0 for none.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import boin_design, three_plus_three_design, true_probabilities
from reference_sim import (
    RefStop,
    RefTrial,
    boin,
    boin_boundaries,
    outcome_string,
    three_plus_three,
)
from theradose.engine import run_trials
from theradose.pipeline import select_mtd
from theradose.state import NO_LEVEL, StopReason

TRIALS_PER_EXAMPLE = 50

STOP = {
    RefStop.TOO_TOXIC: StopReason.TOO_TOXIC,
    RefStop.RULE_COMPLETE: StopReason.RULE_COMPLETE,
    RefStop.MAX_PATIENTS: StopReason.MAX_PATIENTS,
    RefStop.MAX_AT_DOSE: StopReason.MAX_AT_DOSE,
}


@st.composite
def scenarios(draw, min_levels: int = 2, max_levels: int = 7) -> tuple[float, ...]:
    """Non-decreasing true DLT probabilities, with 0, 1 and ties likely."""
    n_levels = draw(st.integers(min_levels, max_levels))
    return draw(true_probabilities(n_levels))


def tolerances(seed: int, n_patients: int) -> np.ndarray:
    """Latent tolerances u ~ U(0, 1), [trial, patient]."""
    return np.random.default_rng(seed).random((TRIALS_PER_EXAMPLE, n_patients))


def assert_same(state, mtd, i: int, ref: RefTrial, expected_stop: StopReason) -> None:
    """Trial ``i`` of the engine's ``state`` is the reference trial, patient by patient."""
    enrolled = len(ref.levels)
    got_levels = state.patient_level[i, :enrolled].tolist()
    got_dlts = state.patient_dlt[i, :enrolled].tolist()
    where = (
        f"trial {i}: reference {outcome_string(ref.levels, ref.dlts)!r} "
        f"(MTD {ref.mtd + 1}, {ref.stop.value}); engine "
        f"{outcome_string(got_levels, got_dlts)!r} (n_enrolled {state.n_enrolled[i]}, "
        f"MTD {mtd[i] + 1}, {StopReason(int(state.stop_reason[i])).name})"
    )
    assert got_levels == list(ref.levels), where
    assert got_dlts == list(ref.dlts), where
    assert (state.patient_level[i, enrolled:] == NO_LEVEL).all(), where
    assert state.n_enrolled[i] == enrolled, where
    assert state.n[i].tolist() == list(ref.n), where
    assert state.y[i].tolist() == list(ref.y), where
    assert mtd[i] == ref.mtd, where
    assert state.stop_reason[i] == expected_stop, where
    assert not state.active[i], where


@settings(max_examples=300, deadline=None)
@given(
    p_true=scenarios(),
    deescalate=st.booleans(),
    cap=st.one_of(st.none(), st.integers(3, 42)),  # a design file needs max_patients >= 3
    seed=st.integers(0, 2**32 - 1),
)
def test_three_plus_three_matches_reference(p_true, deescalate, cap, seed):
    n_levels = len(p_true)
    max_patients = None if cap is None else min(cap, 6 * n_levels)
    design = three_plus_three_design(n_levels, deescalate, max_patients)
    u = tolerances(seed, design.max_patients)
    state = run_trials(design, p_true, u)
    mtd = select_mtd(design, state)
    for i in range(TRIALS_PER_EXAMPLE):
        ref = three_plus_three(u[i], p_true, deescalate=deescalate, max_patients=max_patients)
        assert_same(state, mtd, i, ref, STOP[ref.stop])


@st.composite
def boin_designs(draw, n_levels: int) -> dict:
    target = draw(st.sampled_from([0.1, 0.2, 0.25, 0.3, 0.33, 0.4, 0.5]) | st.floats(0.1, 0.5))
    options = {
        "target": target,
        "n_levels": n_levels,
        "cohort_size": (cohort_size := draw(st.integers(1, 4))),
        "max_patients": draw(st.integers(cohort_size, 45)),
        "start_level": draw(st.integers(0, n_levels - 1)),
        "max_at_dose": draw(st.sampled_from([100]) | st.integers(4, 12)),
        "extra_safe": draw(st.booleans()),
        "elimination_cutoff": draw(st.sampled_from([0.95, 0.95, 0.9, 0.99])),
    }
    if draw(st.booleans()):
        # BOIN's get.boundary requires p.saf ≤ 0.9 φ and p.tox ≥ 1.1 φ.
        options["p_saf"] = draw(st.floats(0.2, 0.9)) * target
        options["p_tox"] = min(draw(st.floats(1.1, 2.5)) * target, 0.95)
    if options["extra_safe"]:
        options["extra_safe_offset"] = draw(st.sampled_from([0.05, 0.05, 0.1, 0.2]))
    return options


@settings(max_examples=800, deadline=None)
@given(data=st.data(), p_true=scenarios(), seed=st.integers(0, 2**32 - 1))
def test_boin_matches_reference(data, p_true, seed):
    options = data.draw(boin_designs(len(p_true)))
    design = boin_design(**options)
    u = tolerances(seed, design.max_patients)
    state = run_trials(design, p_true, u)
    mtd = select_mtd(design, state)
    for i in range(TRIALS_PER_EXAMPLE):
        ref = boin(
            u[i],
            p_true,
            target=options["target"],
            cohort_size=options["cohort_size"],
            max_patients=options["max_patients"],
            start_level=options["start_level"],
            p_saf=options.get("p_saf"),
            p_tox=options.get("p_tox"),
            cutoff=options["elimination_cutoff"],
            extra_safe=options["extra_safe"],
            offset=options.get("extra_safe_offset", 0.05),
            max_at_dose=options["max_at_dose"],
        )
        expected = STOP[ref.stop]
        if ref.lowest_eliminated_at_end:
            expected = StopReason.TOO_TOXIC
        assert_same(state, mtd, i, ref, expected)


def test_reference_replays_published_boin_path():
    """Liu & Yuan (2015), Table 1 at φ = 0.3: λe = 0.236, λd = 0.358 (0.3585), and a path."""
    lambda_e, lambda_d = boin_boundaries(0.3, 0.18, 0.42)
    assert abs(lambda_e - 0.236) < 1e-3 and abs(lambda_d - 0.358) < 1e-3
    # tolerances chosen so levels 1-2 give no DLT and level 3 gives N T T
    u = [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1]
    ref = boin(u, [0.2, 0.3, 0.5, 0.6], target=0.3, cohort_size=3, max_patients=9)
    assert outcome_string(ref.levels, ref.dlts) == "1NNN 2NNN 3NTT"
    assert ref.stop is RefStop.MAX_PATIENTS


def test_reference_three_plus_three_textbook_paths():
    """Hand-checked 3+3 paths of the reference itself (u = 0 is a DLT, u = 0.99 is not)."""
    t, n_ = 0.0, 0.99
    p = [0.5, 0.5, 0.5]
    # 1NNN 2TNN 2NNN 3TTN: level 3 too toxic, level 2 has six with one DLT → MTD 2 (0-based 1)
    u = [n_, n_, n_, t, n_, n_, n_, n_, n_, t, t, n_]
    ref = three_plus_three(u, p, deescalate=True)
    assert outcome_string(ref.levels, ref.dlts) == "1NNN 2TNNNNN 3TTN"
    assert (ref.mtd, ref.stop) == (1, RefStop.RULE_COMPLETE)
    # 1NNN 2NNN 3TTN, then back to 2 for three more: 2NNN ends the trial, MTD 2
    u = [n_] * 6 + [t, t, n_] + [n_] * 3
    ref = three_plus_three(u, p, deescalate=True)
    assert outcome_string(ref.levels, ref.dlts) == "1NNN 2NNN 3TTN 2NNN"
    assert (ref.mtd, ref.stop) == (1, RefStop.RULE_COMPLETE)
    # escalation only: 3TTN stops at once with MTD 2 after three patients there
    ref = three_plus_three(u, p, deescalate=False)
    assert outcome_string(ref.levels, ref.dlts) == "1NNN 2NNN 3TTN"
    assert (ref.mtd, ref.stop) == (1, RefStop.RULE_COMPLETE)
    # all clear: past the top, MTD = top
    ref = three_plus_three([n_] * 9, p)
    assert (ref.n, ref.mtd) == ((3, 3, 3), 2)
    # 1TTN: no MTD
    ref = three_plus_three([t, t, n_], p)
    assert (ref.mtd, ref.stop) == (-1, RefStop.TOO_TOXIC)
