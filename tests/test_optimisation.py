"""The randomised dose-optimisation stage after escalation (``[optimisation]``).

Oracle: exact calculation. Given the MTD the escalation selected, the stage's patients are fresh
draws (their own stream), so the probability that the rule selects each arm is a sum over the
arms' outcomes: binomial counts when DLTs and responses are independent (tox_eff_correlation 0),
multinomial counts of the four outcomes (response only, neither, both, DLT only) otherwise and
for the utility rule; for ``top_two_utility`` the runner-up is recomputed trial by trial from
the escalation's counts and the sum is taken given the pair of candidates. The simulated
selection %, conditional on the escalation's MTD (or the pair), must lie within 4 Monte Carlo
standard errors of it.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats
from typer.testing import CliRunner

from theradose import simulation
from theradose.cli import app
from theradose.config import (
    ConfigError,
    check_scenarios_fit,
    design_from_dict,
    load_design,
    load_scenarios,
)
from theradose.decision_record import read_record
from theradose.optimisation import choose
from theradose.protocol import protocol_references, protocol_sections
from theradose.report import render_decision_table
from theradose.results import OperatingCharacteristics
from theradose.run_dir import _from_statistics, _statistics
from theradose.scenario import Scenario, truth_for
from theradose.simulation import empty_simulations, run_chunk, simulate
from theradose.state import NO_LEVEL
from theradose.study import run_patient_recommendation, run_recommendation
from theradose.verification import verify_record
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
            "integer >= 1; or patients, the stage's total)",
        ),
        (
            {"candidates": "mtd_and_below", "patients_per_arm": 20, "patients": 40},
            "opt.toml: [optimisation] patients and patients_per_arm: give one of them (patients "
            "= 2 × patients_per_arm, the stage's total)",
        ),
        (
            {"candidates": "mtd_and_below", "patients": 45},
            "opt.toml: [optimisation] patients = 45: must be an even number (the stage's total: "
            "two arms of patients / 2 on average, split by ratio; a stage with one candidate "
            "treats patients / 2)",
        ),
        (
            {"candidates": "mtd_and_below", "patients": 1},
            "opt.toml: [optimisation] patients = 1: must be an integer >= 2",
        ),
        (
            {"candidates": "mtd_and_below", "patients": 40, "ratio": [2, 1]},
            "opt.toml: [optimisation] ratio = [2, 1]: with patients = 40 the arms would have "
            "26.67, 13.33 patients; the ratio must split 40 patients into whole numbers",
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
            "patients, ratio, rule, max_dlt_rate, margin, utility_weights)",
        ),
    ],
)
def test_config_errors_name_file_key_and_what_is_allowed(section, expected):
    with pytest.raises(ConfigError) as error:
        boin_design(**section)
    assert error.value.messages == [expected]


def test_patients_is_the_stage_s_total():
    """``patients`` = 2 × ``patients_per_arm``: the same stage, whichever key is given."""
    by_total = boin_design(candidates="mtd_and_below", patients=60, ratio=[2, 1])
    per_arm = boin_design(candidates="mtd_and_below", patients_per_arm=30, ratio=[2, 1])
    assert by_total.optimisation == per_arm.optimisation
    assert by_total.optimisation.arm_sizes == (40, 20)


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
# Exact checks of the correlated stage, the utility rule and the top-two-utility candidates
#
# Oracle: each stage patient falls in one of four cells — response without DLT, neither, both,
# DLT without response — with probabilities from P(DLT), P(response) and P(both); an arm of n
# patients is a multinomial over them (scipy's pmf over every count vector), so P(the rule
# selects each arm) is a finite sum over the two arms' joint outcomes. P(both) comes from the
# Gaussian copula by one-dimensional quadrature, P(Z₁ < a, Z₂ < b) = ∫_{−∞}^{a} φ(z)
# Φ((b − ρz)/√(1 − ρ²)) dz, not from the engine's bivariate normal CDF. The rule is written
# out in integers (rates and utilities compared after multiplying by both arms' sizes), so
# ties are exact.


def both_by_quadrature(p_t: float, p_e: float, rho: float) -> float:
    if rho == 0.0:
        return p_t * p_e
    a, b, s = stats.norm.ppf(p_t), stats.norm.ppf(p_e), np.sqrt(1.0 - rho * rho)
    value, _ = integrate.quad(
        lambda z: stats.norm.pdf(z) * stats.norm.cdf((b - rho * z) / s),
        -np.inf,
        a,
        epsabs=1e-13,
        epsrel=1e-12,
    )
    return value


def arm_outcomes(n: int, p_t: float, p_e: float, rho: float, both: float | None = None):
    """Every outcome of an arm of n patients, as counts [outcome, cell] of (response without
    DLT, neither, both, DLT without response), with its probability; ``both``: P(DLT and
    response) when given (patients whose own probabilities vary), else the copula's of p_t and
    p_e."""
    if both is None:
        both = both_by_quadrature(p_t, p_e, rho)
    cells = [p_e - both, 1.0 - p_t - p_e + both, both, p_t - both]
    counts = np.array(
        [
            (e, z, c, n - e - z - c)
            for e in range(n + 1)
            for z in range(n + 1 - e)
            for c in range(n + 1 - e - z)
        ]
    )
    return counts, stats.multinomial.pmf(counts, n, cells)


def exact_multinomial(
    sizes, levels, p_t, p_e, rho, rule, guard, margin, weights=None, both=None
) -> dict:
    """P(the stage selects each candidate level), and P(none) under key NO_LEVEL: ``sizes`` and
    ``levels`` per arm (the selected level's arm first, as the design allocates), p_t and p_e
    per level. The rule: arms with DLTs ≤ guard × n are eligible; the higher level is selected
    when eligible and either the lower one is not or the higher one's response rate (rule
    "response") or mean utility (rule "utility", ``weights`` of the four cells) is higher by
    more than ``margin``; otherwise the lower one when eligible. ``both`` [level]: P(DLT and
    response) of a patient at each level, when not the copula's of p_t and p_e."""
    g, m = Fraction(guard).limit_denominator(10**6), Fraction(margin).limit_denominator(10**6)
    arms = []
    for n, level in zip(sizes, levels, strict=True):
        p_both = None if both is None else both[level]
        counts, prob = arm_outcomes(n, p_t[level], p_e[level], rho, p_both)
        dlts = counts[:, 2] + counts[:, 3]
        if rule == "response":
            total = counts[:, 0] + counts[:, 2]
        else:
            total = counts @ np.asarray(weights, dtype=np.int64)
        eligible = dlts * g.denominator <= g.numerator * n
        arms.append((n, eligible, total.astype(np.int64), prob))
    hi, lo = (0, 1) if levels[0] > levels[1] else (1, 0)
    (n_h, ok_h, t_h, p_h), (n_l, ok_l, t_l, p_l) = arms[hi], arms[lo]
    # total_h / n_h > total_l / n_l + m, in integers
    beats = (t_h[:, None] * n_l * m.denominator) > (
        t_l[None, :] * n_h * m.denominator + m.numerator * n_h * n_l
    )
    higher = ok_h[:, None] & (~ok_l[None, :] | beats)
    lower = ok_l[None, :] & ~higher
    joint = np.outer(p_h, p_l)
    p_higher, p_lower = float(joint[higher].sum()), float(joint[lower].sum())
    return {levels[hi]: p_higher, levels[lo]: p_lower, NO_LEVEL: 1.0 - p_higher - p_lower}


