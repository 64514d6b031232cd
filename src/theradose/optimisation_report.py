"""The randomised optimisation stage's operating characteristics laid out as a table and as CSV
fields (figures: :func:`theradose.optimisation.optimisation_figures`), and what ``recommend``
says of the stage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from theradose.oc_report import pm
from theradose.tables import Column, TableRecord

if TYPE_CHECKING:
    from theradose.design import Design
    from theradose.recommendation import Recommendation
    from theradose.results import OperatingCharacteristics
    from theradose.study import StudyResult

# Scalar figures: JSON key → (column header, digits).
OPTIMISATION_FIGURES = {
    "optimised_pcs": ("% selecting the optimal", 1),
    "optimised_no_selection_pct": ("% selecting none", 1),
    "optimisation_entered_pct": ("% entering the stage", 1),
    "optimisation_one_arm_pct": ("% one arm only", 1),
    "optimisation_patients_per_arm_mean": ("patients per arm", 1),
    "optimisation_n_mean": ("stage n, mean", 1),
    "optimisation_total_n_mean": ("total n, mean", 1),
    "optimisation_duration_months_mean": ("stage, months", 1),
    "optimisation_total_duration_months_mean": ("total, months", 1),
}


def has_optimisation(study: StudyResult) -> bool:
    return any("optimised_pcs" in oc.values for row in study.oc for oc in row)


def _stage_organs(study: StudyResult) -> tuple[str, ...]:
    """The organs with a limit in any design with a stage, in order of first appearance."""
    names: dict[str, None] = {}
    for row in study.oc:
        for oc in row:
            names.update(dict.fromkeys(oc.values.get("optimisation_organ_exceed_pct") or {}))
    return tuple(names)


def _guarded(study: StudyResult) -> bool:
    return any("optimisation_organ_ruled_out_pct" in oc.values for row in study.oc for oc in row)


def optimisation_table(study: StudyResult) -> TableRecord | None:
    """One row per design × scenario with an optimisation stage: the truly optimal level, the %
    of trials selecting each level as the optimised dosage, then the scalar figures and, for
    designs with organ limits, the % of stage patients past each organ's limit and the % of
    trials whose organ-dose constraint ruled out an arm (None when no design has
    ``[optimisation]``)."""
    if not has_optimisation(study):
        return None
    n_levels = max(d.n_levels for d in study.designs)
    timed = any(
        oc.values.get("optimisation_duration_months_mean") is not None
        for row in study.oc
        for oc in row
    )
    figures = {k: v for k, v in OPTIMISATION_FIGURES.items() if timed or "duration" not in k}
    organs = _stage_organs(study)
    guarded = _guarded(study)
    rows = []
    for design, scenario, _, oc, _ in study.cells():
        values, se = oc.values, oc.se
        if "optimised_pcs" not in values:
            continue
        best = values["true_optimal_level"]
        cells = [design.name, scenario.name, "none" if best is None else str(best)]
        selection, errors = values["optimised_selection_pct"], se["optimised_selection_pct"]
        for level in range(n_levels):
            cells.append(pm(selection[level], errors[level], 1) if level < len(selection) else "")
        for key, (_, digits) in figures.items():
            cells.append(pm(values.get(key), se.get(key), digits))
        exceed, exceed_se = (d.get("optimisation_organ_exceed_pct") or {} for d in (values, se))
        for organ in organs:
            cells.append(pm(exceed.get(organ), exceed_se.get(organ), 1) if organ in exceed else "")
        if guarded:
            key = "optimisation_organ_ruled_out_pct"
            cells.append(pm(values[key], se[key], 1) if key in values else "")
        rows.append(tuple(cells))
    columns = (
        Column("design", align="left", wrap_at=24),
        Column("scenario", align="left"),
        Column("optimal level"),
        *(Column(f"level {k + 1} %", group="selection") for k in range(n_levels)),
        *(Column(header) for header, _ in figures.values()),
        *(Column(f"% past {organ} limit", group="stage organ doses") for organ in organs),
        *((Column("% arm ruled out", group="stage organ doses"),) if guarded else ()),
    )
    notes = (
        "Optimal level: the stage's rule applied to the true DLT and response probabilities "
        "of the candidates built from the constrained optimum (the true MTD without organ "
        "limits); level k %: trials selecting level k as the optimised dosage.",
    )
    if organs:
        notes += (
            "% past <organ> limit: each trial's % of stage patients whose true cumulative "
            "absorbed dose (or BED) passed the organ's limit, mean over trials entering the "
            "stage; % arm ruled out: trials in which the organ-dose constraint, updated with the "
            "stage's dosimetry, ruled out an arm's level (not selectable).",
        )
    return TableRecord(
        title="Randomised dose optimisation after escalation",
        columns=columns,
        rows=tuple(rows),
        key_columns=2,
        notes=notes,
    )


def optimisation_fields(oc: OperatingCharacteristics) -> dict[str, Any]:
    """The stage's figures as CSV fields of the summary row (empty without a stage)."""
    values, se = oc.values, oc.se
    if "optimised_pcs" not in values:
        return {}
    out: dict[str, Any] = {"true_optimal_level": values["true_optimal_level"]}
    for level, (pct, error) in enumerate(
        zip(values["optimised_selection_pct"], se["optimised_selection_pct"], strict=True),
        start=1,
    ):
        out[f"optimised_selection_pct_{level}"] = pct
        out[f"optimised_selection_pct_{level}_se"] = error
    for key in OPTIMISATION_FIGURES:
        out[key], out[f"{key}_se"] = values.get(key), se.get(key)
    exceed = values.get("optimisation_organ_exceed_pct")
    if exceed is not None:
        exceed_se = se["optimisation_organ_exceed_pct"]
        by_level = values["optimisation_organ_exceed_level_pct"]
        by_level_se = se["optimisation_organ_exceed_level_pct"]
        for organ, pct in exceed.items():
            out[f"optimisation_organ_exceed_pct_{organ}"] = pct
            out[f"optimisation_organ_exceed_pct_{organ}_se"] = exceed_se[organ]
            for level, (pct, error) in enumerate(
                zip(by_level[organ], by_level_se[organ], strict=True), start=1
            ):
                out[f"optimisation_organ_exceed_pct_{organ}_{level}"] = pct
                out[f"optimisation_organ_exceed_pct_{organ}_{level}_se"] = error
    key = "optimisation_organ_ruled_out_pct"
    if key in values:
        out[key], out[f"{key}_se"] = values[key], se[key]
    return out


