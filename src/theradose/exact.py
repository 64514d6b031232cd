"""Exact operating characteristics by enumerating every trial pathway.

For designs whose decisions depend only on the counts (n, y) per level, the current level and the
last cohort — 3+3, BOIN, CRM — a trial is a
Markov chain on those counts: after each cohort of size c at level d, the number of DLTs is
Binomial(c, p_d). Starting from the empty trial, every cohort branches into its c + 1 outcomes;
pathways that reach the same state are merged (their probabilities added), so the work grows with
the number of distinct states, not of pathways. The decisions are made by
:func:`theradose.pipeline.decide` — the same code the simulation runs — and the enumeration is
checked against an independent implementation (bcrm's ``threep3``, Monte Carlo agreement).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom

from theradose.design import Design
from theradose.pipeline import decide, select_mtd
from theradose.scenario import Scenario
from theradose.state import NO_LEVEL, TrialState

_MAX_STATES = 5_000_000


def is_count_based(design: Design) -> bool:
    """True when every part of the design decides on the counts alone (``count_based = True`` on
    the method, each constraint and each stopping rule), which exact enumeration needs."""
    parts = (design.method, *design.constraints, *design.stopping)
    return all(getattr(part, "count_based", False) for part in parts)


def exact_operating_characteristics(design: Design, scenario: Scenario) -> dict:
    """Selection probabilities and expected allocation of ``design`` under ``scenario``, exactly.

    Returns
    -------
    dict
        ``selection_pct`` [level], ``no_selection_pct``, ``patients_mean`` [level], ``dlt_mean``
        [level], ``n_mean``, ``dlt_total_mean`` — the keys of the simulated summary.
    """
    if not is_count_based(design):
        raise ValueError(
            f"exact enumeration needs rules that decide on the counts alone; design "
            f"{design.name!r} ({design.method_key}) has a part that needs per-patient data"
        )
    p = np.asarray(scenario.dlt_prob, dtype=float)
    n_levels = design.n_levels
    selected = np.zeros(n_levels + 1)
    n_expected = np.zeros(n_levels)
    y_expected = np.zeros(n_levels)

    state = TrialState.start(1, n_levels, design.start_level)
    weight = np.ones(1)
    while state.n_trials:
        size = np.minimum(design.cohort_size, design.max_patients - state.n_enrolled)
        outcomes = np.arange(design.cohort_size + 1)
        parent = np.repeat(np.arange(state.n_trials), outcomes.size)
        n_dlt = np.tile(outcomes, state.n_trials)
        branch_size = size[parent]
        prob = binom.pmf(n_dlt, branch_size, p[state.next_level[parent]])
        keep = prob > 0
        parent, n_dlt, prob, branch_size = parent[keep], n_dlt[keep], prob[keep], branch_size[keep]

        state = state.take(parent)
        weight = weight[parent] * prob
        state.record_cohort(np.arange(state.n_trials), branch_size, n_dlt)
        decide(design, state)

        done = ~state.active
        if done.any():
            finished = state.take(np.flatnonzero(done))
            w = weight[done]
            selected += np.bincount(select_mtd(design, finished) - NO_LEVEL, w, n_levels + 1)
            n_expected += w @ finished.n
            y_expected += w @ finished.y
        state, weight = _merge(state.take(np.flatnonzero(~done)), weight[~done])
        if state.n_trials > _MAX_STATES:
            raise ValueError(f"exact enumeration of {design.name!r} needs too many states")

    return {
        "selection_pct": (100 * selected[1:]).tolist(),
        "no_selection_pct": float(100 * selected[0]),
        "patients_mean": n_expected.tolist(),
        "dlt_mean": y_expected.tolist(),
        "n_mean": float(n_expected.sum()),
        "dlt_total_mean": float(y_expected.sum()),
        "total_prob": float(selected.sum()),
    }


def _merge(state: TrialState, weight: np.ndarray) -> tuple[TrialState, np.ndarray]:
    """Merge pathways that reached the same state, adding their probabilities."""
    if state.n_trials == 0:
        return state, weight
    key = np.column_stack(
        [
            state.n,
            state.y,
            state.level,
            state.next_level,
            state.n_enrolled,
            state.last_cohort_n,
            state.last_cohort_y,
        ]
    )
    unique, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    merged = np.bincount(inverse.ravel(), weight, minlength=unique.shape[0])
    return state.take(first), merged
