"""BOIN12 and efficacy in the virtual patients.

Oracles: the R package escalation 0.2.3 (``get_boin12``, ``select_boin12_obd``;
tests/reference/escalation.json, key "boin12": every single-dose decision, a worked trial and
simulated OBD selection), a literal one-trial-at-a-time transcription of escalation's
``boin12_next_dose`` (R's operator precedence included) that the vectorised engine must match
on the same patients, closed forms for the utility and the copula, and a recording of
theradose's results before efficacy existed (tests/regression/no_efficacy_baseline.json).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from factories import reference
from theradose.config import (
    ConfigError,
    check_scenarios_fit,
    design_from_dict,
    load_design,
    load_scenarios,
    scenarios_from_dict,
)
from theradose.engine import run_trials
from theradose.outcomes import OutcomeError, format_outcomes, parse_outcomes
from theradose.pathways import dose_paths, n_path_nodes
from theradose.pipeline import select_mtd
from theradose.recommendation import recommend, replay
from theradose.results import OperatingCharacteristics
from theradose.scenario import Scenario, both_prob, truth_for
from theradose.simulation import simulate
from theradose.state import NO_LEVEL, StopReason
from theradose.virtual_patients import chunk_patients, chunk_tolerance

ROOT = Path(__file__).resolve().parents[1]
REF = reference("escalation.json")["boin12"]
N_LEVELS = 5


def reference_design(max_patients: int = 30):
    """escalation's get_boin12(num_doses = 5, phi_t = 0.35, phi_e = 0.25, u2 = 40, u3 = 60,
    n_star = 6) %>% stop_at_n(n = 30) %>% stop_when_n_at_dose(n = 12, dose = 'any')."""
    return design_from_dict(
        {
            "name": "BOIN12 reference",
            "method": "boin12",
            "target": 0.35,
            "levels": N_LEVELS,
            "start_level": 1,
            "cohort_size": 3,
            "max_patients": max_patients,
            "boin12": {"phi_e": 0.25, "u11": 60, "u00": 40, "n_star": 6, "max_at_dose": 12},
        },
        "boin12-reference.toml",
    )


def _near(state):
    """escalation's admissible set: the acceptable levels among d − 1, d, d + 1."""
    d = state.level[:, None]
    return np.abs(np.arange(N_LEVELS)[None, :] - d) <= 1


# -- escalation's decisions, exactly ---------------------------------------------------------


@pytest.mark.parametrize("row", REF["single_dose_states"]["rows"], ids=lambda r: r["outcomes"])
def test_single_dose_decisions_are_escalations(row):
    design = reference_design()
    state, _ = replay(design, parse_outcomes(row["outcomes"], N_LEVELS, efficacy=True))
    state.active[:] = True
    proposal, stop = design.method.propose(state)
    assert int(proposal[0]) + 1 == row["recommended_dose"]
    assert (stop[0] == 0) == row["continue"]
    admissible = design.method.acceptable(state) & _near(state)
    assert admissible[0].tolist() == row["admissible"]
    score = design.method.level_summary(state)["desirability"][0]
    np.testing.assert_allclose(score, row["utility_score"], rtol=1e-10)


@pytest.mark.parametrize("row", REF["published_example"]["rows"], ids=lambda r: r["outcomes"])
def test_worked_trial_is_escalations(row):
    """Each step of the worked trial (Lin et al.'s example through escalation): the next level,
    whether to go on, the admissible set, and at the end the OBD."""
    design = reference_design()
    cohorts = parse_outcomes(row["outcomes"], N_LEVELS, efficacy=True)
    rec = recommend(design, cohorts)
    assert rec.deviations == ()
    assert (not rec.stop) == row["continue"]
    if row["continue"]:
        assert rec.next_level + 1 == row["recommended_dose"]
    else:
        assert rec.mtd + 1 == row["recommended_dose_with_obd"]
    state, _ = replay(design, cohorts)
    admissible = design.method.acceptable(state) & _near(state)
    assert admissible[0].tolist() == row["admissible"]


