"""The work behind each command, callable alike from the CLI, notebooks and tests.

:func:`run_study` loads designs and scenarios, simulates every design under every scenario on the
same virtual patients, summarises the operating characteristics against each scenario's truth and,
on request, adds the exact values of designs whose rules allow enumeration.
:func:`run_recommendation` applies a design to one real trial's outcomes (and
:func:`run_patient_recommendation` to its patients with their follow-up); :func:`check_file`
validates a design or scenario file. Nothing here formats output: that is :mod:`theradose.report`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from theradose import __version__
from theradose.design import Design
from theradose.scenario import Scenario

if TYPE_CHECKING:  # imported where used, so that `validate` does not load the engine
    from theradose.patients import PatientRecords
    from theradose.recommendation import Recommendation
    from theradose.results import OperatingCharacteristics, Simulations

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
    warnings : the designs' sense checks (:func:`theradose.sense.design_warnings`), one line
        each, naming the design's file
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
    warnings: tuple[str, ...] = ()

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
    engine: str = "grid",
    mcmc_options: dict[str, Any] | None = None,
    trials_csv: PathLike | None = None,
    run_dir: PathLike | None = None,
    cluster: Any = None,
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
    engine : str
        "grid" (the designs' own posteriors) or "mcmc": every posterior of the BLRM and EWOC
        designs by NUTS (:mod:`theradose.mcmc`; seconds per distinct data set: for small
        validation runs). Exact values always use the grid.
    mcmc_options : dict, optional
        Arguments of :class:`theradose.mcmc.McmcSampler` (draws, tune, chains, seed).
    trials_csv : path, optional
        Also write one CSV row per simulated trial there (:mod:`theradose.trial_records`),
        streamed chunk by chunk and renamed into place when the run has finished; an existing
        file is left untouched if the run fails or is interrupted.
    run_dir : path, optional
        Keep every finished chunk in this folder (:mod:`theradose.run_dir`), and read the chunks
        an interrupted run with the same inputs left there instead of simulating them again:
        the results are identical to an uninterrupted run's.
    cluster : theradose.cluster.DaskCluster, optional
        Run the chunks as tasks of a Dask cluster instead of ``workers`` local processes; the
        results are identical.

    Returns
    -------
    StudyResult

    Raises
    ------
    theradose.config.ConfigError
        For invalid files or scenarios that do not fit a design.
    OSError
        Before the run, naming ``trials_csv``, when no file can be written there.
    theradose.run_dir.RunDirError
        Before the run, when ``run_dir`` was made by another run, is in use, or cannot be used.
    """
    from theradose.limits import SEED_BOUND
    from theradose.results import OperatingCharacteristics
    from theradose.sense import study_warnings
    from theradose.simulation import simulate

    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if not 0 <= seed < SEED_BOUND:
        raise ValueError(f"seed must be an integer 0 <= seed < 2^128, got {seed}")
    if trials_csv is not None:
        from theradose.report import check_output_path

        check_output_path(trials_csv)  # before loading anything: a typo fails at once
    loaded, scenario_list, scenario_path = load_inputs(designs, scenarios)
    simulated = loaded
    if engine != "grid":
        simulated = [_mcmc_design(d, engine, mcmc_options)[1] for d in loaded]
    records = contextlib.nullcontext()
    if trials_csv is not None:
        from theradose.trial_records import trial_records_file

        records = trial_records_file(
            trials_csv,
            simulated,
            scenario_list,
            seed=seed,
            n_trials=n_trials,
            scenario_path=scenario_path,
            engine=engine,
        )
    kept = contextlib.nullcontext()
    if run_dir is not None:
        from theradose.run_dir import open_run_dir, run_manifest
        from theradose.simulation import CHUNK_TRIALS

        manifest = run_manifest(
            loaded,
            scenario_list,
            seed=seed,
            n_trials=n_trials,
            chunk_trials=CHUNK_TRIALS,
            scenario_path=scenario_path,
            engine=engine,
            mcmc_options=mcmc_options,
        )
        kept = open_run_dir(run_dir, manifest)
    with kept as store, records as on_chunk:
        simulations = simulate(
            simulated,
            scenario_list,
            n_trials,
            seed,
            workers=workers,
            progress=progress,
            on_chunk=on_chunk,
            run_dir=store,
            cluster=cluster,
        )
    oc = tuple(
        tuple(OperatingCharacteristics.from_simulations(sim) for sim in row) for row in simulations
    )
    exact_values, notes = _exact_values(loaded, scenario_list) if exact else (None, [])
    if exact_values is None:
        exact_values = [[None] * len(scenario_list) for _ in loaded]
    if engine != "grid":
        notes = [*notes, "posteriors of every design by MCMC (NUTS, pymc); exact values by grid"]
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
        warnings=tuple(study_warnings(loaded, scenario_list)),
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
    recommendation : :class:`theradose.recommendation.Recommendation` (0-based levels)
    version : the theradose version
    patients : the patients of a patient file (:mod:`theradose.patients`), when the trial was
        given patient by patient; ``cohorts`` are then their runs of the same level
    mcmc : with ``engine = "mcmc"``, the :class:`theradose.mcmc.McmcRun` behind the decision
        (draws as arviz InferenceData, R-hat, ESS, divergences)
    """

    design: Design
    cohorts: tuple[tuple[int, tuple[bool, ...]], ...]
    recommendation: Recommendation
    version: str = __version__
    patients: PatientRecords | None = None
    mcmc: Any = None


def run_recommendation(
    design: PathLike | Design,
    outcomes: str,
    engine: str = "grid",
    mcmc_options: dict[str, Any] | None = None,
) -> RecommendationResult:
    """Apply a design to a real trial's outcomes, e.g. ``"1NNN 2NTN"``, and say what comes next.

    Parameters
    ----------
    design : path or Design
        A design file or a design already built.
    outcomes : str
        The cohorts so far in the notation of :mod:`theradose.outcomes` (1-based levels).
    engine : str
        "grid": the design's own posteriors (lattices, quadrature); "mcmc" (BLRM and EWOC):
        the decision after the last cohort and the estimates from NUTS draws
        (:mod:`theradose.mcmc`), the earlier cohorts replayed on the grid.
    mcmc_options : dict, optional
        Arguments of :class:`theradose.mcmc.McmcSampler` (draws, tune, chains, seed).

    Raises
    ------
    theradose.config.ConfigError
        For an invalid design file, or ``engine = "mcmc"`` with a method that has no MCMC model.
    theradose.outcomes.OutcomeError
        For an outcome string that cannot be read or names a level the design does not have.
    """
    from theradose.outcomes import parse_outcomes
    from theradose.recommendation import backfill_needs_patients, recommend

    if not isinstance(design, Design):
        from theradose.config import load_design

        design = load_design(design)
    cohorts = parse_outcomes(outcomes, design.n_levels, design.method.uses_efficacy)
    note = _cohort_size_note(design, cohorts)
    # Backfilling needs follow-up and backfill flags, which an outcome string has not: the
    # answer says so rather than guess (every outcome known, every patient an escalation one).
    backfill = backfill_needs_patients(design)
    if engine == "grid":
        recommendation = _with_notes(recommend(design, cohorts), note)
        recommendation = _with_backfill(_with_stage_note(design, recommendation, cohorts), backfill)
        return RecommendationResult(design, tuple(cohorts), recommendation)
    sampler, final = _mcmc_design(design, engine, mcmc_options)
    recommendation = _with_notes(recommend(design, cohorts, final_design=final), note)
    recommendation = _with_backfill(_with_stage_note(design, recommendation, cohorts), backfill)
    return RecommendationResult(design, tuple(cohorts), recommendation, mcmc=sampler.last_run)


def _with_stage_note(design: Design, recommendation: Recommendation, cohorts) -> Recommendation:
    """The recommendation with, last among its notes, what it means for the design's randomised
    optimisation stage (:func:`theradose.optimisation_report.recommendation_note`)."""
    if design.optimisation is None:
        return recommendation
    from theradose.optimisation_report import recommendation_note

    note = recommendation_note(design, recommendation, cohorts)
    return replace(recommendation, notes=(*recommendation.notes, note))


def _with_backfill(recommendation: Recommendation, backfill) -> Recommendation:
    return recommendation if backfill is None else replace(recommendation, backfill=backfill)


def _cohort_size_note(design: Design, cohorts) -> str | None:
    """A note naming the cohorts whose size is not the design's ``cohort_size`` (the first few)."""
    other = [(i, len(cohort[1])) for i, cohort in enumerate(cohorts, start=1)]
    other = [(i, size) for i, size in other if size != design.cohort_size]
    if not other:
        return None
    shown = ", ".join(f"cohort {i}: {size} patients" for i, size in other[:3])
    more = f" and {len(other) - 3:,} more" if len(other) > 3 else ""
    return (
        f"{len(other):,} cohort{'s' if len(other) > 1 else ''} of a size other than the "
        f"design's cohort_size = {design.cohort_size} ({shown}{more})"
    )