def chunk_fields(design, scenario, n_trials, seed, *names) -> list[np.ndarray]:
    """ChunkResult fields of every trial, chunk by chunk as ``simulate`` runs."""
    truth = truth_for(scenario, design)
    parts = {name: [] for name in names}
    for chunk, size in enumerate(simulation.chunk_sizes(n_trials)):
        patients = chunk_patients(seed, chunk, size, design.max_patients, False)
        result = run_chunk(design, scenario, patients, truth)
        for name in names:
            parts[name].append(getattr(result, name))
    return [np.concatenate(parts[name]) for name in names]


def assert_within_4_se(exact: dict, optimised: np.ndarray, label) -> None:
    """The simulated share selecting each candidate (and none) against ``exact``."""
    n = optimised.size
    assert np.isin(optimised, list(exact)).all(), label
    for level, p in exact.items():
        q = float((optimised == level).mean())
        se = np.sqrt(p * (1 - p) / n)
        assert abs(q - p) <= 4 * se + 1e-12, (label, level, n, p, q, (q - p) / se)


def shift_in_se(exact: dict, other: dict, n: int) -> float:
    """The largest move, in Monte Carlo SEs of n trials, from ``exact`` to ``other`` (the same
    figures under a wrong rule): how far the check sees."""
    return max(abs(other[k] - p) / np.sqrt(p * (1 - p) / n) for k, p in exact.items() if 0 < p < 1)


