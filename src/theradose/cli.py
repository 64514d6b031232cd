"""The ``theradose`` command line: parse arguments, call one library function, print or write.

Bad input of any kind (an invalid design or scenario file, a missing file, an outcome string that
cannot be read, scenarios that do not fit a design) ends with one line per problem on stderr and
exit code 2, never a traceback. Heavy modules (numpy, scipy, matplotlib) are imported inside the
commands so that ``theradose --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from theradose import __version__

EXIT_BAD_INPUT = 2

app = typer.Typer(
    name="theradose",
    help="Design and simulate phase 1 dose-escalation trials for radiopharmaceutical therapy.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


class TableFormat(StrEnum):
    rich = "rich"
    markdown = "markdown"
    csv = "csv"
    json = "json"


class Engine(StrEnum):
    grid = "grid"
    mcmc = "mcmc"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"theradose {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Show the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Design and simulate phase 1 dose-escalation trials for radiopharmaceutical therapy."""


def _warn(messages: list[str]) -> None:
    """Sense checks of a valid design, one line each on stderr; the exit code stays 0."""
    for message in messages:
        typer.echo(f"warning: {message}", err=True)


def _fail(messages: list[str]) -> None:
    for message in messages:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


@contextlib.contextmanager
def _bad_input_exits():
    """Turn the errors a user can cause into one-line messages and exit code 2."""
    from theradose.config import ConfigError
    from theradose.outcomes import OutcomeError
    from theradose.patients import PatientFileError
    from theradose.report import NoDecisionTable

    try:
        yield
    except (ConfigError, PatientFileError) as error:
        _fail(error.messages)
    except (OutcomeError, NoDecisionTable) as error:
        _fail([str(error)])
    except OSError as error:  # an output file that cannot be written, an input that vanished
        where = f"{error.filename}: " if error.filename else ""
        _fail([f"{where}{error.strerror or error}"])


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped or captured output gets a wide page so that tables are not squeezed.
    width = None if stream.isatty() else 200
    return Console(file=stream, width=width)


@contextlib.contextmanager
def _progress(total: int):
    """A progress bar on stderr when it is a terminal; otherwise nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task("simulating", total=total)
        yield lambda n: bar.advance(task, n)


@app.command()
def simulate(
    designs: Annotated[list[Path], typer.Argument(help="Design files (TOML).", show_default=False)],
    scenarios: Annotated[
        Path, typer.Option("--scenarios", "-s", help="Scenario file (TOML, [[scenario]] tables).")
    ],
    trials: Annotated[
        int, typer.Option("--trials", "-n", min=1, help="Simulated trials per design × scenario.")
    ] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the simulated patients.")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    exact: Annotated[
        bool, typer.Option("--exact", help="Add exact values where the design allows (3+3, BOIN).")
    ] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON.")
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Write per-level results as CSV.")
    ] = None,
    plot_path: Annotated[
        Path | None, typer.Option("--plot", help="Write a selection bar chart (PNG, PDF, SVG).")
    ] = None,
    trials_csv: Annotated[
        Path | None,
        typer.Option(
            "--trials-csv",
            help="Write one row per simulated trial as CSV (selected level, stop reason, "
            "patients and DLTs per level, ...), streamed as the run goes.",
        ),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            help="Posteriors of blrm and ewoc designs: grid, or mcmc (pymc NUTS at every "
            "decision: seconds each, for small validation runs)."
        ),
    ] = Engine.grid,
) -> None:
    """Simulate designs under scenarios on the same patients; print operating characteristics."""
    from theradose.study import run_study

    with _bad_input_exits():
        with _progress(trials) as progress:
            study = run_study(
                designs,
                scenarios,
                n_trials=trials,
                seed=seed,
                workers=workers,
                exact=exact,
                progress=progress,
                engine=engine.value,
                trials_csv=trials_csv,
            )
        from theradose import report

        report.print_study(study, _console())
        if json_path is not None:
            report.write_study_json(study, json_path)
        if csv_path is not None:
            report.write_study_csv(study, csv_path)
        if plot_path is not None:
            from theradose.plots import plot_selection, save_figure

            save_figure(plot_selection(study), plot_path)


@app.command()
def table(
    design: Annotated[Path, typer.Argument(help="Design file (TOML).", show_default=False)],
    fmt: Annotated[
        TableFormat, typer.Option("--format", "-f", help="Output format.")
    ] = TableFormat.rich,
) -> None:
    """Print a design's decision table (BOIN boundaries, 3+3 rules) for the protocol."""
    from theradose.config import load_design
    from theradose.report import render_decision_table
    from theradose.sense import design_warnings

    with _bad_input_exits():
        loaded = load_design(design)
        rendered = render_decision_table(loaded, fmt.value)
    if isinstance(rendered, str):
        sys.stdout.write(rendered)
    else:
        _console().print(rendered)
    # On stderr, so the CSV and JSON on stdout stay the bare rows the file contracts promise.
    _warn(design_warnings(loaded))


