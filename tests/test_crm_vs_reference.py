"""The vectorised CRM against the one-trial-at-a-time reference simulator (``reference_sim.crm``).

Both run on the same latent tolerances, so every trial must agree exactly: the level and DLT of
every patient (hence n and y per level), the selected MTD and the stop reason. The reference
integrates the posterior of β by adaptive quadrature (``scipy.integrate.quad``), the engine by a
fixed Gauss–Legendre rule, so the two can part only where a decision is an exact tie up to
rounding: two levels at the same distance from the target, or P(p_1 > target | data) at the
safety cutoff. Such trials (margin below ``TIE``) are reported as warnings, never failed; every
other difference fails with a reproducer. MTDs in failure messages are 1-based, 0 for none.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from factories import REFERENCE, crm_design, true_probabilities
from reference_sim import RefStop, RefTrial, closest_level, crm, crm_fit, outcome_string
from theradose.engine import run_trials
from theradose.methods.crm import lee_cheung_skeleton, skeleton_problem
from theradose.pipeline import select_mtd
from theradose.state import NO_LEVEL, StopReason

TRIALS_PER_EXAMPLE = 3
TIE = 1e-9  # a decision margin below this is an exact tie up to rounding

STOP = {
    RefStop.SAFETY: StopReason.SAFETY,
    RefStop.MAX_PATIENTS: StopReason.MAX_PATIENTS,
    RefStop.MAX_AT_DOSE: StopReason.MAX_AT_DOSE,
}


@st.composite
def skeletons(draw, n_levels: int, target: float, model: str) -> tuple[float, ...]:
    """Strictly increasing skeletons within [0.02, 0.9] (below expit(3) for the logistic), or
    Lee–Cheung skeletons as dfcrm's ``getprior`` builds them."""
    if draw(st.booleans()):
        halfwidth = draw(st.floats(0.02, 0.1)) * target / 0.3
        prior_mtd = draw(st.integers(0, n_levels - 1))
        values = lee_cheung_skeleton(halfwidth, target, prior_mtd, n_levels, model)
        assume(skeleton_problem(values, model) is None and min(values) >= 1e-3)
        return values
    values = sorted(
        draw(st.lists(st.floats(0.02, 0.9), min_size=n_levels, max_size=n_levels, unique=True))
    )
    assume(min(b - a for a, b in zip(values, values[1:], strict=False)) > 1e-3)
    return tuple(values)


@st.composite
def crm_cases(draw) -> tuple[dict, tuple[float, ...]]:
    """Options of ``factories.crm_design`` and non-decreasing true DLT probabilities."""
    n_levels = draw(st.integers(3, 6))
    target = draw(st.sampled_from([0.2, 0.25, 0.3, 1 / 3]) | st.floats(0.15, 0.4))
    model = draw(st.sampled_from(["empiric", "logistic"]))
    options = {
        "skeleton": draw(skeletons(n_levels, target, model)),
        "target": target,
        "max_patients": draw(st.integers(3, 24)),
        "cohort_size": draw(st.integers(1, 3)),
        "model": model,
        "no_skip": draw(st.booleans()),
        "coherent": draw(st.booleans()),
        "estimate": draw(st.sampled_from(["plugin", "posterior_mean"])),
        "start_up": draw(st.sampled_from(["none", "cohorts"])),
        "safety_cutoff": draw(st.none() | st.floats(0.7, 0.95)),
        "safety_min_n": draw(st.integers(1, 9)),
        "max_at_dose": draw(st.none() | st.integers(4, 9)),
    }
    p_true = draw(true_probabilities(n_levels))
    return options, p_true


def reference_trial(options: dict, p_true, u) -> RefTrial:
    return crm(u, p_true, **options)


def differences(state, mtd, i: int, ref: RefTrial) -> list[str]:
    """How trial ``i`` of the engine differs from the reference trial (empty when identical)."""
    enrolled = len(ref.levels)
    found = []
    if state.patient_level[i, :enrolled].tolist() != list(ref.levels):
        found.append("levels")
    if state.patient_dlt[i, :enrolled].tolist() != list(ref.dlts):
        found.append("DLTs")
    if not (state.patient_level[i, enrolled:] == NO_LEVEL).all():
        found.append("patients after the reference stopped")
    if state.n_enrolled[i] != enrolled:
        found.append("n_enrolled")
    if state.n[i].tolist() != list(ref.n):
        found.append("n")
    if state.y[i].tolist() != list(ref.y):
        found.append("y")
    if mtd[i] != ref.mtd:
        found.append("MTD")
    if state.stop_reason[i] != STOP[ref.stop]:
        found.append("stop reason")
    if state.active[i]:
        found.append("still active")
    return found


