"""A sweep's results (:mod:`theradose.sweep`) as one table — terminal, CSV, JSON, Markdown — and
as heat maps of PCS, overdosing and sample size against two grid settings, one panel per
scenario. Reads results only; nothing in the sweep imports this module."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from theradose.sweep import FIGURES, SweepResult
from theradose.validation import show_value

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import RenderableType

# The heat maps: (column of SweepResult.rows, title, colour map; reversed: higher is worse).
HEATMAPS = (
    ("pcs", "PCS (%)", "viridis"),
    ("overdose_pct", "patients above the true MTD (%)", "magma_r"),
    ("n_mean", "mean sample size", "cividis"),
)


def _cell(value: Any) -> Any:
    """A grid value for a table cell: numbers and strings as they are, arrays as TOML."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return show_value(value)
    return value


def sweep_to_dict(result: SweepResult) -> dict:
    """The sweep as JSON: provenance, the grid, the scenarios and one row per grid point ×
    scenario (:meth:`SweepResult.rows`)."""
    from theradose.report import json_ready

    return json_ready(
        {
            "version": result.version,
            "seed": result.seed,
            "n_trials": result.n_trials,
            "grid_path": result.grid.path,
            "designs": [
                {"name": base.name, "method": base.method_key, "path": base.path}
                for base in _bases(result)
            ],
            "grid": {
                k: list(v) for k, v in zip(result.parameters, result.grid.values, strict=True)
            },
            "scenario_path": result.scenario_path,
            "scenarios": [{"name": s.name, "dlt_prob": list(s.dlt_prob)} for s in result.scenarios],
            "columns": list(result.columns()),
            "rows": result.rows(),
        }
    )


def _bases(result: SweepResult):
    seen = {}
    for point in result.points:
        seen.setdefault(id(point.base), point.base)
    return list(seen.values())


def sweep_to_csv(result: SweepResult) -> str:
    """One CSV row per grid point × scenario; array values of a setting written as TOML."""
    from theradose.report import to_csv

    rows = [{k: _cell(v) for k, v in row.items()} for row in result.rows()]
    return to_csv(rows, result.columns())


def sweep_to_markdown(result: SweepResult) -> str:
    """A Markdown table: figures as "value ± SE"."""
    headings = ["design", *result.parameters, "scenario", "true MTD"]
    headings += [heading for _, _, heading in FIGURES]
    lines = [
        f"Sweep of {result.grid.path}: {result.n_trials:,} trials per grid point × scenario, "
        f"seed {result.seed}, the same virtual patients for every grid point (± Monte Carlo SE).",
        "",
        "| " + " | ".join(headings) + " |",
        "|" + "|".join("---" if i < len(headings) - len(FIGURES) else "---:"
                       for i in range(len(headings))) + "|",
    ]  # fmt: skip
    for row in _display_rows(result):
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines) + "\n"


def _display_rows(result: SweepResult) -> list[list[str]]:
    out = []
    for row in result.rows():
        cells = [row["design"], *(str(_cell(row[p])) for p in result.parameters)]
        cells += [row["scenario"], "none" if row["true_mtd"] is None else str(row["true_mtd"])]
        for _, column, _ in FIGURES:
            digits = 2 if column == "n_mean" else 1
            cells.append(f"{row[column]:.{digits}f} ± {row[f'{column}_se']:.{digits}f}")
        out.append(cells)
    return out


def sweep_rich(result: SweepResult) -> RenderableType:
    """The sweep as a terminal table."""
    from rich.table import Table

    table = Table(
        title=f"Sweep of {result.grid.path}",
        caption=f"{result.n_trials:,} trials per grid point × scenario, seed {result.seed}; "
        "the same virtual patients for every grid point; ± Monte Carlo SE",
    )
    several = len(_bases(result)) > 1
    if several:
        table.add_column("design")
    for parameter in result.parameters:
        table.add_column(parameter, justify="right")
    table.add_column("scenario")
    table.add_column("true MTD", justify="right")
    for _, _, heading in FIGURES:
        table.add_column(heading, justify="right")
    for row in _display_rows(result):
        table.add_row(*(row if several else row[1:]))
    return table


def write_sweep(result: SweepResult, path: str | os.PathLike[str], fmt: str) -> None:
    """Write the table as ``fmt`` ("json", "csv" or "markdown") to ``path``, atomically."""
    from theradose.report import to_json, write_atomic

    text = {
        "json": lambda: to_json(sweep_to_dict(result)),
        "csv": lambda: sweep_to_csv(result),
        "markdown": lambda: sweep_to_markdown(result),
    }[fmt]()
    write_atomic(path, text)


# ---------------------------------------------------------------------------------------------
# Heat maps


def heatmap_axes(
    parameters: Sequence[str], axes: Sequence[str] | None = None
) -> tuple[str, str | None]:
    """The grid settings on a heat map's x and y axes: ``axes`` (checked against the grid's
    ``parameters``), else the grid's first two (y None when the grid varies one setting).

    Raises
    ------
    ValueError
        When ``axes`` names a setting the grid does not vary, the same one twice, or more than two.
    """
    if not axes:
        return parameters[0], parameters[1] if len(parameters) > 1 else None
    shown = ",".join(axes)
    unknown = [a for a in axes if a not in parameters]
    if unknown:
        raise ValueError(
            f"--axes {shown}: the grid does not vary {unknown[0]!r} (it varies "
            + ", ".join(parameters)
            + ")"
        )
    if len(axes) != len(set(axes)) or len(axes) > 2:
        raise ValueError(f"--axes {shown}: give one or two different grid settings")
    return axes[0], axes[1] if len(axes) > 1 else None