def optimisation_columns(study: StudyResult) -> tuple[str, ...]:
    """The CSV columns of :func:`optimisation_fields` (none when no design has a stage)."""
    if not has_optimisation(study):
        return ()
    n_levels = max(d.n_levels for d in study.designs)
    columns = ["true_optimal_level"]
    for level in range(1, n_levels + 1):
        columns += [f"optimised_selection_pct_{level}", f"optimised_selection_pct_{level}_se"]
    for key in OPTIMISATION_FIGURES:
        columns += [key, f"{key}_se"]
    for organ in _stage_organs(study):
        key = f"optimisation_organ_exceed_pct_{organ}"
        columns += [key, f"{key}_se"]
        for level in range(1, n_levels + 1):
            columns += [f"{key}_{level}", f"{key}_{level}_se"]
    if _guarded(study):
        columns += ["optimisation_organ_ruled_out_pct", "optimisation_organ_ruled_out_pct_se"]
    return tuple(columns)


def recommendation_note(design: Design, rec: Recommendation, cohorts) -> str | None:
    """What ``recommend`` says of the design's randomised optimisation stage (None without one).

    ``recommend`` decides the escalation only: while it runs, the note says that the stage
    follows; once the escalation has stopped with a selected level, it names the stage's
    candidates by the engine's own rule (:func:`theradose.optimisation.candidate_levels`), the
    arm sizes and the rule. The next-highest observed utility (``"top_two_utility"``) needs each
    patient's response, which only an outcome string of a method that uses efficacy gives.
    ``cohorts``: (0-based level, DLT flags[, response flags]) as treated.
    """
    import numpy as np

    from theradose.optimisation import candidate_levels
    from theradose.report import level_text

    opt = design.optimisation
    if opt is None:
        return None
    if not rec.stop:
        return (
            "this decision is for the escalation; if it ends with a selected level, the design's "
            f"randomised optimisation stage follows ({sum(opt.arm_sizes)} new patients; see the "
            "protocol text)"
        )
    if rec.mtd is None:
        return (
            "the escalation selected no level: the design's randomised optimisation stage does "
            "not start"
        )
    n_levels = design.n_levels
    n, y = (np.asarray([v], dtype=float) for v in (rec.n, rec.y))
    r = b = None
    if cohorts and all(len(cohort) > 2 for cohort in cohorts):
        r, b = np.zeros((1, n_levels)), np.zeros((1, n_levels))
        for level, dlts, responses in cohorts:
            r[0, level] += sum(responses)
            b[0, level] += sum(d and e for d, e in zip(dlts, responses, strict=True))
    admissible = rec.level_summary.get("admissible")
    admissible = np.ones((1, n_levels), bool) if admissible is None else admissible[None, :]
    first = level_text(design, rec.mtd)
    guard = f"observed DLT rate ≤ {opt.max_dlt_rate:g}"
    over = "the escalation is over: the design's randomised optimisation stage comes next"
    after = "recommend does not decide within the stage (its arms are fixed in advance)"
    if opt.candidates == "top_two_utility" and r is None:
        return (
            f"{over}: randomise {opt.arm_sizes[0]} new patients to {first} and "
            f"{opt.arm_sizes[1]} to the tried level with the next-highest observed utility "
            f"({guard}), which needs each patient's response (not in these data); {after}"
        )
    if r is None:  # "mtd_and_below": the candidates need no responses
        r = b = np.zeros((1, n_levels))
    levels = candidate_levels(design, n, y, r, b, admissible, np.array([rec.mtd]))[0]
    if levels[1] < 0:
        return (
            f"{over}: treat {opt.patients_per_arm} new patients at {first} alone (no other "
            f"candidate); it is the optimised dosage if its observed DLT rate is ≤ "
            f"{opt.max_dlt_rate:g}, otherwise no level is; "
            f"{after}"
        )
    score = "response rate" if opt.rule == "response" else "mean utility"
    return (
        f"{over}: randomise {opt.arm_sizes[0]} new patients to {first} and {opt.arm_sizes[1]} "
        f"to {level_text(design, int(levels[1]))}; the optimised dosage is the arm with the "
        f"highest observed {score} among those with {guard} (the higher level only when better "
        f"by more than {opt.margin:g}); {after}"
    )
