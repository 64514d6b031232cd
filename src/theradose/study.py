"""The work behind each command, callable alike from the CLI, notebooks and tests.

:func:`run_study` loads designs and scenarios, simulates every design under every scenario on the
same virtual patients, summarises the operating characteristics against each scenario's truth and,
on request, adds the exact values of designs whose rules allow enumeration.
:func:`run_recommendation` applies a design to one real trial's outcomes; :func:`check_file`
validates a design or scenario file. Nothing here formats output: that is :mod:`theradose.report`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from theradose import __version__
from theradose.design import Design
from theradose.engine import Recommendation
from theradose.results import OperatingCharacteristics, Simulations
from theradose.scenario import Scenario

PathLike = str | Path


@dataclass(frozen=True)
class StudyResult:
    """Every design simulated under every scenario, with its provenance.

    Attributes
    ----------
    designs, scenarios : the inputs, in the order given
    n_trials, seed : the simulated trials per design × scenario and the seed of their patients
    simulations : ``[design][scenario]`` raw :class:`~theradose.results.Simulations`
    oc : ``[design][scenario]`` :class:`~theradose.results.OperatingCharacteristics`
    exact : ``[design][scenario]`` exact values (``theradose.exact``), ``None`` where not asked
        for or not available
    notes : why exact values are missing for a design, one line each
    version : the theradose version that produced the result
    scenario_path : the scenario file, when the scenarios were read from one
    """

    designs: tuple[Design, ...]
    scenarios: tuple[Scenario, ...]
    n_trials: int
    seed: int
    simulations: tuple[tuple[Simulations, ...], ...]
    oc: tuple[tuple[OperatingCharacteristics, ...], ...]
    exact: tuple[tuple[dict | None, ...], ...]
    notes: tuple[str, ...] = ()
    version: str = __version__
    scenario_path: str | None = None

    @property
    def has_exact(self) -> bool:
        return any(value is not None for row in self.exact for value in row)

    def cells(self):
        """Yield ``(design, scenario, simulations, oc, exact)`` for every pair, design-major."""
        for i, design in enumerate(self.designs):
            for j, scenario in enumerate(self.scenarios):
                yield design, scenario, self.simulations[i][j], self.oc[i][j], self.exact[i][j]


def load_inputs(
    designs: Sequence[PathLike | Design], scenarios: PathLike | Sequence[Scenario]
) -> tuple[list[Design], list[Scenario], str | None]:
    """Designs and scenarios from files or objects; checks that every scenario fits every design.

    Raises
    ------
    theradose.config.ConfigError
        For any invalid file, or a scenario whose number of levels differs from a design's.
    """
    from theradose import config

    loaded = [d if isinstance(d, Design) else config.load_design(d) for d in designs]
    if isinstance(scenarios, str | Path):
        scenario_path = str(scenarios)
        scenario_list = config.load_scenarios(scenarios)
    else:
        scenario_path = None
        scenario_list = list(scenarios)
    for design in loaded:
        config.check_scenarios_fit(design, scenario_list, scenario_path or "<scenarios>")
    return loaded, scenario_list, scenario_path


def run_study(
    designs: Sequence[PathLike | Design],
    scenarios: PathLike | Sequence[Scenario],
    *,
    n_trials: int = 10_000,
    seed: int = 1,
    workers: int = 1,
    exact: bool = False,
    progress: Callable[[int], None] | None = None,
) -> StudyResult:
    """Simulate designs under scenarios and summarise their operating characteristics.

    Parameters
    ----------
    designs : sequence of path or Design
        Design files (TOML) or designs already built.
    scenarios : path or sequence of Scenario
        A scenario file (TOML with ``[[scenario]]`` tables) or scenarios already built.
    n_trials : int
        Simulated trials per design and scenario.
    seed : int
        Seed of the virtual patients; every design sees the same patients (common random
        numbers), and results do not depend on ``workers``.
    workers : int
        Processes to simulate chunks of trials in parallel.
    exact : bool
        Also compute exact operating characteristics (:mod:`theradose.exact`) for designs whose
        rules depend only on counts (3+3, BOIN); for others a line in ``notes`` says why not.
    progress : callable, optional
        Called with the number of trials finished after each chunk (of every design and
        scenario at once), so the total is ``n_trials``.

    Returns
    -------
    StudyResult

    Raises
    ------
    theradose.config.ConfigError
        For invalid files or scenarios that do not fit a design.
    """
    from theradose.engine import simulate

    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    loaded, scenario_list, scenario_path = load_inputs(designs, scenarios)
    simulations = simulate(
        loaded, scenario_list, n_trials, seed, workers=workers, progress=progress
    )
    oc = tuple(
        tuple(OperatingCharacteristics.from_simulations(sim) for sim in row) for row in simulations
    )
    exact_values, notes = _exact_values(loaded, scenario_list) if exact else (None, [])
    if exact_values is None:
        exact_values = [[None] * len(scenario_list) for _ in loaded]
    return StudyResult(
        designs=tuple(loaded),
        scenarios=tuple(scenario_list),
        n_trials=n_trials,
        seed=seed,
        simulations=tuple(tuple(row) for row in simulations),
        oc=oc,
        exact=tuple(tuple(row) for row in exact_values),
        notes=tuple(notes),
        scenario_path=scenario_path,
    )


def _exact_values(designs: Sequence[Design], scenarios: Sequence[Scenario]):
    from theradose.exact import exact_operating_characteristics

    values, notes = [], []
    for design in designs:
        row, reasons = [], []
        for scenario in scenarios:
            try:
                row.append(exact_operating_characteristics(design, scenario))
            except ValueError as error:
                # Not count-based, or too many states: this cell keeps its simulated values only.
                row.append(None)
                if str(error) not in reasons:
                    reasons.append(str(error))
        values.append(row)
        notes += [f"no exact values for {design.name!r}: {reason}" for reason in reasons]
    return values, notes


@dataclass(frozen=True)
class RecommendationResult:
    """A design's decision for one real trial, with the data it was made from.

    Attributes
    ----------
    design : the design applied
    cohorts : the cohorts treated, (0-based level, DLT flags) in order
    recommendation : :class:`theradose.engine.Recommendation` (0-based levels)
    version : the theradose version
    """

    design: Design
    cohorts: tuple[tuple[int, tuple[bool, ...]], ...]
    recommendation: Recommendation
    version: str = __version__


def run_recommendation(design: PathLike | Design, outcomes: str) -> RecommendationResult:
    """Apply a design to a real trial's outcomes, e.g. ``"1NNN 2NTN"``, and say what comes next.

    Parameters
    ----------
    design : path or Design
        A design file or a design already built.
    outcomes : str
        The cohorts so far in the notation of :mod:`theradose.outcomes` (1-based levels).

    Raises
    ------
    theradose.config.ConfigError
        For an invalid design file.
    theradose.outcomes.OutcomeError
        For an outcome string that cannot be read or names a level the design does not have.
    """
    from theradose.engine import recommend
    from theradose.outcomes import parse_outcomes

    if not isinstance(design, Design):
        from theradose.config import load_design

        design = load_design(design)
    cohorts = parse_outcomes(outcomes, design.n_levels)
    return RecommendationResult(design, tuple(cohorts), recommend(design, cohorts))


@dataclass(frozen=True)
class FileCheck:
    """The outcome of validating one file: its kind, a one-line summary, and any errors."""

    path: str
    kind: str  # "design" or "scenarios"
    summary: str
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def check_file(path: PathLike) -> FileCheck:
    """Validate a design file or a scenario file (one with ``[[scenario]]`` tables).

    Every error of the file is collected (see :class:`theradose.config.ConfigError`); a file
    that does not exist or is not TOML gives one error.

    Returns
    -------
    FileCheck
        ``kind`` "design" or "scenarios", a one-line ``summary`` when valid, else ``errors``.
    """
    from theradose import config

    path = str(path)
    try:
        with open(path, "rb") as handle:
            parsed = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        parsed = None  # unreadable: loading it as a design reports why, as config words it
    if parsed is None:
        try:
            config.load_design(path)
        except config.ConfigError as error:
            return FileCheck(path, "unknown", "", tuple(error.messages))
        parsed = {}
    if isinstance(parsed.get("scenario"), list):
        try:
            scenarios = config.load_scenarios(path)
        except config.ConfigError as error:
            return FileCheck(path, "scenarios", "", tuple(error.messages))
        names = ", ".join(s.name for s in scenarios)
        return FileCheck(path, "scenarios", f"{len(scenarios)} scenarios ({names})")
    try:
        design = config.load_design(path)
    except config.ConfigError as error:
        return FileCheck(path, "design", "", tuple(error.messages))
    summary = f"design {design.name!r}, method {design.method_key}, {design.n_levels} levels"
    return FileCheck(path, "design", summary)