def _escalation_next_dose(dose, tox, eff, method):
    """escalation 0.2.3's boin12_next_dose, transcribed line by line for one trial (1-based
    doses; 0 = stop), with R's precedence: `currentdose-1 %in% admissible` is
    `currentdose - (1 %in% admissible)`."""
    phi_t, phi_e, u2, u3 = method.target, method.phi_e, method.u00, method.u11
    lambda_e, lambda_d = method.lambdas
    u_bar = 100 * phi_e * (1 - phi_t) + u2 * (1 - phi_t) * (1 - phi_e) + u3 * phi_t * phi_e
    u_b = u_bar + (100 - u_bar) / 2

    def pbenchmark(doses):
        out = []
        for d in doses:
            at = dose == d
            y1 = np.sum(at & (tox == 0) & (eff == 1))
            y2 = np.sum(at & (tox == 0) & (eff == 0))
            y3 = np.sum(at & (tox == 1) & (eff == 1))
            x = (100 * y1 + u2 * y2 + u3 * y3) / 100
            out.append(100 * stats.beta.sf(u_b / 100, 1 + x, 1 + at.sum() - x))
        return np.array(out)

    current = dose[-1]
    n = np.sum(dose == current)
    p_t = tox[dose == current].sum() / n
    admissible = list(dict.fromkeys([max(1, current - 1), current, min(N_LEVELS, current + 1)]))
    for d in list(admissible):
        at = dose == d
        n_t, n_e, n_d = tox[at].sum(), eff[at].sum(), at.sum()
        if stats.beta.sf(phi_t, 1 + n_t, 1 + n_d - n_t) >= method.c_t:
            admissible.remove(d)
        elif stats.beta.cdf(phi_e, 1 + n_e, 1 + n_d - n_e) >= method.c_e:
            admissible.remove(d)
    if n > 8 and p_t < lambda_d and current != N_LEVELS and np.sum(dose == current + 1) == 0:
        return current + 1
    if p_t >= lambda_d:
        return max(current - 1, 1)
    if lambda_e < p_t < lambda_d and n >= method.n_star:
        test = current - (1 in admissible)
        if test != 0 and current in admissible:
            return [current - 1, current][int(np.argmax(pbenchmark([current - 1, current])))]
        if test != 0:
            return current - 1
        return current if current in admissible else 1
    if not admissible:
        return 0
    u = pbenchmark(admissible)
    return admissible[int(np.flatnonzero(u == u.max())[-1])]


@pytest.mark.parametrize(
    ("rho", "dlt_prob", "eff_prob"),
    [
        (0.0, [0.05, 0.1, 0.15, 0.2, 0.25], [0.1, 0.2, 0.5, 0.5, 0.5]),
        (0.5, [0.1, 0.2, 0.35, 0.5, 0.6], [0.05, 0.3, 0.3, 0.2, 0.6]),
        (-0.3, [0.02, 0.05, 0.1, 0.15, 0.2], [0.02, 0.05, 0.1, 0.2, 0.2]),
    ],
)
def test_engine_equals_a_one_trial_transcription_of_escalation(rho, dlt_prob, eff_prob):
    """The vectorised engine treats every patient where escalation's own code, run one trial at
    a time on the same patients' draws, would; it stops where that code stops."""
    design = reference_design()
    scenario = Scenario("R", tuple(dlt_prob), eff_prob=tuple(eff_prob), tox_eff_correlation=rho)
    patients = chunk_patients(17, 0, 300, 30, False).with_efficacy(scenario)
    state = run_trials(design, dlt_prob, patients, eff_prob=np.asarray(eff_prob))
    p_t, p_e = np.asarray(dlt_prob), np.asarray(eff_prob)
    for t in range(300):
        u, v = patients.tolerance[t], patients.response[t]
        dose = tox = eff = np.array([], dtype=int)
        level = 1
        while True:
            k = dose.size
            dose = np.r_[dose, [level] * 3]
            tox = np.r_[tox, (u[k : k + 3] < p_t[level - 1]).astype(int)]
            eff = np.r_[eff, (v[k : k + 3] < p_e[level - 1]).astype(int)]
            level = _escalation_next_dose(dose, tox, eff, design.method)
            at_most = max(np.sum(dose == d) for d in range(1, N_LEVELS + 1))
            if level == 0 or dose.size >= 30 or at_most >= 12:
                break
        assert state.n_enrolled[t] == dose.size, t
        assert (state.patient_level[t, : dose.size] + 1 == dose).all(), t
        assert (state.stop_reason[t] == StopReason.NONE_ACCEPTABLE) == (level == 0), t


