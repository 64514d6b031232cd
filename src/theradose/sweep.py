"""Parameter sweeps: a design (or several) with settings varied over a grid, every grid point
simulated under every scenario on the same virtual patients (``theradose sweep GRID.toml``).

A grid file names the designs, the settings to vary and their values::

    design = "boin.toml"              # or designs = ["boin.toml", "crm.toml"]; paths are
    scenarios = "scenarios.toml"      # relative to the grid file (scenarios: or --scenarios)
    trials = 2000                     # per grid point × scenario (or --trials)
    seed = 1                          # (or --seed)

    [grid]
    "boin.p_tox" = [0.36, 0.39, 0.42, 0.45, 0.48]
    max_patients = [24, 30, 36, 42, 48]

Each key of ``[grid]`` is a dotted path into the design file (``max_patients``, ``boin.p_tox``,
``crm.skeleton.halfwidth``, ``blrm.prior_sd``); the grid is every combination of the values,
the first key varying slowest. Each grid point is the design file with those values set, built
through :func:`theradose.config.design_from_dict`, so a bad value gets the design file's own
one-line error, prefixed by the grid point. All grid points run in one
:func:`theradose.simulation.simulate` call: they share the virtual patients (common random
numbers), so differences between grid points are the settings' and not Monte Carlo noise
between patient sets; a grid point equal to the design file gives exactly the results of
``simulate`` on that file with the same seed.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from theradose import __version__
from theradose.design import Design
from theradose.results import OperatingCharacteristics, Simulations, true_mtd_label
from theradose.scenario import Scenario
from theradose.validation import ConfigError, FileReport, TomlTable, show_value, toml_kind

GRID_KEYS = ("design", "designs", "scenarios", "trials", "seed", "grid")
DEFAULT_TRIALS = 2_000
DEFAULT_SEED = 1
# The figures of each grid point × scenario: (OperatingCharacteristics key, column, heading).
FIGURES = (
    ("pcs", "pcs", "PCS (%)"),
    ("overdose_patients_pct", "overdose_pct", "patients above the MTD (%)"),
    ("n_mean", "n_mean", "mean sample size"),
    ("no_selection_pct", "no_mtd_pct", "no MTD (%)"),
)


@dataclass(frozen=True)
class SweepGrid:
    """A parsed grid file.

    Attributes
    ----------
    path : the grid file
    designs : the design files, resolved against the grid file's folder
    parameters : the dotted keys of ``[grid]``, in file order
    values : the values of each parameter, ``[parameter][value]``
    scenarios : the scenario file, when the grid file names one
    trials, seed : when the grid file gives them
    """

    path: str
    designs: tuple[str, ...]
    parameters: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    scenarios: str | None = None
    trials: int | None = None
    seed: int | None = None

    @property
    def n_points(self) -> int:
        """Grid points per design."""
        count = 1
        for values in self.values:
            count *= len(values)
        return count


@dataclass(frozen=True)
class GridPoint:
    """One design of the sweep: a design file with the grid's values set.

    Attributes
    ----------
    design : the design built from the file with ``settings`` set
    base : the design file's own design (the design's ``name`` when the grid varies none)
    settings : (dotted key, value) for each grid parameter, in grid order
    """

    design: Design
    base: Design
    settings: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        """``boin.p_tox = 0.4, max_patients = 30``: the grid point, as in messages."""
        return ", ".join(f"{key} = {show_value(value)}" for key, value in self.settings)


@dataclass(frozen=True)
class SweepResult:
    """Every grid point simulated under every scenario on the same patients.

    Attributes
    ----------
    grid : the parsed grid file
    points : the grid points, design by design, in grid order (first parameter slowest)
    scenarios : the scenarios, in file order
    simulations, oc : ``[point][scenario]`` raw simulations and operating characteristics
    n_trials, seed : the trials per grid point × scenario and the seed of their patients
    scenario_path : the scenario file
    version : the theradose version
    """

    grid: SweepGrid
    points: tuple[GridPoint, ...]
    scenarios: tuple[Scenario, ...]
    simulations: tuple[tuple[Simulations, ...], ...]
    oc: tuple[tuple[OperatingCharacteristics, ...], ...]
    n_trials: int
    seed: int
    scenario_path: str | None = None
    version: str = __version__

    @property
    def parameters(self) -> tuple[str, ...]:
        return self.grid.parameters

    def rows(self) -> list[dict[str, Any]]:
        """One row per grid point × scenario (point-major): ``design``, each parameter's value,
        ``scenario``, ``true_mtd`` (1-based, None for none), then each figure of
        :data:`FIGURES` and its Monte Carlo standard error (``<column>_se``)."""
        out = []
        for point, sims, ocs in zip(self.points, self.simulations, self.oc, strict=True):
            for scenario, sim, oc in zip(self.scenarios, sims, ocs, strict=True):
                row: dict[str, Any] = {"design": point.base.name}
                row.update(point.settings)
                row.update(scenario=scenario.name, true_mtd=true_mtd_label(sim.true_mtd))
                for key, column, _ in FIGURES:
                    row[column] = oc.values[key]
                    row[f"{column}_se"] = oc.se[key]
                out.append(row)
        return out

    def columns(self) -> tuple[str, ...]:
        figures = [name for _, column, _ in FIGURES for name in (column, f"{column}_se")]
        return ("design", *self.parameters, "scenario", "true_mtd", *figures)


def _resolve(grid_path: str, path: str) -> str:
    """A path of the grid file, relative to the grid file's folder unless absolute."""
    if os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(os.path.dirname(grid_path), path))


