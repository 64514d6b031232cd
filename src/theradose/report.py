"""Presentation: tables for the terminal (rich), Markdown, CSV and JSON, and atomic file writes.

Nothing here computes a trial quantity; every function reads a result made elsewhere —
a :class:`~theradose.study.StudyResult` (simulated and exact operating characteristics), a design's
decision table, or a :class:`~theradose.study.RecommendationResult` — and lays it out.
Levels are 1-based in everything written here.

File contracts (other tools read them; keys may be added, never removed or renamed):

- simulation JSON: :func:`study_to_dict`;
- simulation CSV: :func:`study_csv_rows` (one row per design × scenario × level, plus "none",
  plus "summary" with the design × scenario's summary figures in columns of their own; figures
  of a whole design × scenario, such as the trial duration, repeated on each of its rows);
- BOIN decision table JSON: the list of :meth:`theradose.methods.Boin.decision_rows`;
- recommendation JSON: :func:`recommendation_to_dict`.

Every file is written atomically (:func:`write_atomic`): a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from theradose import __version__
from theradose.results import true_mtd_label

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from theradose.design import Design
    from theradose.study import RecommendationResult, StudyResult

NONE = "—"  # shown where a rule has no threshold or a value does not exist
DECISION_FORMATS = ("rich", "markdown", "csv", "json")

# Readable names of the estimates that methods return from ``level_summary``.
ESTIMATE_LABELS = {
    "p_est": "estimated DLT rate",
    "p_overdose": "P(DLT rate > target)",
    "eliminated": "eliminated",
    "dlt_rate": "DLT rate",
    "too_toxic": "too toxic",
    "p_lower": "90% CrI from",
    "p_upper": "to",
}


# Short column headers for the stop reasons (keys: StopReason names in lower case, as in JSON).
STOP_HEADERS = {
    "max_patients": "stop: max n",
    "too_toxic": "stop: level 1 too toxic",
    "rule_complete": "stop: rule complete",
    "max_at_dose": "stop: max at level",
    "safety": "stop: safety",
}

# Trial-duration figures of designs with [timing] (keys of OperatingCharacteristics, None for
# designs without it): key, column header, digits shown.
TIMING_FIGURES = (
    ("duration_months_mean", "duration, months", 1),
    ("duration_months_p95", "p95, months", 1),
    ("enrolled_while_pending_pct", "% enrolled while pending", 1),
    ("dlt_after_last_decision_mean", "DLTs after last decision", 2),
)


class NoDecisionTable(ValueError):
    """The design's decisions cannot be written as a table of (patients, DLTs) thresholds."""