def check_each_mtd_level(design, mtd, optimised, exact, wrong) -> list[float]:
    """At each MTD level k ≥ 2 reached by ≥ 1,000 trials (candidates k and k − 1): the simulated
    selection within 4 SEs of ``exact(arm sizes, levels, p_T, p_E)``; returns, per level, how
    many SEs ``wrong`` (the same figures under a wrong rule) would be off (:func:`shift_in_se`)."""
    power = []
    for k in range(1, design.n_levels):
        given = mtd == k
        if given.sum() < 1000:
            continue
        args = design.optimisation.arm_sizes, (k, k - 1), X_DLT, X_RESPONSE
        expected = exact(*args)
        assert_within_4_se(expected, optimised[given], ("MTD", k + 1))
        power.append(shift_in_se(expected, wrong(*args), int(given.sum())))
    return power


X_DLT = (0.05, 0.10, 0.20, 0.30, 0.45)
X_RESPONSE = (0.20, 0.35, 0.50, 0.55, 0.60)
WEIGHTS = (100, 40, 60, 0)


def test_the_multinomial_sum_without_correlation_is_the_binomial_one():
    """The two exact references agree where both apply (ρ = 0, the response rule)."""
    for sizes, guard, margin in (((20, 20), 0.3, 0.0), ((30, 15), 0.25, 0.05)):
        binomial = exact_selection(sizes, X_DLT[3:1:-1], X_RESPONSE[3:1:-1], guard, margin)
        multinomial = exact_multinomial(
            sizes, (3, 2), X_DLT, X_RESPONSE, 0.0, "response", guard, margin
        )
        assert [multinomial[3], multinomial[2], multinomial[NO_LEVEL]] == pytest.approx(
            binomial, abs=1e-12
        )


def test_correlated_dlt_and_response_select_as_the_exact_multinomial_sum():
    """ρ = 0.7 between DLT and response (Gaussian copula), the response rule, arms of 20 and 20,
    guard 0.3: given the escalation's MTD k (arms k and k − 1), the simulated % selecting each
    arm is within 4 Monte Carlo SEs of the multinomial sum (100,000 trials; 5,000–47,000 per
    MTD level). Ignoring the correlation (ρ = 0) moves the exact figures at MTD level 4 by 14.9
    SEs (33.3% → 36.6% selecting level 4) and at level 3 by 4.2: an engine that drew DLT and
    response independently fails here."""
    design = boin_design(candidates="mtd_and_below", patients_per_arm=20, max_dlt_rate=0.3)
    scenario = Scenario("rho", X_DLT, eff_prob=X_RESPONSE, tox_eff_correlation=0.7)
    mtd, optimised = chunk_fields(design, scenario, 100_000, 11, "mtd", "optimised")
    power = check_each_mtd_level(
        design,
        mtd,
        optimised,
        exact=lambda *args: exact_multinomial(*args, 0.7, "response", 0.3, 0.0),
        wrong=lambda *args: exact_multinomial(*args, 0.0, "response", 0.3, 0.0),  # ρ ignored
    )
    assert len(power) >= 4
    assert max(power) > 10