def read_grid(path: str | os.PathLike[str]) -> SweepGrid:
    """Read a grid file (see the module's docstring).

    Raises
    ------
    ConfigError
        With every problem of the file, one line each naming the file and the key: unknown
        keys, no design or both ``design`` and ``designs``, an empty ``[grid]``, a parameter
        whose values are not a non-empty array or repeat a value, ``trials`` or ``seed`` out of
        range.
    """
    from theradose.limits import MAX_GRID_POINTS, MAX_TRIALS, SEED_BOUND
    from theradose.validation import read_toml

    path = os.fspath(path)
    data = read_toml(path)
    report = FileReport(path)
    top = TomlTable(report, data)
    top.check_keys(GRID_KEYS)
    designs: list[str] = []
    if "design" in data and "designs" in data:
        top.error("give 'design' (one file) or 'designs' (an array of files), not both")
    elif "designs" in data:
        given = data["designs"]
        if not isinstance(given, list) or not given or not all(isinstance(d, str) for d in given):
            top.type_error("designs", given, "a non-empty array of design files")
        else:
            designs = [_resolve(path, d) for d in given]
    else:
        design = top.string("design", required='the design file to vary, e.g. "boin.toml"')
        if design is not None:
            designs = [_resolve(path, design)]
    scenarios = top.string("scenarios")
    trials = top.integer("trials", 1, maximum=MAX_TRIALS)
    seed = top.integer("seed", 0, maximum=SEED_BOUND - 1)
    parameters, values = [], []
    grid = top.section("grid")
    if "grid" not in data:
        top.error('missing section [grid] (the settings to vary, e.g. "boin.p_tox" = [0.36, 0.42])')
    elif not grid.data and isinstance(data["grid"], Mapping):
        top.error('[grid] is empty: give at least one setting to vary, e.g. "boin.p_tox" = [...]')
    for key, given in grid.data.items():
        parts = key.split(".")
        if not all(part.strip() for part in parts):
            grid.error(f"{show_value(key)}: not a dotted key into the design file")
            continue
        if isinstance(given, Mapping):
            grid.error(
                f'{key}: a table; quote a dotted key ("{key}.{next(iter(given), "x")}" = [...])'
                if given
                else f"{key}: must be an array of values, got an empty table"
            )
            continue
        if not isinstance(given, list) or not given:
            shown = "[]" if isinstance(given, list) else toml_kind(given)
            grid.error(f"{key}: must be a non-empty array of values to try, got {shown}")
            continue
        repeated = [v for i, v in enumerate(given) if v in given[:i]]
        if repeated:
            grid.error(
                f"{key}: repeats the value {show_value(repeated[0])}, got {show_value(given)}"
            )
            continue
        parameters.append(key)
        values.append(tuple(given))
    count = len(designs)
    for v in values:
        count *= len(v)
    if count > MAX_GRID_POINTS:
        grid.error(
            f"{count:,} grid points (designs × values of every parameter); at most "
            f"{MAX_GRID_POINTS:,} in one sweep"
        )
    report.raise_if_any()
    return SweepGrid(
        path=path,
        designs=tuple(designs),
        parameters=tuple(parameters),
        values=tuple(values),
        scenarios=None if scenarios is None else _resolve(path, scenarios),
        trials=trials,
        seed=seed,
    )


