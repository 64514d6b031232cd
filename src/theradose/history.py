"""Presentation of a trial's history (a ledger, :mod:`theradose.ledger`): tables of each
meeting's data, decision and estimates, and the standard trial plot.

Reads decision records only (:mod:`theradose.decision_record`); computes nothing about the trial.
matplotlib is imported only when a figure is drawn, with its object-oriented API as in
:mod:`theradose.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import RenderableType

    from theradose.ledger import LedgerEntry

# Keys of a level's entry in a record that are data or organ figures, not the method's estimates.
_NOT_ESTIMATES = {"level", "activity", "n", "dlt", "pending", "admissible", "eliminated"}
NONE = "—"


def decision_words(decision: Mapping[str, Any]) -> str:
    """A recorded decision as a short phrase for tables and plots."""
    from theradose.verification import decision_text

    return decision_text(decision)


def _estimate_key(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The first per-level estimate of the method (e.g. ``p_est``), as recorded."""
    for record in records:
        for level in record.get("levels") or []:
            for key, value in level.items():
                if key in _NOT_ESTIMATES or key.startswith("p_exceed_"):
                    continue
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return key
    return None


def _organs(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every organ with a limit, as the last record gives it."""
    for record in reversed(records):
        limits = record.get("organ_limits") or []
        if limits:
            return list(limits)
    return []


def _limit_text(organ: Mapping[str, Any]) -> str:
    if organ.get("limit_bed_gy") is not None:
        return f"BED > {organ['limit_bed_gy']:g} Gy"
    if organ.get("limit_gy") is not None:
        return f"> {organ['limit_gy']:g} Gy"
    return "> limit"


def _level_header(level: Mapping[str, Any], unit: str) -> str:
    activity = level.get("activity")
    if isinstance(activity, int | float):
        return f"{level['level']} ({activity:g}{' ' + unit if unit else ''})"
    return str(level["level"])


def _unit(record: Mapping[str, Any]) -> str:
    parameters = (record.get("design") or {}).get("parameters") or {}
    return str(parameters.get("dose_unit") or "")


def history_rich(entries: Sequence[LedgerEntry]) -> RenderableType:
    """The trial's history: one row per meeting (entry) with its data and decision; the
    estimates per level at each meeting; each organ's P(exceeding its limit) per level at each
    meeting, with the levels the organ-dose limits ruled out."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    records = [entry.record for entry in entries]
    if not records:
        return Text("The ledger is empty: no decision recorded yet.")
    meetings = Table(title="Decisions", title_justify="left")
    for header, justify in (
        ("entry", "right"),
        ("UTC", "left"),
        ("by", "left"),
        ("patients", "right"),
        ("DLTs", "right"),
        ("pending", "right"),
        ("data", "left"),
        ("decision", "left"),
        ("MTD estimate", "right"),
        ("ruled out", "left"),
        ("design", "left"),
        ("note", "left"),
    ):
        meetings.add_column(header, justify=justify)
    design_hashes: list[str] = []
    for entry, record in zip(entries, records, strict=True):
        data, decision = record.get("data") or {}, record.get("decision") or {}
        design = record.get("design") or {}
        digest = str(design.get("sha256", ""))
        if digest not in design_hashes:
            design_hashes.append(digest)
        version = design_hashes.index(digest) + 1
        changed = " (changed)" if version > 1 and digest != _previous_hash(records, entry) else ""
        inadmissible = decision.get("inadmissible_levels") or []
        meetings.add_row(
            str(entry.entry),
            str(record.get("created_utc", "")).replace("T", " ").rstrip("Z"),
            Text(str(record.get("by") or "")),
            str(data.get("n_patients", "")),
            str(data.get("n_dlt", "")),
            str(len(decision.get("pending_patients") or [])),
            Text(str(data.get("outcomes") or "no patients")),
            Text(decision_words(decision)),
            NONE if decision.get("mtd") is None else str(decision["mtd"]),
            ", ".join(str(level) for level in inadmissible) or NONE,
            Text(f"v{version} {digest[:8]}{changed}"),
            Text(str(record.get("note") or "")),
        )
    parts: list[Any] = [meetings]
    estimates = _estimates_table(entries)
    if estimates is not None:
        parts.append(estimates)
    parts += _organ_tables(entries)
    last = records[-1]
    parts.append(
        Text(
            f"{len(records)} entries; design: {(last.get('design') or {}).get('name', '')}; "
            f"head {entries[-1].hash[:16]}…",
            style="dim",
        )
    )
    return Group(*parts)


def _previous_hash(records: Sequence[Mapping[str, Any]], entry: LedgerEntry) -> str | None:
    if entry.entry < 2:
        return None
    return str((records[entry.entry - 2].get("design") or {}).get("sha256", ""))


def _estimates_table(entries: Sequence[LedgerEntry]):
    from rich.table import Table

    from theradose.report import ESTIMATE_LABELS

    records = [entry.record for entry in entries]
    key = _estimate_key(records)
    levels = records[-1].get("levels") or []
    if not levels:
        return None
    label = ESTIMATE_LABELS.get(key, key) if key else ""
    title = "Patients/DLTs per level" + (f" and {label} ({key})" if key else "")
    table = Table(title=title + "; ✗ ruled out by the organ-dose limits", title_justify="left")
    table.add_column("entry", justify="right")
    unit = _unit(records[-1])
    for level in levels:
        table.add_column(_level_header(level, unit), justify="right")
    for entry, record in zip(entries, records, strict=True):
        next_level = (record.get("decision") or {}).get("next_level")
        cells = [str(entry.entry)]
        for level in record.get("levels") or []:
            text = f"{level.get('n', 0)}/{level.get('dlt', 0)}"
            value = level.get(key) if key else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                text += f" {value:.2f}"
            if level.get("admissible") is False:
                text += " ✗"
            if next_level == level.get("level"):
                text += " ←"
            cells.append(text)
        table.add_row(*cells)
    return table


def _organ_tables(entries: Sequence[LedgerEntry]) -> list:
    from rich.table import Table

    records = [entry.record for entry in entries]
    tables = []
    unit = _unit(records[-1])
    for organ in _organs(records):
        name = organ["organ"]
        table = Table(
            title=f"{name}: P(a new patient's cumulative dose {_limit_text(organ)}) per level; "
            f"a level is ruled out above {organ.get('max_exceed_prob', NONE)}",
            title_justify="left",
        )
        table.add_column("entry", justify="right")
        for level in records[-1].get("levels") or []:
            table.add_column(_level_header(level, unit), justify="right")
        for entry, record in zip(entries, records, strict=True):
            cells = [str(entry.entry)]
            for level in record.get("levels") or []:
                value = level.get(f"p_exceed_{name}")
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                text = f"{value:.3f}" if ok else NONE
                if ok and value > float(organ.get("max_exceed_prob", math.inf)):
                    text += " ✗"
                cells.append(text)
            table.add_row(*cells)
        tables.append(table)
    return tables


# ---------------------------------------------------------------------------------------------
# The trial plot


def _patients(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The patients of a record in enrolment order: level, DLT, pending (False when unknown)."""
    data = record.get("data") or {}
    if data.get("patients"):
        return [
            {"level": p["level"], "dlt": bool(p["dlt"]), "pending": bool(p.get("pending"))}
            for p in data["patients"]
        ]
    return [
        {"level": cohort["level"], "dlt": bool(flag), "pending": False}
        for cohort in data.get("cohorts") or []
        for flag in cohort["dlt"]
    ]


def _choose_organ(records, organ: str | None) -> dict[str, Any] | None:
    organs = _organs(records)
    if organ is not None:
        for limits in organs:
            if limits["organ"] == organ:
                return limits
        names = ", ".join(o["organ"] for o in organs) or "none"
        raise ValueError(f"no organ {organ!r} with a limit in the records (organs: {names})")
    best, score = None, -1.0
    for limits in organs:  # the organ that comes closest to ruling levels out
        threshold = float(limits.get("max_exceed_prob") or 1.0)
        if threshold >= 1:
            continue
        values = [
            level.get(f"p_exceed_{limits['organ']}")
            for record in records
            for level in record.get("levels") or []
        ]
        ratios = [v / threshold for v in values if isinstance(v, int | float) and v is not None]
        if ratios and max(ratios) > score:
            best, score = limits, max(ratios)
    return best


def plot_history(entries: Sequence[LedgerEntry], organ: str | None = None) -> Figure:
    """The standard trial plot of a ledger.

    Top: the level of each patient in enrolment order (from the last record's data), a DLT
    marked by a red cross, a patient still pending at the last meeting by an open marker; at each
    meeting (after the patients it saw) the decision — the next level (triangle), stop or wait —
    and, shaded until the next meeting, the levels the organ-dose limits ruled out.
    Bottom (designs with organ limits): one organ's P(a new patient's cumulative dose passes
    its limit) per level at each meeting, with the threshold above which a level is ruled out;
    by default the organ that came closest to ruling levels out.

    Parameters
    ----------
    entries : the ledger's entries (:func:`theradose.ledger.check_ledger`)
    organ : the organ of the bottom panel

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        For an empty ledger, or an organ without a limit in the records.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    records = [entry.record for entry in entries]
    if not records:
        raise ValueError("the ledger is empty: nothing to plot")
    chosen = _choose_organ(records, organ)
    last = records[-1]
    levels = last.get("levels") or []
    n_levels = len(levels)
    unit = _unit(last)
    patients = _patients(last)
    figure = Figure(figsize=(10.0, 6.4 if chosen else 4.2), layout="constrained")
    if chosen:
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    else:
        top, bottom = figure.subplots(1, 1), None

    at = [int((r.get("data") or {}).get("n_patients") or 0) for r in records]
    end = max([len(patients), *at]) + 2
    cohort = int(((last.get("design") or {}).get("parameters") or {}).get("cohort_size") or 3)
    shaded = False
    for k, record in enumerate(records):
        start = at[k] + 0.5
        stop = at[k + 1] + 0.5 if k + 1 < len(records) else max(end, at[k] + cohort) + 0.5
        for level in (record.get("decision") or {}).get("inadmissible_levels") or []:
            top.fill_between(
                [start, stop],
                level - 0.5,
                level + 0.5,
                color="#f4c7c3",
                hatch="//",
                edgecolor="#d98880",
                linewidth=0,
                zorder=0,
                label=None if shaded else "ruled out (organ-dose limits)",
            )
            shaded = True
    x = list(range(1, len(patients) + 1))
    y = [p["level"] for p in patients]
    top.plot(x, y, color="#999999", linewidth=0.8, zorder=1)
    groups = (
        ("no DLT", lambda p: not p["dlt"] and not p["pending"], "o", "#2b6cb0", "full"),
        ("DLT", lambda p: p["dlt"], "X", "#c53030", "full"),
        ("pending", lambda p: p["pending"] and not p["dlt"], "o", "#2b6cb0", "none"),
    )
    for label, keep, marker, colour, fill in groups:
        xs = [i for i, p in zip(x, patients, strict=True) if keep(p)]
        ys = [p["level"] for p in patients if keep(p)]
        if xs:
            top.plot(
                xs,
                ys,
                linestyle="none",
                marker=marker,
                markersize=9 if marker == "X" else 7,
                color=colour,
                fillstyle=fill,
                label=label,
                zorder=3,
            )
    labelled = False
    for k, record in enumerate(records):
        decision = record.get("decision") or {}
        position = at[k] + 0.5
        top.axvline(position, color="#bbbbbb", linestyle=":", linewidth=0.8, zorder=0)
        action = decision.get("action")
        if action == "next_level" and decision.get("next_level") is not None:
            top.plot(
                position,
                decision["next_level"],
                marker=">",
                markersize=10,
                color="#2f855a",
                linestyle="none",
                label=None if labelled else "decision: next level",
                zorder=4,
            )
            labelled = True
        else:
            where = patients[at[k] - 1]["level"] if 0 < at[k] <= len(patients) else 1
            top.annotate(
                {"stop": "stop", "wait": "wait", "suspend": "suspend"}.get(action, "wait"),
                (position, where + 0.3),
                ha="center",
                fontsize="small",
                color="#744210",
                fontweight="bold",
            )
        top.annotate(
            f"#{k + 1}",
            (position, n_levels + 0.5),
            ha="center",
            fontsize="x-small",
            color="#555555",
        )
    top.set_yticks(range(1, n_levels + 1), [_level_header(level, unit) for level in levels])
    top.set_ylim(0.5, n_levels + 0.75)
    top.set_xlim(0.3, end)
    top.set_ylabel("level")
    top.xaxis.set_major_locator(MaxNLocator(integer=True))
    top.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    name = (last.get("design") or {}).get("name", "")
    top.set_title(f"{name}: {len(records)} decisions so far", fontsize="medium", loc="left")
    if bottom is None:
        top.set_xlabel("patient (enrolment order)")
        return figure
    organ_name = chosen["organ"]
    highest = 0.0
    for index in range(n_levels):
        values = []
        for record in records:
            at_meeting = record.get("levels") or []
            value = None
            if index < len(at_meeting):
                value = at_meeting[index].get(f"p_exceed_{organ_name}")
            values.append(math.nan if value is None else float(value))
            highest = max(highest, 0.0 if value is None else float(value))
        bottom.plot(
            [a + 0.5 for a in at],
            values,
            marker="o",
            markersize=4,
            label=_level_header(levels[index], unit),
        )
    threshold = chosen.get("max_exceed_prob")
    if isinstance(threshold, int | float) and threshold < 1:
        bottom.axhline(threshold, color="#c53030", linestyle="--", linewidth=1, label="threshold")
        highest = max(highest, threshold)
    bottom.set_ylim(0, min(1.0, 1.25 * highest) if highest > 0 else 1.0)
    bottom.set_ylabel(f"P({organ_name} {_limit_text(chosen)})")
    bottom.set_xlabel("patient (enrolment order); decisions at the dotted lines")
    bottom.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure
