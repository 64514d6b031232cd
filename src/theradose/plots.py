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
    from pathlib import Path

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from theradose.study import StudyResult

TRUE_MTD_COLOUR = "#d9d9d9"
OPTIMUM_COLOUR = "#1b7837"  # the constrained optimum's hatching
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
    as a black diamond on its bar. The true MTD's level is shaded grey (the "none" group when
    no level is acceptable) and, for designs with organ limits, the constrained optimum's level
    is hatched; the legend sits below the panels, clear of the bars.

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
    return _level_figure(study, scenarios, "selection", ncols, panel_size)


def plot_allocation(
    study: StudyResult,
    scenarios: str | int | Sequence[str | int] | None = None,
    *,
    ncols: int | None = None,
    panel_size: tuple[float, float] = (5.0, 3.4),
) -> Figure:
    """Grouped bars of the mean number of patients treated per level (±1.96 Monte Carlo
    standard errors), one bar per design, for each scenario; shading and legend as
    :func:`plot_selection`."""
    return _level_figure(study, scenarios, "allocation", ncols, panel_size)


def _grid(n_panels: int, ncols: int | None, panel_size, extra_height: float = 0.6):
    from matplotlib.figure import Figure

    ncols = ncols or min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    size = (panel_size[0] * ncols, panel_size[1] * nrows + extra_height)
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False)
    for ax in list(axes.flat)[n_panels:]:
        ax.set_visible(False)
    return figure, axes


def _title(figure: Figure, study: StudyResult, what: str) -> None:
    figure.suptitle(
        f"{what}: {study.n_trials} simulated trials, seed {study.seed} (theradose {study.version})",
        fontsize="medium",
    )


def _legend_below(figure: Figure, axes) -> None:
    """One legend for the figure, below the panels (never over the bars)."""
    handles, labels = {}, []
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        figure.legend(
            [handles[label] for label in labels],
            labels,
            loc="outside lower center",
            ncols=min(len(labels), 4),
            fontsize="small",
            frameon=False,
        )


def _level_figure(study, scenarios, kind: str, ncols, panel_size) -> Figure:
    indices = _scenario_indices(study, scenarios)
    figure, axes = _grid(len(indices), ncols, panel_size)
    for k, j in enumerate(indices):
        _level_panel(axes.flat[k], study, j, kind)
        if k % axes.shape[1]:
            axes.flat[k].set_ylabel("")
    for ax in axes.flat:
        ax.set_ylim(0, 100) if kind == "selection" else ax.set_ylim(bottom=0)
    _legend_below(figure, axes)
    _title(figure, study, "Selection of the MTD" if kind == "selection" else "Patients per level")
    return figure


def _shade(ax: Axes, study: StudyResult, j: int, n_levels: int) -> None:
    """Grey: the true MTD of each design ("none" when no level is acceptable); hatched: the
    constrained optimum of each design with organ limits."""
    sims = [study.simulations[i][j] for i in range(len(study.designs))]
    for true_mtd in sorted({sim.true_mtd for sim in sims}):
        position = n_levels if true_mtd < 0 else true_mtd
        ax.axvspan(
            position - 0.45, position + 0.45, color=TRUE_MTD_COLOUR, zorder=0, label="true MTD"
        )
    for optimum in sorted({sim.optimum for sim in sims if sim.organs}):
        position = n_levels if optimum < 0 else optimum
        ax.axvspan(
            position - 0.47,
            position + 0.47,
            facecolor="none",
            edgecolor=OPTIMUM_COLOUR,
            hatch="///",
            linewidth=1.2,
            zorder=1,
            label="constrained optimum (organ limits)",
        )