@app.command()
def recommend(
    design: Annotated[Path, typer.Argument(help="Design file (TOML).", show_default=False)],
    outcomes: Annotated[
        str | None,
        typer.Option(
            "--outcomes",
            "-o",
            help='Cohorts so far, e.g. "1NNN 2NTN": level (1-based), then N (no DLT) or T '
            "(DLT) per patient; follow-up taken as complete.",
        ),
    ] = None,
    patients: Annotated[
        Path | None,
        typer.Option(
            "--patients",
            "-p",
            help="Patients so far, a CSV file with one row per patient in enrolment order: "
            "level, dlt (0/1), followup_days, optional dlt_day.",
        ),
    ] = None,
    dlt_window_days: Annotated[
        float | None,
        typer.Option(
            "--dlt-window-days",
            help="With --patients: the DLT window in days, for a design without [timing] "
            "dlt_window_months (given both, this one is used, with a note).",
        ),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the recommendation as JSON.")
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            help="Posteriors of blrm and ewoc designs: grid (quadrature) or mcmc (pymc NUTS)."
        ),
    ] = Engine.grid,
    posterior: Annotated[
        Path | None,
        typer.Option(
            "--posterior", help="With --engine mcmc: write the draws as arviz InferenceData (.nc)."
        ),
    ] = None,
    draws: Annotated[int, typer.Option(min=100, help="MCMC draws per chain.")] = 2000,
    tune: Annotated[int, typer.Option(min=100, help="MCMC tuning steps per chain.")] = 1000,
    chains: Annotated[int, typer.Option(min=2, help="MCMC chains (run one after another).")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the MCMC chains.")] = 1,
) -> None:
    """Say which level the next cohort of a real trial should receive, or whether to stop."""
    from theradose.study import run_patient_recommendation, run_recommendation

    if outcomes is not None and patients is not None:
        _fail(["give the trial's data with --outcomes or with --patients, not both"])
    if posterior is not None and engine is not Engine.mcmc:
        _fail(["--posterior needs --engine mcmc (the grid engine has no draws to save)"])
    if patients is not None and engine is Engine.mcmc:
        _fail(["--engine mcmc takes the trial's data as --outcomes, not --patients"])
    if dlt_window_days is not None and patients is None:
        _fail(["--dlt-window-days goes with --patients (an outcome string has no follow-up)"])
    if dlt_window_days is not None and not 0 < dlt_window_days < float("inf"):
        _fail([f"--dlt-window-days {dlt_window_days:g}: the DLT window must be days > 0"])
    with _bad_input_exits():
        if patients is not None:
            result = run_patient_recommendation(design, patients, dlt_window_days)
        else:
            options = {"draws": draws, "tune": tune, "chains": chains, "seed": seed}
            result = run_recommendation(design, outcomes or "", engine.value, options)
        from theradose import report

        _console().print(report.recommendation_rich(result))
        if result.mcmc is not None:
            _console().print(report.mcmc_diagnostics_rich(result.mcmc))
        if json_path is not None:
            report.write_recommendation_json(result, json_path)
        if posterior is not None:
            report.write_posterior(result.mcmc, posterior)


@app.command()
def validate(
    files: Annotated[
        list[Path], typer.Argument(help="Design or scenario files (TOML).", show_default=False)
    ],
) -> None:
    """Check design and scenario files; report every problem. Exit code 2 if any is invalid.

    Warnings (stderr, exit code 0) flag valid designs that may not behave as intended."""
    from theradose.study import check_file

    failed = False
    for path in files:
        check = check_file(path)
        if check.ok:
            typer.echo(f"OK {path}: {check.summary}")
            _warn(list(check.warnings))
        else:
            failed = True
            typer.echo(f"INVALID {path}", err=True)
            for message in check.errors:
                typer.echo(f"error: {message}", err=True)
    if failed:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def calibrate(
    design: Annotated[Path, typer.Argument(help="CRM design file (TOML).", show_default=False)],
    scenarios: Annotated[
        Path, typer.Option("--scenarios", "-s", help="Scenario file (TOML, [[scenario]] tables).")
    ],
    halfwidth: Annotated[
        str,
        typer.Option(help="Halfwidths to try: start:stop:step (stop included) or a list a,b,c."),
    ] = "0.02:0.20:0.01",
    prior_mtd: Annotated[
        str | None,
        typer.Option(
            "--prior-mtd",
            help="Prior MTD guesses to try (1-based, comma-separated); default: the design's own.",
        ),
    ] = None,
    trials: Annotated[
        int, typer.Option("--trials", "-n", min=1, help="Trials per candidate × scenario.")
    ] = 2_000,
    seed: Annotated[int, typer.Option(help="Seed of the simulated patients.")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the calibration as JSON.")
    ] = None,
) -> None:
    """Calibrate a CRM skeleton: PCS of every Lee–Cheung candidate on the same patients."""
    from theradose.calibration import CalibrationError, calibrate_skeleton, parse_grid
    from theradose.study import load_inputs

    with _bad_input_exits():
        try:
            grid = parse_grid(halfwidth)
            mtds = None
            if prior_mtd:
                try:
                    mtds = [int(v) for v in prior_mtd.split(",")]
                except ValueError:
                    raise CalibrationError(
                        f"--prior-mtd {prior_mtd!r}: expected levels such as 2,3,4"
                    ) from None
            (loaded,), scenario_list, _ = load_inputs([design], scenarios)
            with _progress(trials) as progress:
                result = calibrate_skeleton(
                    loaded,
                    scenario_list,
                    grid,
                    mtds,
                    n_trials=trials,
                    seed=seed,
                    workers=workers,
                    progress=progress,
                )
        except CalibrationError as error:
            _fail([str(error)])
        from theradose import report

        _console().print(report.calibration_rich(result))
        if json_path is not None:
            report.write_calibration_json(result, json_path)