def describe(state, mtd, i: int, ref: RefTrial, options: dict, p_true, u) -> str:
    got_levels = state.patient_level[i, : state.n_enrolled[i]].tolist()
    got_dlts = state.patient_dlt[i, : state.n_enrolled[i]].tolist()
    return (
        f"reference {outcome_string(ref.levels, ref.dlts)!r} (MTD {ref.mtd + 1}, "
        f"{ref.stop.value}); engine {outcome_string(got_levels, got_dlts)!r} "
        f"(MTD {mtd[i] + 1}, {StopReason(int(state.stop_reason[i])).name}); "
        f"smallest tie gap {ref.tie_gap:.3g}, safety-cutoff gap {ref.cutoff_gap:.3g}\n"
        f"reproducer: crm_design(**{options!r}), p_true={p_true!r}, "
        f"u={[float(v) for v in u]!r}"
    )


@settings(max_examples=250, deadline=None)
@given(case=crm_cases(), seed=st.integers(0, 2**32 - 1))
def test_crm_matches_reference(case, seed):
    """Random CRM designs and truths: the engine's trials are the reference's, patient by
    patient, with the same MTD and stop reason."""
    options, p_true = case
    design = crm_design(**options)
    u = np.random.default_rng(seed).random((TRIALS_PER_EXAMPLE, design.max_patients))
    state = run_trials(design, p_true, u)
    mtd = select_mtd(design, state)
    for i in range(TRIALS_PER_EXAMPLE):
        ref = reference_trial(options, p_true, u[i])
        event(f"stop: {ref.stop.value}")
        found = differences(state, mtd, i, ref)
        if not found:
            continue
        where = f"trial {i} differs in {', '.join(found)}: " + describe(
            state, mtd, i, ref, options, p_true, u[i]
        )
        if min(ref.tie_gap, ref.cutoff_gap) < TIE:
            event("exact tie: engine and reference may differ")
            warnings.warn(f"CRM decision at an exact tie, {where}", stacklevel=1)
            continue
        raise AssertionError(where)


