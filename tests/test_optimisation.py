"""The randomised dose-optimisation stage after escalation (``[optimisation]``).

Oracle: exact calculation. Given the MTD the escalation selected, the stage's patients are fresh
draws (their own stream), so the probability that the "response" rule selects each arm is a sum
over the arms' binomial outcomes (DLTs and responses independent when the scenario's
tox_eff_correlation is 0); the simulated selection %, conditional on the escalation's MTD, must
lie within 4 Monte Carlo standard errors of it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from theradose import simulation
from theradose.config import (
    ConfigError,
    check_scenarios_fit,
    design_from_dict,
    load_design,
    load_scenarios,
)
from theradose.optimisation import choose
from theradose.results import OperatingCharacteristics
from theradose.run_dir import _from_statistics, _statistics
from theradose.scenario import Scenario, truth_for
from theradose.simulation import empty_simulations, run_chunk, simulate
from theradose.state import NO_LEVEL
from theradose.virtual_patients import chunk_patients

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "designs/boin_optimisation.toml"
EFFICACY_SCENARIOS = ROOT / "designs/efficacy_scenarios.toml"


def boin_dict(**optimisation) -> dict:
    design = {
        "name": "BOIN + stage",
        "method": "boin",
        "target": 0.30,
        "levels": 5,
        "cohort_size": 3,
        "max_patients": 30,
    }
    if optimisation:
        design["optimisation"] = optimisation
    return design


def boin_design(**optimisation):
    return design_from_dict(boin_dict(**optimisation), "opt.toml")


# ---------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            {"candidates": "mtd", "patients_per_arm": 20},
            'opt.toml: [optimisation] candidates = "mtd": must be one of "mtd_and_below", '
            '"top_two_utility"',
        ),
        (
            {"patients_per_arm": 20},
            "opt.toml: [optimisation] missing key 'candidates' (\"mtd_and_below\" or "
            '"top_two_utility")',
        ),
        (
            {"candidates": "mtd_and_below"},
            "opt.toml: [optimisation] missing key 'patients_per_arm' (patients per arm, an "
            "integer >= 1)",
        ),
        (
            {"candidates": "mtd_and_below", "patients_per_arm": 0},
            "opt.toml: [optimisation] patients_per_arm = 0: must be an integer >= 1",
        ),
        (
            {"candidates": "mtd_and_below", "patients_per_arm": 20, "rule": "efficacy"},
            'opt.toml: [optimisation] rule = "efficacy": must be one of "response", "utility"',
        ),
        (
            {"candidates": "mtd_and_below", "patients_per_arm": 20, "ratio": [1, 1, 1]},
            "opt.toml: [optimisation] ratio: must give 2 numbers (the selected level's arm, the "
            "other arm), got [1, 1, 1]",
        ),
        (
            {"candidates": "mtd_and_below", "patients_per_arm": 20, "ratio": [2, 1]},
            "opt.toml: [optimisation] ratio = [2, 1]: with patients_per_arm = 20 the arms would "
            "have 26.67, 13.33 patients; the ratio must split 40 patients into whole numbers",
        ),
        (
            {"candidates": "mtd_and_below", "patients_per_arm": 20, "max_dlt_rate": 1.5},
            "opt.toml: [optimisation] max_dlt_rate = 1.5: must be a number in (0, 1]",
        ),
        (
            {"candidates": "mtd_and_below", "patients_per_arm": 20, "rule": "utility"},
            'opt.toml: [optimisation] rule = "utility": needs utility weights: give '
            "utility_weights = [response without DLT, neither, both, DLT without response] "
            "(e.g. [100, 40, 60, 0]) or use a method that scores utility (boin12)",
        ),
        (
            {"candidates": "mtd_and_below", "patients_per_arm": 20, "arms": 2},
            "opt.toml: [optimisation] unknown key 'arms' (allowed: candidates, patients_per_arm, "
            "ratio, rule, max_dlt_rate, margin, utility_weights)",
        ),
    ],
)
def test_config_errors_name_file_key_and_what_is_allowed(section, expected):
    with pytest.raises(ConfigError) as error:
        boin_design(**section)
    assert error.value.messages == [expected]


def test_a_scenario_without_eff_prob_is_refused_naming_the_key():
    design = boin_design(candidates="mtd_and_below", patients_per_arm=20)
    scenario = Scenario("S1", (0.05, 0.1, 0.2, 0.3, 0.5))
    with pytest.raises(ConfigError) as error:
        check_scenarios_fit(design, [scenario], "scen.toml")
    [message] = error.value.messages
    assert message.startswith('scen.toml: scenario[1] ("S1"): design "BOIN + stage"')
    assert "[optimisation]" in message and "give eff_prob" in message
    with pytest.raises(ValueError, match="eff_prob"):
        simulate([design], [scenario], 10, 1)


def test_the_example_design_reads_and_fits_its_scenarios():
    design = load_design(EXAMPLE)
    scenarios = load_scenarios(EFFICACY_SCENARIOS)
    check_scenarios_fit(design, scenarios, EFFICACY_SCENARIOS)
    opt = design.optimisation
    assert (opt.candidates, opt.patients_per_arm, opt.arm_sizes) == ("mtd_and_below", 20, (20, 20))
    assert (opt.rule, opt.max_dlt_rate, opt.margin) == ("response", 0.25, 0.05)
    assert design.dosimetry is not None and design.timing is not None
    text = EXAMPLE.read_text()
    assert "Optimizing the Dosage of Human Prescription Drugs" in text
    assert "August 2025" in text and "FDA-2025-D-1757" in text


# ---------------------------------------------------------------------------------------------
# The rule


def test_the_rule_prefers_the_lower_level_on_ties_and_within_the_margin():
    levels = np.array([[3, 2], [3, 2], [3, 2], [3, NO_LEVEL], [NO_LEVEL, NO_LEVEL]])
    eligible = np.array([[1, 1], [1, 1], [0, 1], [0, 0], [0, 0]], dtype=bool)
    score = np.array([[0.5, 0.5], [0.56, 0.5], [0.9, 0.1], [0.9, -np.inf], [0.0, 0.0]])
    assert choose(levels, eligible, score, 0.0).tolist() == [2, 3, 2, NO_LEVEL, NO_LEVEL]
    assert choose(levels, eligible, score, 0.05).tolist() == [2, 3, 2, NO_LEVEL, NO_LEVEL]
    assert choose(levels, eligible, score, 0.1).tolist() == [2, 2, 2, NO_LEVEL, NO_LEVEL]


def exact_selection(sizes, p_t, p_e, max_dlt_rate, margin):
    """P(the response rule selects the higher arm), P(the lower arm), P(neither): DLTs and
    responses of each arm independent binomials; arm 0 is the higher level."""
    (n_hi, n_lo), (t_hi, t_lo), (e_hi, e_lo) = sizes, p_t, p_e
    eps = 1e-9
    safe_hi = stats.binom.cdf(np.floor(max_dlt_rate * n_hi + eps), n_hi, t_hi)
    safe_lo = stats.binom.cdf(np.floor(max_dlt_rate * n_lo + eps), n_lo, t_lo)
    r_hi, r_lo = np.arange(n_hi + 1), np.arange(n_lo + 1)
    joint = np.outer(stats.binom.pmf(r_hi, n_hi, e_hi), stats.binom.pmf(r_lo, n_lo, e_lo))
    beats = r_hi[:, None] / n_hi > r_lo[None, :] / n_lo + margin + eps
    p_beats = float(joint[beats].sum())
    higher = safe_hi * ((1 - safe_lo) + safe_lo * p_beats)
    lower = safe_lo * ((1 - safe_hi) + safe_hi * (1 - p_beats))
    return higher, lower, 1 - higher - lower


def stage_outcomes(design, scenario, n_trials, seed):
    """(escalation MTD, optimised level) of every trial, chunk by chunk as ``simulate`` runs."""
    truth = truth_for(scenario, design)
    mtd, optimised = [], []
    for chunk, size in enumerate(simulation.chunk_sizes(n_trials)):
        patients = chunk_patients(seed, chunk, size, design.max_patients, False)
        result = run_chunk(design, scenario, patients, truth)
        mtd.append(result.mtd)
        optimised.append(result.optimised)
    return np.concatenate(mtd), np.concatenate(optimised)


@pytest.mark.parametrize(
    ("section", "label"),
    [
        ({"patients_per_arm": 20}, "1:1, no margin"),
        ({"patients_per_arm": 15, "ratio": [2, 1], "margin": 0.05, "max_dlt_rate": 0.25}, "2:1"),
    ],
)
def test_the_stage_selects_as_the_exact_binomial_calculation(section, label):
    """Conditional on the escalation's MTD k (k ≥ 2: arms k and k − 1), the simulated % selecting
    each arm is within 4 Monte Carlo SEs of the exact binomial sum (20,000 trials); with MTD at
    level 1 the stage has one arm, selected iff its DLT rate passes the guard."""
    design = boin_design(candidates="mtd_and_below", **section)
    opt = design.optimisation
    scenario = Scenario("X", (0.05, 0.12, 0.22, 0.32, 0.5), eff_prob=(0.15, 0.3, 0.45, 0.5, 0.55))
    mtd, optimised = stage_outcomes(design, scenario, 20_000, 7)
    checked = 0
    for k in range(1, design.n_levels):
        given = mtd == k
        n = int(given.sum())
        if n < 1000:
            continue
        exact = exact_selection(
            opt.arm_sizes,
            (scenario.dlt_prob[k], scenario.dlt_prob[k - 1]),
            (scenario.eff_prob[k], scenario.eff_prob[k - 1]),
            opt.max_dlt_rate,
            opt.margin,
        )
        simulated = [
            (optimised[given] == k).mean(),
            (optimised[given] == k - 1).mean(),
            (optimised[given] == NO_LEVEL).mean(),
        ]
        assert np.isin(optimised[given], [k, k - 1, NO_LEVEL]).all()
        for p, q in zip(exact, simulated, strict=True):
            se = np.sqrt(p * (1 - p) / n)
            assert abs(q - p) <= 4 * se + 1e-12, (label, k + 1, n, exact, simulated)
        checked += 1
    assert checked >= 2
    assert (optimised[mtd == NO_LEVEL] == NO_LEVEL).all()


def test_a_single_arm_at_level_1_is_selected_when_it_passes_the_guard():
    design = boin_design(candidates="mtd_and_below", patients_per_arm=10, max_dlt_rate=0.2)
    scenario = Scenario("L1", (0.25, 0.5, 0.6, 0.7, 0.8), eff_prob=(0.3, 0.4, 0.5, 0.5, 0.5))
    mtd, optimised = stage_outcomes(design, scenario, 10_000, 3)
    given = mtd == 0
    n = int(given.sum())
    assert n > 1000
    exact = stats.binom.cdf(2, 10, 0.25)  # ≤ 2 DLTs of 10
    selected = (optimised[given] == 0).mean()
    assert abs(selected - exact) <= 4 * np.sqrt(exact * (1 - exact) / n)
    assert np.isin(optimised[given], [0, NO_LEVEL]).all()


# ---------------------------------------------------------------------------------------------
# Reproducibility and the escalation left alone


def _escalation(sim) -> dict:
    return {
        "selected": sim.selected.tolist(),
        "n_sum": sim.n_sum.tolist(),
        "y_sum": sim.y_sum.tolist(),
        "stop_counts": sim.stop_counts.tolist(),
        "total_n_sq": sim.total_n_sq,
        "efficacy": {k: np.asarray(v).tolist() for k, v in sim.efficacy.items()},
        "durations": [d.tolist() for d in sim.durations],
    }


def test_results_without_the_stage_are_unchanged_by_it():
    """The stage draws from its own stream: the escalation of a design with [optimisation] is
    bit-identical to the same design without it, and a design without it gets no new keys."""
    scenarios = load_scenarios(EFFICACY_SCENARIOS)
    source = dict(load_design(EXAMPLE).source)
    plain = design_from_dict({k: v for k, v in source.items() if k != "optimisation"}, "a.toml")
    staged = design_from_dict(source, "b.toml")
    [without, with_stage] = simulate([plain, staged], scenarios[:2], 400, 9)
    for a, b in zip(without, with_stage, strict=True):
        assert _escalation(a) == _escalation(b)
        assert not a.optimisation and b.optimisation
        values = OperatingCharacteristics.from_simulations(a).values
        assert not any("optimis" in key for key in values)


def test_same_seed_same_results_with_one_or_two_workers(monkeypatch):
    monkeypatch.setattr(simulation, "CHUNK_TRIALS", 150)
    design = load_design(EXAMPLE)
    scenarios = load_scenarios(EFFICACY_SCENARIOS)[:2]
    one = simulate([design], scenarios, 400, 5, workers=1)
    two = simulate([design], scenarios, 400, 5, workers=2)
    for a, b in zip(one[0], two[0], strict=True):
        assert OperatingCharacteristics.from_simulations(a) == (
            OperatingCharacteristics.from_simulations(b)
        )
        assert {k: np.asarray(v).tolist() for k, v in a.optimisation.items()} == {
            k: np.asarray(v).tolist() for k, v in b.optimisation.items()
        }


def test_the_stage_statistics_survive_a_run_directory():
    """A chunk's stage sums are stored and read back by the run directory's own functions."""
    design = load_design(EXAMPLE)
    scenario = load_scenarios(EFFICACY_SCENARIOS)[0]
    [[sim]] = simulate([design], [scenario], 200, 4)
    template = empty_simulations(design, scenario)
    loaded = _from_statistics(template, _statistics(sim, "p/"), "p/")
    assert loaded.optimal_level == sim.optimal_level
    merged = dataclasses.replace(template, optimisation={})
    merged.merge(loaded)
    a = OperatingCharacteristics.from_simulations(sim).values
    b = OperatingCharacteristics.from_simulations(merged).values
    keys = [k for k in a if "optimis" in k]
    assert keys and {k: a[k] for k in keys} == {k: b[k] for k in keys}


def test_figures_of_the_example():
    design = load_design(EXAMPLE)
    scenarios = load_scenarios(EFFICACY_SCENARIOS)
    [row] = simulate([design], scenarios[:3], 1000, 2)
    for sim in row:
        values = OperatingCharacteristics.from_simulations(sim).values
        assert sum(values["optimised_selection_pct"]) + values["optimised_no_selection_pct"] == (
            pytest.approx(100.0)
        )
        assert values["optimisation_patients_per_arm_mean"] == pytest.approx(20.0)
        assert values["optimisation_total_n_mean"] == pytest.approx(
            values["n_mean"] + values["optimisation_n_mean"]
        )
        assert values["optimisation_total_duration_months_mean"] > values["duration_months_mean"]
    # E3 "toxic": the truly optimal dosage is level 2 (level 3's DLT probability 0.4 > 0.25)
    assert OperatingCharacteristics.from_simulations(row[2]).values["true_optimal_level"] == 2


def test_top_two_by_utility_with_the_utility_rule():
    """A BOIN12 design randomises its OBD against the tried level with the next-best observed
    utility and selects by observed mean utility; the truly optimal dosage is then the true OBD
    under scenarios whose OBD beats its runner-up by more than the margin."""
    source = dict(load_design(ROOT / "designs/boin12_psma.toml").source)
    source["optimisation"] = {
        "candidates": "top_two_utility",
        "patients_per_arm": 20,
        "rule": "utility",
        "margin": 2,
    }
    design = design_from_dict(source, "boin12_opt.toml")
    scenarios = load_scenarios(EFFICACY_SCENARIOS)[:3]
    [row] = simulate([design], scenarios, 1000, 3)
    for sim in row:
        values = OperatingCharacteristics.from_simulations(sim).values
        assert values["true_optimal_level"] == values["true_obd"]
        assert values["optimised_pcs"] > 35
        assert values["optimisation_patients_per_arm_mean"] == pytest.approx(20.0)