def _level_panel(ax: Axes, study: StudyResult, j: int, kind: str) -> None:
    import numpy as np

    scenario = study.scenarios[j]
    truths = {
        tuple(np.round(study.simulations[i][j].dlt_prob, 3)) for i in range(len(study.designs))
    }
    n_levels = max(d.n_levels for d in study.designs)
    n_designs = len(study.designs)

    def padded(values) -> np.ndarray:  # designs with fewer levels: nothing drawn beyond theirs
        values = np.asarray(values, dtype=float)
        return np.pad(values, (0, n_levels - values.size), constant_values=np.nan)

    selection = kind == "selection"
    x = np.arange(n_levels + 1 if selection else n_levels)  # levels, then "none"
    width = 0.8 / n_designs
    _shade(ax, study, j, n_levels)
    for i, design in enumerate(study.designs):
        values, se = study.oc[i][j].values, study.oc[i][j].se
        if selection:
            height = np.append(padded(values["selection_pct"]), values["no_selection_pct"])
            err = 1.96 * np.append(padded(se["selection_pct"]), se["no_selection_pct"])
        else:
            height = padded(values["patients_mean"])
            err = 1.96 * padded(se["patients_mean"])
        offset = (i - (n_designs - 1) / 2) * width
        ax.bar(x + offset, height, width, yerr=err, capsize=2, label=design.name, zorder=2)
        exact = study.exact[i][j]
        if exact is not None:
            if selection:
                exact_values = np.append(padded(exact["selection_pct"]), exact["no_selection_pct"])
            else:
                exact_values = padded(exact["patients_mean"])
            ax.plot(
                x + offset,
                exact_values,
                "D",
                color="black",
                markersize=3,
                zorder=3,
                label="exact",
            )
    if len(truths) == 1:
        labels = [f"{level + 1}\n{p:.3g}" for level, p in enumerate(next(iter(truths)))]
        ax.set_xlabel("level (true DLT probability)")
    else:  # the truth depends on the design's schedule (organ-dose scenarios)
        labels = [f"{level + 1}" for level in range(n_levels)]
        ax.set_xlabel("level")
    ax.set_xticks(x, labels + (["none"] if selection else []))
    ax.set_ylabel("selected as MTD (%)" if selection else "patients per trial (mean)")
    ax.set_title(f"Scenario {scenario.name}")


def plot_organ_doses(
    study: StudyResult,
    scenarios: str | int | Sequence[str | int] | None = None,
    *,
    panel_size: tuple[float, float] = (4.6, 3.2),
    bins: int = 80,
) -> Figure | None:
    """The distribution of the patients' TRUE cumulative organ dose (or BED) against each
    organ's limit: one panel per scenario (rows) and organ (columns), one line per design with
    that organ, as the % of treated patients per dose bin, from the histograms the simulation
    keeps (:class:`~theradose.results.Simulations`); the limit is a dashed line and the legend
    gives each design's % of patients past it. None when no design has organ limits."""
    import numpy as np

    from theradose.dose_summary import HIST_BINS, HIST_SPAN

    if HIST_BINS % bins:
        raise ValueError(f"bins must divide {HIST_BINS}, got {bins}")
    indices = _scenario_indices(study, scenarios)
    organs = list(dict.fromkeys(o for row in study.simulations for sim in row for o in sim.organs))
    if not organs:
        return None
    figure, axes = _grid(len(indices) * len(organs), len(organs), panel_size)
    for r, j in enumerate(indices):
        for c, organ in enumerate(organs):
            ax = axes[r, c]
            limit = None
            for i, design in enumerate(study.designs):
                sim = study.simulations[i][j]
                if organ not in sim.organs:
                    continue
                k = sim.organs.index(organ)
                counts = sim.dosimetry.get(f"hist_{k}")
                if counts is None or counts.sum() == 0:
                    continue
                limit = sim.organ_limits[k]
                grouped = counts.reshape(bins, -1).sum(axis=1)  # 4000 bins → ``bins``
                edges = np.linspace(0.0, HIST_SPAN * limit, bins + 1)
                pct = 100 * grouped / counts.sum()
                past = study.oc[i][j].values["organ_exceed_pct"].get(organ)
                label = design.name + ("" if past is None else f" ({past:.1f}% past limit)")
                ax.stairs(pct, edges, label=label, color=f"C{i}", linewidth=1.4)
            if limit is not None:
                ax.axvline(limit, color="black", linestyle="--", linewidth=1, label="organ limit")
                ax.set_xlim(0, HIST_SPAN * limit)
            ax.set_title(f"{organ}, scenario {study.scenarios[j].name}", fontsize="medium")
            ax.set_xlabel("cumulative absorbed dose or BED (Gy)")
            ax.set_ylabel("% of treated patients" if c == 0 else "")
            ax.legend(fontsize="x-small", frameon=False, loc="upper right")
    _title(figure, study, "Organ doses of treated patients")
    return figure


