"""Dose transition pathways: the design's decision after every outcome of the next cohorts.

As ``escalation::get_dose_paths`` (Brock 2020) and the dose-transition pathways of Yap et al.
(2017, *Clin Cancer Res* 23:7440–7447): from the trial so far, each of the next ``n_cohorts``
cohorts may see 0 … cohort-size DLTs; the tree holds the decision after each outcome, until the
design stops. Every node is decided by :func:`theradose.pipeline.decide` on the same trial state
the engine would hold — all nodes of a depth at once, as a batch of trial states — so pathways,
simulation and interim recommendations cannot disagree.

Time-to-event designs are shown with complete follow-up (an outcome carries no times). Organ-dose
limits are learnt from the dosimetry measured so far; the future patients' dosimetry is unknown,
so it does not move the limits along a pathway.

A design with ``[backfill]`` (Zhao et al. 2024): the pathways are those of the escalation
cohorts. Backfill patients arrive at random while a cohort is pending — how many, when, and so at
which open level, depends on accrual, not on the outcomes enumerated — so none is assumed along a
pathway: each node is the decision if nobody is backfilled meanwhile. Backfill patients already
treated (a patient file's ``backfill`` column) count at their level with their outcomes, with
complete follow-up (:func:`theradose.recommendation.replay_complete_with_backfill`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations_with_replacement
from math import comb

import numpy as np

from theradose.design import Design
from theradose.outcomes import format_outcomes
from theradose.pipeline import decide, select_mtd
from theradose.recommendation import replay, treat_cohort
from theradose.state import NO_LEVEL, StopReason, TrialState

MAX_PATH_NODES = 100_000


@dataclass(frozen=True)
class PathNode:
    """One node of the pathways: the outcomes so far and the design's decision after them.

    ``path``: the whole outcome string (history, then the new cohorts); ``new_outcomes``: the
    new cohorts only; ``depth``: how many new cohorts; ``next_level`` (0-based) or None when the
    design stops, with ``stop_reason``; ``mtd``: the design's MTD estimate there (0-based or
    None); ``parent``: the index of the parent node (None for the root).
    """

    path: str
    new_outcomes: str
    depth: int
    next_level: int | None
    stop_reason: StopReason | None
    mtd: int | None
    parent: int | None

    @property
    def goes_on(self) -> bool:
        return self.next_level is not None


class PathwaysTooLarge(ValueError):
    """A tree with more nodes than :data:`MAX_PATH_NODES`."""


def n_path_nodes(cohort_size: int, n_cohorts: int, efficacy: bool = False) -> int:
    """The most nodes the pathways of ``n_cohorts`` cohorts of ``cohort_size`` can have (every
    node going on): 1 + m + … + m^K with m = c + 1 outcomes of a cohort (its DLT count), or,
    with efficacy, m = C(c + 3, 3) (its counts of N, E, T and B)."""
    outcomes = comb(cohort_size + 3, 3) if efficacy else cohort_size + 1
    return sum(outcomes**depth for depth in range(n_cohorts + 1))


# Outcome letters of a patient in a design that uses efficacy: (DLT, response)
_EFFICACY_OUTCOMES = {
    "N": (False, False),
    "E": (False, True),
    "T": (True, False),
    "B": (True, True),
}


def cohort_outcomes(patients: int, efficacy: bool) -> list[tuple[list[bool], list[bool] | None]]:
    """Every distinct outcome of a cohort (the order of patients within it does not matter):
    DLT flags (N before T) and, with efficacy, response flags, letters in the order N, E, T, B."""
    if not efficacy:
        return [([False] * (patients - k) + [True] * k, None) for k in range(patients + 1)]
    out = []
    for letters in combinations_with_replacement("NETB", patients):
        pairs = [_EFFICACY_OUTCOMES[letter] for letter in letters]
        out.append(([p[0] for p in pairs], [p[1] for p in pairs]))
    return out


def dose_paths(
    design: Design,
    history: Sequence[tuple[int, Sequence[bool]]] = (),
    n_cohorts: int = 2,
    gy_per_gbq: np.ndarray | None = None,
) -> list[PathNode]:
    """The decisions after every outcome of the next ``n_cohorts`` cohorts, breadth first.

    Parameters
    ----------
    design : Design
    history : the trial's cohorts so far, (0-based level, DLT flags), as for
        :func:`theradose.recommendation.recommend`
    n_cohorts : how many cohorts ahead
    gy_per_gbq : [patient, organ] the treated patients' measured dosimetry (design's organ order)

    Raises
    ------
    PathwaysTooLarge
        When the tree could have more than :data:`MAX_PATH_NODES` nodes (checked before any work).
    """
    _check_size(design, n_cohorts)
    spare = n_cohorts * design.cohort_size
    state, _ = replay(design, history, gy_per_gbq=gy_per_gbq, spare_patients=spare)
    return _grow(design, state, format_outcomes(history), n_cohorts)


def _check_size(design: Design, n_cohorts: int) -> None:
    """Refuse a tree that could have more than :data:`MAX_PATH_NODES` nodes, before any work."""
    size = design.cohort_size
    most = n_path_nodes(size, n_cohorts, design.method.uses_efficacy)
    if most > MAX_PATH_NODES:
        raise PathwaysTooLarge(
            f"{n_cohorts} cohorts of {size} make up to {most:,} pathway nodes; at most "
            f"{MAX_PATH_NODES:,} are computed: ask for fewer cohorts"
        )


def _grow(design: Design, state: TrialState, prefix: str, n_cohorts: int) -> list[PathNode]:
    """The tree from one trial's state (``prefix``: its outcome string), breadth first."""
    size = design.cohort_size
    efficacy = design.method.uses_efficacy
    nodes = _nodes(design, state, [prefix], [""], 0, [None])
    frontier, first = state, 0
    for depth in range(1, n_cohorts + 1):
        going_on = np.flatnonzero(frontier.active)
        room = design.max_patients - frontier.n_enrolled[going_on]
        cohort = np.minimum(size, room)  # a last, shorter cohort fills max_patients
        parents, dlts, responses, levels = [], [], [], []
        for row, patients in zip(going_on, cohort, strict=True):
            for flags, responded in cohort_outcomes(int(patients), efficacy):
                parents.append(row)
                dlts.append(flags)
                responses.append(responded)
                levels.append(int(frontier.next_level[row]))
        if not parents:
            break
        parents = np.asarray(parents)
        children = frontier.take(parents)
        for patients in np.unique([len(d) for d in dlts]):
            rows = np.flatnonzero([len(d) == patients for d in dlts])
            flags = np.asarray([dlts[r] for r in rows], dtype=bool).reshape(rows.size, patients)
            responded = None
            if efficacy:
                responded = np.asarray([responses[r] for r in rows], dtype=bool)
                responded = responded.reshape(rows.size, patients)
            treat_cohort(design, children, rows, np.asarray(levels)[rows], flags, responded)
        decide(design, children)
        new = [
            format_outcomes([(level, tuple(flags)) + (() if resp is None else (tuple(resp),))])
            for level, flags, resp in zip(levels, dlts, responses, strict=True)
        ]
        parent_nodes = [first + int(row) for row in parents]  # frontier row r is node first + r
        new_outcomes = [
            (nodes[parent].new_outcomes + " " + text).strip()
            for parent, text in zip(parent_nodes, new, strict=True)
        ]
        paths = [(prefix + " " + text).strip() for text in new_outcomes]
        first = len(nodes)
        nodes += _nodes(design, children, paths, new_outcomes, depth, parent_nodes)
        frontier = children
    return nodes


