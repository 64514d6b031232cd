"""The ``theradose`` command line: parse arguments, call one library function, print or write.

Bad input of any kind (an invalid design or scenario file, a missing file, an outcome string that
cannot be read, scenarios that do not fit a design) ends with one line per problem on stderr and
exit code 2, never a traceback. Heavy modules (numpy, scipy, matplotlib) are imported inside the
commands so that ``theradose --help`` stays fast. Annotations here are evaluated once, at import
(no ``from __future__ import annotations``): typer reads every command's signature on every run,
and evaluating them from strings each time costs about 25 ms.
"""

import contextlib
import signal
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import typer.core
from typer.core import TyperGroup

from theradose import __version__

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): 128 + 2, as shells report it
EXIT_TERMINATED = 143  # SIGTERM: 128 + 15

# typer >= 0.29 carries its own copy of click (typer._click); older ones use click itself.
_click_errors = getattr(typer.core, "_click", None)
if _click_errors is None:
    import click as _click_errors
_click_errors = _click_errors.exceptions
# click >= 8.2 raises this for a group called without a command (it shows the help)
_NoArgsIsHelp = getattr(_click_errors, "NoArgsIsHelpError", ())


class _OneLineUsageErrors(TyperGroup):
    """The commands, whose usage errors (an unknown command or option, a value that cannot be
    read, a missing argument) end as every other bad input does: one line on stderr, "error: "
    and where the help is, exit code 2 — not click's usage block in a box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _NoArgsIsHelp as error:  # `theradose` alone: the help
            from typer import rich_utils

            rich_utils.rich_format_error(error)
            sys.exit(error.exit_code)
        except _click_errors.ClickException as error:
            where = getattr(error, "ctx", None)
            hint = f" (see '{where.command_path} --help')" if where is not None else ""
            typer.echo(f"error: {error.format_message()}{hint}", err=True)
            sys.exit(error.exit_code)
        except typer.Abort:  # click's Abort (typer < 0.29 re-exports it; >= 0.29 has its own)
            typer.echo("interrupted: nothing written", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        """Run the command; Ctrl-C where the command has no handler of its own (a long MCMC
        recommendation, the checks before a simulation starts) ends it with one line and exit
        code 130, as everywhere else, not silently."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None