@pytest.mark.slow
def test_obd_selection_matches_escalation_within_monte_carlo_error():
    """escalation's simulate_trials (1,000 trials, scenario E1) against 20,000 trials here:
    selection of each level (and of none), patients, DLTs and responses per level, each within
    4 Monte Carlo standard errors of the difference."""
    oc_ref = REF["oc"][0]
    design = reference_design()
    scenario = Scenario(
        "E1", tuple(oc_ref["true_prob_tox"]), eff_prob=tuple(oc_ref["true_prob_eff"])
    )
    [[sim]] = simulate([design], [scenario], 20_000, 2026)
    oc = OperatingCharacteristics.from_simulations(sim)
    n_ref, n_here = oc_ref["num_sims"], sim.n_trials
    assert oc.values["true_obd"] == oc_ref["derived_by_driver"]["true_obd"]
    np.testing.assert_allclose(
        oc.values["true_utility"], oc_ref["derived_by_driver"]["true_utility"]
    )
    here = np.r_[oc.values["no_selection_pct"], oc.values["selection_pct"]] / 100
    there = np.r_[oc_ref["prob_recommend_none"], oc_ref["prob_recommend"]]
    pooled = (here * n_here + there * n_ref) / (n_here + n_ref)
    se = np.sqrt(np.maximum(pooled * (1 - pooled), 1e-4) * (1 / n_here + 1 / n_ref))
    assert np.all(np.abs(here - there) <= 4 * se), (here, there, (here - there) / se)
    for key, ref_key in (
        ("patients_mean", "mean_n_at_dose"),
        ("dlt_mean", "mean_tox_at_dose"),
        ("response_mean", "mean_eff_at_dose"),
    ):
        mean, error = np.asarray(oc.values[key]), np.asarray(oc.se[key])
        sd = error * np.sqrt(n_here)
        se = np.sqrt(error**2 + sd**2 / n_ref)
        assert np.all(np.abs(mean - oc_ref[ref_key]) <= 4 * se), (key, mean, oc_ref[ref_key])


# -- the utility -------------------------------------------------------------------------------


def test_utility_table_cell_by_cell_is_what_the_engine_scores():
    """Each outcome of the printed utility table, as one patient at level 1: the engine's
    quasi-responses are its utility / 100, its desirability 100·P(Beta(1 + x, 2 − x) > u_b),
    and a level whose patients all have that outcome has that true utility."""
    design = reference_design()
    method = design.method
    assert [row["utility"] for row in method.utility_table()] == [100, 40, 60, 0]
    for row in method.utility_table():
        state, _ = replay(design, parse_outcomes(f"1{row['letter']}", N_LEVELS, efficacy=True))
        x = method.quasi_responses(state.n, state.y, state.r, state.b)[0, 0]
        assert x == pytest.approx(row["utility"] / 100)
        expected = 100 * stats.beta.sf(method.benchmark / 100, 1 + x, 2 - x)
        assert method.level_summary(state)["desirability"][0, 0] == pytest.approx(expected)
        dlt, response = {"E": (0, 1), "N": (0, 0), "B": (1, 1), "T": (1, 0)}[row["letter"]]
        true = method.utility([dlt], [response], [dlt * response])
        assert true[0] == pytest.approx(row["utility"])
    # the benchmark of Lin et al.: ū = utility at (φ_T, φ_E) = 41, u_b = 70.5 (escalation's
    # untried levels score 100 − u_b = 29.5)
    assert method.highest_undesirable_utility == pytest.approx(41.0)
    assert method.benchmark == pytest.approx(70.5)