def test_the_utility_rule_selects_as_the_exact_multinomial_sum():
    """The utility rule (weights 100, 40, 60, 0; margin 5 points), arms of 20 (MTD) and 10
    (next lower level), guard 0.3, ρ = 0.5: given the escalation's MTD, within 4 SEs of the
    multinomial sum (100,000 trials). At MTD level 3 (29,700 trials) the response rule instead
    (margin 0.05) moves the exact figure by 48 SEs, no margin by 54, arms allocated 10:20
    instead of 20:10 by 6, ρ = 0 by 2; at level 4 (46,600 trials) ρ = 0 moves it by 9 SEs."""
    design = boin_design(
        candidates="mtd_and_below",
        patients_per_arm=15,
        ratio=[2, 1],
        rule="utility",
        utility_weights=list(WEIGHTS),
        margin=5,
        max_dlt_rate=0.3,
    )
    opt = design.optimisation
    assert opt.arm_sizes == (20, 10)
    scenario = Scenario("utility", X_DLT, eff_prob=X_RESPONSE, tox_eff_correlation=0.5)
    mtd, optimised = chunk_fields(design, scenario, 100_000, 12, "mtd", "optimised")
    power = check_each_mtd_level(
        design,
        mtd,
        optimised,
        exact=lambda *args: exact_multinomial(*args, 0.5, "utility", 0.3, 5, WEIGHTS),
        wrong=lambda *args: exact_multinomial(*args, 0.5, "response", 0.3, 0.05),  # by response
    )
    assert len(power) >= 4
    assert max(power) > 10