app = typer.Typer(
    cls=_OneLineUsageErrors,
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


class SimulateFormat(StrEnum):
    rich = "rich"
    markdown = "markdown"


# Options several commands share (read as text, so that the messages about them are ours).
SeedOption = Annotated[
    str,
    typer.Option(metavar="INTEGER", help="Seed of the simulated patients, 0 <= seed < 2^128."),
]
WorkersOption = Annotated[
    str, typer.Option(metavar="INTEGER", help="Worker processes, at most the CPU count.")
]
ForceWorkersOption = Annotated[
    bool, typer.Option("--force-workers", help="Allow more --workers than CPUs (up to 256).")
]


class PathFormat(StrEnum):
    rich = "rich"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    dot = "dot"


class ProtocolFormat(StrEnum):
    text = "text"
    markdown = "markdown"
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


_MAX_ERROR_LINES = 50  # a file with thousands of bad rows: the first ones and a count


def _fail(messages: list[str]) -> None:
    for message in messages[:_MAX_ERROR_LINES]:
        typer.echo(f"error: {message}", err=True)
    if len(messages) > _MAX_ERROR_LINES:
        typer.echo(f"error: ... and {len(messages) - _MAX_ERROR_LINES:,} more problems", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


class _Checks:
    """Problems with the command line found before any work, all reported together."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._outputs: dict[str, str] = {}

    def integer(self, flag: str, text: str, low: int, high: int) -> int | None:
        from theradose.limits import integer_option

        value, problem = integer_option(flag, text, low, high)
        if problem:
            self.problems.append(problem)
        return value

    def seed(self, text: str) -> int | None:
        from theradose.limits import SEED_BOUND

        return self.integer("--seed", text, 0, SEED_BOUND)

    def workers(self, text: str, force: bool) -> int | None:
        from theradose.limits import MAX_INTEGER, worker_problem

        value = self.integer("--workers", text, 1, MAX_INTEGER)
        problem = None if value is None else worker_problem(value, force)
        if problem:
            self.problems.append(problem)
        return value

    def output(self, flag: str, path: Path | None, suffixes: tuple[str, ...] = ()) -> None:
        """An output file the command will write: its folder exists and is writable, it is not
        a folder, no other flag writes it, and its suffix is one of ``suffixes`` (if given)."""
        import os

        from theradose.report import check_output_path

        if path is None:
            return
        try:
            check_output_path(path)
        except OSError as error:
            self.problems.append(f"{flag} {path}: {error.strerror}")
        suffix = path.suffix.lower().lstrip(".")
        if suffixes and suffix and suffix not in suffixes:
            self.problems.append(
                f"{flag} {path}: cannot write format {suffix!r} (the suffix gives the format: "
                f"{', '.join(suffixes)})"
            )
        key = os.path.abspath(path)
        if key in self._outputs:
            self.problems.append(
                f"{flag} {path}: also given to {self._outputs[key]}; give each output its own file"
            )
        self._outputs.setdefault(key, flag)

    def fail_if_any(self) -> None:
        if self.problems:
            _fail(self.problems)


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


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs (temporary files removed,
    workers ended)."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


@contextlib.contextmanager
def _interruptible(kept: Callable[[], list[str]]):
    """Ctrl-C (SIGINT) or SIGTERM ends the command with one line on stderr, "interrupted: " and
    what was written (``kept()``, or "nothing written"), and exit code 130 (SIGTERM: 143).

    Every output is written atomically, so a file being written at that moment keeps its old
    content; worker processes are ended by the engine (:func:`theradose.simulation.simulate`).
    """
    previous = None
    with contextlib.suppress(ValueError):  # handlers can be set from the main thread only
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except KeyboardInterrupt as interrupt:
        what = "; ".join(kept()) or "nothing written"
        typer.echo(f"interrupted: {what}", err=True)
        code = EXIT_TERMINATED if isinstance(interrupt, _Terminated) else EXIT_INTERRUPTED
        raise typer.Exit(code) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _kept_outputs(written: list[Path], run_dir: Path | None) -> list[str]:
    """What an interrupted ``simulate`` leaves: the outputs written, the chunks kept."""
    parts = [f"wrote {', '.join(str(p) for p in written)}"] if written else []
    if run_dir is not None:
        from theradose.run_dir import chunks_kept

        counts = chunks_kept(run_dir)
        if counts is not None:
            parts.append(
                f"kept {counts[0]} of {counts[1]} chunks in run directory {run_dir} (run the "
                "same command to continue)"
            )
    return parts


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


SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="ADDRESS",
        help="Run the chunks of trials on an existing Dask cluster, e.g. tcp://host:8786 "
        '(needs pip install "theradose[dask]"); results identical to a local run.',
    ),
]
DaskLocalOption = Annotated[
    str | None,
    typer.Option(
        "--dask-local",
        metavar="INTEGER",
        help="Run the chunks on a Dask LocalCluster of this many processes (one thread each).",
    ),
]


def _cluster(scheduler: str | None, dask_local: str | None, workers: str):
    """The Dask cluster of ``--scheduler``/``--dask-local`` (None for neither) and the
    problems of those flags, one line each."""
    if scheduler is None and dask_local is None:
        return None, []
    from theradose.cluster import cluster_option

    return cluster_option(scheduler, dask_local, workers)


@app.command()
def simulate(
    designs: Annotated[list[Path], typer.Argument(help="Design files (TOML).", show_default=False)],
    scenarios: Annotated[
        Path,
        typer.Option("--scenarios", "-s", help=r"Scenario file (TOML, \[\[scenario]] tables)."),
    ],
    trials: Annotated[
        str,
        typer.Option(
            "--trials",
            "-n",
            metavar="INTEGER",
            help="Simulated trials per design × scenario, 1 to 100,000,000.",
        ),
    ] = "10000",
    seed: SeedOption = "1",
    workers: WorkersOption = "1",
    force_workers: ForceWorkersOption = False,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="Add exact values where the design decides on counts alone (3+3, BOIN, CRM, "
            "BLRM, EWOC, mTPI-2, Keyboard, i3+3; not the time-to-event designs).",
        ),
    ] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON.")
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Write per-level results as CSV.")
    ] = None,
    plot_path: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Write the selection chart (PNG, PDF, SVG, by the suffix) and beside it "
            r"NAME-allocation, NAME-organ-doses (organ limits), NAME-duration (\[timing]).",
        ),
    ] = None,
    fmt: Annotated[
        SimulateFormat,
        typer.Option("--format", "-f", help="Terminal tables (rich) or Markdown on stdout."),
    ] = SimulateFormat.rich,
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
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="Keep each finished chunk of trials in this folder; the same command after an "
            "interruption continues the run there, with identical results.",
        ),
    ] = None,
    scheduler: SchedulerOption = None,
    dask_local: DaskLocalOption = None,
) -> None:
    """Simulate designs under scenarios on the same patients; print operating characteristics."""
    from theradose.run_dir import run_dir_problems
    from theradose.study import run_study

    cluster, problems = _cluster(scheduler, dask_local, workers)
    if run_dir is not None:  # with every other problem of the command line, before any work
        problems = [*problems, *run_dir_problems(run_dir)]
    designs, trials, seed, workers = _check_simulate(
        designs, scenarios, trials, seed, workers, force_workers,
        {"--json": json_path, "--csv": csv_path, "--plot": plot_path, "--trials-csv": trials_csv},
        problems=problems,
    )  # fmt: skip

    written: list[Path] = []
    with _interruptible(lambda: _kept_outputs(written, run_dir)), _bad_input_exits():
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
                run_dir=run_dir,
                cluster=cluster,
            )
        if trials_csv is not None:
            written.append(trials_csv)
        from theradose import report

        if fmt is SimulateFormat.markdown:
            sys.stdout.write(report.study_markdown(study))
        else:
            report.print_study(study, _console())
        if json_path is not None:
            report.write_study_json(study, json_path)
            written.append(json_path)
        if csv_path is not None:
            report.write_study_csv(study, csv_path)
            written.append(csv_path)
        if plot_path is not None:
            from theradose.plots import save_study_figures

            written += save_study_figures(study, plot_path)


def _check_simulate(
    designs, scenarios, trials, seed, workers, force_workers, outputs, suffixes=None, problems=()
):
    """Every problem of ``simulate``'s flags, output paths and files, reported together before
    any work; returns the designs (loaded), trials, seed and workers. ``suffixes``: the suffixes
    an output flag allows (``--plot``: matplotlib's formats); ``problems``: other flags' found
    already (``--scheduler``)."""
    from theradose.config import ConfigError
    from theradose.limits import MAX_TRIALS, work_problems
    from theradose.plots import PLOT_FORMATS
    from theradose.study import load_inputs

    checks = _Checks()
    checks.problems += problems
    n_trials = checks.integer("--trials", trials, 1, MAX_TRIALS)
    seed_value = checks.seed(seed)
    n_workers = checks.workers(workers, force_workers)
    for flag, path in outputs.items():
        allowed = (suffixes or {}).get(flag, PLOT_FORMATS if flag == "--plot" else ())
        checks.output(flag, path, allowed)
    loaded = designs
    try:
        loaded, _, _ = load_inputs(designs, scenarios)
    except ConfigError as error:
        checks.problems += error.messages
    else:
        if n_trials is not None:
            checks.problems += work_problems(loaded, n_trials)
    checks.fail_if_any()
    return loaded, n_trials, seed_value, n_workers


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
            "level, dlt (0/1), followup_days, optional dlt_day; response (0/1) and optional "
            "response_day for a design that decides on responses.",
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
    draws: Annotated[
        int, typer.Option(min=100, max=100_000, help="MCMC draws per chain.")
    ] = 2000,
    tune: Annotated[
        int, typer.Option(min=100, max=100_000, help="MCMC tuning steps per chain.")
    ] = 1000,
    chains: Annotated[
        int, typer.Option(min=2, max=16, help="MCMC chains (run one after another).")
    ] = 4,
    seed: Annotated[
        str, typer.Option(metavar="INTEGER", help="Seed of the MCMC chains, 0 <= seed < 2^128.")
    ] = "1",
    record_path: Annotated[
        Path | None,
        typer.Option(
            "--record",
            help="Write the decision record (JSON): time, versions, command, the design and "
            "data with their SHA-256, every parameter, the decision, the rule, the estimates "
            "(--json holds it too, under 'record'). Check it with 'theradose verify'.",
        ),
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who asks (recorded in the decision record).")
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", help="A note for the decision record.")
    ] = None,
) -> None:
    """Say which level the next cohort of a real trial should receive, or whether to stop."""
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
    checks = _Checks()
    seed = checks.seed(seed)
    checks.output("--json", json_path)
    checks.output("--posterior", posterior)
    checks.output("--record", record_path)
    checks.fail_if_any()
    with _bad_input_exits():
        from theradose.decision_record import (
            recommend_recorded,
            write_recommendation_json,
            write_record,
        )

        # The files are read once: the record's hashes are of the bytes the decision used.
        result, record = recommend_recorded(
            design,
            outcomes or "",
            patients,
            engine=engine.value,
            mcmc_options={"draws": draws, "tune": tune, "chains": chains, "seed": seed},
            dlt_window_days=dlt_window_days,
            by=by,
            note=note,
            argv=sys.argv,
        )
        from theradose import report

        _console().print(report.recommendation_rich(result))
        if result.mcmc is not None:
            _console().print(report.mcmc_diagnostics_rich(result.mcmc))
        if json_path is not None:
            write_recommendation_json(result, record, json_path)
        if record_path is not None:
            write_record(record, record_path)
        if posterior is not None:
            report.write_posterior(result.mcmc, posterior)


@app.command()
def paths(
    design: Annotated[Path, typer.Argument(help="Design file (TOML).", show_default=False)],
    outcomes: Annotated[
        str | None,
        typer.Option("--outcomes", "-o", help='The trial so far, e.g. "1NNN 2NTN".'),
    ] = None,
    patients: Annotated[
        Path | None,
        typer.Option("--patients", help="The trial so far as a patient file (CSV)."),
    ] = None,
    cohorts: Annotated[
        int, typer.Option("--cohorts", "-k", min=1, help="How many cohorts ahead.")
    ] = 2,
    fmt: Annotated[
        PathFormat, typer.Option("--format", "-f", help="Output format.")
    ] = PathFormat.rich,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write to this file instead; .svg or .png draws the tree (needs Graphviz).",
        ),
    ] = None,
) -> None:
    """Dose transition pathways: the design's decision after every outcome of the next cohorts."""
    from theradose.config import load_design
    from theradose.pathway_report import (
        RENDERED_SUFFIXES,
        render_csv,
        render_dot,
        render_json,
        render_markdown,
        render_picture,
        render_tree,
    )
    from theradose.pathways import PathwaysTooLarge, pathways_from_data
    from theradose.report import check_output_path, write_atomic

    if outcomes is not None and patients is not None:
        _fail(["give the trial so far with --outcomes or with --patients, not both"])
    with _bad_input_exits():
        loaded = load_design(design)
        if out is not None:
            check_output_path(out)
        try:
            nodes = pathways_from_data(
                loaded, outcomes, None if patients is None else str(patients), cohorts
            )
        except PathwaysTooLarge as error:
            _fail([f"--cohorts {cohorts}: {error}"])
        if out is not None and out.suffix.lower() in RENDERED_SUFFIXES:
            try:
                render_picture(render_dot(loaded, nodes, cohorts), out)
            except RuntimeError as error:
                _fail([str(error)])
            return
        text = {
            "markdown": lambda: render_markdown(loaded, nodes, cohorts),
            "csv": lambda: render_csv(loaded, nodes),
            "json": lambda: render_json(loaded, nodes, cohorts),
            "dot": lambda: render_dot(loaded, nodes, cohorts),
        }.get(fmt.value)
        if out is not None:
            if text is None:
                _fail([f"{out}: --format rich prints to the terminal; choose markdown, csv, "
                       "json or dot for a file, or name an .svg or .png"])
            write_atomic(out, text())
        elif text is None:
            _console().print(render_tree(loaded, nodes, cohorts))
        else:
            sys.stdout.write(text())


@app.command()
def protocol(
    design: Annotated[Path, typer.Argument(help="Design file (TOML).", show_default=False)],
    fmt: Annotated[
        ProtocolFormat, typer.Option("--format", "-f", help="Output format.")
    ] = ProtocolFormat.text,
) -> None:
    """The design in protocol language: rules, constraints, stopping, selection, references."""
    from theradose.config import load_design
    from theradose.protocol import render_protocol

    with _bad_input_exits():
        loaded = load_design(design)
    sys.stdout.write(render_protocol(loaded, fmt.value))


@app.command("report")
def report_command(
    designs: Annotated[list[Path], typer.Argument(help="Design files (TOML).", show_default=False)],
    scenarios: Annotated[
        Path,
        typer.Option("--scenarios", "-s", help=r"Scenario file (TOML, \[\[scenario]] tables)."),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="The report; its suffix gives the format: .html (one self-contained file), "
            ".md (figures as PNG files in NAME_files/ beside it) or .docx.",
        ),
    ],
    trials: Annotated[
        str,
        typer.Option(
            "--trials",
            "-n",
            metavar="INTEGER",
            help="Simulated trials per design × scenario, 1 to 100,000,000.",
        ),
    ] = "10000",
    seed: SeedOption = "1",
    workers: WorkersOption = "1",
    force_workers: ForceWorkersOption = False,
    exact: Annotated[
        bool,
        typer.Option("--exact", help="Add exact values where the design decides on counts alone."),
    ] = False,
    cohorts: Annotated[
        int,
        typer.Option(
            "--cohorts", "-k", min=1, help="Cohorts ahead in the dose transition pathways."
        ),
    ] = 2,
) -> None:
    """The statistical section of a protocol: each design's text, decision table or prior and
    dose transition pathways, operating characteristics, figures and a reproducibility appendix."""
    import shlex

    from theradose.pathways import PathwaysTooLarge
    from theradose.protocol_report import REPORT_SUFFIXES, run_report, write_report

    if not out.suffix:
        _fail([f"--out {out}: name the format by the suffix: {', '.join(REPORT_SUFFIXES)}"])
    _, trials, seed, workers = _check_simulate(
        designs, scenarios, trials, seed, workers, force_workers, {"--out": out},
        {"--out": REPORT_SUFFIXES},
    )  # fmt: skip
    written: list[Path] = []
    with _interruptible(lambda: [f"wrote {', '.join(map(str, written))}"] if written else []):
        with _bad_input_exits():
            try:
                with _progress(trials) as progress:
                    blocks = run_report(
                        designs,
                        scenarios,
                        n_trials=trials,
                        seed=seed,
                        workers=workers,
                        exact=exact,
                        n_cohorts=cohorts,
                        command=shlex.join(["theradose", *sys.argv[1:]]),
                        progress=progress,
                    )
            except PathwaysTooLarge as error:
                _fail([f"--cohorts {cohorts}: {error}"])
            written += write_report(blocks, out)
    for path in written:
        typer.echo(f"wrote {path}")


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
        Path,
        typer.Option("--scenarios", "-s", help=r"Scenario file (TOML, \[\[scenario]] tables)."),
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
        str,
        typer.Option(
            "--trials",
            "-n",
            metavar="INTEGER",
            help="Trials per candidate × scenario, 1 to 100,000,000.",
        ),
    ] = "2000",
    seed: SeedOption = "1",
    workers: WorkersOption = "1",
    force_workers: ForceWorkersOption = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the calibration as JSON.")
    ] = None,
    scheduler: SchedulerOption = None,
    dask_local: DaskLocalOption = None,
) -> None:
    """Calibrate a CRM skeleton: PCS of every Lee–Cheung candidate on the same patients."""
    from theradose.calibration import CalibrationError, calibrate_skeleton, parse_grid
    from theradose.limits import MAX_TRIALS
    from theradose.study import load_inputs

    checks = _Checks()
    cluster, checks.problems = _cluster(scheduler, dask_local, workers)
    trials = checks.integer("--trials", trials, 1, MAX_TRIALS)
    seed = checks.seed(seed)
    workers = checks.workers(workers, force_workers)
    checks.output("--json", json_path)
    checks.fail_if_any()

    with _interruptible(lambda: []), _bad_input_exits():
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
                    cluster=cluster,
                )
        except CalibrationError as error:
            _fail([str(error)])
        from theradose import report

        _console().print(report.calibration_rich(result))
        if json_path is not None:
            report.write_calibration_json(result, json_path)