def _with_notes(recommendation: Recommendation, *notes: str | None) -> Recommendation:
    given = tuple(note for note in notes if note)
    if not given:
        return recommendation
    return replace(recommendation, notes=(*given, *recommendation.notes))


MCMC_METHODS = ("blrm", "ewoc")


def _mcmc_design(design: Design, engine: str, options: dict[str, Any] | None):
    """A sampler and ``design`` with its posteriors from that sampler."""
    from theradose.config import ConfigError

    if engine != "mcmc":
        raise ValueError(f"engine must be 'grid' or 'mcmc', got {engine!r}")
    if design.method_key not in MCMC_METHODS:
        where = f"{design.path}: " if design.path else ""
        raise ConfigError(
            [
                f"{where}--engine mcmc is for method = "
                + " or ".join(f'"{k}"' for k in MCMC_METHODS)
                + f', not method = "{design.method_key}"'
            ]
        )
    from theradose.mcmc import McmcSampler, with_sampler

    sampler = McmcSampler(**(options or {}))
    return sampler, with_sampler(design, sampler)


def run_patient_recommendation(
    design: PathLike | Design,
    patients: PathLike | PatientRecords,
    dlt_window_days: float | None = None,
) -> RecommendationResult:
    """Apply a design to a real trial given patient by patient, with each one's follow-up.

    Parameters
    ----------
    design : path or Design
        A design file or a design already built.
    patients : path or PatientRecords
        A patient file (:mod:`theradose.patients`: ``level``, ``dlt``, ``followup_days``,
        optional ``dlt_day``; one row per patient in enrolment order) or its records.
    dlt_window_days : float, optional
        The DLT window, days; default the design's ``[timing] dlt_window_months``. When both
        are given and differ, this one is used (a time-to-event design is rebuilt with it) and
        a note says so.

    A time-to-event design decides from the follow-up as of today, exactly as in simulation;
    another design decides on complete data, so while a patient without a DLT is within the
    window the answer is to wait (:func:`theradose.recommendation.recommend_from_patients`).

    Raises
    ------
    theradose.config.ConfigError
        For an invalid design file, or when the DLT window is given neither by the design nor
        by ``dlt_window_days``.
    theradose.patients.PatientFileError
        For a patient file that cannot be read, with every problem, one line each.
    """
    from theradose.patients import PatientRecords
    from theradose.recommendation import patient_cohorts, recommend_from_patients
    from theradose.timing import DAYS_PER_MONTH

    if not isinstance(design, Design):
        from theradose.config import load_design

        design = load_design(design)
    from theradose.config import ConfigError
    from theradose.patients import PatientFileError

    problems = []  # every problem at once: no window, and the patient file's
    window = None
    try:
        design, window, note = _with_dlt_window(design, dlt_window_days)
    except ConfigError as error:
        problems = error.messages
    if not isinstance(patients, PatientRecords):
        try:
            patients = read_design_patients(patients, design, window)
        except PatientFileError as error:
            raise PatientFileError([*problems, *error.messages]) from None
    if problems:
        raise ConfigError(problems)
    check_backfill_patients(design, patients)
    check_response_patients(design, patients)
    recommendation = recommend_from_patients(
        design,
        patients.level,
        patients.dlt,
        patients.followup_days / DAYS_PER_MONTH,
        patients.dlt_day / DAYS_PER_MONTH,
        gy_per_gbq=patients.gy_per_gbq,
        window=window,
        backfill=patients.backfill,
        response=patients.response,
        response_time=None
        if patients.response_day is None
        else patients.response_day / DAYS_PER_MONTH,
    )
    if note:
        recommendation = replace(recommendation, notes=(note, *recommendation.notes))
    implausible = _measured_dosimetry_warnings(design, patients)
    if implausible:
        recommendation = replace(
            recommendation, warnings=(*implausible, *recommendation.warnings)
        )
    escalating = slice(None) if patients.backfill is None else ~patients.backfill
    uses_response = design.method.uses_efficacy and patients.response is not None
    cohorts = patient_cohorts(
        design.cohort_size,
        patients.level[escalating],
        patients.dlt[escalating],
        patients.response[escalating] if uses_response else None,
    )
    if patients.response is not None and not design.method.uses_efficacy:
        recommendation = _with_notes(
            recommendation,
            f"column 'response' is not used: method {design.method_key!r} decides on DLTs only",
        )
    recommendation = _with_stage_note(design, recommendation, cohorts)
    return RecommendationResult(design, tuple(cohorts), recommendation, patients=patients)