def runner_up(n, y, r, b, selected, guard, weights) -> np.ndarray:
    """The top-two-utility second candidate, trial by trial: among tried levels other than the
    selected one with DLTs ≤ guard × n, the highest observed mean utility, the lower level on a
    tie (NO_LEVEL: none). Utilities compared exactly: each level's utility total is scaled to
    the common denominator lcm(1..max n)."""
    w_eff, w_neither, w_both, w_tox = (int(w) for w in weights)
    total = w_eff * (r - b) + w_neither * (n - y - r + b) + w_both * b + w_tox * (y - b)
    common = math.lcm(*range(1, int(n.max()) + 1))
    scaled = np.where(n > 0, total * (common // np.maximum(n, 1)), 0)
    g = Fraction(guard).limit_denominator(10**6)
    ok = (n > 0) & (y * g.denominator <= g.numerator * n)
    ok[np.arange(n.shape[0]), np.maximum(selected, 0)] = False
    best = np.argmax(np.where(ok, scaled, np.iinfo(np.int64).min), axis=1)  # first: lower
    return np.where(ok.any(axis=1) & (selected >= 0), best, NO_LEVEL)


def test_top_two_utility_candidates_and_selection_are_exact():
    """``candidates = "top_two_utility"``: trial by trial, the second arm is the tried level with
    the next-highest observed utility in escalation (recomputed here from the trial's counts);
    given the pair (selected level, runner-up), the stage's patients are fresh, so P(selecting
    each) is the multinomial sum with arms of 30 (selected) and 10 (runner-up), utility rule,
    margin 5, ρ = 0.4 (100,000 trials; pairs with ≥ 1,000 trials, 10 of them). Arms allocated
    by level order instead (the runner-up, here always below, given 30) moves the exact figures
    by 4.3–51 SEs, at least 4 at every pair (e.g. pair (4, 3): 19.6 SEs on P(none))."""
    design = boin_design(
        candidates="top_two_utility",
        patients_per_arm=20,
        ratio=[3, 1],
        rule="utility",
        utility_weights=list(WEIGHTS),
        margin=5,
        max_dlt_rate=0.3,
    )
    assert design.optimisation.arm_sizes == (30, 10)
    scenario = Scenario("top two", X_DLT, eff_prob=X_RESPONSE, tox_eff_correlation=0.4)
    mtd, optimised, stage_n, n, y, r, b = chunk_fields(
        design, scenario, 100_000, 13, "mtd", "optimised", "stage_n", "n", "y", "r", "b"
    )
    n, y, r, b = (a.astype(np.int64) for a in (n, y, r, b))
    second = runner_up(n, y, r, b, mtd, 0.3, WEIGHTS)
    rows = np.arange(mtd.size)
    expected = np.zeros_like(stage_n)
    entered = mtd >= 0
    two = second >= 0
    expected[rows[entered & two], mtd[entered & two]] = 30
    expected[rows[two], second[two]] = 10
    expected[rows[entered & ~two], mtd[entered & ~two]] = 20  # one candidate: patients_per_arm
    np.testing.assert_array_equal(stage_n, expected)
    checked, power = 0, []
    for first, other in sorted(set(zip(mtd[two].tolist(), second[two].tolist(), strict=True))):
        given = (mtd == first) & (second == other)
        if given.sum() < 1000:
            continue
        rest = X_DLT, X_RESPONSE, 0.4, "utility", 0.3, 5, WEIGHTS
        exact = exact_multinomial((30, 10), (first, other), *rest)
        assert_within_4_se(exact, optimised[given], ("pair", first + 1, other + 1))
        swapped = exact_multinomial((10, 30), (first, other), *rest)
        power.append(shift_in_se(exact, swapped, int(given.sum())))
        checked += 1
    assert checked >= 8
    assert min(power) > 4


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


# ---------------------------------------------------------------------------------------------
# table, protocol and recommend on a design with a stage

runner = CliRunner()


def test_table_and_protocol_describe_the_stage_after_escalation():
    design = load_design(EXAMPLE)
    stage = (
        "After escalation, a trial that selects a level randomises 40 new patients, 20 to the "
        "selected MTD and 20 to the next lower level; with one candidate (the MTD is level 1, "
        "or the organ-dose limits rule the lower level out at the end of escalation) 20 "
        "patients are treated at it alone. The optimised dosage is the arm with the highest "
        "observed response rate among the arms whose observed DLT rate is ≤ 0.25, a higher "
        "level winning only when better by more than 0.05; when no arm passes, no level is "
        "selected. An arm whose level the organ-dose limits rule out at the end of the stage, "
        "with every patient's measured dosimetry (escalation and stage), cannot be selected."
    )
    assert f"{stage}  " in render_decision_table(design, "markdown").splitlines()
    assert ("Randomised dose optimisation", stage) in protocol_sections(design)
    references = protocol_references(design)
    assert any("(2024). Optimizing the Dosage" in ref for ref in references)
    assert any("(2025). Oncology Therapeutic Radiopharmaceuticals" in ref for ref in references)
    result = runner.invoke(app, ["table", str(EXAMPLE)])
    assert result.exit_code == 0 and "randomises 40 new patients" in result.output


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (
            "1NNN 2NNN",
            "this decision is for the escalation; if it ends with a selected level, the "
            "design's randomised optimisation stage follows (40 new patients; see the protocol "
            "text)",
        ),
        (
            "1NNN 2NNN 3NNN 3NNT 3NNN 3NNN 3NTN 3NNN 3NNN 3NNN",
            "the escalation is over: the design's randomised optimisation stage comes next: "
            "randomise 20 new patients to level 3 (7.4 GBq) and 20 to level 2 (5.55 GBq); the "
            "optimised dosage is the arm with the highest observed response rate among those "
            "with observed DLT rate ≤ 0.25 (the higher level only when better by more than "
            "0.05); recommend does not decide within the stage (its arms are fixed in advance)",
        ),
        (
            "1NNN 2TTN 1NNN 1NNN 1NNN 1NNT 1NNN 1NNN 1NNN 1NNN",
            "the escalation is over: the design's randomised optimisation stage comes next: "
            "treat 20 new patients at level 1 (3.7 GBq) alone (no other candidate); it is the "
            "optimised dosage if its observed DLT rate is ≤ 0.25, otherwise no level is; "
            "recommend does not decide within the stage (its arms are fixed in advance)",
        ),
        (
            "1TTT",
            "the escalation selected no level: the design's randomised optimisation stage does "
            "not start",
        ),
    ],
    ids=["escalating", "two-arms", "one-arm", "no-level"],
)
def test_recommend_says_what_the_stage_does_next(outcomes, expected):
    result = run_recommendation(EXAMPLE, outcomes)
    assert result.recommendation.notes[-1] == expected
    shown = runner.invoke(app, ["recommend", str(EXAMPLE), "--outcomes", outcomes])
    assert shown.exit_code == 0, shown.output
    assert "Traceback" not in shown.output and "randomised optimisation stage" in shown.output