def _set_dotted(source: dict, key: str, value: Any) -> str | None:
    """Set ``source[a][b][c] = value`` for ``key`` "a.b.c", making missing tables; the problem
    (one line) when a part is not a table."""
    node = source
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1], start=1):
        inner = node.setdefault(part, {})
        if not isinstance(inner, dict):
            where = ".".join(parts[:depth])
            return f"{where} is {toml_kind(inner)} in the design file, not a table"
        node = inner
    node[parts[-1]] = value
    return None


def grid_points(grid: SweepGrid) -> list[GridPoint]:
    """Every design of the sweep: each design file × every combination of the grid's values.

    Raises
    ------
    ConfigError
        With every problem: a design file that cannot be read, and each distinct problem of the
        grid points' designs (the design file's own one-line errors), naming the first grid point
        that has it and how many others do.
    """
    from theradose.config import design_from_dict, load_design

    problems: list[str] = []
    bases = []
    for path in grid.designs:
        try:
            bases.append(load_design(path))
        except ConfigError as error:
            problems += error.messages
    if problems:
        raise ConfigError(problems)
    points, seen = [], {}
    several = len(bases) > 1
    for base in bases:
        for combination in itertools.product(*grid.values):
            settings = tuple(zip(grid.parameters, combination, strict=True))
            source = copy.deepcopy(dict(base.source))
            messages = []
            for key, value in settings:
                problem = _set_dotted(source, key, value)
                if problem:
                    messages.append(f"[grid] {key}: {problem}")
            label = ", ".join(f"{k} = {show_value(v)}" for k, v in settings)
            where = f"{base.path}, {label}" if several else label
            if not messages:
                source["name"] = f"{base.name} [{label}]"
                try:
                    design = design_from_dict(source, base.path)
                except ConfigError as error:
                    messages = error.messages
                else:
                    points.append(GridPoint(design, base, settings))
            for message in messages:
                seen.setdefault(message, []).append(where)
    for message, where in seen.items():
        others = f" (and {len(where) - 1:,} more)" if len(where) > 1 else ""
        problems.append(f"{grid.path}: grid point {where[0]}{others}: {message}")
    if problems:
        raise ConfigError(problems)
    return points


@dataclass(frozen=True)
class SweepPlan:
    """A sweep ready to run: the grid file, its grid points and the scenarios, all checked."""

    grid: SweepGrid
    points: tuple[GridPoint, ...]
    scenarios: tuple[Scenario, ...]
    scenario_path: str | None


def plan_sweep(
    grid: str | os.PathLike[str] | SweepGrid,
    scenarios: str | os.PathLike[str] | Sequence[Scenario] | None = None,
) -> SweepPlan:
    """Read the grid file, build every grid point and check the scenarios against each.

    Raises
    ------
    ConfigError
        For a bad grid file, design or scenario file, a grid point whose design is invalid, no
        scenarios, or scenarios that do not fit a grid point's design; every problem at once.
    """
    from theradose.config import check_scenarios_fit, load_scenarios

    if not isinstance(grid, SweepGrid):
        grid = read_grid(grid)
    problems = []
    try:
        points = grid_points(grid)
    except ConfigError as error:
        problems, points = error.messages, []
    if scenarios is None and grid.scenarios is None:
        problems.append(
            f'{grid.path}: no scenarios: give scenarios = "file.toml" in the grid file or '
            "--scenarios"
        )
        raise ConfigError(problems)
    scenario_path = None
    if scenarios is None:
        scenarios = grid.scenarios
    if isinstance(scenarios, str | os.PathLike):
        scenario_path = os.fspath(scenarios)
        try:
            scenario_list = load_scenarios(scenario_path)
        except ConfigError as error:
            raise ConfigError(problems + error.messages) from None
    else:
        scenario_list = list(scenarios)
    for point in points:
        try:
            check_scenarios_fit(point.design, scenario_list, scenario_path or "<scenarios>")
        except ConfigError as error:
            problems += [m for m in error.messages if m not in problems]
    if problems:
        raise ConfigError(problems)
    return SweepPlan(grid, tuple(points), tuple(scenario_list), scenario_path)