def test_true_obd_is_the_acceptable_level_of_highest_true_utility():
    oc_ref = REF["oc"][0]
    design = reference_design()
    scenario = Scenario(
        "E1", tuple(oc_ref["true_prob_tox"]), eff_prob=tuple(oc_ref["true_prob_eff"])
    )
    truth = truth_for(scenario, design)
    np.testing.assert_allclose(truth.utility, oc_ref["derived_by_driver"]["true_utility"])
    assert truth.obd + 1 == oc_ref["derived_by_driver"]["true_obd"]
    inactive = dataclasses.replace(scenario, eff_prob=(0.05,) * N_LEVELS)
    assert truth_for(inactive, design).obd == NO_LEVEL


# -- efficacy in the virtual patients ---------------------------------------------------------


def _one_level_draws(rho: float, p_t: float, p_e: float, n: int = 400_000):
    scenario = Scenario("X", (p_t,), eff_prob=(p_e,), tox_eff_correlation=rho)
    patients = chunk_patients(5, 0, n, 1, False).with_efficacy(scenario)
    return patients, patients.tolerance[:, 0] < p_t, patients.response[:, 0] < p_e


def test_response_draws_are_independent_of_toxicity_at_zero_correlation():
    patients, dlt, response = _one_level_draws(0.0, 0.3, 0.4)
    n = dlt.size
    # the tolerances are today's, draw for draw
    np.testing.assert_array_equal(patients.tolerance, chunk_tolerance(5, 0, n, 1))
    for observed, expected in ((response.mean(), 0.4), ((dlt & response).mean(), 0.3 * 0.4)):
        assert abs(observed - expected) <= 4 * np.sqrt(expected * (1 - expected) / n)
    np.testing.assert_array_equal(patients.response[:, 0] < 1.0, True)


@pytest.mark.parametrize("rho", [0.5, -0.4])
def test_response_draws_follow_the_gaussian_copula(rho):
    """P(response) is the margin; P(DLT and response) = Φ₂(Φ⁻¹(p_T), Φ⁻¹(p_E); ρ); the normal
    scores correlate with ρ — each within Monte Carlo error."""
    patients, dlt, response = _one_level_draws(rho, 0.3, 0.4)
    n = dlt.size
    expected = float(both_prob([0.3], [0.4], rho)[0])
    assert expected != pytest.approx(0.12, abs=0.01)  # the copula does move it
    for observed, p in ((response.mean(), 0.4), ((dlt & response).mean(), expected)):
        assert abs(observed - p) <= 4 * np.sqrt(p * (1 - p) / n)
    z = stats.norm.ppf(np.c_[patients.tolerance[:, 0], patients.response[:, 0]])
    r = np.corrcoef(z.T)[0, 1]
    assert abs(r - rho) <= 4 * (1 - rho**2) / np.sqrt(n)


def test_existing_designs_are_unchanged_without_efficacy():
    """Raw sums of BOIN, CRM and BOIN with timing on designs/scenarios.toml equal those recorded
    before efficacy was added (same seed and trials)."""
    baseline = json.loads((ROOT / "tests/regression/no_efficacy_baseline.json").read_text())
    scenarios = load_scenarios(ROOT / "designs/scenarios.toml")
    paths = sorted({row["design"] for row in baseline["results"]}, key=lambda p: p)
    designs = [load_design(ROOT / path) for path in paths]
    results = simulate(designs, scenarios, baseline["n_trials"], baseline["seed"])
    now = {
        (path, sim.scenario): sim for path, row in zip(paths, results, strict=True) for sim in row
    }
    for row in baseline["results"]:
        sim = now[(row["design"], row["scenario"])]
        assert sim.selected.tolist() == row["selected"], row["design"]
        assert sim.n_sum.tolist() == row["n_sum"]
        assert sim.y_sum.tolist() == row["y_sum"]
        assert sim.stop_counts.tolist()[:7] == row["stop_counts"]