def test_recommend_names_the_runner_up_by_observed_utility(tmp_path):
    """BOIN12 with ``top_two_utility`` (arms 30:10): the runner-up is the tried level with the
    next-highest observed utility — level 1 (3 responses of 3: utility 100) over level 2 (none
    of 3: utility 40) — not the next lower level; a BOIN design with utility weights is given
    no responses by an outcome string, and says so. The note is in the decision record, and
    verify recomputes it."""
    path = tmp_path / "boin12_stage.toml"
    stage = (
        '\n[optimisation]\ncandidates = "top_two_utility"\npatients_per_arm = 20\n'
        'ratio = [3, 1]\nrule = "utility"\nmargin = 2\n'
    )
    path.write_text((ROOT / "designs/boin12_psma.toml").read_text() + stage, encoding="utf-8")
    outcomes = "1EEE 2NNN 3EBE 3ENE 3EEB 3NEE 3EEN"
    rec = run_recommendation(path, outcomes).recommendation
    assert rec.stop and rec.mtd == 2
    assert rec.notes[-1].startswith(
        "the escalation is over: the design's randomised optimisation stage comes next: "
        "randomise 30 new patients to level 3 (7.4 GBq) and 10 to level 1 (3.7 GBq); the "
        "optimised dosage is the arm with the highest observed mean utility among those with "
        "observed DLT rate ≤ 0.3 (the higher level only when better by more than 2)"
    )
    record_path = tmp_path / "record.json"
    shown = runner.invoke(
        app, ["recommend", str(path), "--outcomes", outcomes, "--record", str(record_path)]
    )
    assert shown.exit_code == 0, shown.output
    record = read_record(record_path)
    assert record["notes"][-1] == rec.notes[-1]
    assert verify_record(record).ok

    boin = boin_design(
        candidates="top_two_utility", patients_per_arm=20, utility_weights=[100, 40, 60, 0]
    )
    rec = run_recommendation(boin, "1NNN 2NNN 3NNN 3NNT 3NNN 3NNN 3NTN 3NNN 3NNN 3NNN")
    assert rec.recommendation.notes[-1] == (
        "the escalation is over: the design's randomised optimisation stage comes next: "
        "randomise 20 new patients to level 3 and 20 to the tried level with the next-highest "
        "observed utility (observed DLT rate ≤ 0.3), which needs each patient's response (not "
        "in these data); recommend does not decide within the stage (its arms are fixed in "
        "advance)"
    )


def test_recommend_from_a_patient_file_notes_the_stage(tmp_path):
    trial = tmp_path / "trial.csv"
    trial.write_text("level,dlt,followup_days\n" + "1,0,200\n" * 3 + "2,0,100\n" * 3)
    rec = run_patient_recommendation(EXAMPLE, trial).recommendation
    assert rec.next_level == 2
    assert rec.notes[-1].startswith("this decision is for the escalation; if it ends")


@pytest.mark.parametrize("method", ["boin12", "boin"])
def test_the_stage_lasts_until_its_last_patient_s_response_is_assessed(method):
    """With an efficacy window longer than the DLT window, the stage ends when the last arm
    patient's response is known: the same accrual (its own stream) plus the longer window. A
    method deciding on DLTs alone takes the efficacy window for its stage only: its escalation
    is the same as without it."""
    source = {
        **boin_dict(candidates="mtd_and_below", patients_per_arm=10),
        "method": method,
        "timing": {"accrual_per_month": 2.0, "dlt_window_months": 1.0},
    }
    if method == "boin12":
        source["boin12"] = {"phi_e": 0.25}
    scenario = Scenario("E", (0.05, 0.1, 0.2, 0.3, 0.45), eff_prob=(0.2, 0.3, 0.4, 0.5, 0.5))
    durations, escalations = [], []
    for efficacy_window in (None, 4.0):
        timing = dict(source["timing"])
        if efficacy_window is not None:
            timing["efficacy_window_months"] = efficacy_window
        design = design_from_dict({**source, "timing": timing}, "opt.toml")
        truth = truth_for(scenario, design)
        patients = chunk_patients(3, 0, 400, design.n_places, True)
        chunk = run_chunk(design, scenario, patients, truth)
        durations.append(chunk.stage_duration)
        escalations.append((chunk.n, chunk.y, chunk.mtd, chunk.duration))
    if method == "boin":
        for before, after in zip(*escalations, strict=True):
            assert np.array_equal(before, after)
    entered = durations[0] > 0
    assert entered.any()
    assert np.array_equal(entered, durations[1] > 0)
    longer = durations[1][entered] - durations[0][entered]
    np.testing.assert_allclose(longer, 3.0, rtol=0, atol=1e-9)