# ---------------------------------------------------------------------------------------------
# Files


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``; on success it replaces ``path`` in one step.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_output_path(path: str | os.PathLike[str]) -> None:
    """Check, before a long run, that :func:`atomic_path` can write ``path``: it is not a
    folder, and its folder exists and is writable.

    Raises
    ------
    OSError
        With ``filename`` = ``path`` and the reason as ``strerror`` (the CLI's one-line error).
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"folder {str(folder)!r} does not exist", str(path))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"folder {str(folder)!r} is not writable", str(path))


def _umask() -> int:
    # mkstemp creates files readable by the owner only; give the result the usual permissions.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: a temporary file, then ``os.replace``."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def json_ready(value: Any) -> Any:
    """``value`` with numpy types made plain and NaN or infinities made ``None`` (JSON null)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [json_ready(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)  # TOML dates and times, paths


def to_json(value: Any) -> str:
    """Strict JSON (no NaN), indented, ending with a newline."""
    return json.dumps(json_ready(value), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV text with a header row; ``None`` is written as an empty field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Levels and designs


def activity(design: Design, level: int) -> float | None:
    """The activity of a 0-based level, or None when the design gives none."""
    return None if design.doses is None else float(design.doses[level])


def activity_text(design: Design, level: int) -> str:
    """'3.7 GBq' for a 0-based level, '' when the design gives no activities."""
    value = activity(design, level)
    if value is None:
        return ""
    return f"{value:g} {design.dose_unit}".strip()


def level_text(design: Design, level: int | None) -> str:
    """'level 3 (5.55 GBq)' for a 0-based level; 'none' for None."""
    if level is None:
        return "none"
    dose = activity_text(design, level)
    return f"level {level + 1}" + (f" ({dose})" if dose else "")


def design_header_lines(design: Design) -> list[str]:
    """The protocol summary printed above a design's decision table."""
    lines = [f"{design.name}: method {design.method_key}, target DLT probability {design.target:g}"]
    method = design.method
    if method.describe():
        lines.append(method.describe())
    levels = ", ".join(
        f"{level + 1}" + (f" ({activity_text(design, level)})" if design.doses else "")
        for level in range(design.n_levels)
    )
    lines.append(f"levels: {levels}")
    lines.append(
        f"cohorts of {design.cohort_size}, starting at level {design.start_level + 1}; "
        f"at most {design.max_patients} patients"
    )
    if design.timing is not None:
        lines.append(design.timing.describe())
    lines += [constraint.describe() for constraint in design.constraints]
    lines += _prior_exceedance_lines(design)
    lines += [rule.describe() for rule in design.stopping if rule.can_fire(design.max_patients)]
    if design.optimisation is not None:  # the table is the escalation's; the stage follows it
        organ_limits = design.dosimetry is not None and bool(design.dosimetry.organs)
        lines.append(design.optimisation.describe(organ_limits))
    source = f" ({design.path})" if design.path else ""
    lines.append(f"theradose {__version__}{source}")
    return lines


def _prior_exceedance_lines(design: Design) -> list[str]:
    """Per organ with a limit: the prior predictive P(a new patient passes it) at each level."""
    from theradose.oc_report import prior_exceedance

    exceed = prior_exceedance(design) or {}
    return [
        f"prior P({organ} cumulative dose > limit) per level (Student-t predictive, before any "
        "dosimetry): " + ", ".join(f"{k + 1}: {p:.3f}" for k, p in enumerate(values))
        for organ, values in exceed.items()
    ]


# ---------------------------------------------------------------------------------------------
# (a), (b): operating characteristics of simulated designs


def _result_entry(design, scenario, sim, oc, exact) -> dict:
    entry = {
        "design": design.name,
        "scenario": scenario.name,
        "target": design.target,
        "true_mtd": true_mtd_label(sim.true_mtd),
        "true_dlt_prob": list(sim.dlt_prob),
        "constrained_optimum": true_mtd_label(sim.optimum),
        "n_trials": sim.n_trials,
        **oc.values,
        "se": oc.se,
    }
    if exact is not None:
        entry["exact"] = dict(exact)
    return entry


def study_to_dict(study: StudyResult) -> dict:
    """The simulation results as the JSON contract lays them out.

    Every figure's key is defined in docs/definitions.md and,
    word for word, under ``definitions``.

    Returns
    -------
    dict
        ``version``, ``seed``, ``n_trials``, ``designs`` (name, method, path, source = the parsed
        design file), ``scenarios`` (name, dlt_prob) and ``results``: one entry per design ×
        scenario with ``true_mtd`` (1-based or None), the operating characteristics
        (``selection_pct``, ``no_selection_pct``, ``patients_mean``, ``dlt_mean``, ``n_mean``,
        ``dlt_total_mean``, ``pcs``, ``benchmark_selection_pct``, ...; per-level lists in level
        order), the trial-duration figures (``duration_months_mean``, ``duration_months_p95``,
        ``enrolled_while_pending_pct``, ``dlt_after_last_decision_mean``; null for a design
        without [timing]), their Monte Carlo standard errors under ``se`` and, when computed, the
        exact values under ``exact``; the standard figures of
        :data:`theradose.oc_report.FIGURES` (``select_above_mtd_pct``,
        ``patients_at_mtd_pooled_pct``, ``overdose60_pct``, ``dlt_rate_pooled_pct``,
        ``n_median``, ``n_distribution_pct``, ...); ``notes``; ``warnings``: the designs'
        sense checks (:mod:`theradose.sense`), one line each naming the design's file; per
        design ``prior_exceed_prob`` (organ → per level, null without organ limits).
    """
    from theradose.oc_report import definitions, prior_exceedance
    from theradose.optimisation import OPTIMISATION_DEFINITIONS

    return json_ready(
        {
            "version": study.version,
            "seed": study.seed,
            "n_trials": study.n_trials,
            "designs": [
                {
                    "name": d.name,
                    "method": d.method_key,
                    "path": d.path,
                    "source": d.source,
                    "target": d.target,
                    "doses": list(d.doses) if d.doses is not None else None,
                    "dose_unit": d.dose_unit,
                    "prior_exceed_prob": prior_exceedance(d),
                }
                for d in study.designs
            ],
            "scenario_path": study.scenario_path,
            "scenarios": [
                {"name": s.name, "dlt_prob": list(s.dlt_prob)}
                | ({} if s.eff_prob is None else {"eff_prob": list(s.eff_prob)})
                | _tumour_response_entry(s)
                | ({"tox_eff_correlation": s.tox_eff_correlation} if s.efficacy else {})
                | ({"source": s.source} if s.source else {})
                for s in study.scenarios
            ],
            "results": [_result_entry(*cell) for cell in study.cells()],
            "notes": list(study.notes),
            "warnings": list(study.warnings),
            # the efficacy keys only where a scenario has efficacy (other results keep theirs)
            "definitions": definitions()
            | (EFFICACY_DEFINITIONS if any(s.efficacy for s in study.scenarios) else {})
            | (OPTIMISATION_DEFINITIONS if any(d.optimisation for d in study.designs) else {}),
        }
    )


def _tumour_response_entry(scenario) -> dict:
    """``{"efficacy": {...}}``: the response model of a scenario whose responses follow each
    patient's own tumour dose (docs/dose-optimisation.md, "Tumour dose–response"); empty
    otherwise."""
    model = scenario.tumour_response
    if model is None:
        return {}
    keys = ("model", "organ", "d50_gy", "gamma50", "dose")
    return {"efficacy": {key: getattr(model, key) for key in keys}}


CSV_COLUMNS = (
    "design",
    "scenario",
    "level",
    "activity",
    "selection_pct",
    "selection_se",
    "patients_mean",
    "patients_se",
    "dlt_mean",
    "dlt_se",
)
CSV_EXACT_COLUMNS = ("exact_selection_pct", "exact_patients_mean", "exact_dlt_mean")
CSV_EXTRA_COLUMNS = (
    "benchmark_selection_pct",
    "benchmark_selection_se",
    "true_dlt_prob",
    "is_true_mtd",
    "target",
    "n_trials",
    "seed",
    "theradose_version",
)


# Trial-duration figures, per design × scenario: CSV column → (OperatingCharacteristics key, SE?).
CSV_TIMING_COLUMNS = {
    "duration_months_mean": ("duration_months_mean", False),
    "duration_months_se": ("duration_months_mean", True),
    "duration_months_p95": ("duration_months_p95", False),
    "duration_months_p95_se": ("duration_months_p95", True),
    "enrolled_while_pending_pct": ("enrolled_while_pending_pct", False),
    "enrolled_while_pending_se": ("enrolled_while_pending_pct", True),
    "dlt_after_last_decision_mean": ("dlt_after_last_decision_mean", False),
    "dlt_after_last_decision_se": ("dlt_after_last_decision_mean", True),
}


# Backfilling (designs with [backfill]): per level, then per design × scenario (repeated on its
# rows like the trial-duration columns).
CSV_BACKFILL_COLUMNS = ("backfill_mean", "backfill_se", "backfill_total_mean", "backfill_total_se")


def _backfills(study: StudyResult) -> bool:
    return any("backfill_patients_mean" in oc.values for row in study.oc for oc in row)


def study_csv_columns(study: StudyResult) -> tuple[str, ...]:
    """The CSV columns: the contract's, the exact ones when any exact value exists, then extras,
    then the trial-duration ones when any design has [timing], then the summary row's
    (:func:`theradose.oc_report.summary_columns`)."""
    from theradose.oc_report import summary_columns
    from theradose.optimisation_report import optimisation_columns

    timed = bool(_timing_figures([oc for row in study.oc for oc in row]))
    columns = (
        CSV_COLUMNS
        + (CSV_EXACT_COLUMNS if study.has_exact else ())
        + CSV_EXTRA_COLUMNS
        + (tuple(CSV_TIMING_COLUMNS) if timed else ())
        + (CSV_BACKFILL_COLUMNS if _backfills(study) else ())
    )
    summary = summary_columns(study) + optimisation_columns(study)
    return columns + tuple(c for c in summary if c not in columns)


def study_csv_rows(study: StudyResult) -> list[dict]:
    """One row per design × scenario × level (1-based), then a "none" row for no selection,
    then a "summary" row with the design × scenario's summary figures (each with its ``_se``),
    stop reasons (``stop_<reason>_pct``) and organ figures (``<figure>_<organ>``), whose
    columns are empty on the other rows.

    Figures of the whole design × scenario (target, n_trials, seed and the trial-duration
    columns of :data:`CSV_TIMING_COLUMNS`) are repeated on each of its rows, so that the rows of
    one level, or the "none" rows, form a table with one row per design × scenario; the
    trial-duration fields are empty for designs without [timing].
    """
    from theradose.oc_report import summary_fields
    from theradose.optimisation_report import optimisation_fields

    rows = []
    for design, scenario, sim, oc, exact in study.cells():
        values, se = oc.values, oc.se
        common = {
            "design": design.name,
            "scenario": scenario.name,
            "target": design.target,
            "n_trials": sim.n_trials,
            "seed": study.seed,
            "theradose_version": study.version,
        }
        for column, (key, is_se) in CSV_TIMING_COLUMNS.items():
            common[column] = (se if is_se else values).get(key)
        backfill = values.get("backfill_patients_mean")
        if backfill is not None:
            common["backfill_total_mean"] = values["backfill_total_mean"]
            common["backfill_total_se"] = se["backfill_total_mean"]
        for level in range(design.n_levels):
            row = {
                **common,
                "level": level + 1,
                "activity": activity(design, level),
                "selection_pct": values["selection_pct"][level],
                "selection_se": se["selection_pct"][level],
                "patients_mean": values["patients_mean"][level],
                "patients_se": se["patients_mean"][level],
                "dlt_mean": values["dlt_mean"][level],
                "dlt_se": se["dlt_mean"][level],
                "benchmark_selection_pct": values["benchmark_selection_pct"][level],
                "benchmark_selection_se": se["benchmark_selection_pct"][level],
                "true_dlt_prob": sim.dlt_prob[level],
                "is_true_mtd": sim.true_mtd == level,
            }
            if backfill is not None:
                row["backfill_mean"] = backfill[level]
                row["backfill_se"] = se["backfill_patients_mean"][level]
            if exact is not None:
                row["exact_selection_pct"] = exact["selection_pct"][level]
                row["exact_patients_mean"] = exact["patients_mean"][level]
                row["exact_dlt_mean"] = exact["dlt_mean"][level]
            rows.append(row)
        none_row = {
            **common,
            "level": "none",
            "selection_pct": values["no_selection_pct"],
            "selection_se": se["no_selection_pct"],
            "is_true_mtd": true_mtd_label(sim.true_mtd) is None,
        }
        if exact is not None:
            none_row["exact_selection_pct"] = exact["no_selection_pct"]
        rows.append(none_row)
        summary = {**summary_fields(sim, oc), **optimisation_fields(oc)}
        rows.append({**common, "level": "summary", **summary})
    return rows


def study_to_csv(study: StudyResult) -> str:
    """:func:`study_csv_rows` as CSV text, columns :func:`study_csv_columns`."""
    return to_csv(study_csv_rows(study), study_csv_columns(study))


def write_study_json(study: StudyResult, path: str | os.PathLike[str]) -> None:
    """Write :func:`study_to_dict` as JSON, atomically."""
    write_atomic(path, to_json(study_to_dict(study)))


def write_study_csv(study: StudyResult, path: str | os.PathLike[str]) -> None:
    """Write :func:`study_csv_rows` as CSV, atomically."""
    write_atomic(path, study_to_csv(study))


def _pm(value: float, se: float, digits: int) -> str:
    return f"{value:.{digits}f} ±{se:.{digits}f}"


def _timing_figures(ocs: Sequence[Any]) -> tuple[tuple[str, str, int], ...]:
    """(key, column header, digits) of the trial-duration figures, or none when no design of
    ``ocs`` has [timing] (their values are None then)."""
    if all(oc.values.get(TIMING_FIGURES[0][0]) is None for oc in ocs):
        return ()
    return TIMING_FIGURES


def oc_tables(study: StudyResult) -> list[RenderableType]:
    """The study's tables for the terminal (:func:`theradose.oc_report.study_tables`): per
    scenario a per-level table (levels as rows) and a summary table (figures as rows, one
    column per design), then each organ-limit design's prior exceedance per level. Each is
    split into several tables when wider than the console (:mod:`theradose.tables`)."""
    from theradose.oc_report import study_tables
    from theradose.optimisation_report import optimisation_table
    from theradose.tables import render_rich

    extra = [t for t in (efficacy_table(study), optimisation_table(study)) if t is not None]
    return [render_rich(table) for table in [*study_tables(study), *extra]]


# Efficacy figures (scenarios with eff_prob): JSON key → (column header, digits); definitions in
# docs/dose-optimisation.md, "Dose optimisation: efficacy and BOIN12".
EFFICACY_FIGURES = {
    "obd_selection_pct": ("% selecting the OBD", 1),
    "patients_at_obd_pct": ("% patients at the OBD", 1),
    "response_rate_pct": ("% patients responding", 1),
    "utility_per_patient_mean": ("utility per patient", 1),
}
EFFICACY_DEFINITIONS = {
    "true_eff_prob": "the scenario's true response probability of each level",
    "true_utility": "true mean utility per patient of each level (a design that uses efficacy)",
    "true_obd": "the true optimal biological dose: the acceptable level (true DLT probability "
    "≤ target, true response probability ≥ phi_e) with the highest true utility (1-based; "
    "null when none is acceptable)",
    "obd_selection_pct": "% of trials selecting the true OBD (selecting none when no level is "
    "acceptable)",
    "patients_at_obd_pct": "each trial's % of patients treated at the true OBD, averaged over "
    "the trials that treated anyone",
    "response_mean": "mean responses per level",
    "response_rate_pct": "each trial's % of patients responding, averaged over the trials that "
    "treated anyone",
    "utility_per_patient_mean": "each trial's mean utility per patient (its patients' outcomes "
    "scored by the design's utility table), averaged over the trials that treated anyone",
}


def efficacy_table(study: StudyResult):
    """The efficacy figures of every design × scenario with efficacy, one row each (None when no
    scenario gives efficacy)."""
    from theradose.tables import Column, TableRecord

    rows = []
    for i, design in enumerate(study.designs):
        for j, scenario in enumerate(study.scenarios):
            oc = study.oc[i][j]
            if "response_rate_pct" not in oc.values:
                continue
            obd = oc.values.get("true_obd")
            cells = [design.name, scenario.name, "—" if obd is None else str(obd)]
            for key, (_, digits) in EFFICACY_FIGURES.items():
                value, error = oc.values.get(key), oc.se.get(key)
                cells.append("—" if value is None else _pm(value, error, digits))
            rows.append(tuple(cells))
    if not rows:
        return None
    columns = (
        Column("design", align="left", wrap_at=24),
        Column("scenario", align="left"),
        Column("true OBD"),
        *(Column(header) for header, _ in EFFICACY_FIGURES.values()),
    )
    return TableRecord(
        title="Efficacy and dose optimisation",
        columns=columns,
        rows=tuple(rows),
        key_columns=2,
        notes=(
            "OBD: the acceptable level (DLT probability ≤ target, response probability ≥ "
            "phi_e) with the highest true utility; figures that need a utility are shown only "
            "for designs that use efficacy (BOIN12).",
        ),
    )


def study_markdown(study: StudyResult) -> str:
    """Everything :func:`print_study` shows, as Markdown tables (``simulate --format markdown``)."""
    from theradose.oc_report import study_markdown as tables_markdown
    from theradose.optimisation_report import optimisation_table
    from theradose.tables import render_markdown

    footer = [*study_footer(study), *(f"warning: {w}" for w in study.warnings)]
    text = tables_markdown(study, footer)
    for extra in (efficacy_table(study), optimisation_table(study)):
        text = text if extra is None else text + "\n" + render_markdown(extra)
    return text


def study_footer(study: StudyResult) -> list[str]:
    """Provenance and notes printed under the tables."""
    lines = [
        f"theradose {study.version}: {study.n_trials} simulated trials per design and scenario, "
        f"seed {study.seed}; ± is the Monte Carlo standard error; benchmark = complete-"
        "information selection (O'Quigley, Paoletti & Maccario 2002)."
    ]
    lines += [f"{d.name}: {d.path}" for d in study.designs if d.path]
    if study.scenario_path:
        lines.append(f"scenarios: {study.scenario_path}")
    lines += list(study.notes)
    return lines


def print_study(study: StudyResult, console: Console | None = None) -> None:
    """Print the operating-characteristics tables, the designs' warnings and the provenance."""
    from rich.console import Console
    from rich.text import Text

    from theradose.oc_report import NOTES

    console = console or Console()
    for table in oc_tables(study):
        console.print(table)
        console.print()
    for note in NOTES:
        console.print(Text(note, style="dim"))
    console.print()
    if study.warnings:
        console.print(Text("Warnings", style="bold red"))
        for warning in study.warnings:
            console.print(Text(f"warning: {warning}", style="red"))
        console.print()
    for line in study_footer(study):
        console.print(Text(line, style="dim"))


# ---------------------------------------------------------------------------------------------
# (c): decision tables


def decision_rows(design: Design) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The design's decision table as (column labels by key, rows with None where no rule).

    BOIN: :meth:`~theradose.methods.Boin.decision_rows` up to the design's maximum sample size;
    3+3: :meth:`~theradose.methods.ThreePlusThree.rule_rows`; CRM: the skeleton with its
    indifference intervals and prior summaries (:meth:`~theradose.methods.crm.Crm.skeleton_rows`);
    BLRM and EWOC: the prior mean DLT rate, P(target) and P(overdose) per level
    (``prior_rows``).

    Raises
    ------
    NoDecisionTable
        For a method without a decision table (model-based designs such as CRM).
    """
    table = design.method.protocol_table(design.cohort_size, design.max_patients)
    if table is not None:
        return table
    raise NoDecisionTable(
        f"design {design.name!r} (method {design.method_key}) has no decision table: its "
        "decisions come from a model fitted to all the data (decision tables: 3+3, boin)"
    )


def _cell(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def decision_table_markdown(design: Design) -> str:
    """The decision table as Markdown under its header (:func:`design_header_lines`)."""
    columns, rows = decision_rows(design)
    header = design_header_lines(design)
    lines = [f"# Decision table: {header[0]}", ""]
    lines += [f"{line}  " for line in header[1:]]
    lines += ["", "| " + " | ".join(columns.values()) + " |"]
    lines.append("|" + "|".join("---:" if k == "n" else "---" for k in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[k]) for k in columns) + " |")
    return "\n".join(lines) + "\n"


def decision_table_rich(design: Design) -> RenderableType:
    """The decision table as a rich table under its header (:func:`design_header_lines`)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    columns, rows = decision_rows(design)
    header = design_header_lines(design)
    table = Table()
    for key, label in columns.items():
        table.add_column(label, justify="left" if key in ("dlts", "decision") else "right")
    for row in rows:
        table.add_row(*(_cell(row[k]) for k in columns))
    title = Text(f"Decision table: {header[0]}", style="bold")
    return Group(title, *(Text(line) for line in header[1:]), table)


def render_decision_table(design: Design, fmt: str = "rich") -> RenderableType | str:
    """The design's decision table in ``fmt``: "rich" (a renderable), "markdown", "csv", "json".

    Markdown and rich carry a header (design, target, λe/λd for BOIN, levels and activities,
    stopping rules, version). CSV and JSON are the bare rows for machines: JSON is the list of
    rows with null where a decision cannot happen, CSV leaves those fields empty.
    """
    if fmt == "rich":
        return decision_table_rich(design)
    if fmt == "markdown":
        return decision_table_markdown(design)
    columns, rows = decision_rows(design)
    if fmt == "csv":
        return to_csv(rows, list(columns))
    if fmt == "json":
        return to_json(rows)
    raise ValueError(f"format {fmt!r} is not one of {', '.join(DECISION_FORMATS)}")


# ---------------------------------------------------------------------------------------------
# (d): a recommendation for a real trial


def recommendation_to_dict(result: RecommendationResult) -> dict:
    """A recommendation as JSON-ready data (1-based levels, None where none).

    Keys: ``next_level``, ``next_activity``, ``stop``, ``stop_reason`` (a
    :class:`~theradose.state.StopReason` name in lower case), ``stop_reason_text``,
    ``suspended`` (accrual waits for more follow-up; ``next_level`` is null then),
    ``review_in_days`` (when suspended: days until a pending patient's window closes, or, with
    ``start_up_wait``, until a two-stage start-up may move up), ``mtd``,
    ``mtd_activity``, ``levels`` (per level: ``level``, ``activity``, ``n``, ``dlt``,
    ``pending`` when known, and the method's estimates), ``deviations``, ``warnings``,
    ``notes``, ``outcomes``, ``patients`` (from a patient file: per patient ``patient``,
    ``level``, ``dlt``, ``followup_days``, ``dlt_day``, ``pending``; else null),
    ``patients_path``, ``version``, ``design``, ``method``, ``design_path``, ``target``.

    Interim answers: ``wait`` (a design deciding on complete data with patients still pending:
    ``next_level`` null, no decision yet), ``pending_patients`` (their 1-based numbers),
    ``review_in_days`` and ``review_on`` (the date, counting from today: the first pending window
    closes), ``complete_in_days`` (the last one closes), ``mtd_on_complete_data`` (the MTD
    estimate and the estimates per level leave the pending patients out), and ``basis``: the
    quantities that decided at the current level (its ``level`` 1-based), e.g. BOIN's ``n``,
    ``y``, ``rate``, ``lambda_e``, ``lambda_d``, ``direction`` (+1 escalate, 0 stay,
    −1 de-escalate); TITE-BOIN's ``m``, ``stft``, ``p_tilde`` and its suspension rule; null
    when the method gives none.
    """
    from theradose.outcomes import format_outcomes
    from theradose.timing import DAYS_PER_MONTH

    design, rec = result.design, result.recommendation
    pending_at = _pending_per_level(result)
    awaiting_at = _pending_response_per_level(result)
    review_days = None if rec.review_in is None else rec.review_in * DAYS_PER_MONTH
    levels = []
    for level in range(design.n_levels):
        entry = {
            "level": level + 1,
            "activity": activity(design, level),
            "n": rec.n[level],
            "dlt": rec.y[level],
        }
        if pending_at is not None:
            entry["pending"] = int(pending_at[level])
        if awaiting_at is not None:  # a patient file, a design deciding on responses
            entry["response"] = rec.r[level]
            entry["pending_response"] = int(awaiting_at[level])
        entry.update({name: values[level] for name, values in rec.level_summary.items()})
        levels.append(entry)
    patients = None
    if result.patients is not None:
        records = result.patients
        patients = [
            {
                "patient": i + 1,
                "level": int(records.level[i]) + 1,
                "dlt": int(records.dlt[i]),
                "followup_days": float(records.followup_days[i]),
                "dlt_day": float(records.dlt_day[i]),  # NaN → null
                "pending": rec.pending[i] if rec.pending else None,
            }
            | ({} if records.backfill is None else {"backfill": bool(records.backfill[i])})
            | _response_entry(records, rec, i)
            for i in range(records.n_patients)
        ]
    return json_ready(
        {
            "next_level": None if rec.next_level is None else rec.next_level + 1,
            "next_activity": None if rec.next_level is None else activity(design, rec.next_level),
            "stop": rec.stop,
            "stop_reason": None if rec.stop_reason is None else rec.stop_reason.name.lower(),
            "stop_reason_text": None if rec.stop_reason is None else rec.stop_reason.label,
            "suspended": rec.suspended,
            "start_up_wait": rec.start_up_wait,
            "review_in_days": review_days,
            "wait": rec.wait,
            "pending_patients": list(rec.pending_patients),
            "review_on": _date_in(review_days) if result.patients is not None else None,
            "complete_in_days": None
            if rec.complete_in is None
            else rec.complete_in * DAYS_PER_MONTH,
            "basis": _basis_json(rec.basis),
            "mtd": None if rec.mtd is None else rec.mtd + 1,
            "mtd_on_complete_data": rec.mtd_on_complete_data,
            "mtd_activity": None if rec.mtd is None else activity(design, rec.mtd),
            "levels": levels,
            "deviations": list(rec.deviations),
            "warnings": list(rec.warnings),
            "notes": list(rec.notes),
            "rule_states": list(rec.rule_states),
            **rec.model_summary,
            "outcomes": format_outcomes(result.cohorts),
            "patients": patients,
            "patients_path": None if result.patients is None else result.patients.path,
            "version": result.version,
            "design": design.name,
            "method": design.method_key,
            "design_path": design.path,
            "target": design.target,
            "engine": "grid" if getattr(result, "mcmc", None) is None else "mcmc",
            "mcmc": mcmc_to_dict(getattr(result, "mcmc", None)),
            # only a design with [backfill] has the key: other answers stay as they were
            **({} if rec.backfill is None else {"backfill": backfill_to_dict(rec.backfill)}),
            # only an answer that knows the responses pending has the key (as above)
            **(
                {"pending_response_patients": list(rec.pending_response_patients)}
                if rec.pending_response
                else {}
            ),
        }
    )


def _response_entry(records, rec, i: int) -> dict:
    """A patient's response columns in the JSON, when the file has them: ``response``,
    ``response_day`` (null where not given), ``pending_response`` (null when not known: a
    design that does not decide on responses)."""
    if records.response is None:
        return {}
    return {
        "response": int(records.response[i]),
        "response_day": float(records.response_day[i]),  # NaN → null
        "pending_response": rec.pending_response[i] if rec.pending_response else None,
    }


BACKFILL_NEEDS_PATIENTS = (
    "backfilling needs the patient file (--patients): an outcome string has neither the "
    "follow-up that says which outcomes are known nor which patients were backfilled"
)


def backfill_to_dict(advice) -> dict:
    """A :class:`~theradose.recommendation.BackfillAdvice` as JSON-ready data, 1-based levels:
    ``when`` ("now", "next_cohort", "stopped", "needs_patients"), ``max_per_level``,
    ``current_level``, ``open_levels``, ``room`` (open level → backfill patients it may still
    take), ``closed`` (level → why, in words), ``treated`` and ``pending`` (backfill patients
    per level, [level]); null where not computed (an outcome string, with ``note``)."""
    if advice.when == "needs_patients":
        return {
            "when": advice.when,
            "max_per_level": advice.max_per_level,
            "current_level": None,
            "open_levels": None,
            "room": None,
            "closed": None,
            "treated": None,
            "pending": None,
            "note": BACKFILL_NEEDS_PATIENTS,
        }
    return {
        "when": advice.when,
        "max_per_level": advice.max_per_level,
        "current_level": None if advice.current is None else advice.current + 1,
        "open_levels": [b + 1 for b in advice.open_levels],
        "room": {str(b + 1): v for b, v in advice.room.items()},
        "closed": {str(b + 1): why for b, why in advice.closed.items()},
        "treated": list(advice.treated),
        "pending": list(advice.pending),
        "note": None,
    }


def _backfill_lines(design, advice) -> list:
    """The backfill block of a recommendation: the open levels with their room, and why each
    other level is closed (levels with the same reason together)."""
    from rich.text import Text

    if advice is None:
        return []
    if advice.when == "needs_patients":
        return [Text(f"Backfill: {BACKFILL_NEEDS_PATIENTS}.")]
    if advice.when == "stopped":
        return [Text("Backfill: none (the trial stops).", style="bold")]
    when = {
        "now": "now",
        "next_cohort": "while the next cohort's DLT window is open (outcomes known today)",
    }[advice.when]
    if advice.open_levels:
        shown = "; ".join(
            f"{level_text(design, b)}: {advice.room[b]} more" for b in advice.open_levels
        )
        head = f"Backfill {when}: open at {shown} (at most {advice.max_per_level} per level)."
    else:
        head = f"Backfill {when}: no level open."
    lines = [Text(head, style="bold")]
    reasons: dict[str, list[int]] = {}
    for b, why in advice.closed.items():
        reasons.setdefault(why, []).append(b + 1)
    for why, levels in reasons.items():
        lines.append(Text(f"  closed: {_listed('level', levels)}: {why}."))
    treated = sum(advice.treated)
    if treated:
        pending = sum(advice.pending)
        per_level = ", ".join(
            f"level {b + 1}: {v}" for b, v in enumerate(advice.treated) if v
        )
        lines.append(
            Text(
                f"  {treated} backfill patients treated ({per_level}), {pending} with outcome "
                "not yet known.",
                style="dim",
            )
        )
    return lines


def _basis_json(basis: Mapping[str, Any]) -> dict | None:
    if not basis:
        return None
    return {k: v + 1 if k == "level" else v for k, v in basis.items()}


def _date_in(days: float | None) -> str | None:
    """The date ``days`` from today (rounded up to whole days), ISO; follow-up in a patient
    file is counted as of today."""
    if days is None:
        return None
    import datetime

    return (datetime.date.today() + datetime.timedelta(days=math.ceil(days - 1e-9))).isoformat()


def _basis_lines(rec) -> list[str]:
    """The decision basis in words: the quantities at the current level and the rule they
    met; TITE-BOIN's suspension rule; a decision that leaves the MTD estimate's level."""
    basis = rec.basis
    if basis and "ess_tox" in basis:
        return _late_efficacy_basis_lines(basis)
    if not basis or "direction" not in basis:
        return []
    level = basis["level"]
    if "p_tilde" in basis:
        rate, symbol = basis["p_tilde"], "p̃"
        quantities = (
            f"n = {basis['n']}, y = {basis['y']} DLTs observed, m = {basis['m']} pending, "
            f"STFT = {basis['stft']:.3f}, p̃ = {rate:.3f}"
        )
    else:
        rate, symbol = basis["rate"], "y/n"
        quantities = f"n = {basis['n']}, y = {basis['y']}, y/n = {_estimate_text(rate)}"
    lam_e, lam_d = basis["lambda_e"], basis["lambda_d"]
    rule = {
        1: f"{symbol} ≤ λe: escalate",
        -1: f"{symbol} ≥ λd: de-escalate",
        0: f"λe < {symbol} < λd: stay",
    }[basis["direction"]]
    lines = [
        f"Decision basis at level {level + 1}: {quantities}; λe = {lam_e:.3f}, "
        f"λd = {lam_d:.3f} ({rule})"
    ]
    if "suspended" in basis:
        n, m = basis["n"], basis["m"]
        why = []
        if basis["too_many_pending"]:
            why.append(f"{m} of {n} pending (more than {basis['max_pending_fraction']:.0%})")
        if basis["too_few_complete"]:
            why.append(f"{n - m} with complete data (fewer than {basis['min_complete']})")
        if basis["suspended"]:
            lines.append(f"Accrual suspended: at level {level + 1}, " + " and ".join(why))
        elif why:
            lines.append(
                f"Accrual not suspended although at level {level + 1} "
                + " and ".join(why)
                + ": the observed DLTs alone call for de-escalation (y ≥ λd·n)"
            )
        else:
            lines.append("Accrual not suspended: enough patients at the level have complete data")
    if (
        basis["direction"] == -1
        and rec.mtd == level
        and rec.next_level is not None
        and rec.next_level < level
    ):
        data = "on complete data " if rec.mtd_on_complete_data else ""
        lines.append(
            f"The next cohort goes below the MTD estimate: the estimate is the level closest to "
            f"the target {data}(the design's final selection), while the decision rule at level "
            f"{level + 1} de-escalates ({symbol} ≥ λd)"
        )
    return lines


def _late_efficacy_basis_lines(basis: Mapping[str, Any]) -> list[str]:
    """TITE-BOIN12's decision basis in words: the counts and effective sample sizes at the
    current level, p̂ against BOIN's boundaries, and the suspension rule."""
    level, n = basis["level"], basis["n"]
    rate, lam_e, lam_d = basis["rate"], basis["lambda_e"], basis["lambda_d"]
    position = "p̂ ≥ λd" if rate >= lam_d else "p̂ ≤ λe" if rate <= lam_e else "λe < p̂ < λd"
    lines = [
        f"Decision basis at level {level + 1}: n = {n}, y = {basis['y']} DLTs seen, "
        f"r = {basis['r']} responses seen, {basis['m_tox']} pending for the DLT and "
        f"{basis['m_eff']} for the response; ESS_T = {basis['ess_tox']:.3f}, "
        f"ESS_E = {basis['ess_eff']:.3f}, p̂ = y/ESS_T = {rate:.3f}; λe = {lam_e:.3f}, "
        f"λd = {lam_d:.3f} ({position}; BOIN12's rules then weigh the desirability scores)"
    ]
    held = "Accrual suspended" if basis["suspended"] else "Accrual not suspended"
    lines.append(
        f"{held}: at level {level + 1}, {basis['m_tox']} of {n} pending for the DLT and "
        f"{basis['m_eff']} of {n} for the response (held while more than "
        f"{basis['max_pending_fraction']:.0%} of the level's patients are pending for either)"
    )
    return lines


def _pending_per_level(result: RecommendationResult) -> np.ndarray | None:
    """Patients still in their DLT window without a DLT, per level; None when not known."""
    rec, records = result.recommendation, result.patients
    if records is None or not rec.pending:
        return None
    pending = np.asarray(rec.pending, dtype=bool)
    return np.bincount(records.level[pending], minlength=result.design.n_levels)


def _pending_response_per_level(result: RecommendationResult) -> np.ndarray | None:
    """Patients still in the efficacy window without a response, per level; None when not
    known (a design that does not decide on responses, or an outcome string)."""
    rec, records = result.recommendation, result.patients
    if records is None or not rec.pending_response:
        return None
    pending = np.asarray(rec.pending_response, dtype=bool)
    return np.bincount(records.level[pending], minlength=result.design.n_levels)


def write_recommendation_json(result: RecommendationResult, path: str | os.PathLike[str]) -> None:
    """Write :func:`recommendation_to_dict` as JSON, atomically."""
    write_atomic(path, to_json(recommendation_to_dict(result)))


def _estimate_text(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if isinstance(value, float | np.floating):
        return NONE if not math.isfinite(value) else f"{value:.3f}"
    return str(value)


def _listed(noun: str, items: Sequence[Any]) -> str:
    """'patient 3', 'patients 3 and 5' ('' noun: the items only)."""
    items = [str(item) for item in items]
    text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return f"{noun}{'' if len(items) == 1 else 's'} {text}" if noun else text


def _wait_lines(result: RecommendationResult) -> list:
    """Why a design deciding on complete data waits, and when to look again."""
    from rich.text import Text

    from theradose.timing import DAYS_PER_MONTH

    rec, records = result.recommendation, result.patients

    def followed(which) -> str:
        if records is None:
            return ""
        days = [f"{records.followup_days[i - 1]:.4g}" for i in which]
        return f" (followed for {_listed('', days)} days)"

    first = rec.review_in * DAYS_PER_MONTH
    last = rec.complete_in * DAYS_PER_MONTH
    when = f"in {first:.4g} days (on {_date_in(first)})"
    if last > first:
        when += f"; the last closes in {last:.4g} days (on {_date_in(last)})"
    review = Text(f"Review: the first pending window closes {when}.")
    which = rec.pending_patients
    if not rec.pending_response:
        verb = "is" if len(which) == 1 else "are"
        return [
            Text(
                f"Wait: {_listed('patient', which)}{followed(which)} {verb} still in the DLT "
                "window without a DLT, and the design decides on complete data: no next level "
                "until they complete the window or have a DLT.",
                style="bold",
            ),
            review,
        ]
    awaiting = rec.pending_response_patients
    parts = [
        f"for the {noun}, {_listed('patient', group)}{followed(group)}"
        for noun, group in (("DLT", which), ("response", awaiting))
        if group
    ]
    return [
        Text(
            "Wait: the design decides on complete data, and patients are pending "
            f"({'; '.join(parts)}): no next level until each has both outcomes known (the "
            "event seen, or its window closed).",
            style="bold",
        ),
        review,
    ]


def _pending_lines(result: RecommendationResult) -> list:
    """Who is pending for the DLT and who for the response (a design deciding on late responses,
    given a patient file; the wait of a design on complete data names them already)."""
    from rich.text import Text

    rec = result.recommendation
    if not rec.pending_response or not result.design.method.late_efficacy:
        return []
    lines = []
    for noun, which in (
        ("DLT (DLT window open, no DLT so far)", rec.pending_patients),
        ("response (efficacy window open, no response so far)", rec.pending_response_patients),
    ):
        who = _listed("patient", which) if which else "nobody"
        lines.append(Text(f"Pending for the {noun}: {who}."))
    return lines


def recommendation_rich(result: RecommendationResult) -> RenderableType:
    """The decision in words (or why accrual is suspended), warnings, the current MTD estimate,
    and the data and estimates per level."""
    from rich.console import Group
    from rich.text import Text

    from theradose.outcomes import format_outcomes
    from theradose.timing import DAYS_PER_MONTH

    design, rec = result.design, result.recommendation
    outcomes = format_outcomes(result.cohorts) or "no patients treated yet"
    pending_at = _pending_per_level(result)
    awaiting_at = _pending_response_per_level(result)
    if result.patients is not None:
        outcomes = f"{result.patients.n_patients} patients from {result.patients.path}"
        if pending_at is not None:
            outcomes += f", {pending_at.sum()} still in their DLT window"
        if awaiting_at is not None:
            outcomes += f", {awaiting_at.sum()} awaiting a response (efficacy window open)"
    lines = [Text(f"{design.name} ({design.method_key}, target {design.target:g}): {outcomes}")]
    for warning in rec.warnings:
        lines.append(Text(f"WARNING: {warning}.", style="bold red"))
    if rec.stop:
        lines.append(Text(f"Stop the trial: {rec.stop_reason.label}.", style="bold"))
    elif rec.wait:
        lines += _wait_lines(result)
    elif rec.start_up_wait:
        lines.append(
            Text(
                "Wait: the start-up moves up a level only once the last patient has been followed "
                f"long enough (in {rec.review_in * DAYS_PER_MONTH:.4g} days) or a DLT is seen; "
                "patients arriving meanwhile are not enrolled.",
                style="bold",
            )
        )
    elif rec.suspended:
        closes = (
            ""
            if rec.review_in is None
            else (f" (the next window closes in {rec.review_in * DAYS_PER_MONTH:.4g} days)")
        )
        event = (
            "has a DLT or a response, or completes a window"
            if rec.pending_response
            else "has a DLT or completes the DLT window"
        )
        lines.append(
            Text(
                "Suspend accrual: the design waits for more follow-up before the next patient; "
                f"decide again when a pending patient {event}{closes}.",
                style="bold",
            )
        )
    else:
        lines.append(Text(f"Next cohort: {level_text(design, rec.next_level)}.", style="bold"))
    lines += _pending_lines(result)
    on = " on complete data (pending patients left out)" if rec.mtd_on_complete_data else ""
    # A design that weighs efficacy selects the optimal biological dose, not the MTD.
    target = "OBD" if design.method.uses_efficacy else "MTD"
    lines.append(Text(f"Current {target} estimate{on}: {level_text(design, rec.mtd)}."))
    lines += [Text(f"{line}.") for line in _basis_lines(rec)]
    lines += _backfill_lines(design, rec.backfill)
    from theradose.limits import MAX_DEVIATIONS_SHOWN

    for deviation in rec.deviations[:MAX_DEVIATIONS_SHOWN]:
        lines.append(Text(f"Deviation: {deviation}.", style="yellow"))
    if len(rec.deviations) > MAX_DEVIATIONS_SHOWN:
        more = len(rec.deviations) - MAX_DEVIATIONS_SHOWN
        lines.append(
            Text(
                f"Deviation: {more:,} more cohorts or patients deviate from the design "
                f"({len(rec.deviations):,} in all; --json lists every one).",
                style="yellow",
            )
        )
    for note in rec.notes:
        lines.append(Text(f"Note: {note}.", style="dim"))
    if rec.model_summary:
        shown = ", ".join(f"{name} = {value:.4f}" for name, value in rec.model_summary.items())
        lines.append(Text(f"Posterior: {shown}."))
    for rule_state in rec.rule_states:
        lines.append(Text(f"Rule: {rule_state}.", style="dim"))

    from theradose.tables import Column, TableRecord, render_rich

    labels = {**ESTIMATE_LABELS, **design.method.estimate_labels}
    columns = [Column("level")]
    if design.doses is not None:
        columns.append(Column("activity"))
    columns += [Column("patients"), Column("DLTs")]
    if pending_at is not None:
        columns.append(Column("pending"))
    if awaiting_at is not None:
        columns += [Column("responses"), Column("pending response")]
    columns += [Column(labels.get(name, name)) for name in rec.level_summary]
    rows = []
    for level in range(design.n_levels):
        cells = [f"{level + 1}" + (" ← next" if rec.next_level == level else "")]
        if design.doses is not None:
            cells.append(activity_text(design, level))
        cells += [str(rec.n[level]), str(rec.y[level])]
        if pending_at is not None:
            cells.append(str(pending_at[level]))
        if awaiting_at is not None:
            cells += [str(rec.r[level]), str(awaiting_at[level])]
        cells += [_estimate_text(values[level]) for values in rec.level_summary.values()]
        rows.append(tuple(cells))
    # split to the terminal's width, the level and its activity repeated in every part
    table = render_rich(
        TableRecord(
            title="Per level",
            columns=tuple(columns),
            rows=tuple(rows),
            key_columns=2 if design.doses is not None else 1,
        )
    )
    footer = Text(
        f"theradose {result.version}" + (f" ({design.path})" if design.path else ""), style="dim"
    )
    return Group(*lines, table, footer)


def print_recommendation(result: RecommendationResult, console: Console | None = None) -> None:
    """Print :func:`recommendation_rich`."""
    from rich.console import Console

    (console or Console()).print(recommendation_rich(result))


def mcmc_to_dict(run) -> dict | None:
    """An MCMC run's settings and diagnostics (:class:`theradose.mcmc.McmcRun`), or None."""
    if run is None:
        return None
    posterior = run.idata.posterior
    return {
        "sampler": "NUTS (pymc)",
        "chains": int(posterior.sizes["chain"]),
        "draws": int(posterior.sizes["draw"]),
        "divergences": run.divergences,
        "seconds": run.seconds,
        "diagnostics": run.diagnostics,
    }


def mcmc_diagnostics_rich(run) -> RenderableType:
    """R-hat, bulk and tail ESS per parameter and the divergences of an MCMC run."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    info = mcmc_to_dict(run)
    table = Table()
    for header in ("parameter", "R-hat", "bulk ESS", "tail ESS"):
        table.add_column(header, justify="left" if header == "parameter" else "right")
    for name, diag in run.diagnostics.items():
        table.add_row(
            Text(name),  # "theta[log_alpha]" is not rich markup
            f"{diag['r_hat']:.4f}",
            f"{diag['ess_bulk']:.0f}",
            f"{diag['ess_tail']:.0f}",
        )
    lines = [
        Text(
            f"MCMC: {info['sampler']}, {info['chains']} chains × {info['draws']} draws, "
            f"{info['divergences']} divergent transitions, {info['seconds']:.1f} s.",
            style="bold" if info["divergences"] else "",
        )
    ]
    if run.max_r_hat >= 1.01 or info["divergences"]:
        lines.append(
            Text(
                "WARNING: R-hat ≥ 1.01 or divergences: the draws may not represent the "
                "posterior; sample longer (--draws, --tune) before relying on them.",
                style="bold red",
            )
        )
    return Group(*lines, table)


def write_posterior(run, path: str | os.PathLike[str]) -> None:
    """Write an MCMC run's draws (arviz InferenceData, netCDF) atomically."""
    with atomic_path(path) as tmp:
        run.idata.to_netcdf(str(tmp))


# ---------------------------------------------------------------------------------------------
# (e): CRM skeleton calibration


def calibration_to_dict(result) -> dict:
    """A :class:`~theradose.calibration.CalibrationResult` as JSON-ready data."""
    best = result.best
    return json_ready(
        {
            "version": __version__,
            "design": result.design.name,
            "design_path": result.design.path,
            "source": result.design.source,
            "seed": result.seed,
            "n_trials": result.n_trials,
            "scenarios": [{"name": s.name, "dlt_prob": list(s.dlt_prob)} for s in result.scenarios],
            "candidates": [
                {
                    "halfwidth": c.halfwidth,
                    "prior_mtd": c.prior_mtd,
                    "skeleton": list(c.skeleton),
                    "pcs": list(c.pcs),
                    "pcs_se": list(c.pcs_se),
                    "mean_pcs": c.mean_pcs,
                    "worst_pcs": c.worst_pcs,
                    "best": c is best,
                }
                for c in result.candidates
            ],
            "skipped": list(result.skipped),
        }
    )


def write_calibration_json(result, path: str | os.PathLike[str]) -> None:
    write_atomic(path, to_json(calibration_to_dict(result)))


def calibration_rich(result) -> RenderableType:
    """Average and worst-case PCS per candidate skeleton, best marked, PCS per scenario."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    best = result.best
    table = Table(title_justify="left")
    for label in ("halfwidth", "prior MTD", "mean PCS %", "worst PCS %"):
        table.add_column(label, justify="right")
    for scenario in result.scenarios:
        table.add_column(f"PCS % {scenario.name}", justify="right")
    table.add_column("skeleton")
    for c in result.candidates:
        style = "bold green" if c is best else None
        cells = [f"{c.halfwidth:g}", str(c.prior_mtd), f"{c.mean_pcs:.1f}", f"{c.worst_pcs:.1f}"]
        cells += [f"{p:.1f} ±{se:.1f}" for p, se in zip(c.pcs, c.pcs_se, strict=True)]
        cells.append(", ".join(f"{v:.3g}" for v in c.skeleton))
        table.add_row(*cells, style=style)
    lines = [
        Text(f"Skeleton calibration: {result.design.name} (Lee & Cheung 2009)", style="bold"),
        table,
        Text(
            f"Best: halfwidth {best.halfwidth:g}, prior MTD {best.prior_mtd} "
            f"(mean PCS {best.mean_pcs:.1f}%, worst {best.worst_pcs:.1f}%).",
            style="bold",
        ),
    ]
    lines += [Text(f"skipped: {reason}", style="yellow") for reason in result.skipped]
    lines.append(
        Text(
            f"theradose {__version__}: {result.n_trials} trials per candidate and scenario, "
            f"seed {result.seed}, the same patients for every candidate; ± is the Monte Carlo "
            "standard error.",
            style="dim",
        )
    )
    return Group(*lines)