def pathways_from_data(
    design: Design,
    outcomes: str | None = None,
    patients: str | None = None,
    n_cohorts: int = 2,
) -> list[PathNode]:
    """The pathways from a trial's outcome string or patient file (``None``: from the start).

    A patient file's patients are grouped into cohorts as :func:`theradose.recommendation.
    patient_cohorts` does and read with complete follow-up, with their measured dosimetry: a
    patient still pending counts as without the event (a DLT, or for a design deciding on
    responses, a response), as the trial will stand if none occurs. Its backfill patients (a
    design with ``[backfill]``) form no cohort: they count at their level with their outcomes,
    as the trial will stand once every window has closed (not for a design deciding on
    responses: a PatientFileError says so).
    """
    from theradose.outcomes import parse_outcomes

    if patients is not None:
        from theradose.patients import PatientFileError
        from theradose.recommendation import patient_cohorts, replay_complete_with_backfill
        from theradose.study import check_backfill_patients, read_design_patients
        from theradose.timing import DAYS_PER_MONTH

        records = read_design_patients(patients, design)
        check_backfill_patients(design, records)
        flagged = records.backfill
        response = records.response if design.method.uses_efficacy else None
        if flagged is None or not flagged.any():
            history = patient_cohorts(design.cohort_size, records.level, records.dlt, response)
            return dose_paths(design, history, n_cohorts, gy_per_gbq=records.gy_per_gbq)
        if response is not None:
            raise PatientFileError(
                [
                    f"{records.path}: column 'backfill' marks backfill patients: pathways from "
                    f"them are not supported yet for method {design.method_key!r} (it decides "
                    "on responses); give the escalation patients' outcomes with --outcomes"
                ]
            )
        _check_size(design, n_cohorts)
        state = replay_complete_with_backfill(
            design,
            records.level,
            records.dlt,
            records.followup_days / DAYS_PER_MONTH,
            records.dlt_day / DAYS_PER_MONTH,
            flagged,
            records.gy_per_gbq,
            spare_patients=n_cohorts * design.cohort_size,
        )
        escalating = ~flagged
        level, dlt = records.level[escalating], records.dlt[escalating]
        history = patient_cohorts(design.cohort_size, level, dlt)
        return _grow(design, state, format_outcomes(history), n_cohorts)
    history = parse_outcomes(outcomes or "", design.n_levels, design.method.uses_efficacy)
    return dose_paths(design, history, n_cohorts)


def _nodes(design, state, paths, new_outcomes, depth, parents) -> list[PathNode]:
    mtd = select_mtd(design, state)
    out = []
    for row, (path, new, parent) in enumerate(zip(paths, new_outcomes, parents, strict=True)):
        goes_on = bool(state.active[row])
        out.append(
            PathNode(
                path=path,
                new_outcomes=new,
                depth=depth,
                next_level=int(state.next_level[row]) if goes_on else None,
                stop_reason=None if goes_on else StopReason(int(state.stop_reason[row])),
                mtd=None if mtd[row] == NO_LEVEL else int(mtd[row]),
                parent=parent,
            )
        )
    return out