def _counts(levels, dlts, n_levels: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n, y = [0] * n_levels, [0] * n_levels
    for level, dlt in zip(levels, dlts, strict=True):
        n[level - 1] += 1
        y[level - 1] += dlt
    return tuple(n), tuple(y)


with (REFERENCE / "crm_posterior.json").open() as _file:
    DFCRM_POSTERIORS = json.load(_file)["results"]


@pytest.mark.parametrize(
    "row", DFCRM_POSTERIORS, ids=[f"{r['dataset']}-{r['call']['model']}" for r in DFCRM_POSTERIORS]
)
def test_reference_posterior_matches_dfcrm(row):
    """The reference's own quadrature against dfcrm 0.2-2.1 ``crm`` (Bayes) on fixed data."""
    call = row["call"]
    n, y = _counts(row["level"], row["tox"], len(call["prior"]))
    fit = crm_fit(call["model"], tuple(call["prior"]), call["target"], n, y, call["prior_var_beta"])
    assert fit.beta_mean == pytest.approx(row["posterior_mean_beta"], abs=1e-8)
    assert fit.p_plugin == pytest.approx(row["ptox"], abs=1e-8)
    assert closest_level(fit.p_plugin, call["target"])[0] + 1 == row["recommended_dose"]


@pytest.mark.parametrize("model", ["empiric", "logistic"])
def test_reference_safety_probability_before_data_is_the_prior(model):
    """With no data P(p_1 > target) = Φ(b/σ), b the β at which p_1 = target (closed form)."""
    skeleton, target, prior_var = (0.05, 0.12, 0.25, 0.4), 0.3, 1.34
    fit = crm_fit(model, skeleton, target, (0,) * 4, (0,) * 4, prior_var)
    if model == "empiric":
        b = math.log(math.log(target) / math.log(skeleton[0]))
    else:
        logit = lambda p: math.log(p / (1 - p))  # noqa: E731
        b = math.log((logit(target) - 3) / (logit(skeleton[0]) - 3))
    prior_cdf = 0.5 * math.erfc(-b / math.sqrt(2 * prior_var))
    assert fit.prob_lowest_above == pytest.approx(prior_cdf, abs=1e-10)
    assert fit.beta_mean == pytest.approx(0.0, abs=1e-10)


def test_reference_crm_hand_checked_paths():
    """Paths of the reference itself that follow from the rules alone (u = 0.99: no DLT,
    u = 0: DLT)."""
    skeleton, p = (0.05, 0.12, 0.25, 0.4), [0.5] * 4
    # Start-up by cohorts: one level per cohort until the first DLT, capped at the top.
    ref = crm([0.99] * 12, p, skeleton, 0.25, 2, 12, start_up="cohorts")
    assert outcome_string(ref.levels, ref.dlts) == "1NN 2NN 3NN 4NNNNNN"
    assert (ref.stop, ref.mtd) == (RefStop.MAX_PATIENTS, 3)
    # Coherence: after the cohort 3TNN (DLT fraction 1/3 ≥ 0.3) the trial stays at level 3,
    # though the model (and the trial without coherence) goes on to level 4.
    low = (0.02, 0.05, 0.1, 0.18, 0.28, 0.4)
    u = [0.99] * 6 + [0.0] + [0.99] * 11
    ref = crm(u, [0.5] * 6, low, 0.3, 3, 18, coherent=True)
    assert outcome_string(ref.levels, ref.dlts) == "1NNN 2NNN 3TNNNNN 4NNN 5NNN"
    ref = crm(u, [0.5] * 6, low, 0.3, 3, 18, coherent=False)
    assert outcome_string(ref.levels, ref.dlts) == "1NNN 2NNN 3TNN 4NNN 5NNN 6NNN"
    # Safety: 3 DLTs in 3 at level 1 of a low skeleton → stop with no MTD.
    ref = crm([0.0] * 6, p, skeleton, 0.25, 3, 6, safety_cutoff=0.8)
    assert (ref.levels, ref.stop, ref.mtd) == ((0, 0, 0), RefStop.SAFETY, -1)
    # max_at_dose: the next cohort would be the fourth at level 1 → stop with an MTD.
    ref = crm([0.0] * 9, p, skeleton, 0.25, 3, 9, max_at_dose=3)
    assert (ref.n[0], ref.stop, ref.mtd) == (3, RefStop.MAX_AT_DOSE, 0)


def test_reference_closest_level_reports_ties():
    """0.2 and 0.4 are equally far from 0.3 up to rounding: the lower wins, the gap is ~0."""
    level, gap = closest_level([0.2, 0.4, 0.6], 0.3)
    assert level == 0 and gap < TIE
    assert closest_level([0.1, 0.25, 0.5], 0.3) == (1, pytest.approx(0.15))


@pytest.mark.parametrize("max_patients", [3, 6])
def test_safety_stop_on_the_last_cohort_gives_no_mtd(max_patients):
    """1TTT at level 1 makes P(p_1 > 0.3 | data) = 0.97 > 0.8: the safety stop fires whether or
    not the cohort was the last one, and no level is selected (the rules are checked safety
    first; the R package escalation's ``stop_when_too_toxic`` likewise recommends no dose on
    the final data)."""
    design = crm_design(max_patients=max_patients, safety_cutoff=0.8)
    u = np.zeros((1, max_patients))
    state = run_trials(design, [0.5] * 6, u)
    ref = reference_trial(
        {
            "skeleton": design.method.model.skeleton,
            "target": 0.3,
            "cohort_size": 3,
            "max_patients": max_patients,
            "safety_cutoff": 0.8,
        },
        [0.5] * 6,
        u[0],
    )
    assert (ref.n, ref.stop, ref.mtd) == ((3, 0, 0, 0, 0, 0), RefStop.SAFETY, NO_LEVEL)
    got = (StopReason(int(state.stop_reason[0])).name, int(select_mtd(design, state)[0]))
    assert got == ("SAFETY", NO_LEVEL)
