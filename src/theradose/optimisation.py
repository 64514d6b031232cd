"""A randomised dose-optimisation stage after escalation (the design's ``[optimisation]``).

FDA's guidance *Optimizing the Dosage of Human Prescription Drugs and Biological Products for
the Treatment of Oncologic Diseases* (August 2024) and its draft *Oncology Therapeutic
Radiopharmaceuticals: Dosage Optimization During Clinical Development* (August 2025, docket
FDA-2025-D-1757) ask sponsors to compare more than one dosage, randomised, on activity as well
as safety, before choosing the one to take forward; the MTD is no longer the goal by itself.

Every simulated trial that selected an MTD at the end of escalation goes on to randomise fresh
patients between candidate levels:

- ``candidates = "mtd_and_below"``: the selected MTD and the next lower level;
  ``"top_two_utility"``: the selected level and the tried level with the next-highest observed
  utility in escalation (observed DLT rate ≤ ``max_dlt_rate``). With dosimetry only levels the
  organ-dose limits admit at the end of escalation (``state.admissible``) are candidates. When
  one candidate is left (the MTD is level 1, or the other is not admissible), the stage treats
  ``patients_per_arm`` patients at it alone, unrandomised, and the rule still applies to it:
  it is selected when it passes the toxicity guard, otherwise no level is.
- Arm sizes are fixed (permuted blocks): the stage treats ``2 × patients_per_arm`` patients
  (the file may give that total as ``patients`` instead),
  arm ``k`` receiving ``2 × patients_per_arm × ratio[k] / Σ ratio`` (the selected level's arm
  first), a whole number by validation.
- Each patient has a latent tolerance u and response variable v', within a patient joined by
  the scenario's Gaussian copula (``tox_eff_correlation``; independent at 0), drawn from the
  chunk's own stream (:data:`theradose.virtual_patients.OPTIMISATION_STREAM`) so that
  escalation results are those of the design without the stage. A DLT iff u < p_T, a response
  iff v' < p_E: the true probabilities of the arm's level in a scenario without dosimetry.
  When the patients have dosimetry (a dosimetry-driven scenario, or a design with
  ``[dosimetry]``), the stage's patients are virtual patients like the escalation's
  (:func:`stage_patients`): their own true and measured Gy/GBq per organ (a sub-stream of the
  stage's stream), their activity by the design's rule (fixed, capped, or personalised), p_T
  from the NTCP of their own organ doses (or the level's under a scenario's ``dlt_prob``) and
  p_E from their own tumour dose (or the level's ``eff_prob``). The stage's P(DLT and
  response) at a level is then E[C_ρ(p_T(i), p_E(i))] over patients, as the truth's
  (:func:`theradose.dosimetry.level_truths`), not C_ρ of the mean probabilities.
- The pre-specified rule (``rule``): among arms whose observed DLT rate is at most
  ``max_dlt_rate`` (default the design's target), the one with the highest observed response
  rate (``"response"``) or observed mean utility per patient (``"utility"``); a higher level
  must beat the best lower one by more than ``margin``, so ties go to the lower level. No arm
  passing the guard selects no level.
- With organ-dose limits, an arm is selectable only if the design's organ-dose constraint,
  its posterior updated with every measured Gy/GBq (the escalation's patients' and the
  stage's), admits its level at the end of the stage (:func:`admissible_after_stage`): the
  escalation's guarantee that the selected level is one the limits admit at the end of the
  trial, carried to the trial's new end. The stage's patients' organ doses are reported
  (per organ, the % whose true cumulative dose or BED passed the limit).

The *truly optimal* dosage is the same rule applied to the true probabilities, with the
candidates built from the constrained optimum (the level closest to the target among those the
organ limits truly admit: the true MTD without organ limits) or, for ``"top_two_utility"``,
the true OBD of a method that uses efficacy, among the levels the organ limits truly admit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from theradose.state import NO_LEVEL
from theradose.utility import outcome_classes, total_utility

if TYPE_CHECKING:
    from theradose.design import Design
    from theradose.methods.spec import DesignFields, MethodSpec
    from theradose.scenario import DesignTruth
    from theradose.state import TrialState
    from theradose.validation import TomlTable
    from theradose.virtual_patients import VirtualPatients

CANDIDATES = ("mtd_and_below", "top_two_utility")
RULES = ("response", "utility")
OPTIMISATION_KEYS = (
    "candidates",
    "patients_per_arm",
    "patients",
    "ratio",
    "rule",
    "max_dlt_rate",
    "margin",
    "utility_weights",
)
MAX_PATIENTS_PER_ARM = 1000
_EPS = 1e-9  # rates are ratios of small integers: compare them with a tolerance


@dataclass(frozen=True)
class Optimisation:
    """The ``[optimisation]`` section of a design (see the module's docstring).

    Attributes
    ----------
    candidates : "mtd_and_below" or "top_two_utility"
    patients_per_arm : mean arm size; the stage treats ``2 × patients_per_arm`` patients (the
        file's ``patients``, when it gives the total instead)
    ratio : allocation ratio (selected level's arm, other arm)
    rule : "response" or "utility"
    max_dlt_rate : an arm is eligible when its observed DLT rate is at most this
    margin : a higher level must beat the best lower one by more than this (rate, or utility on
        the 0–100 scale)
    utility_weights : utilities of (response without DLT, neither, both, DLT without response);
        None: the method's (a method that uses efficacy)
    """

    candidates: str
    patients_per_arm: int
    ratio: tuple[float, float]
    rule: str
    max_dlt_rate: float
    margin: float = 0.0
    utility_weights: tuple[float, float, float, float] | None = None

    @property
    def arm_sizes(self) -> tuple[int, int]:
        """Patients of the two arms (selected level's first)."""
        total = 2 * self.patients_per_arm
        share = sum(self.ratio)
        return tuple(int(round(total * r / share)) for r in self.ratio)

    def describe(self, organ_limits: bool = False) -> str:
        """The stage as protocol text (``organ_limits``: the design has organ-dose limits)."""
        a, b = self.arm_sizes
        utility = "utility (the method's weights)"
        if self.utility_weights is not None:
            weights = ", ".join(f"{w:g}" for w in self.utility_weights)
            utility = (
                f"utility (weights {weights} for a response without DLT, neither, both, a DLT "
                "without response)"
            )
        admitted = " among the levels the organ-dose limits admit then" if organ_limits else ""
        if self.candidates == "mtd_and_below":
            what = f"{a} to the selected MTD and {b} to the next lower level"
            alone = "the MTD is level 1" + (
                ", or the organ-dose limits rule the lower level out at the end of escalation"
                if organ_limits
                else ""
            )
        else:
            what = (
                f"{a} to the selected level and {b} to the tried level with the next-highest "
                f"observed {utility} among those with observed DLT rate ≤ "
                f"{self.max_dlt_rate:g}{admitted}"
            )
            utility = "utility"  # described once
            alone = "no other level qualifies"
        if self.rule == "response":
            score, margin = "response rate", f"{self.margin:g}"
        else:
            score, margin = f"mean {utility} per patient", f"{self.margin:g} utility points"
        return (
            f"After escalation, a trial that selects a level randomises "
            f"{a + b} new patients, {what}; with one candidate ({alone}) {self.patients_per_arm} "
            f"patients are treated at it alone. The optimised dosage is the arm with the highest "
            f"observed {score} among the arms whose observed DLT rate is ≤ "
            f"{self.max_dlt_rate:g}, a higher level winning only when better by more than "
            f"{margin}; when no arm passes, no level is selected."
            + (
                " An arm whose level the organ-dose limits rule out at the end of the stage, "
                "with every patient's measured dosimetry (escalation and stage), cannot be "
                "selected."
                if organ_limits
                else ""
            )
        )


def read_optimisation(
    top: TomlTable, fields: DesignFields, spec: MethodSpec | None
) -> Optimisation | None:
    """The ``[optimisation]`` section of a design file (None when absent or invalid; its
    problems go to the file's report)."""
    from theradose.validation import POSITIVE, Interval, show_value

    if "optimisation" not in top.data:
        return None
    table = top.section("optimisation")
    table.check_keys(OPTIMISATION_KEYS)
    allowed = lambda c: " or ".join(show_value(x) for x in c)  # noqa: E731
    candidates = table.choice("candidates", CANDIDATES, required=allowed(CANDIDATES))
    rule = table.choice("rule", RULES) or ("response" if "rule" not in table.data else None)
    per_arm = _patients_per_arm(table)
    ratio = table.numbers("ratio", POSITIVE, "any")
    if "ratio" not in table.data:
        ratio = (1.0, 1.0)
    elif ratio is not None and len(ratio) != 2:
        table.error(
            f"ratio: must give 2 numbers (the selected level's arm, the other arm), "
            f"got {show_value(table.data['ratio'])}"
        )
        ratio = None
    if ratio is not None and per_arm is not None:
        sizes = [2 * per_arm * r / sum(ratio) for r in ratio]
        if any(abs(s - round(s)) > 1e-9 for s in sizes):
            shown = ", ".join(f"{s:.4g}" for s in sizes)
            given = (
                f"patients = {2 * per_arm}"
                if "patients" in table.data
                else f"patients_per_arm = {per_arm}"
            )
            table.error(
                f"ratio = {show_value(table.data['ratio'])}: with {given} the arms would have "
                f"{shown} patients; the ratio must split {2 * per_arm} patients into whole "
                "numbers"
            )
            ratio = None
    max_dlt = table.number(
        "max_dlt_rate", Interval(0.0, 1.0, high_closed=True), default=fields.target
    )
    high = 100.0 if rule == "utility" else 1.0  # utility on its 0–100 scale, else a rate
    margin_range = Interval(0.0, high, low_closed=True)
    margin = table.number("margin", margin_range, default=0.0)
    weights = table.numbers("utility_weights", Interval(0.0, 100.0, True, True), "any")
    if weights is not None and len(weights) != 4:
        table.error(
            "utility_weights: must give 4 numbers (response without DLT, neither, both, DLT "
            f"without response), got {show_value(table.data['utility_weights'])}"
        )
        weights = None
    method_utility = spec is not None and spec.method_class.uses_efficacy
    wanted = {"rule": "utility", "candidates": "top_two_utility"}
    given = {"rule": rule, "candidates": candidates}
    needs_utility = [f"{k} = {show_value(v)}" for k, v in given.items() if v == wanted[k]]
    if needs_utility and not method_utility and "utility_weights" not in table.data:
        table.error(
            f"{' and '.join(needs_utility)}: needs utility weights: give utility_weights = "
            "[response without DLT, neither, both, DLT without response] (e.g. [100, 40, 60, 0]) "
            "or use a method that scores utility (boin12)"
        )
        return None
    if None in (candidates, rule, per_arm, ratio, max_dlt, margin):
        return None
    return Optimisation(
        candidates=candidates,
        patients_per_arm=per_arm,
        ratio=tuple(ratio),
        rule=rule,
        max_dlt_rate=max_dlt,
        margin=margin,
        utility_weights=weights,
    )


def _patients_per_arm(table: TomlTable) -> int | None:
    """``patients_per_arm``, or ``patients`` (the stage's total, 2 × patients_per_arm) instead;
    not both."""
    if "patients" not in table.data:
        return table.integer(
            "patients_per_arm",
            1,
            required="patients per arm, an integer >= 1; or patients, the stage's total",
            maximum=MAX_PATIENTS_PER_ARM,
            why="the most patients an arm may randomise",
        )
    if "patients_per_arm" in table.data:
        table.error(
            "patients and patients_per_arm: give one of them (patients = 2 × patients_per_arm, "
            "the stage's total)"
        )
        return None
    total = table.integer(
        "patients",
        2,
        maximum=2 * MAX_PATIENTS_PER_ARM,
        why="the most patients the stage may randomise",
    )
    if total is not None and total % 2:
        table.value_error(
            "patients",
            total,
            "must be an even number (the stage's total: two arms of patients / 2 on average, "
            "split by ratio; a stage with one candidate treats patients / 2)",
        )
        return None
    return None if total is None else total // 2


# ---------------------------------------------------------------------------------------------
# The rule


def weights_of(design: Design) -> tuple[float, float, float, float] | None:
    """The stage's utility weights: its own, else the method's (None when neither exists)."""
    opt = design.optimisation
    if opt.utility_weights is not None:
        return opt.utility_weights
    return design.method.utility_weights if design.method.uses_efficacy else None


def utility_score(weights, n, y, r, b) -> np.ndarray:
    """Mean utility per patient from counts (or probabilities with n = 1): patients with a
    response and no DLT, neither, both, a DLT and no response, each weighted."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return total_utility(weights, outcome_classes(n, y, r, b)) / n


def choose(
    levels: np.ndarray, eligible: np.ndarray, score: np.ndarray, margin: float
) -> np.ndarray:
    """The rule's choice among arms, [trial] (NO_LEVEL: no arm eligible).

    ``levels``, ``eligible`` (passes the toxicity guard), ``score`` (observed response rate or
    mean utility): [trial, arm]. Arms are taken from the lowest level up; a higher one replaces
    the best so far only when its score is higher by more than ``margin`` (ties: lower level).
    """
    order = np.argsort(np.where(levels < 0, np.iinfo(np.int64).max, levels), axis=1, kind="stable")
    levels = np.take_along_axis(levels, order, 1)
    eligible = np.take_along_axis(eligible, order, 1)
    score = np.take_along_axis(score, order, 1)
    best = np.full(levels.shape[0], NO_LEVEL, dtype=np.int64)
    best_score = np.full(levels.shape[0], -np.inf)
    for arm in range(levels.shape[1]):
        better = eligible[:, arm] & (
            (best == NO_LEVEL) | (score[:, arm] > best_score + margin + _EPS)
        )
        best = np.where(better, levels[:, arm], best)
        best_score = np.where(better, score[:, arm], best_score)
    return best


def _scores(opt: Optimisation, weights, n, y, r, b) -> tuple[np.ndarray, np.ndarray]:
    """(eligible, score) of arms with ``n`` patients, ``y`` DLTs, ``r`` responses, ``b`` both."""
    with np.errstate(invalid="ignore", divide="ignore"):
        eligible = (n > 0) & (y <= opt.max_dlt_rate * n + _EPS)
        if opt.rule == "utility":
            score = utility_score(weights, n, y, r, b)
        else:
            score = r / n
    return eligible, np.where(n > 0, score, -np.inf)


def true_optimal_level(design: Design, truth: DesignTruth) -> int:
    """The truly optimal dosage: the rule applied to the true probabilities, with candidates from
    the constrained optimum (the true MTD without organ limits; for ``"top_two_utility"`` the
    true OBD) among the truly admissible levels (NO_LEVEL: none)."""
    opt = design.optimisation
    if truth.eff_prob is None:
        return NO_LEVEL
    p_t, p_e, p_b = (
        np.asarray(p, dtype=float) for p in (truth.dlt_prob, truth.eff_prob, truth.both_prob)
    )
    weights = weights_of(design)
    ones = np.ones_like(p_t)
    if opt.candidates == "top_two_utility" and design.method.uses_efficacy:
        first = truth.obd
    else:
        first = truth.optimum  # the true MTD among the truly admissible levels
    if first == NO_LEVEL or not truth.admissible[first]:
        return NO_LEVEL
    eligible, score = _scores(opt, weights, ones, p_t, p_e, p_b)
    if opt.candidates == "mtd_and_below":
        second = first - 1 if first > 0 and truth.admissible[first - 1] else NO_LEVEL
    else:
        utility = utility_score(weights, ones, p_t, p_e, p_b)
        ok = truth.admissible & (p_t <= opt.max_dlt_rate + _EPS)
        ok[first] = False
        second = _best_level(np.where(ok, utility, -np.inf)[None, :], ok[None, :])[0]
    levels = np.array([[first, second]])
    safe = np.where(levels >= 0, eligible[np.maximum(levels, 0)], False)
    return int(choose(levels, safe, score[np.maximum(levels, 0)], opt.margin)[0])


def _best_level(score: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """The level with the highest score where ``ok``, the lower on a tie, [trial]."""
    best = np.argmax(np.where(ok, np.round(score, 9), -np.inf), axis=1)
    return np.where(ok.any(axis=1), best, NO_LEVEL)


# ---------------------------------------------------------------------------------------------
# Simulation


def candidates(design: Design, state: TrialState, selected: np.ndarray) -> np.ndarray:
    """The candidate levels of each trial, [trial, arm] (the selected level first; NO_LEVEL where
    there is no candidate, and in both arms for trials that selected no level)."""
    n_trials, n_levels = state.n.shape
    admissible = state.admissible
    if admissible is None:
        admissible = np.ones((n_trials, n_levels), dtype=bool)
    n, y = state.n.astype(float), state.y.astype(float)
    r = state.r.astype(float) if state.r is not None else np.zeros_like(n)
    b = state.b.astype(float) if state.b is not None else np.zeros_like(n)
    return candidate_levels(design, n, y, r, b, admissible, selected)


def candidate_levels(design: Design, n, y, r, b, admissible, selected) -> np.ndarray:
    """:func:`candidates` from the escalation's counts [trial, level] (patients, DLTs,
    responses, both), the levels the organ limits admit [trial, level] and the selected level
    [trial]."""
    opt = design.optimisation
    n_trials = n.shape[0]
    rows = np.arange(n_trials)
    first = np.where(selected >= 0, selected, NO_LEVEL)
    if opt.candidates == "mtd_and_below":
        below = first - 1
        ok = (below >= 0) & admissible[rows, np.maximum(below, 0)]
        second = np.where(ok, below, NO_LEVEL)
    else:
        utility = utility_score(weights_of(design), n, y, r, b)
        ok = admissible & (n > 0) & (y <= opt.max_dlt_rate * n + _EPS)
        ok[rows, np.maximum(first, 0)] = False
        second = _best_level(np.where(ok, utility, -np.inf), ok)
    second = np.where(first >= 0, second, NO_LEVEL)
    return np.stack([first, second], axis=1)


def stage_seeds(seed: np.random.SeedSequence) -> tuple[np.random.SeedSequence, ...]:
    """Four sub-streams of the stage's stream: DLT draws u, response draws v, accrual gaps, and
    the stage patients' organ Gy/GBq (drawn only when the patients have dosimetry, so the first
    three, and every result of a scenario without dosimetry, are what they were before)."""
    return tuple(
        np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, k)) for k in range(4)
    )


def _draws(seed: np.random.SeedSequence, n_trials: int, n_arms: int, n_max: int) -> np.ndarray:
    """U(0, 1) draws [trial, arm, patient], patient-major (an arm of fewer patients sees the same
    first patients)."""
    rng = np.random.default_rng(seed)
    return rng.random((n_max, n_arms, n_trials)).transpose(2, 1, 0)


@dataclass(frozen=True)
class StagePatients:
    """The stage's virtual patients with dosimetry, arrays [trial, arm, patient(, organ)].

    Attributes
    ----------
    true_gy_per_gbq : [..., organ] true Gy/GBq, in the scenario's organ order
        (:func:`theradose.scenario.organ_truth`)
    measured_gy_per_gbq : [..., design organ] measured Gy/GBq (None: the design has no organs)
    schedule : :class:`~theradose.dosimetry.ScheduleMoments` of the activity each patient
        receives over the cycles (fixed, capped or personalised, as in escalation)
    capped : whether each patient's later cycles were reduced
    dlt_prob : each patient's P(DLT) from the NTCP of their own organ doses (None: the scenario
        gives the levels' DLT probabilities)
    response_prob : each patient's P(response) from their own tumour dose (None: the scenario
        gives the levels' response probabilities)
    exceeds : [..., design organ] the TRUE cumulative absorbed dose (or BED) passes the design
        organ's limit (None: the design has no organs)
    """

    true_gy_per_gbq: np.ndarray
    measured_gy_per_gbq: np.ndarray | None
    schedule: Any
    capped: np.ndarray
    dlt_prob: np.ndarray | None
    response_prob: np.ndarray | None
    exceeds: np.ndarray | None


def stage_patients(
    design: Design, organs: Any, seed: np.random.SeedSequence, levels: np.ndarray, n_max: int
) -> StagePatients:
    """The stage's patients of a scenario whose patients have dosimetry: ``n_max`` patients per
    arm of each trial, treated at ``levels`` [trial, arm] (0-based; any level where an arm is
    empty), as the escalation treats its patients.

    Each patient's true and measured Gy/GBq per organ come from ``organs`` (the scenario's
    :class:`~theradose.dosimetry.DosimetryTruth` for the design) by
    :func:`theradose.dosimetry.sample_patients` on the stage's own stream ``seed``, drawn
    patient-major over (patient, arm) like the stage's u and v; their schedule from their
    level's value by the design's rule (fixed, capped from measured Gy/GBq, or personalised:
    :func:`theradose.engine.patient_schedules`); their P(DLT) from the NTCP of their own cumulative
    organ doses (:func:`theradose.dosimetry.patient_dlt_prob`) and P(response) from their own
    tumour dose (:func:`theradose.dosimetry.patient_response_prob`) when the scenario says so;
    and whether their true cumulative dose (or BED) passes each design organ's limit
    (:func:`theradose.dosimetry.passes_limit`, as the escalation's ``exceed_<organ>`` records).
    """
    from theradose.dosimetry import (
        passes_limit,
        patient_dlt_prob,
        patient_response_prob,
        sample_patients,
    )
    from theradose.engine import patient_schedules

    n_trials, n_arms = levels.shape
    dosimetry = design.dosimetry
    cv = 0.0 if dosimetry is None else dosimetry.measurement_cv
    sampled = sample_patients(
        np.random.default_rng(seed),
        organs.organs,
        n_trials,
        n_max * n_arms,
        measurement_cv=cv,
        correlation=organs.correlation,
    )

    def by_arm(a: np.ndarray) -> np.ndarray:  # [trial, patient × arm, organ] → [trial, arm, ...]
        return a.reshape(n_trials, n_max, n_arms, a.shape[-1]).transpose(0, 2, 1, 3)

    true = by_arm(sampled.true_gy_per_gbq)
    measured = index = None
    if dosimetry is not None and dosimetry.organs:
        index = organs.index(dosimetry.names)
        measured = by_arm(sampled.measured_gy_per_gbq[..., index])
    planned = np.asarray(design.doses, dtype=float)[levels][:, :, None] * np.ones(n_max)
    schedule, capped = patient_schedules(design, planned, measured)
    dlt_prob = response_prob = exceeds = None
    if organs.toxicity is not None and organs.toxicity.uses_ntcp:
        dlt_prob = patient_dlt_prob(true, schedule, organs)
    if organs.efficacy is not None:
        response_prob = patient_response_prob(true, schedule, organs)
    if index is not None:
        exceeds = np.stack(
            [
                passes_limit(model, organs.organs[i], schedule, true[..., i])
                for model, i in zip(dosimetry.organs, index.tolist(), strict=True)
            ],
            axis=-1,
        )
    return StagePatients(true, measured, schedule, capped, dlt_prob, response_prob, exceeds)


def admissible_after_stage(
    design: Design, state: TrialState, measured: np.ndarray, enrolled: np.ndarray
) -> np.ndarray:
    """The levels the design's organ-dose constraint admits at the end of the stage, [trial,
    level]: the escalation's constraint (:func:`theradose.pipeline.admissible_levels`) with
    each organ's posterior updated from every measured Gy/GBq, the escalation's patients' and
    the stage's (``measured`` [trial, arm, patient, design organ] where ``enrolled``
    [trial, arm, patient])."""
    import dataclasses

    from theradose.dosimetry import DosimetryStats
    from theradose.pipeline import admissible_levels

    n_trials, n_organs = measured.shape[0], measured.shape[-1]
    stage = DosimetryStats.from_measured(
        measured.reshape(n_trials, -1, n_organs), enrolled.reshape(n_trials, -1)
    )
    after = dataclasses.replace(state, dosimetry_stats=state.dosimetry_stats + stage, memo={})
    return admissible_levels(design, after)


def organ_guard(design: Design) -> bool:
    """Whether the stage's selection has the organ-dose guard: the design has organ-dose
    limits (a constraint that rules levels out)."""
    return any(constraint.organ_limits for constraint in design.constraints)


def run_stage(
    design: Design,
    truth: DesignTruth,
    state: TrialState,
    selected: np.ndarray,
    patients: VirtualPatients,
    rho: float,
) -> dict[str, np.ndarray]:
    """Simulate the stage for every trial of a chunk (all at once); returns the
    :class:`~theradose.results.ChunkResult` fields ``optimised`` [trial] (the selected optimised
    level, NO_LEVEL for none), ``stage_n``, ``stage_y``, ``stage_r``, ``stage_b`` [trial, level]
    (patients, DLTs, responses, patients with both), with ``[timing]`` ``stage_duration``
    [trial] (months: the stage's accrual at the design's rate, then the last patient's
    follow-up, the longer of the DLT and efficacy windows; 0 for trials that did not enter)
    and, with the design's organ limits, ``stage_exceed`` [trial, level, organ] (stage patients
    whose true cumulative dose or BED passed the limit) and ``stage_admissible`` [trial, level]
    (levels the organ-dose constraint admits at the end of the stage; an arm at any other level
    is not selectable).

    When the patients have dosimetry (``patients.organs``: the scenario is dosimetry-driven or
    the design has ``[dosimetry]``), the stage's patients are virtual patients like the
    escalation's (:func:`stage_patients`): a DLT iff u < their own P(DLT) (NTCP) or the level's,
    a response iff v' < their own P(response) (tumour dose) or the level's."""
    opt = design.optimisation
    if truth.eff_prob is None:
        raise ValueError(
            f"design {design.name!r} has [optimisation]: the scenario must give eff_prob, the "
            "true response probability of each level"
        )
    n_trials, n_levels = state.n.shape
    levels = candidates(design, state, selected)  # [trial, arm]
    two = (levels >= 0).all(axis=1)
    one = (levels[:, 0] >= 0) & ~two
    sizes = np.zeros(levels.shape, dtype=np.int64)
    sizes[two] = opt.arm_sizes
    sizes[one, 0] = opt.patients_per_arm
    n_max = max(*opt.arm_sizes, opt.patients_per_arm)
    seeds = stage_seeds(patients.optimisation_seed or np.random.SeedSequence(0))
    seed_u, seed_v, seed_gap, seed_organs = seeds
    u = _draws(seed_u, n_trials, 2, n_max)
    v = _draws(seed_v, n_trials, 2, n_max)
    if rho != 0.0:
        from theradose import special_functions as special

        tiny = np.finfo(float).tiny
        z_u = special.ndtri(np.clip(u, tiny, 1.0))
        z_v = special.ndtri(np.clip(v, tiny, 1.0))
        v = special.ndtr(rho * z_u + np.sqrt(1.0 - rho * rho) * z_v)
    at = np.maximum(levels, 0)
    enrolled = np.arange(n_max)[None, None, :] < sizes[:, :, None]
    p_dlt = truth.dlt_prob[at][:, :, None]
    p_eff = truth.eff_prob[at][:, :, None]
    own = None
    if patients.organs is not None:
        own = stage_patients(design, patients.organs, seed_organs, at, n_max)
        p_dlt = p_dlt if own.dlt_prob is None else own.dlt_prob
        p_eff = p_eff if own.response_prob is None else own.response_prob
    dlt = (u < p_dlt) & enrolled
    response = (v < p_eff) & enrolled
    n = sizes.astype(float)
    y = dlt.sum(axis=2).astype(float)
    r = response.sum(axis=2).astype(float)
    b = (dlt & response).sum(axis=2).astype(float)
    eligible, score = _scores(opt, weights_of(design), n, y, r, b)
    selectable = eligible & (levels >= 0)
    out = {}
    if own is not None and own.exceeds is not None:
        exceed = (own.exceeds & enrolled[..., None]).sum(axis=2)  # [trial, arm, organ]
        per_level = np.zeros((n_trials, n_levels, exceed.shape[-1]), dtype=np.int32)
        for arm in range(levels.shape[1]):
            has = levels[:, arm] >= 0
            per_level[has, levels[has, arm]] += exceed[has, arm].astype(np.int32)
        out["stage_exceed"] = per_level
    if own is not None and own.measured_gy_per_gbq is not None and organ_guard(design):
        admissible = admissible_after_stage(design, state, own.measured_gy_per_gbq, enrolled)
        selectable &= np.take_along_axis(admissible, at, axis=1)
        out["stage_admissible"] = admissible
    out["optimised"] = choose(levels, selectable, score, opt.margin)
    for name, counts in (("stage_n", n), ("stage_y", y), ("stage_r", r), ("stage_b", b)):
        per_level = np.zeros((n_trials, n_levels), dtype=np.int32)
        for arm in range(levels.shape[1]):
            has = levels[:, arm] >= 0
            per_level[has, levels[has, arm]] += counts[has, arm].astype(np.int32)
        out[name] = per_level
    if design.timing is not None:
        total = sizes.sum(axis=1)
        rng = np.random.default_rng(seed_gap)
        n_total = int(sizes.sum(axis=1).max(initial=0))
        gaps = design.timing.gaps(rng.random((n_total, n_trials)).T)
        gaps = np.where(np.arange(n_total)[None, :] < total[:, None], gaps, 0.0)
        out["stage_duration"] = np.where(
            total > 0, gaps.sum(axis=1) + design.timing.follow_up_months, 0.0
        )
    return out


# ---------------------------------------------------------------------------------------------
# Sums and figures


def stage_sums(sim: Any, chunk: Any) -> dict[str, Any]:
    """A chunk's stage reduced to sums (with squares, for the Monte Carlo errors), added to
    ``Simulations.optimisation``."""
    optimised = chunk.optimised.astype(np.int64)
    stage_n = chunk.stage_n.astype(np.int64)
    entered = chunk.mtd >= 0
    stage_total = stage_n.sum(axis=1)
    arms = (stage_n > 0).sum(axis=1)
    per_arm = stage_total[entered] / np.maximum(arms[entered], 1)
    total_n = chunk.n.astype(np.int64).sum(axis=1) + stage_total
    out = {
        "selected": np.bincount(optimised + 1, minlength=stage_n.shape[1] + 1),
        "correct": int((optimised == sim.optimal_level).sum()),
        "entered": int(entered.sum()),
        "one_arm": int((entered & (arms == 1)).sum()),
        "per_arm_sum": float(per_arm.sum()),
        "per_arm_sq": float((per_arm**2).sum()),
        "stage_n_sum": stage_n.sum(axis=0),
        "stage_n_sq": (stage_n * stage_n).sum(axis=0),
        "stage_y_sum": chunk.stage_y.astype(np.int64).sum(axis=0),
        "stage_r_sum": chunk.stage_r.astype(np.int64).sum(axis=0),
        "stage_total_sum": int(stage_total.sum()),
        "stage_total_sq": int((stage_total * stage_total).sum()),
        "total_n_sum": int(total_n.sum()),
        "total_n_sq": int((total_n * total_n).sum()),
    }
    if chunk.stage_exceed is not None:
        # per organ: each entered trial's fraction of stage patients past the limit; per level
        # and organ: counts with their squares and cross products with the level's stage
        # patients (pooled ratio and its delta-method error)
        exceed = chunk.stage_exceed.astype(np.int64)  # [trial, level, organ]
        fraction = exceed.sum(axis=1)[entered] / stage_total[entered, None]
        out.update(
            exceed_fraction_sum=fraction.sum(axis=0),
            exceed_fraction_sq=(fraction**2).sum(axis=0),
            exceed_level_sum=exceed.sum(axis=0),
            exceed_level_sq=(exceed * exceed).sum(axis=0),
            exceed_level_cross=(exceed * stage_n[:, :, None]).sum(axis=0),
        )
    if chunk.stage_admissible is not None:
        ruled_out = ((stage_n > 0) & ~chunk.stage_admissible).any(axis=1)
        out["organ_ruled_out"] = int(ruled_out.sum())
    if chunk.stage_duration is not None:
        stage = chunk.stage_duration[entered]
        total = chunk.duration + chunk.stage_duration
        out.update(
            stage_duration_sum=float(stage.sum()),
            stage_duration_sq=float((stage**2).sum()),
            total_duration_sum=float(total.sum()),
            total_duration_sq=float((total**2).sum()),
        )
    return out


def add_sums(total: dict, part: dict) -> None:
    """Add ``part``'s sums into ``total`` (in place)."""
    for name, values in part.items():
        total[name] = total[name] + values if name in total else values


