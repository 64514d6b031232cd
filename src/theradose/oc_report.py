"""Operating characteristics of a simulation study laid out as tables, for every output.

:data:`FIGURES` names every summary figure of a design × scenario once: its JSON key (a key of
:class:`~theradose.results.OperatingCharacteristics`), the label the tables print and its
definition (docs/definitions.md says the same). From a
:class:`~theradose.study.StudyResult`, :func:`study_tables` builds per scenario a per-level
table (levels as rows) and a summary table (figures as rows, one column per design), and per
design with organ limits the prior exceedance table; :mod:`theradose.tables` renders them for
the terminal (split to its width) or as Markdown (:func:`study_markdown`), and
:func:`summary_fields` flattens the same figures into the CSV's summary rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from theradose.report import level_text
from theradose.results import POOR_ALLOCATION_N
from theradose.state import NO_LEVEL, StopReason
from theradose.tables import Column, TableRecord, render_markdown

if TYPE_CHECKING:
    from theradose.design import Design
    from theradose.results import OperatingCharacteristics, Simulations
    from theradose.study import StudyResult

NONE = "—"
LABEL_WIDTH = 42  # the summary table's figure names wrap beyond this


@dataclass(frozen=True)
class Figure:
    """A summary figure: JSON key, table label, digits shown, section and definition."""

    key: str
    label: str
    digits: int
    section: str
    definition: str


# Every scalar summary figure, in the order the summary table shows them. "Pooled": a ratio of
# totals over all trials; "mean of trials": the average of each trial's own proportion over the
# trials that treated anyone. "MTD" is the scenario's true MTD.
FIGURES = (
    Figure("pcs", "PCS % (true MTD)", 1, "selection",
           "% of trials selecting the true MTD (the level whose true DLT probability is closest "
           "to the target; when level 1 is above target + 0.1, selecting no level)"),
    Figure("pcs_constrained", "PCS % (constrained optimum)", 1, "selection",
           "% of trials selecting the constrained optimum: the level closest to the target among "
           "those whose true probability of passing an organ limit is at most the organ's "
           "max_exceed_prob (equals the true MTD without organ limits)"),
    Figure("select_above_mtd_pct", "% trials selecting above MTD", 1, "selection",
           "% of trials selecting a level above the true MTD (any level when there is none)"),
    Figure("no_selection_pct", "% trials selecting no level", 1, "selection",
           "% of trials that end without selecting a level"),
    Figure("patients_at_mtd_pooled_pct", "% patients at MTD (pooled)", 1, "allocation",
           "patients treated at the true MTD in all trials ÷ all patients treated, in %"),
    Figure("patients_at_mtd_trial_mean_pct", "% patients at MTD (mean of trials)", 1,
           "allocation",
           "each trial's % of its patients treated at the true MTD, averaged over the trials "
           "that treated anyone"),
    Figure("poor_allocation_pct", f"% trials < {POOR_ALLOCATION_N} patients at MTD", 1,
           "allocation",
           f"risk of poor allocation: % of trials treating fewer than {POOR_ALLOCATION_N} "
           "patients at the true MTD (Zhou, Yuan & Nie 2018)"),
    Figure("patients_above_mtd_pooled_pct", "% patients above MTD (pooled)", 1, "overdosing",
           "patients treated above the true MTD in all trials ÷ all patients treated, in %"),
    Figure("patients_above_mtd_trial_mean_pct", "% patients above MTD (mean of trials)", 1,
           "overdosing",
           "each trial's % of its patients treated above the true MTD, averaged over the trials "
           "that treated anyone (also under its older key overdose_patients_pct)"),
    Figure("overdose_majority_pct", "% trials > 50% of patients above MTD", 1, "overdosing",
           "risk of overdosing: % of trials treating more than half of their own patients above "
           "the true MTD"),
    Figure("overdose60_pct", "% trials > 60% of max n above MTD (BOIN)", 1, "overdosing",
           "BOIN get.oc's overdose60: % of trials treating more than 60% of the design's "
           "maximum sample size above the true MTD"),
    Figure("overdose80_pct", "% trials > 80% of max n above MTD (BOIN)", 1, "overdosing",
           "BOIN get.oc's overdose80: the same with 80%"),
    Figure("dlt_total_mean", "DLTs per trial, mean", 2, "toxicity",
           "DLTs observed per trial, averaged over trials"),
    Figure("dlt_rate_pooled_pct", "DLT rate % (pooled)", 1, "toxicity",
           "DLTs in all trials ÷ patients treated in all trials, in %"),
    Figure("dlt_rate_trial_mean_pct", "DLT rate % (mean of trials)", 1, "toxicity",
           "each trial's DLTs ÷ its patients, in %, averaged over the trials that treated anyone"),
    Figure("n_mean", "sample size, mean", 2, "sample size", "patients treated per trial, mean"),
    Figure("n_sd", "sample size, SD", 2, "sample size",
           "standard deviation of the patients treated per trial"),
    Figure("n_p05", "sample size, 5th percentile", 1, "sample size",
           "quantiles of the patients treated per trial (numpy's linear interpolation); "
           "n_p25, n_median, n_p75, n_p95 alike"),
    Figure("n_p25", "sample size, 25th percentile", 1, "sample size", "see n_p05"),
    Figure("n_median", "sample size, median", 1, "sample size", "see n_p05"),
    Figure("n_p75", "sample size, 75th percentile", 1, "sample size", "see n_p05"),
    Figure("n_p95", "sample size, 95th percentile", 1, "sample size", "see n_p05"),
)  # fmt: skip
DURATION_FIGURES = (
    Figure("duration_months_mean", "duration, months, mean", 1, "duration",
           "months from the first patient's arrival to the end of the last patient's DLT window"),
    Figure("duration_months_p95", "duration, months, 95th percentile", 1, "duration",
           "95th percentile of the trial duration"),
    Figure("enrolled_while_pending_pct", "% enrolled while others pending (mean of trials)", 1,
           "duration",
           "each trial's % of patients enrolled while an earlier patient was still in the DLT "
           "window, averaged over trials"),
    Figure("dlt_after_last_decision_mean", "DLTs after the last decision, mean", 2, "duration",
           "DLTs whose onset came after the trial's last decision, per trial"),
)  # fmt: skip
ORGAN_FIGURES = (
    Figure("capped_pct", "% patients capped (mean of trials)", 1, "organ doses",
           "each trial's % of treated patients whose later cycles were reduced to keep the "
           "estimated cumulative dose within the limit, averaged over trials that treated anyone"),
    Figure("activity_mean", "activity per patient, mean (mean of trials)", 2,
           "organ doses",
           "total activity given to a treated patient over all cycles, each trial's mean "
           "averaged over trials that treated anyone"),
)  # fmt: skip
PER_ORGAN_FIGURES = (
    Figure("organ_exceed_pct", "% patients past limit (mean of trials)", 1, "organ doses",
           "each trial's % of treated patients whose TRUE cumulative absorbed dose (or BED) "
           "passed the organ's limit, averaged over trials that treated anyone"),
    Figure("organ_cumulative_mean", "dose, mean Gy (mean of trials)", 1,
           "organ doses",
           "each trial's mean TRUE cumulative absorbed dose (or BED) of its treated patients, "
           "averaged over trials that treated anyone"),
    Figure("organ_cumulative_p95", "dose, p95 of patients, Gy (pooled)", 1,
           "organ doses",
           "95th percentile of the TRUE cumulative absorbed dose (or BED) over all treated "
           "patients of all trials (from a histogram of 4000 bins up to 4 × the limit)"),
)  # fmt: skip
# Per-level figures: key → (column label, digits, definition).
LEVEL_FIGURES = {
    "selection_pct": ("selected %", 1, "% of trials selecting the level as the MTD"),
    "benchmark_selection_pct": (
        "benchmark %",
        1,
        "% of trials in which the complete-information benchmark (O'Quigley, Paoletti & "
        "Maccario 2002) selects the level: every patient's tolerance known at every level",
    ),
    "patients_mean": ("patients", 2, "patients treated at the level per trial, mean"),
    "dlt_mean": ("DLTs", 2, "DLTs at the level per trial, mean"),
    "backfill_patients_mean": (
        "backfill",
        2,
        "backfill patients treated at the level per trial, mean (part of patients_mean; designs "
        "with [backfill])",
    ),
    "ruled_out_pct": (
        "ruled out %",
        1,
        "% of trials in which the organ-dose constraint ruled the level out at some point",
    ),
}
PRIOR_EXCEEDANCE_DEFINITION = (
    "before any patient: the design's prior predictive probability (Student-t) that a new "
    "patient's cumulative absorbed dose (or BED) over the planned cycles passes the organ's "
    "limit at the level; a level is admissible while this is at most max_exceed_prob"
)
NOTES = (
    "± is the Monte Carlo standard error. Pooled: totals over all trials (Σ at MTD ÷ Σ patients); "
    "mean of trials: each trial's own proportion, averaged over the trials that treated anyone.",
    "Every figure is defined in docs/definitions.md (theradose's repository).",
)


def definitions() -> dict[str, str]:
    """JSON key → definition of every figure (the JSON's ``definitions``)."""
    out = {f.key: f.definition for f in (*FIGURES, *DURATION_FIGURES, *ORGAN_FIGURES)}
    out.update({f.key: f.definition for f in PER_ORGAN_FIGURES})
    out.update({key: text for key, (_, _, text) in LEVEL_FIGURES.items()})
    out.update(
        {
            "n_min": "fewest patients treated in a trial",
            "n_max": "most patients treated in a trial",
            "n_distribution_pct": "% of trials treating exactly k patients, k = 0, 1, …",
            "stop_reason_pct": "% of trials stopping for each reason",
            "overdose_patients_pct": "older key of patients_above_mtd_trial_mean_pct",
            "prior_exceed_prob": PRIOR_EXCEEDANCE_DEFINITION,
            "backfill_total_mean": "backfill patients per trial, mean (part of n_mean; designs "
            "with [backfill])",
        }
    )
    return out


# ---------------------------------------------------------------------------------------------
# Cells


def pm(value: float | None, se: float | None, digits: int) -> str:
    """'50.1 ±0.5'; the value alone without an error; '—' for None."""
    if value is None:
        return NONE
    if se is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ±{se:.{digits}f}"


def level_label(design: Design | None, level: int) -> str:
    """'3 (5.55 GBq)' for a 0-based level ('3' without a design)."""
    return f"{level + 1}" if design is None else design.level_label(level)


def _level_name(design: Design, level: int) -> str:
    return level_text(design, None if level == NO_LEVEL else level)


def _shared(values: Sequence[Any]) -> Any:
    return values[0] if values and all(v == values[0] for v in values) else None


def _column(study: StudyResult, j: int):
    return [
        (design, study.simulations[i][j], study.oc[i][j], study.exact[i][j])
        for i, design in enumerate(study.designs)
    ]


def _has_organ_limits(study: StudyResult) -> bool:
    return any(sim.organs for row in study.simulations for sim in row)


def _marks(sim: Simulations, level: int) -> str:
    marks = []
    if sim.true_mtd == level:
        marks.append("MTD")
    if sim.organs and sim.optimum == level:
        marks.append("optimum")
    return ", ".join(marks)


# ---------------------------------------------------------------------------------------------
# Tables


def per_level_table(study: StudyResult, j: int, title: str = "") -> TableRecord:
    """Levels as rows (then "none"); per design: selection % (exact beneath when computed),
    the benchmark's selection %, mean patients and DLTs, and the % of trials that ruled the
    level out (designs with organ limits). The true MTD is marked "MTD", the constrained
    optimum "optimum", or the "none" row "correct" when no level is acceptable."""
    column = _column(study, j)
    n_levels = max(d.n_levels for d in study.designs)
    truths = _shared([tuple(np.round(sim.dlt_prob, 3)) for _, sim, _, _ in column])
    marks = _shared(
        [(sim.true_mtd, sim.optimum if sim.organs else None) for _, sim, _, _ in column]
    )
    # the activity beside the level only when every design gives the same ones
    doses = _shared([(d.doses, d.dose_unit) for d in study.designs])
    reference = study.designs[0] if doses is not None else None
    shared = truths is not None and marks is not None
    columns = [Column("level", "left")]
    if shared:
        columns.append(Column("true p", group="truth"))
    else:
        columns += [Column(f"true p\n{d.name}", group="truth") for d in study.designs]
    groups = ["selection_pct", "benchmark_selection_pct", "patients_mean", "dlt_mean"]
    if any("backfill_patients_mean" in oc.values for _, _, oc, _ in column):
        groups.append("backfill_patients_mean")
    if any(sim.organs for _, sim, _, _ in column):
        groups.append("ruled_out_pct")
    for key in groups:
        label = LEVEL_FIGURES[key][0]
        columns += [Column(f"{label}\n{d.name}", group=key) for d in study.designs]
    rows = []
    for level in range(n_levels):
        truth_cells = []
        for _, sim, _, _ in column:
            p = f"{sim.dlt_prob[level]:.3g}" if level < sim.n_levels else ""
            mark = _marks(sim, level) if level < sim.n_levels else ""
            truth_cells.append(f"{p} {mark}".strip())
        cells = [level_label(reference, level), *truth_cells[: 1 if shared else None]]
        for key in groups:
            cells += [
                _level_cell(key, level, design, sim, oc, exact) for design, sim, oc, exact in column
            ]
        rows.append(tuple(cells))
    none = ["none"]
    correct = ["correct" if sim.true_mtd == NO_LEVEL else "" for _, sim, _, _ in column]
    none += correct[: 1 if shared else None]
    for key in groups:
        for _, _, oc, exact in column:
            if key != "selection_pct":
                none.append("")
                continue
            cell = pm(oc.values["no_selection_pct"], oc.se["no_selection_pct"], 1)
            if exact is not None:
                cell += f"\nexact {exact['no_selection_pct']:.1f}"
            none.append(cell)
    rows.append(tuple(none))
    return TableRecord(
        title=title or scenario_title(study, j),
        columns=tuple(columns),
        rows=tuple(rows),
        key_columns=1,
        sections=(n_levels - 1,),
    )


def _level_cell(key, level, design, sim, oc, exact) -> str:
    if level >= design.n_levels:
        return ""
    values, se = oc.values, oc.se
    digits = LEVEL_FIGURES[key][1]
    if values.get(key) is None:
        return NONE
    error = se.get(key)
    cell = pm(values[key][level], None if error is None else error[level], digits)
    if key == "ruled_out_pct" and not sim.organs:
        return NONE
    if exact is not None and key in ("selection_pct", "patients_mean", "dlt_mean"):
        cell += f"\nexact {exact[key][level]:.{digits}f}"
    return cell


def _exact_value(key: str, exact: Mapping, sim: Simulations) -> float | None:
    if key == "pcs":
        pcs = (
            exact["no_selection_pct"] if sim.true_mtd < 0 else exact["selection_pct"][sim.true_mtd]
        )
        return pcs
    if key == "n_mean":
        return exact.get("n_mean", sum(exact["patients_mean"]))
    if key == "dlt_total_mean":
        return exact.get("dlt_total_mean", sum(exact["dlt_mean"]))
    if key == "no_selection_pct":
        return exact["no_selection_pct"]
    return None


def summary_table(study: StudyResult, j: int, title: str = "") -> TableRecord:
    """Figures as rows, one column per design: selection (the true MTD and, with organ limits,
    the constrained optimum side by side), allocation, overdosing, toxicity, sample size, why
    trials stopped, the trial duration (designs with [timing]) and organ doses (designs with
    [dosimetry]); exact values beneath the simulated ones where computed."""
    column = _column(study, j)
    organs = _has_organ_limits(study)
    rows: list[tuple[str, ...]] = []
    sections: list[int] = []

    def add(label: str, cells: Sequence[str]) -> None:
        rows.append((label, *cells))

    def end_section() -> None:
        if rows and (not sections or sections[-1] != len(rows) - 1):
            sections.append(len(rows) - 1)

    add("true MTD", [_level_name(d, sim.true_mtd) for d, sim, _, _ in column])
    if organs:
        add("constrained optimum", [_level_name(d, sim.optimum) for d, sim, _, _ in column])
    section = "selection"
    for figure in FIGURES:
        if figure.key == "pcs_constrained" and not organs:
            continue
        if figure.section != section:
            end_section()
            section = figure.section
        cells = []
        for _, sim, oc, exact in column:
            cell = pm(oc.values.get(figure.key), oc.se.get(figure.key), figure.digits)
            value = None if exact is None else _exact_value(figure.key, exact, sim)
            if value is not None:
                cell += f"\nexact {value:.{figure.digits}f}"
            cells.append(cell)
        add(figure.label, cells)
    add(
        "sample size, range",
        [f"{oc.values['n_min']}–{oc.values['n_max']}" for _, _, oc, _ in column],
    )
    end_section()
    labels = {r.name.lower(): r.label for r in StopReason}
    for reason in StopReason:
        key = reason.name.lower()
        if reason is StopReason.RUNNING or not any(
            oc.values["stop_reason_pct"].get(key, 0) > 0 for _, _, oc, _ in column
        ):
            continue
        add(
            f"% stopped: {labels[key]}",
            [pm(oc.values["stop_reason_pct"][key], oc.se["stop_reason_pct"][key], 1)
             for _, _, oc, _ in column],
        )  # fmt: skip
    end_section()
    if any(oc.values.get("duration_months_mean") is not None for _, _, oc, _ in column):
        for figure in DURATION_FIGURES:
            add(figure.label, [pm(oc.values.get(figure.key), oc.se.get(figure.key), figure.digits)
                               for _, _, oc, _ in column])  # fmt: skip
        end_section()
    if any(oc.values.get("capped_pct") is not None for _, _, oc, _ in column):
        _organ_rows(study, column, add)
        end_section()
    if sections and sections[-1] == len(rows) - 1:
        sections.pop()
    columns = [Column("figure", "left", wrap_at=LABEL_WIDTH)]
    columns += [Column(d.name, group=f"design {i}") for i, d in enumerate(study.designs)]
    return TableRecord(
        title=title or f"Scenario {study.scenarios[j].name}: summary",
        columns=tuple(columns),
        rows=tuple(rows),
        key_columns=1,
        sections=tuple(sections),
    )


def _organ_rows(study, column, add) -> None:
    for figure in ORGAN_FIGURES:
        cells = []
        for design, _, oc, _ in column:
            cell = pm(oc.values.get(figure.key), oc.se.get(figure.key), figure.digits)
            if figure.key == "activity_mean" and cell != NONE and design.dose_unit:
                cell += f" {design.dose_unit}"
            cells.append(cell)
        add(figure.label, cells)
    names = list(dict.fromkeys(o for d in study.designs if d.dosimetry for o in d.dosimetry.names))
    for organ in names:
        for figure in PER_ORGAN_FIGURES:
            cells = []
            for _, _, oc, _ in column:
                values = oc.values.get(figure.key) or {}
                errors = oc.se.get(figure.key) or {}
                cells.append(pm(values.get(organ), errors.get(organ), figure.digits))
            add(f"{organ}: {figure.label}", cells)


def scenario_title(study: StudyResult, j: int) -> str:
    """'Scenario S1: true DLT probability 0.05, 0.1, …; target 0.3; true MTD level 4 (…)'."""
    scenario = study.scenarios[j]
    column = _column(study, j)
    true_mtd = _shared([sim.true_mtd for _, sim, _, _ in column])
    target = _shared([d.target for d in study.designs])
    doses = _shared([d.doses for d in study.designs])
    if true_mtd is None:
        truth = "differs by design (target or schedule)"
    elif true_mtd < 0:
        truth = "none (level 1 too toxic)"
    elif doses is not None:
        truth = _level_name(study.designs[0], true_mtd)
    else:
        truth = f"level {true_mtd + 1}"
    truths = _shared([tuple(np.round(sim.dlt_prob, 3)) for _, sim, _, _ in column])
    if truths is None:
        probs = "depends on the design's schedule (organ doses; see JSON true_dlt_prob)"
    else:
        probs = ", ".join(f"{p:g}" for p in truths)
    title = f"Scenario {scenario.name}: true DLT probability {probs}"
    if target is not None:
        title += f"; target {target:g}"
    return title + f"; true MTD {truth}" + _tumour_response_words(scenario, column)


def _tumour_response_words(scenario, column) -> str:
    """'; true response probability …, from each patient's tumour dose (…)' for a scenario
    whose responses follow each patient's own tumour dose; empty otherwise."""
    model = scenario.tumour_response
    if model is None:
        return ""
    effs = _shared([tuple(np.round(sim.eff_prob, 3)) for _, sim, _, _ in column])
    probs = (
        "depends on the design's schedule (see JSON true_eff_prob)"
        if effs is None
        else ", ".join(f"{p:g}" for p in effs)
    )
    dose = "EQD2" if model.dose == "eqd2" else "absorbed dose"
    return (
        f"; true response probability {probs}, from each patient's cumulative {model.organ} "
        f"{dose} (50% at {model.d50_gy:g} Gy, γ50 {model.gamma50:g})"
    )


def prior_exceedance(design: Design) -> dict[str, list[float]] | None:
    """Per organ with a limit, per level: the design's prior predictive P(a new patient's
    cumulative absorbed dose or BED passes the limit) — the organ-dose constraint with no
    dosimetry measured yet; None for a design without organ limits."""
    from theradose.state import TrialState

    limits = [c for c in design.constraints if getattr(c, "organ_limits", False)]
    if not limits:
        return None
    state = TrialState.start(1, design.n_levels, design.start_level)
    out = {}
    for constraint in limits:
        exceed = constraint.exceedance(state)[0]  # [level, organ]
        for k, organ in enumerate(constraint.dosimetry.names):
            out[organ] = [float(p) for p in exceed[:, k]]
    return out


def prior_exceedance_table(design: Design) -> TableRecord | None:
    """Levels as rows, one column per organ: :func:`prior_exceedance`, with each organ's limit
    and max_exceed_prob in its header; None without organ limits."""
    exceed = prior_exceedance(design)
    if exceed is None:
        return None
    organs = {o.name: o for o in design.dosimetry.organs}
    columns = [Column("level", "left")]
    for name in exceed:
        organ = organs[name]
        quantity = "BED" if organ.limit_bed_gy is not None else "dose"
        columns.append(
            Column(
                f"P({name} {quantity} > {organ.limit:g} Gy)\nallowed ≤ {organ.max_exceed_prob:g}"
            )
        )
    rows = [
        (level_label(design, level), *(f"{exceed[name][level]:.3f}" for name in exceed))
        for level in range(design.n_levels)
    ]
    return TableRecord(
        title=f"{design.name}: prior exceedance of the organ limits per level",
        columns=tuple(columns),
        rows=tuple(rows),
        notes=(f"P: {PRIOR_EXCEEDANCE_DEFINITION}.",),
    )


def study_tables(study: StudyResult) -> list[TableRecord]:
    """Every table of a study in print order: per scenario the per-level and the summary table,
    then the prior exceedance table of each design with organ limits."""
    tables = []
    for j in range(len(study.scenarios)):
        tables.append(per_level_table(study, j))
        tables.append(summary_table(study, j))
    for design in study.designs:
        table = prior_exceedance_table(design)
        if table is not None:
            tables.append(table)
    return tables


def study_markdown(study: StudyResult, footer: Sequence[str] = ()) -> str:
    """Every table of :func:`study_tables` as Markdown, with the notes and ``footer`` lines."""
    parts = [f"## Operating characteristics ({study.n_trials} simulated trials)", ""]
    parts += [render_markdown(table) for table in study_tables(study)]
    parts += [f"- {note}" for note in NOTES]
    parts += [f"- {line}" for line in footer]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# CSV summary rows


def summary_columns(study: StudyResult) -> tuple[str, ...]:
    """The CSV columns of the summary rows: every figure with its ``_se``, stop reasons, and
    the organ figures per organ of any design."""
    timed = any(oc.values.get("duration_months_mean") is not None for row in study.oc for oc in row)
    columns = []
    for figure in (*FIGURES, *(DURATION_FIGURES if timed else ())):
        columns += [figure.key, f"{figure.key}_se"]
    columns += ["n_min", "n_max", "overdose_patients_pct", "true_mtd", "constrained_optimum"]
    columns += [f"stop_{r.name.lower()}_pct" for r in StopReason if r is not StopReason.RUNNING]
    if any(oc.values.get("capped_pct") is not None for row in study.oc for oc in row):
        for figure in ORGAN_FIGURES:
            columns += [figure.key, f"{figure.key}_se"]
        names = dict.fromkeys(o for d in study.designs if d.dosimetry for o in d.dosimetry.names)
        for organ in names:
            for figure in PER_ORGAN_FIGURES:
                columns += [f"{figure.key}_{organ}", f"{figure.key}_{organ}_se"]
    return tuple(dict.fromkeys(columns))


def summary_fields(sim: Simulations, oc: OperatingCharacteristics) -> dict[str, Any]:
    """One design × scenario's summary figures as CSV fields (:func:`summary_columns`)."""
    from theradose.results import true_mtd_label

    values, se = oc.values, oc.se
    out: dict[str, Any] = {}
    for figure in (*FIGURES, *DURATION_FIGURES, *ORGAN_FIGURES):
        out[figure.key], out[f"{figure.key}_se"] = values.get(figure.key), se.get(figure.key)
    out["n_min"], out["n_max"] = values["n_min"], values["n_max"]
    out["overdose_patients_pct"] = values["overdose_patients_pct"]
    out["true_mtd"] = true_mtd_label(sim.true_mtd)
    out["constrained_optimum"] = true_mtd_label(sim.optimum)
    for key, pct in values["stop_reason_pct"].items():
        out[f"stop_{key}_pct"] = pct
    for figure in PER_ORGAN_FIGURES:
        for organ, value in (values.get(figure.key) or {}).items():
            out[f"{figure.key}_{organ}"] = value
            out[f"{figure.key}_{organ}_se"] = (se.get(figure.key) or {}).get(organ)
    return out