def run_sweep(
    plan: str | os.PathLike[str] | SweepPlan,
    scenarios: str | os.PathLike[str] | Sequence[Scenario] | None = None,
    *,
    n_trials: int | None = None,
    seed: int | None = None,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    cluster: Any = None,
) -> SweepResult:
    """Simulate every grid point of a grid file under every scenario on the same patients.

    Parameters
    ----------
    plan : a grid file (see the module's docstring) or a :func:`plan_sweep`
    scenarios : with a grid file: a scenario file or scenarios (default: the grid file's
        ``scenarios``)
    n_trials, seed : default the grid file's ``trials`` and ``seed`` (else 2,000 and 1)
    workers : local worker processes
    progress : called with the trials finished (of every grid point and scenario at once)
    run_dir : keep each finished chunk there; an interrupted sweep continues from it with
        identical results (:mod:`theradose.run_dir`)
    cluster : a :class:`theradose.cluster.DaskCluster` to run the chunks on

    Raises
    ------
    ConfigError
        As :func:`plan_sweep`.
    theradose.run_dir.RunDirError
        When ``run_dir`` was made by another run, is in use, or cannot be used.
    """
    from theradose.simulation import CHUNK_TRIALS, simulate

    if not isinstance(plan, SweepPlan):
        plan = plan_sweep(plan, scenarios)
    grid = plan.grid
    n_trials = n_trials if n_trials is not None else grid.trials or DEFAULT_TRIALS
    seed = seed if seed is not None else grid.seed if grid.seed is not None else DEFAULT_SEED
    designs = [p.design for p in plan.points]
    kept: Any = contextlib.nullcontext()
    if run_dir is not None:
        from theradose.run_dir import open_run_dir, run_manifest

        manifest = run_manifest(
            designs,
            plan.scenarios,
            seed=seed,
            n_trials=n_trials,
            chunk_trials=CHUNK_TRIALS,
            scenario_path=plan.scenario_path,
        )
        kept = open_run_dir(run_dir, manifest)
    with kept as store:
        simulations = simulate(
            designs,
            plan.scenarios,
            n_trials,
            seed,
            workers=workers,
            progress=progress,
            run_dir=store,
            cluster=cluster,
        )
    oc = tuple(
        tuple(OperatingCharacteristics.from_simulations(s) for s in row) for row in simulations
    )
    return SweepResult(
        grid=grid,
        points=plan.points,
        scenarios=plan.scenarios,
        simulations=tuple(tuple(row) for row in simulations),
        oc=oc,
        n_trials=n_trials,
        seed=seed,
        scenario_path=plan.scenario_path,
    )


def describe_grid(path: str | os.PathLike[str]) -> tuple[str, list[str]]:
    """Check a grid file as ``theradose validate`` does — every grid point built, and checked
    against the scenarios when the file names them — and give a one-line summary, or the
    problems (one line each)."""
    try:
        grid = read_grid(path)
        points = plan_sweep(grid).points if grid.scenarios else grid_points(grid)
    except ConfigError as error:
        return "", error.messages
    sizes = " × ".join(str(len(v)) for v in grid.values)
    names = ", ".join(dict.fromkeys(p.base.name for p in points))
    return (
        f"sweep grid, {len(points)} grid points ({sizes} values of "
        f"{', '.join(grid.parameters)}) of {names}",
        [],
    )