# JSON key → definition (docs/dose-optimisation.md, "Dose optimisation: backfill and a
# randomised stage").
OPTIMISATION_DEFINITIONS = {
    "true_optimal_level": "the truly optimal dosage: the stage's rule applied to the true DLT "
    "and response probabilities of the candidates built from the constrained optimum (the true "
    "MTD without organ limits; 1-based; null: none)",
    "optimised_pcs": "% of trials whose randomised stage selects the truly optimal dosage "
    "(selecting none, or not entering the stage, is correct when there is none)",
    "optimised_selection_pct": "% of trials selecting each level as the optimised dosage",
    "optimised_no_selection_pct": "% of trials with no optimised dosage: no MTD after "
    "escalation, or no arm passing the toxicity guard",
    "optimisation_entered_pct": "% of trials that selected an MTD and entered the stage",
    "optimisation_one_arm_pct": "% of trials whose stage had one candidate only (the MTD is "
    "level 1, or the lower level is not admissible)",
    "optimisation_patients_per_arm_mean": "patients per arm of the stage, mean over the trials "
    "that entered it",
    "optimisation_patients_mean": "stage patients treated at each level per trial, mean",
    "optimisation_n_mean": "stage patients per trial, mean over all trials",
    "optimisation_total_n_mean": "escalation and stage patients per trial, mean",
    "optimisation_duration_months_mean": "months of the stage (accrual at the design's rate, "
    "then the longer of the DLT and efficacy windows), mean over the trials that entered it",
    "optimisation_total_duration_months_mean": "months of escalation and stage per trial, mean",
    "optimisation_organ_exceed_pct": "per organ with a limit in the design: each trial's % of "
    "stage patients whose TRUE cumulative absorbed dose (or BED) over the cycles they received "
    "passed the organ's limit, averaged over the trials that entered the stage",
    "optimisation_organ_exceed_level_pct": "per organ with a limit and per level: % of the "
    "stage patients treated at the level whose TRUE cumulative absorbed dose (or BED) passed "
    "the organ's limit, pooled over trials (Σ past the limit ÷ Σ stage patients at the level; "
    "null where no trial's stage treated the level)",
    "optimisation_organ_ruled_out_pct": "% of trials in which the organ-dose constraint, "
    "updated with the stage patients' measured dosimetry, ruled out the level of one of the "
    "stage's arms (that arm could not be selected)",
}