def plot_durations(
    study: StudyResult,
    scenarios: str | int | Sequence[str | int] | None = None,
    *,
    ncols: int | None = None,
    panel_size: tuple[float, float] = (5.0, 3.4),
    bins: int = 40,
) -> Figure | None:
    """Histograms of the trial duration (months) of each design with [timing], one panel per
    scenario, as the % of trials per bin, with each design's mean in the legend; None when
    no design has [timing]."""
    import numpy as np

    indices = _scenario_indices(study, scenarios)
    timed = [i for i in range(len(study.designs)) if study.simulations[i][0].timed]
    if not timed:
        return None
    figure, axes = _grid(len(indices), ncols, panel_size)
    for k, j in enumerate(indices):
        ax = axes.flat[k]
        samples = {i: np.concatenate(study.simulations[i][j].durations) for i in timed}
        top = max(float(v.max()) for v in samples.values())
        edges = np.linspace(0.0, max(top, 1e-9) * 1.02, bins + 1)
        for i, values in samples.items():
            counts, _ = np.histogram(values, bins=edges)
            mean = study.oc[i][j].values["duration_months_mean"]
            ax.stairs(
                100 * counts / values.size,
                edges,
                color=f"C{i}",
                linewidth=1.4,
                label=f"{study.designs[i].name} (mean {mean:.1f})",
            )
        ax.set_title(f"Scenario {study.scenarios[j].name}")
        ax.set_xlabel("trial duration (months)")
        ax.set_ylabel("% of trials" if k % axes.shape[1] == 0 else "")
        ax.legend(fontsize="x-small", frameon=False, loc="upper left")
    _title(figure, study, "Trial duration")
    return figure


PLOT_KINDS = ("selection", "allocation", "organ-doses", "duration")


def study_figures(study: StudyResult) -> dict[str, Figure]:
    """Every figure that applies to the study, by kind (:data:`PLOT_KINDS`): selection and
    allocation always, organ doses when a design has organ limits, duration when one has
    [timing]."""
    figures = {"selection": plot_selection(study), "allocation": plot_allocation(study)}
    organ = plot_organ_doses(study)
    if organ is not None:
        figures["organ-doses"] = organ
    duration = plot_durations(study)
    if duration is not None:
        figures["duration"] = duration
    return figures


def plot_paths(path: str | os.PathLike[str], kinds: Sequence[str] = PLOT_KINDS) -> dict[str, Path]:
    """Where ``simulate --plot PATH`` writes each kind: the selection chart at PATH itself, the
    others beside it with the kind before the suffix (out.png → out-allocation.png,
    out-organ-doses.png, out-duration.png)."""
    from pathlib import Path

    path = Path(path)
    return {
        kind: path if kind == "selection" else path.with_name(f"{path.stem}-{kind}{path.suffix}")
        for kind in kinds
    }


def save_study_figures(study: StudyResult, path: str | os.PathLike[str]) -> list[Path]:
    """Write every figure of :func:`study_figures` (names: :func:`plot_paths`); returns the
    paths written, the selection chart first."""
    figures = study_figures(study)
    paths = plot_paths(path, tuple(figures))
    for kind, figure in figures.items():
        save_figure(figure, paths[kind])
    return list(paths.values())


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 150) -> None:
    """Save ``figure`` atomically; the format follows the file's suffix (PNG by default)."""
    from pathlib import Path

    from theradose.report import atomic_path

    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, dpi=dpi)