def read_design_patients(
    source, design: Design, dlt_window: float | None = None, name: str | None = None
) -> PatientRecords:
    """A patient file read for ``design`` (:func:`theradose.patients.read_patients`): its
    organs' Gy/GBq columns; each ``dlt_day`` within the DLT window when one is known
    (``dlt_window``, months: the window in effect, else the design's); and the ``response``
    column required, each ``response_day`` within the efficacy window, for a design that decides
    on responses (the DLT window for a design without an efficacy window of its own).

    Raises
    ------
    theradose.patients.PatientFileError
        With every problem of the file, one line each.
    """
    from theradose.patients import read_patients
    from theradose.recommendation import efficacy_window
    from theradose.timing import DAYS_PER_MONTH

    organs = () if design.dosimetry is None else design.dosimetry.names
    needs, window_days = None, None
    if design.method.uses_efficacy:
        needs = f"method {design.method_key!r} decides on responses"
        window = efficacy_window(design, dlt_window)
        window_days = None if window is None else window * DAYS_PER_MONTH
    if dlt_window is None and design.timing is not None:
        dlt_window = design.timing.dlt_window_months
    return read_patients(
        source,
        design.n_levels,
        name=name,
        organs=organs,
        needs_response=needs,
        efficacy_window_days=window_days,
        dlt_window_days=None if dlt_window is None else dlt_window * DAYS_PER_MONTH,
    )