def optimisation_figures(sim: Any, values: dict, se: dict) -> None:
    """The stage's operating characteristics (:data:`OPTIMISATION_DEFINITIONS`), with their
    Monte Carlo errors; nothing for a design without ``[optimisation]``."""
    from theradose.results import mean_with_se, percent_with_se, true_mtd_label

    o = sim.optimisation
    if not o:
        return
    t = sim.n_trials
    entered = max(int(o["entered"]), 1)

    def put(key, pair, scale=1.0, defined=True):
        if not defined:
            values[key] = se[key] = None
            return
        value, error = pair
        if np.ndim(value):
            values[key], se[key] = (scale * value).tolist(), (scale * error).tolist()
        else:
            values[key], se[key] = float(scale * value), float(scale * error)

    values["true_optimal_level"], se["true_optimal_level"] = true_mtd_label(sim.optimal_level), None
    sel, sel_se = percent_with_se(o["selected"], t)
    values["optimised_selection_pct"], se["optimised_selection_pct"] = (
        sel[1:].tolist(),
        sel_se[1:].tolist(),
    )
    values["optimised_no_selection_pct"] = float(sel[0])
    se["optimised_no_selection_pct"] = float(sel_se[0])
    put("optimised_pcs", percent_with_se(o["correct"], t))
    put("optimisation_entered_pct", percent_with_se(o["entered"], t))
    put("optimisation_one_arm_pct", percent_with_se(o["one_arm"], t))
    put(
        "optimisation_patients_per_arm_mean",
        mean_with_se(o["per_arm_sum"], o["per_arm_sq"], entered),
        defined=o["entered"] > 0,
    )
    put("optimisation_patients_mean", mean_with_se(o["stage_n_sum"], o["stage_n_sq"], t))
    put("optimisation_n_mean", mean_with_se(o["stage_total_sum"], o["stage_total_sq"], t))
    put("optimisation_total_n_mean", mean_with_se(o["total_n_sum"], o["total_n_sq"], t))
    _organ_figures(sim, values, se)
    timed = "stage_duration_sum" in o
    put(
        "optimisation_duration_months_mean",
        mean_with_se(o.get("stage_duration_sum", 0.0), o.get("stage_duration_sq", 0.0), entered),
        defined=timed and o["entered"] > 0,
    )
    put(
        "optimisation_total_duration_months_mean",
        mean_with_se(o.get("total_duration_sum", 0.0), o.get("total_duration_sq", 0.0), t),
        defined=timed,
    )