@app.command()
def sweep(
    grid: Annotated[
        Path,
        typer.Argument(
            help="Grid file (TOML): design = FILE, [grid] settings and their values.",
            show_default=False,
        ),
    ],
    scenarios: Annotated[
        Path | None,
        typer.Option("--scenarios", "-s", help="Scenario file (default: the grid file's own)."),
    ] = None,
    trials: Annotated[
        str | None,
        typer.Option(
            "--trials",
            "-n",
            metavar="INTEGER",
            help="Trials per grid point × scenario (default: the grid file's trials, else 2000).",
        ),
    ] = None,
    seed: Annotated[
        str | None,
        typer.Option(metavar="INTEGER", help="Seed (default: the grid file's seed, else 1)."),
    ] = None,
    workers: WorkersOption = "1",
    force_workers: ForceWorkersOption = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the table as JSON.")
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Write the table as CSV.")
    ] = None,
    markdown_path: Annotated[
        Path | None, typer.Option("--markdown", help="Write the table as Markdown.")
    ] = None,
    plot_path: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Write heat maps of PCS, overdosing and sample size (PNG, PDF, SVG, by the "
            "suffix); with more than two settings or designs, one file each (NAME-1, NAME-2...).",
        ),
    ] = None,
    axes: Annotated[
        str | None,
        typer.Option(
            "--axes",
            metavar="X,Y",
            help="The grid settings on the heat maps' x and y axes (default: the first two).",
        ),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="Keep each finished chunk of trials in this folder; the same command after an "
            "interruption continues the sweep there, with identical results.",
        ),
    ] = None,
    scheduler: SchedulerOption = None,
    dask_local: DaskLocalOption = None,
) -> None:
    """Vary design settings over a grid: every grid point × scenario on the same patients."""
    from theradose.config import ConfigError
    from theradose.limits import MAX_TRIALS, work_problems
    from theradose.plots import PLOT_FORMATS
    from theradose.sweep import DEFAULT_TRIALS, plan_sweep, run_sweep
    from theradose.sweep_report import heatmap_axes, save_heatmaps, sweep_rich, write_sweep

    checks = _Checks()
    cluster, checks.problems = _cluster(scheduler, dask_local, workers)
    n_trials = None if trials is None else checks.integer("--trials", trials, 1, MAX_TRIALS)
    seed_value = None if seed is None else checks.seed(seed)
    n_workers = checks.workers(workers, force_workers)
    for flag, path in (("--json", json_path), ("--csv", csv_path), ("--markdown", markdown_path)):
        checks.output(flag, path)
    checks.output("--plot", plot_path, PLOT_FORMATS)
    axis_names = [a.strip() for a in axes.split(",")] if axes else None
    plan = None
    try:
        plan = plan_sweep(grid, scenarios)
    except ConfigError as error:
        checks.problems += error.messages
    if plan is not None:
        total = n_trials or plan.grid.trials or DEFAULT_TRIALS
        checks.problems += work_problems([p.design for p in plan.points], total)
        if axis_names or plot_path is not None:
            try:
                heatmap_axes(plan.grid.parameters, axis_names)
            except ValueError as error:
                checks.problems.append(str(error))
    checks.fail_if_any()

    written: list[Path] = []
    with _interruptible(lambda: _kept_outputs(written, run_dir)), _bad_input_exits():
        with _progress(total) as progress:
            result = run_sweep(
                plan,
                n_trials=n_trials,
                seed=seed_value,
                workers=n_workers,
                progress=progress,
                run_dir=run_dir,
                cluster=cluster,
            )
        _console().print(sweep_rich(result))
        for fmt, path in (("json", json_path), ("csv", csv_path), ("markdown", markdown_path)):
            if path is not None:
                write_sweep(result, path, fmt)
                written.append(path)
        if plot_path is not None:
            written += save_heatmaps(result, plot_path, axis_names)


