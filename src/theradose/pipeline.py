"""The decision pipeline every design runs (after Brock's ``escalation`` and crmPack).

The method proposes a level → the method's and the design's masks remove levels (AND, so their
order never matters) → the highest allowed level at or below the proposal is taken → stopping
rules decide → at the end the method selects the MTD, kept inside the organ-dose limits.
Simulation (:mod:`theradose.engine`), exact enumeration (:mod:`theradose.exact`) and interim
recommendations (:mod:`theradose.recommendation`) all call :func:`decide` and
:func:`select_mtd`, so they cannot disagree.
"""

from __future__ import annotations

import numpy as np

from theradose.design import Design
from theradose.state import NO_LEVEL, StopReason, TrialState, any_level, highest_level


def admissible_levels(design: Design, state: TrialState) -> np.ndarray:
    """Levels the organ-dose limits admit now, [trial, level] (all when the design has none).

    This is the dose range as the design may use it: the pipeline never treats or selects a
    level outside it, and rule-based methods read it as the top of the range
    (``state.admissible``).
    """
    mask = np.ones((state.n_trials, state.n_levels), dtype=bool)
    for constraint in design.constraints:
        if constraint.organ_limits:
            mask &= constraint.allowed(state)
    return mask


def decide(design: Design, state: TrialState) -> None:
    """Choose each active trial's next level, or stop it; updates ``state`` in place."""
    levels = np.arange(state.n_levels)
    constraint_allows = admissible = None  # None: every level
    for constraint in design.constraints:
        allowed = constraint.allowed(state)
        if constraint.organ_limits:
            admissible = allowed if admissible is None else admissible & allowed
            if state.ruled_out_at is not None:
                first = ~allowed & (state.ruled_out_at < 0) & state.active[:, None]
                np.copyto(state.ruled_out_at, state.n_enrolled[:, None], where=first)
        constraint_allows = allowed if constraint_allows is None else constraint_allows & allowed
    state.admissible = admissible
    proposal, method_stop = design.method.propose(state)
    below = levels[None, :] <= proposal[:, None]
    method_allows = design.method.allowed(state) & below
    at_or_below = method_allows if constraint_allows is None else method_allows & constraint_allows
    top = highest_level(at_or_below)
    has_level = top >= 0
    next_level = np.maximum(top, 0)

    reason = np.zeros(state.n_trials, dtype=np.int8)
    # Nothing allowed: the method's own rules (too toxic) or only the organ-dose constraints.
    reason[~has_level] = np.where(
        any_level(method_allows), StopReason.NO_ADMISSIBLE, StopReason.TOO_TOXIC
    )[~has_level]
    reason = np.where(reason == 0, method_stop, reason)
    # A rule that ends the trial with no MTD (safety) outranks one that ends it normally, so the
    # outcome never depends on the order rules are listed in (e.g. safety on the last cohort).
    rules = sorted(design.stopping, key=lambda rule: rule.reason.selects_mtd)
    for rule in rules:
        reason[(reason == 0) & rule.fires(state, next_level)] = rule.reason

    stopping = state.active & (reason != 0)
    state.stop_reason[stopping] = reason[stopping]
    state.stopped_at[stopping] = state.time[stopping]
    carry_on = state.active & ~stopping
    state.next_level[carry_on] = next_level[carry_on]
    state.active &= ~stopping


def select_mtd(design: Design, state: TrialState) -> np.ndarray:
    """The final MTD of each trial, [trial]; none for trials stopped as too toxic.

    The method's own selection, then two guarantees the pipeline gives every design: the MTD is
    never a level the organ-dose limits rule out at the end of the trial, and, with the
    design's ``select_tried_only``, it is a level that treated patients. When the method's
    level fails either, the highest level below it that passes both is selected (none if no
    level does).

    A method with ``mtd_is_next_level`` (BLRM, EWOC's "next_dose") selects the level the
    decision pipeline would give a next cohort after all the data: its proposal, then the
    highest level at or below it that the method and every constraint allow.
    """
    levels = np.arange(state.n_levels)
    admissible = admissible_levels(design, state)
    state.admissible = admissible
    if design.method.mtd_is_next_level:
        proposal, _ = design.method.propose(state)
        mtd = highest_level(design.allowed(state) & (levels[None, :] <= proposal[:, None]))
    else:
        mtd = design.method.select_mtd(state)
    eligible = admissible & (levels[None, :] <= mtd[:, None])
    if design.selects_tried_only:
        eligible &= state.n > 0
    mtd = np.where(mtd == NO_LEVEL, NO_LEVEL, highest_level(eligible))
    no_mtd = [r.value for r in StopReason if not r.selects_mtd]
    return np.where(np.isin(state.stop_reason, no_mtd), NO_LEVEL, mtd)