def plot_heatmaps(
    result: SweepResult, axes: Sequence[str] | None = None
) -> list[tuple[str, Figure]]:
    """Heat maps of PCS, % of patients above the true MTD and mean sample size against two grid
    settings (x: the first, y: the second of ``axes``, default the grid's first two), one column
    of panels per scenario; the colour scale of a figure is shared by its scenarios.

    Returns
    -------
    list of (title, Figure)
        One figure per design file and combination of the other grid settings (one figure in
        all for a grid of two settings and one design), its title naming those.
    """
    x_key, y_key = heatmap_axes(result.parameters, axes)
    others = [p for p in result.parameters if p not in (x_key, y_key)]
    rows = result.rows()
    bases = _bases(result)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        fixed = tuple((p, _key(row[p])) for p in others)
        groups.setdefault((row["design"], fixed), []).append(row)
    figures = []
    for (design, _), group in groups.items():
        parts = [design] if len(bases) > 1 else []
        parts += [f"{p} = {show_value(v)}" for p, v in _fixed_values(group[0], others)]
        title = "; ".join(parts)
        figures.append((title, _heatmap_figure(result, group, x_key, y_key, title)))
    return figures


def _key(value: Any) -> Any:
    return show_value(value) if isinstance(value, list | dict) else value


def _fixed_values(row: dict, others: Sequence[str]) -> list[tuple[str, Any]]:
    return [(p, row[p]) for p in others]


def _heatmap_figure(result, rows, x_key, y_key, title) -> Figure:
    import numpy as np
    from matplotlib.figure import Figure

    grid = dict(zip(result.parameters, result.grid.values, strict=True))
    xs = list(grid[x_key])
    ys = list(grid[y_key]) if y_key is not None else [None]
    scenarios = [s.name for s in result.scenarios]
    n_cols = len(scenarios)
    row_height = 2.9 if y_key is not None else 1.4  # one setting: a strip per scenario
    figure = Figure(
        figsize=(1.2 + 3.1 * n_cols, 1.0 + row_height * len(HEATMAPS)), layout="constrained"
    )
    panels = figure.subplots(len(HEATMAPS), n_cols, squeeze=False)
    index = {
        (row["scenario"], _key(row[x_key]), _key(row[y_key]) if y_key else None): row
        for row in rows
    }
    for i, (column, heading, cmap) in enumerate(HEATMAPS):
        values = np.full((len(scenarios), len(ys), len(xs)), np.nan)
        for s, (j, y), (k, x) in itertools.product(range(n_cols), enumerate(ys), enumerate(xs)):
            row = index.get((scenarios[s], _key(x), _key(y) if y_key else None))
            if row is not None and row[column] is not None:
                values[s, j, k] = row[column]
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if high == low:
            low, high = low - 0.5, high + 0.5
        image = None
        for s, ax in enumerate(panels[i]):
            image = ax.imshow(
                values[s], origin="lower", aspect="auto", cmap=cmap, vmin=low, vmax=high
            )
            digits = 1 if column == "n_mean" else 0
            for j, k in itertools.product(range(len(ys)), range(len(xs))):
                value = values[s, j, k]
                if np.isfinite(value):
                    shade = (value - low) / (high - low)
                    dark = shade > 0.5 if cmap.endswith("_r") else shade < 0.5
                    ax.text(
                        k, j, f"{value:.{digits}f}", ha="center", va="center", fontsize="x-small",
                        color="white" if dark else "black",
                    )  # fmt: skip
            ax.set_xticks(range(len(xs)), [str(_cell(x)) for x in xs], fontsize="small")
            ax.set_yticks(
                range(len(ys)),
                [str(_cell(y)) for y in ys] if y_key else [""],
                fontsize="small",
            )
            if i == len(HEATMAPS) - 1:
                ax.set_xlabel(x_key)
            if s == 0 and y_key:
                ax.set_ylabel(y_key)
            if i == 0:
                ax.set_title(f"Scenario {scenarios[s]}")
        colorbar = figure.colorbar(image, ax=list(panels[i]), shrink=0.9)
        colorbar.set_label(heading)
    suptitle = f"Sweep of {Path(result.grid.path).name}: {result.n_trials:,} trials per cell"
    figure.suptitle(f"{suptitle}\n{title}" if title else suptitle)
    return figure


def heatmap_paths(path: str | os.PathLike[str], count: int) -> list[Path]:
    """Where the heat maps go: ``path`` for one figure, else ``stem-1.png``, ``stem-2.png``…"""
    path = Path(path)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(1, count + 1)]


def save_heatmaps(
    result: SweepResult, path: str | os.PathLike[str], axes: Sequence[str] | None = None
) -> list[Path]:
    """Draw :func:`plot_heatmaps` and save each figure (format by the suffix); the paths."""
    from theradose.plots import save_figure

    figures = plot_heatmaps(result, axes)
    paths = heatmap_paths(path, len(figures))
    for target, (_, figure) in zip(paths, figures, strict=True):
        save_figure(figure, target)
    return paths