def check_response_patients(design: Design, patients: PatientRecords) -> None:
    """What a design deciding on responses needs of records read elsewhere (built in code), and
    what it cannot take yet, as a PatientFileError in one line: a ``response`` for every
    patient; no backfill design deciding on complete data (BOIN12 with ``[backfill]``)."""
    from theradose.patients import PatientFileError

    if not design.method.uses_efficacy or not patients.n_patients:
        return
    where = patients.path or "patients"
    if patients.response is None:
        raise PatientFileError(
            [
                f"{where}: row 1: missing column 'response' (1 if the patient has responded so "
                f"far, else 0): method {design.method_key!r} decides on responses"
            ]
        )
    if design.backfill is not None and not design.method.tite:
        raise PatientFileError(
            [
                f"{where}: a patient file for a design with [backfill] deciding on responses "
                f"(method {design.method_key!r}) is not supported yet; give --outcomes "
                "(complete follow-up)"
            ]
        )


def check_backfill_patients(design: Design, patients: PatientRecords) -> None:
    """A patient file's backfill patients need a design with ``[backfill]`` (a PatientFileError
    in one line). A ``backfill`` column of zeros only is accepted with any design."""
    import numpy as np

    from theradose.patients import PatientFileError

    if patients.backfill is None or not patients.backfill.any():
        return
    marked = [str(int(i) + 1) for i in np.flatnonzero(patients.backfill)]
    more = f" and {len(marked) - 3:,} more" if len(marked) > 3 else ""
    shown = f"patient{'s' if len(marked) > 1 else ''} {', '.join(marked[:3])}{more}"
    if design.backfill is None:
        raise PatientFileError(
            [
                f"{patients.path or 'patients'}: column 'backfill' marks {shown} as backfill "
                f"patients, but design {design.name!r} has no [backfill] (enabled = true, "
                "max_per_level)"
            ]
        )


def _measured_dosimetry_warnings(design: Design, patients: PatientRecords) -> list[str]:
    """Measured Gy/GBq outside the range of published radiopharmaceuticals, one line per organ
    (:data:`theradose.limits.PLAUSIBLE_GY_PER_GBQ`): most likely a unit slip."""
    import numpy as np

    from theradose.limits import PLAUSIBLE_GY_PER_GBQ

    if patients.gy_per_gbq is None or design.dosimetry is None:
        return []
    low, high = PLAUSIBLE_GY_PER_GBQ
    out = []
    for j, organ in enumerate(design.dosimetry.names):
        values = patients.gy_per_gbq[:, j]
        odd = np.flatnonzero(np.isfinite(values) & ((values < low) | (values > high)))
        if odd.size:
            first = int(odd[0])
            others = f" and {odd.size - 1:,} more patients" if odd.size > 1 else ""
            out.append(
                f"{patients.path or 'patients'}: {organ}_gy_per_gbq = {values[first]:g} "
                f"(patient {first + 1}{others}) is outside {low:g}..{high:g} Gy/GBq, the range "
                "of published radiopharmaceuticals (a unit slip?)"
            )
    return out