def test_a_design_without_efficacy_is_blind_to_the_responses():
    """BOIN under a scenario with responses treats the same patients at the same levels as
    without them, and reports the response rate."""
    boin = load_design(ROOT / "designs/boin.toml")
    plain = Scenario("P", (0.05, 0.1, 0.2, 0.3, 0.5, 0.7))
    with_eff = dataclasses.replace(plain, eff_prob=(0.1, 0.2, 0.3, 0.4, 0.5, 0.5))
    correlated = dataclasses.replace(with_eff, tox_eff_correlation=0.6)
    [[a, b, c]] = simulate([boin], [plain, with_eff, correlated], 3000, 4)
    for other in (b, c):
        assert other.selected.tolist() == a.selected.tolist()
        assert other.n_sum.tolist() == a.n_sum.tolist()
    oc = OperatingCharacteristics.from_simulations(b)
    assert 10 < oc.values["response_rate_pct"] < 50
    assert oc.values["obd_selection_pct"] is None  # no utility without a method that uses it
    assert "true_obd" not in OperatingCharacteristics.from_simulations(a).values
    assert (
        "none_acceptable"
        not in OperatingCharacteristics.from_simulations(a).values["stop_reason_pct"]
    )


def test_efficacy_figures_of_the_example_design():
    design = load_design(ROOT / "designs/boin12_psma.toml")
    scenarios = load_scenarios(ROOT / "designs/efficacy_scenarios.toml")
    check_scenarios_fit(design, scenarios, "designs/efficacy_scenarios.toml")
    [sims] = simulate([design], scenarios, 2000, 3)
    for sim in sims:
        oc = OperatingCharacteristics.from_simulations(sim)
        v = oc.values
        if sim.obd == NO_LEVEL:
            assert v["obd_selection_pct"] == v["no_selection_pct"]
            assert v["patients_at_obd_pct"] is None
        else:
            assert v["obd_selection_pct"] == v["selection_pct"][sim.obd]
            assert 0 < v["patients_at_obd_pct"] < 100
        assert 0 < v["response_rate_pct"] < 100
        assert 0 < v["utility_per_patient_mean"] < 100
        assert v["true_obd"] == (None if sim.obd == NO_LEVEL else sim.obd + 1)
    # a scenario with no acceptable response rate ends many trials with no OBD
    inactive = OperatingCharacteristics.from_simulations(sims[-1]).values
    assert inactive["stop_reason_pct"]["none_acceptable"] > 20


def test_engine_keeps_responses_in_the_general_path_too():
    """With [timing] (the engine's general path) the responses are those of the cohort path on
    the same patients."""
    plain = reference_design()
    timed = design_from_dict(
        {**plain.source, "timing": {"accrual_per_month": 2.0, "dlt_window_months": 1.0}},
        "timed.toml",
    )
    scenario = Scenario("E", (0.05, 0.1, 0.2, 0.3, 0.4), eff_prob=(0.1, 0.3, 0.5, 0.5, 0.5))
    eff = np.asarray(scenario.eff_prob)
    patients = chunk_patients(9, 0, 500, 30, True).with_efficacy(scenario)
    a = run_trials(plain, scenario.dlt_prob, patients, eff_prob=eff)
    b = run_trials(timed, scenario.dlt_prob, patients, eff_prob=eff)
    np.testing.assert_array_equal(a.r, b.r)
    np.testing.assert_array_equal(a.b, b.b)
    np.testing.assert_array_equal(a.patient_response, b.patient_response)
    assert (a.r <= a.n).all() and (a.b <= np.minimum(a.r, a.y)).all()
    np.testing.assert_array_equal(select_mtd(plain, a), select_mtd(timed, b))


def test_a_design_using_efficacy_refuses_a_scenario_without_it():
    design = reference_design()
    patients = chunk_patients(1, 0, 10, 30, False)
    with pytest.raises(ValueError, match="eff_prob"):
        run_trials(design, [0.1] * N_LEVELS, patients)
    with pytest.raises(ConfigError, match="decides on responses"):
        check_scenarios_fit(design, [Scenario("S", (0.1,) * N_LEVELS)], "s.toml")