def _organ_figures(sim: Any, values: dict, se: dict) -> None:
    """The stage's organ-dose figures (:data:`OPTIMISATION_DEFINITIONS`), for a design with
    organ limits (nothing otherwise)."""
    from theradose.results import mean_with_se, percent_with_se, ratio_with_se

    o = sim.optimisation
    if "exceed_fraction_sum" not in o:
        return
    t = sim.n_trials
    entered = int(o["entered"])
    mean, error = mean_with_se(o["exceed_fraction_sum"], o["exceed_fraction_sq"], max(entered, 1))
    key = "optimisation_organ_exceed_pct"
    values[key], se[key] = {}, {}
    for j, organ in enumerate(sim.organs):
        values[key][organ] = float(100 * mean[j]) if entered else None
        se[key][organ] = float(100 * error[j]) if entered else None
    key = "optimisation_organ_exceed_level_pct"
    values[key], se[key] = {}, {}
    for j, organ in enumerate(sim.organs):
        values[key][organ], se[key][organ] = [], []
        for level in range(sim.n_levels):
            pair = ratio_with_se(
                int(o["exceed_level_sum"][level, j]),
                int(o["exceed_level_sq"][level, j]),
                int(o["exceed_level_cross"][level, j]),
                int(o["stage_n_sum"][level]),
                int(o["stage_n_sq"][level]),
                t,
            )
            values[key][organ].append(None if pair is None else 100 * pair[0])
            se[key][organ].append(None if pair is None else 100 * pair[1])
    key = "optimisation_organ_ruled_out_pct"
    if "organ_ruled_out" in o:
        value, error = percent_with_se(o["organ_ruled_out"], t)
        values[key], se[key] = float(value), float(error)


def optimisation_truth(design: Design, truth: DesignTruth) -> dict[str, Any]:
    """The :class:`~theradose.results.Simulations` identity field of the stage (none without
    ``[optimisation]``)."""
    if design.optimisation is None:
        return {}
    return {"optimal_level": true_optimal_level(design, truth)}


__all__ = [
    "OPTIMISATION_DEFINITIONS",
    "Optimisation",
    "StagePatients",
    "admissible_after_stage",
    "choose",
    "optimisation_figures",
    "read_optimisation",
    "run_stage",
    "stage_patients",
    "true_optimal_level",
]