def _with_dlt_window(design: Design, days: float | None) -> tuple[Design, float, str | None]:
    """The design to apply, its DLT window in months, and a note when ``days`` overrides the
    design's own window; a ConfigError when there is no window at all."""
    from theradose.config import ConfigError
    from theradose.timing import DAYS_PER_MONTH

    own = None if design.timing is None else design.timing.dlt_window_months
    if days is None:
        if own is None:
            where = design.path or design.name
            raise ConfigError(
                [
                    f"{where}: --patients needs the DLT window: add [timing] dlt_window_months "
                    "to the design or pass --dlt-window-days"
                ]
            )
        return design, own, None
    window = days / DAYS_PER_MONTH
    if own is None or math.isclose(window, own, rel_tol=1e-12):
        return design, (own if own is not None else window), None
    note = (
        f"the DLT window is {days:g} days (--dlt-window-days), not the design's "
        f"{own * DAYS_PER_MONTH:.4g} days ([timing] dlt_window_months = {own:g})"
    )
    design = replace(design, timing=replace(design.timing, dlt_window_months=window))
    if design.method.tite:
        design = replace(design, method=replace(design.method, window=window))
    timing_keys = design.source.get("timing", {})
    if design.method.late_efficacy and "efficacy_window_months" not in timing_keys:
        # the design's efficacy window is its DLT window by default: it follows the override
        timing = replace(design.timing, efficacy_window_months=window)
        method = replace(design.method, efficacy_window=window)
        design = replace(design, timing=timing, method=method)
        note += "; so is the efficacy window, which the design leaves to the DLT window"
    return design, window, note


@dataclass(frozen=True)
class FileCheck:
    """The outcome of validating one file: its kind, a one-line summary, any errors, and the
    sense checks of a valid design (:func:`theradose.sense.design_warnings`), which leave it
    valid."""

    path: str
    kind: str  # "design" or "scenarios"
    summary: str
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def check_file(path: PathLike) -> FileCheck:
    """Validate a design file, a scenario file (one with ``[[scenario]]`` tables) or a sweep's
    grid file (``design`` and ``[grid]``: :mod:`theradose.sweep`).

    Every error of the file is collected (see :class:`theradose.config.ConfigError`); a file
    that does not exist or is not TOML gives one error.

    Returns
    -------
    FileCheck
        ``kind`` "design", "scenarios" or "grid", a one-line ``summary`` when valid, else
        ``errors``;
        a valid design's ``warnings``.
    """
    from theradose import config
    from theradose.validation import read_toml

    path = str(path)
    try:
        parsed = read_toml(path)  # missing, too large, not TOML: one line saying why
    except config.ConfigError as error:
        return FileCheck(path, "unknown", "", tuple(error.messages))
    if "grid" in parsed and ("design" in parsed or "designs" in parsed):
        from theradose.sweep import describe_grid

        summary, errors = describe_grid(path)
        return FileCheck(path, "grid", summary, tuple(errors))
    if isinstance(parsed.get("scenario"), list):
        try:
            scenarios = config.load_scenarios(path)
        except config.ConfigError as error:
            return FileCheck(path, "scenarios", "", tuple(error.messages))
        names = ", ".join(s.name for s in scenarios)
        from theradose.sense import scenario_warnings

        return FileCheck(
            path,
            "scenarios",
            f"{len(scenarios)} scenarios ({names})",
            warnings=tuple(scenario_warnings(scenarios, path)),
        )
    try:
        design = config.load_design(path)
    except config.ConfigError as error:
        return FileCheck(path, "design", "", tuple(error.messages))
    summary = f"design {design.name!r}, method {design.method_key}, {design.n_levels} levels"
    from theradose.sense import design_warnings

    return FileCheck(path, "design", summary, warnings=tuple(design_warnings(design)))