def test_scenario_file_reads_efficacy_and_reports_its_errors():
    [s] = scenarios_from_dict(
        {"scenario": [{"name": "A", "dlt_prob": [0.1, 0.2], "eff_prob": [0.3, 0.2],
                       "tox_eff_correlation": 0.3}]},
        "s.toml",
    )  # fmt: skip
    assert s.eff_prob == (0.3, 0.2) and s.tox_eff_correlation == 0.3
    bad = {
        "scenario": [
            {"name": "A", "dlt_prob": [0.1, 0.2], "eff_prob": [0.3]},
            {"name": "B", "dlt_prob": [0.1, 0.2], "tox_eff_correlation": 0.2},
            {"name": "C", "dlt_prob": [0.1, 0.2], "eff_prob": [0.3, 0.4],
             "tox_eff_correlation": 1.0},
        ]
    }  # fmt: skip
    with pytest.raises(ConfigError) as error:
        scenarios_from_dict(bad, "s.toml")
    text = str(error.value)
    assert "eff_prob: has 1 values" in text
    assert "tox_eff_correlation: only with eff_prob" in text
    assert "tox_eff_correlation" in text and "(-1, 1)" in text


# -- outcome strings, recommend and pathways ---------------------------------------------------


def test_outcome_letters_with_efficacy_round_trip():
    text = "1NNN 2ENT 3ETT 2EEN 4BNB"
    cohorts = parse_outcomes(text, N_LEVELS, efficacy=True)
    assert cohorts[1] == (1, (False, False, True), (True, False, False))
    assert cohorts[4] == (3, (True, False, True), (True, False, True))
    assert format_outcomes(cohorts) == text
    with pytest.raises(OutcomeError, match="read only by designs that use efficacy"):
        parse_outcomes("1NEN", N_LEVELS)
    with pytest.raises(OutcomeError, match="not N .neither., T .DLT., E .response. or B"):
        parse_outcomes("1NXN", N_LEVELS, efficacy=True)


def test_recommend_needs_the_responses():
    with pytest.raises(ValueError, match="decides on responses"):
        recommend(reference_design(), [(0, (False, False, False))])


def test_pathways_of_a_design_using_efficacy():
    """One cohort of 3 ahead has C(6, 3) = 20 outcomes (counts of N, E, T, B); each node's
    decision is ``recommend`` on its path."""
    design = reference_design()
    history = parse_outcomes("1NNN", N_LEVELS, efficacy=True)
    nodes = dose_paths(design, history, n_cohorts=1)
    assert len(nodes) == 21 == n_path_nodes(3, 1, efficacy=True)
    assert len({node.new_outcomes for node in nodes}) == 21
    for node in nodes[1:]:
        rec = recommend(design, parse_outcomes(node.path, N_LEVELS, efficacy=True))
        assert node.next_level == rec.next_level, node.path
    by_outcome = {node.new_outcomes: node.next_level for node in nodes}
    assert by_outcome["2NNB"] + 1 == 3  # the worked trial's third step


def test_table_prints_boin12_boundaries_the_engine_uses():
    """The printed table's toxicity cut-offs are the engine's: the DLT counts that make a level
    unacceptable and that de-escalate."""
    design = reference_design()
    method = design.method
    for row in method.decision_rows(12):
        n = row["n"]
        for y in range(n + 1):
            state, _ = replay(
                design, parse_outcomes(f"2{'T' * y}{'E' * (n - y)}", N_LEVELS, efficacy=True)
            )
            toxic = not method.acceptable(state)[0, 1]
            assert toxic == (
                row["too_toxic_if_dlt_ge"] is not None and y >= row["too_toxic_if_dlt_ge"]
            )
            state.active[:] = True
            proposal, _ = method.propose(state)
            if row["deescalate_if_dlt_ge"] is not None and y >= row["deescalate_if_dlt_ge"]:
                assert proposal[0] == 0, (n, y)
    columns, rows = method.protocol_table(3, 30)
    assert list(rows[0]) == list(columns)