EXIT_DIFFERENT = 1


@app.command()
def verify(
    record: Annotated[
        Path,
        typer.Argument(
            help="A decision record (recommend --record), or a recommend --json file.",
            show_default=False,
        ),
    ],
    design: Annotated[
        Path | None,
        typer.Option("--design", help="The design file to check (default: the recorded path)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="The patient file to check (default: the recorded path)."),
    ] = None,
) -> None:
    """Recompute a recorded decision from the record's own inputs and check the files' hashes.

    Exit code 0 when everything is as recorded, 1 listing each difference (software version,
    edited design, changed data, another decision), 2 for a record that cannot be read."""
    from theradose.decision_record import RecordError, read_record
    from theradose.verification import verify_record

    try:
        loaded = read_record(record)
        outcome = verify_record(loaded, design, data)
    except RecordError as error:
        _fail(error.messages)
    typer.echo(
        f"{record}: {outcome.decision}, recorded {loaded.get('created_utc')}"
        + (f" by {loaded['by']}" if loaded.get("by") else "")
    )
    for line in outcome.same:
        typer.echo(f"same: {line}")
    for line in outcome.unchecked:
        typer.echo(f"not checked: {line}")
    for line in outcome.differences:
        typer.echo(line if line.startswith("  ") else f"DIFFERENT: {line}")
    if outcome.on_files is not None:
        typer.echo(f"on the files as they are now, the decision is: {outcome.on_files}")
    if outcome.ok:
        typer.echo("verified: the decision recomputes as recorded")
        return
    plural = "s" if outcome.n_differences != 1 else ""
    typer.echo(f"NOT verified: {outcome.n_differences} difference{plural}")
    raise typer.Exit(EXIT_DIFFERENT)


ledger_app = typer.Typer(
    help="A trial's decision records, hash-chained in a JSON Lines file (its history).",
    no_args_is_help=True,
)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("append")
def ledger_append(
    ledger: Annotated[Path, typer.Argument(help="The trial's ledger (JSON Lines).")],
    record: Annotated[Path, typer.Argument(help="A decision record (or recommend --json file).")],
) -> None:
    """Add a decision record to the ledger, chained to the last entry by its hash (atomic).

    Exit code 1 when the ledger fails its check or already holds the record (nothing appended),
    2 for a record that cannot be read or has been edited."""
    from theradose.decision_record import RecordError, read_record
    from theradose.ledger import LedgerError, append_record

    try:
        entry = append_record(ledger, read_record(record))
    except RecordError as error:
        _fail(error.messages)
    except LedgerError as error:
        for message in error.messages:
            typer.echo(f"error: {message}", err=True)
        raise typer.Exit(EXIT_DIFFERENT) from None
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        _fail([f"{where}{error.strerror or error}"])
    typer.echo(f"{ledger}: entry {entry.entry}, hash {entry.hash}")
    typer.echo(
        f"note for the minutes: theradose ledger check {ledger} --entries {entry.entry} "
        f"--head {entry.hash}"
    )


@ledger_app.command("check")
def ledger_check(
    ledger: Annotated[Path, typer.Argument(help="The trial's ledger (JSON Lines).")],
    head: Annotated[
        str | None,
        typer.Option("--head", help="The last entry's hash, as noted (detects cut entries)."),
    ] = None,
    entries: Annotated[
        int | None,
        typer.Option("--entries", min=0, help="The number of entries, as noted."),
    ] = None,
) -> None:
    """Check every line of a ledger: any edit, removal, reordering or cut is named by line.

    Exit code 0 when intact, 1 listing the problems, 2 when the file cannot be read."""
    from theradose.ledger import LedgerError, check_ledger

    try:
        check = check_ledger(ledger, head, entries)
    except LedgerError as error:
        _fail(error.messages)
    if check.ok:
        typer.echo(f"{ledger}: intact, {len(check.entries)} entries, head {check.head}")
        return
    for problem in check.problems:
        typer.echo(f"{ledger}: {problem}")
    plural = "s" if len(check.problems) != 1 else ""
    typer.echo(f"{ledger}: BROKEN ({len(check.problems)} problem{plural})")
    raise typer.Exit(EXIT_DIFFERENT)


@ledger_app.command("show")
def ledger_show(
    ledger: Annotated[Path, typer.Argument(help="The trial's ledger (JSON Lines).")],
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write the trial plot (PNG, PDF or SVG, by the suffix)."),
    ] = None,
    organ: Annotated[
        str | None,
        typer.Option(
            "--organ",
            help="The organ of the plot's lower panel (default: the one closest to ruling "
            "levels out).",
        ),
    ] = None,
) -> None:
    """Print the trial's history (each meeting's data, decision and estimates) from an intact
    ledger; optionally draw the trial plot. Exit code 1 when the ledger fails its check."""
    from theradose.ledger import LedgerError, check_ledger

    checks = _Checks()
    checks.output("--plot", plot, ("png", "pdf", "svg"))
    checks.fail_if_any()
    try:
        check = check_ledger(ledger)
    except LedgerError as error:
        _fail(error.messages)
    if not check.ok:
        for problem in check.problems:
            typer.echo(f"{ledger}: {problem}", err=True)
        typer.echo(f"{ledger}: BROKEN: not shown (run 'theradose ledger check')", err=True)
        raise typer.Exit(EXIT_DIFFERENT)
    from theradose.history import history_rich, plot_history

    _console().print(history_rich(check.entries))
    if plot is not None and check.entries:
        from theradose.plots import save_figure

        try:
            figure = plot_history(check.entries, organ)
        except ValueError as error:
            _fail([str(error)])
        with _bad_input_exits():
            save_figure(figure, plot)
