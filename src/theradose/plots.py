"""Figures of simulation results (matplotlib, imported only when a figure is drawn).

Figures are built with the object-oriented API (``matplotlib.figure.Figure``), never through
``pyplot``'s global state, so they work the same in scripts, notebooks and the CLI, with no
display needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from theradose.study import StudyResult

TRUE_MTD_COLOUR = "#d9d9d9"
# The file formats matplotlib's savefig writes (``FigureCanvasBase.get_supported_filetypes``),
# known without importing matplotlib, so that a bad --plot suffix fails before a run.
PLOT_FORMATS = (
    "eps", "jpeg", "jpg", "pdf", "pgf", "png", "ps", "raw", "rgba", "svg", "svgz", "tif",
    "tiff", "webp",
)  # fmt: skip


def _scenario_indices(study: StudyResult, scenarios) -> list[int]:
    if scenarios is None:
        return list(range(len(study.scenarios)))
    if isinstance(scenarios, str | int):
        scenarios = [scenarios]
    names = [s.name for s in study.scenarios]
    indices = []
    for item in scenarios:
        if isinstance(item, int):
            indices.append(item)
        elif item in names:
            indices.append(names.index(item))
        else:
            raise ValueError(f"no scenario named {item!r}; scenarios are {', '.join(names)}")
    return indices


def plot_selection(
    study: StudyResult,
    scenarios: str | int | Sequence[str | int] | None = None,
    *,
    ncols: int | None = None,
    panel_size: tuple[float, float] = (5.0, 3.4),
) -> Figure:
    """Grouped bars of the selection % per level, one bar per design, for each scenario.

    Error bars are ±1.96 Monte Carlo standard errors; exact selection %, when computed, is drawn
    as a black diamond on its bar; the true MTD's level is shaded (the "none" group when no level
    is acceptable).

    Parameters
    ----------
    study : StudyResult
        From :func:`theradose.study.run_study`.
    scenarios : name, index or a sequence of them, optional
        The scenarios to draw, one panel each; all of them by default.
    ncols : int, optional
        Panels per row (default: up to 3).
    panel_size : (float, float)
        Width and height of one panel in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    indices = _scenario_indices(study, scenarios)
    ncols = ncols or min(3, len(indices))
    nrows = math.ceil(len(indices) / ncols)
    figure = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False, sharey=True)
    for k, j in enumerate(indices):
        _selection_panel(axes.flat[k], study, j, legend=k == 0)
        if k % ncols:
            axes.flat[k].set_ylabel("")
    for ax in list(axes.flat)[len(indices) :]:
        ax.set_visible(False)
    figure.suptitle(
        f"Selection of the MTD: {study.n_trials} simulated trials, seed {study.seed} "
        f"(theradose {study.version})",
        fontsize="medium",
    )
    return figure


def _selection_panel(ax: Axes, study: StudyResult, j: int, legend: bool) -> None:
    import numpy as np

    scenario = study.scenarios[j]
    truth = study.simulations[0][j].dlt_prob  # the first design's truth, for the axis labels
    n_levels = len(truth)
    n_designs = len(study.designs)
    x = np.arange(n_levels + 1)  # levels, then "none"
    width = 0.8 / n_designs
    true_mtds = {study.simulations[i][j].true_mtd for i in range(n_designs)}
    for true_mtd in true_mtds:
        position = n_levels if true_mtd < 0 else true_mtd
        ax.axvspan(position - 0.45, position + 0.45, color=TRUE_MTD_COLOUR, zorder=0)
    for i, design in enumerate(study.designs):
        values, se = study.oc[i][j].values, study.oc[i][j].se
        pct = np.array([*values["selection_pct"], values["no_selection_pct"]])
        err = 1.96 * np.array([*se["selection_pct"], se["no_selection_pct"]])
        offset = (i - (n_designs - 1) / 2) * width
        ax.bar(x + offset, pct, width, yerr=err, capsize=2, label=design.name, zorder=2)
        exact = study.exact[i][j]
        if exact is not None:
            exact_pct = [*exact["selection_pct"], exact["no_selection_pct"]]
            ax.plot(
                x + offset,
                exact_pct,
                "D",
                color="black",
                markersize=3,
                zorder=3,
                label="exact" if i == 0 else None,
            )
    labels = [f"{level + 1}\n{p:.3g}" for level, p in enumerate(truth)] + ["none"]
    ax.set_xticks(x, labels)
    ax.set_xlabel("level (true DLT probability); shaded: true MTD")
    ax.set_ylabel("selected as MTD (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Scenario {scenario.name}")
    if legend:
        ax.legend(fontsize="small", frameon=False)


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 150) -> None:
    """Save ``figure`` atomically; the format follows the file's suffix (PNG by default)."""
    from pathlib import Path

    from theradose.report import atomic_path

    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, dpi=dpi)
