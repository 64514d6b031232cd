"""The statistical section of a protocol as one document: HTML, Markdown or Word (DOCX).

One document model, several printers (the idea of lifelines' ``utils/printer.py``):
:func:`build_document` lays a :class:`~theradose.study.StudyResult` out as a list of blocks —
:class:`Heading`, :class:`Paragraph`, :class:`Items`, :class:`Code`, :class:`Table` and
:class:`Figure` — and each writer (:func:`render_html`, :func:`render_markdown`,
:func:`docx_document`) prints every block its own way. Nothing here computes a trial quantity:
the text comes from :mod:`theradose.protocol`, the decision and prior tables from
:func:`theradose.report.decision_rows`, the pathways from :func:`theradose.pathways.dose_paths`
and :func:`theradose.pathway_report.path_rows`, the operating characteristics from the tables
:func:`theradose.report.oc_tables` prints (taken column by column, so a figure added there appears
here too) and the figures from :func:`theradose.plots.study_figures`.

The document, in order: every design (its protocol text, its decision or prior table, its dose
transition pathways over the next cohorts from the start, as a table and — where Graphviz's
``dot`` is installed — a picture, and its references); the operating characteristics of every
design under every scenario with their Monte Carlo standard errors; the figures; and a
reproducibility appendix (theradose version, seed, trials, SHA-256 of every input file, the
command line).

Formats, chosen by the output file's suffix (:data:`REPORT_SUFFIXES`):

- ``.html``: one self-contained file — CSS and SVG inline, no script, no link outside the page —
  that opens offline in any browser;
- ``.docx``: Word tables and PNG pictures (python-docx), for Word or LibreOffice;
- ``.md``: GitHub-flavoured Markdown with pipe tables; the figures are PNG files in a folder
  beside it, ``<name>_files/`` (:func:`figure_folder`), linked by relative paths, so the pair
  renders on GitHub once both are committed.

Every file is written atomically (:func:`theradose.report.atomic_path`).
"""

from __future__ import annotations

import html
import io
import os
import platform
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from theradose import __version__

if TYPE_CHECKING:
    from theradose.design import Design
    from theradose.scenario import Scenario
    from theradose.study import StudyResult

REPORT_SUFFIXES = ("html", "md", "docx")

# Captions of the figures of theradose.plots.study_figures, by kind; a kind added there appears
# in the report with a caption made from its name until one is written here.
FIGURE_CAPTIONS = {
    "selection": "Selection of each level as the MTD, per scenario (±1.96 Monte Carlo SE); "
    "the true MTD is shaded, the constrained optimum hatched.",
    "allocation": "Patients treated at each level per trial (mean), per scenario.",
    "organ-doses": "The patients' true cumulative organ dose (or BED) against each organ's limit.",
    "duration": "Trial duration, per scenario.",
}

# Pictures of pathway trees with more nodes than this are not drawn (the table holds them all).
MAX_DRAWN_NODES = 200


# ---------------------------------------------------------------------------------------------
# The document model


@dataclass(frozen=True)
class Heading:
    """A heading; ``level`` 1 is the document's title, 2 a section, 3 and 4 subsections."""

    text: str
    level: int


@dataclass(frozen=True)
class Paragraph:
    """Running text; a ``note`` is printed smaller (sources, how to read a table)."""

    text: str
    note: bool = False


@dataclass(frozen=True)
class Items:
    """A bulleted list (references, warnings)."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Code:
    """Text shown verbatim (the command line)."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table of text cells under its numbered title.

    ``align``: "left" or "right" per column; ``group_ends``: the rows after which a rule is drawn
    (the last row of a design); ``notes``: lines printed under the table.
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: tuple[str, ...] = ()
    group_ends: frozenset[int] = frozenset()
    notes: tuple[str, ...] = ()

    def alignment(self, k: int) -> str:
        return self.align[k] if k < len(self.align) else "left"


@dataclass(frozen=True)
class Figure:
    """A picture drawn on demand as SVG (HTML) or PNG (DOCX, Markdown), under its caption.

    ``name`` names the PNG file beside a Markdown report and prefixes the SVG's ids in HTML.
    """

    caption: str
    name: str
    draw: Callable[[str], bytes] = field(repr=False, compare=False)
    dpi: float = 150.0  # of the PNG, which sets its natural width in a DOCX


Block = Heading | Paragraph | Items | Code | Table | Figure


@dataclass(frozen=True)
class InputFile:
    """An input of the report, as read for the run: its role, path and SHA-256."""

    role: str
    path: str
    sha256: str
    size: int


# ---------------------------------------------------------------------------------------------
# Running a report


def read_inputs(
    design_paths: Sequence[str | os.PathLike[str]], scenario_path: str | os.PathLike[str]
) -> tuple[list[Design], list[Scenario], list[InputFile]]:
    """Designs and scenarios read once from their files, with each file's SHA-256: the hashes
    in the appendix are those of the bytes the run used.

    Raises
    ------
    theradose.config.ConfigError
        For a file that cannot be read or is invalid, or scenarios that do not fit a design.
    """
    from theradose import config
    from theradose.decision_record import sha256_hex
    from theradose.validation import parse_toml

    def read(path: str, load: Callable[[str], Any]) -> str:
        try:
            return Path(path).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            load(path)  # raises ConfigError, saying why in the loaders' own words
            raise

    designs, files = [], []
    for design_path in map(os.fspath, design_paths):
        text = read(design_path, config.load_design)
        designs.append(config.design_from_dict(parse_toml(text, design_path), design_path))
        files.append(InputFile("design", design_path, sha256_hex(text), len(text.encode())))
    scenario_path = os.fspath(scenario_path)
    text = read(scenario_path, config.load_scenarios)
    scenarios = config.scenarios_from_dict(parse_toml(text, scenario_path), scenario_path)
    files.append(InputFile("scenarios", scenario_path, sha256_hex(text), len(text.encode())))
    for design in designs:
        config.check_scenarios_fit(design, scenarios, scenario_path)
    return designs, scenarios, files


def run_report(
    design_paths: Sequence[str | os.PathLike[str]],
    scenario_path: str | os.PathLike[str],
    *,
    n_trials: int = 10_000,
    seed: int = 1,
    workers: int = 1,
    exact: bool = False,
    n_cohorts: int = 2,
    command: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Block]:
    """Simulate the designs under the scenarios (:func:`theradose.study.run_study`) and lay the
    statistical section out (:func:`build_document`); write it with :func:`write_report`.

    Raises
    ------
    theradose.config.ConfigError
        For invalid files, or scenarios that do not fit a design.
    theradose.pathways.PathwaysTooLarge
        Before the run, when ``n_cohorts`` cohorts make too large a tree for some design.
    """
    from theradose.study import run_study

    designs, scenarios, inputs = read_inputs(design_paths, scenario_path)
    for design in designs:
        _check_pathway_size(design, n_cohorts)
    study = run_study(
        designs, scenarios, n_trials=n_trials, seed=seed, workers=workers, exact=exact,
        progress=progress,
    )  # fmt: skip
    study = replace(study, scenario_path=os.fspath(scenario_path))
    return build_document(study, inputs=inputs, command=command, n_cohorts=n_cohorts)


def _check_pathway_size(design: Design, n_cohorts: int) -> None:
    from theradose.pathways import MAX_PATH_NODES, PathwaysTooLarge, n_path_nodes

    most = n_path_nodes(design.cohort_size, n_cohorts, design.method.uses_efficacy)
    if most > MAX_PATH_NODES:
        raise PathwaysTooLarge(
            f"{design.name}: {n_cohorts} cohorts of {design.cohort_size} make up to {most:,} "
            f"pathway nodes; at most {MAX_PATH_NODES:,} are computed: ask for fewer cohorts"
        )


# ---------------------------------------------------------------------------------------------
# Building the document


class _Numbers:
    """Numbers for tables and figures, in document order."""

    def __init__(self) -> None:
        self.tables = 0
        self.figures = 0

    def table(self, title: str) -> str:
        self.tables += 1
        return f"Table {self.tables}. {title}"

    def figure(self, caption: str) -> str:
        self.figures += 1
        return f"Figure {self.figures}. {caption}"


def build_document(
    study: StudyResult,
    *,
    inputs: Sequence[InputFile] = (),
    command: str | None = None,
    n_cohorts: int = 2,
) -> list[Block]:
    """The statistical section of a protocol for the designs of ``study``, as blocks.

    Parameters
    ----------
    study : StudyResult
        From :func:`theradose.study.run_study`.
    inputs : the files read, with their SHA-256 (:func:`read_inputs`); by default the designs'
        and scenarios' paths are listed without hashes.
    command : the command line that made the report; by default an equivalent one is written.
    n_cohorts : the cohorts ahead in the dose transition pathways (from the start of the trial).
    """
    numbers = _Numbers()
    names = "; ".join(design.name for design in study.designs)
    scenario_file = f" ({study.scenario_path})" if study.scenario_path else ""
    blocks: list[Block] = [
        Heading(f"Statistical section: {names}", 1),
        Paragraph(
            f"The dose-escalation design{'s' if len(study.designs) > 1 else ''} "
            f"{_listed([d.name for d in study.designs])}, "
            f"{len(study.scenarios)} scenario{'s' if len(study.scenarios) > 1 else ''}"
            f"{scenario_file}, {study.n_trials:,} simulated trials per design and scenario on "
            f"the same virtual patients, seed {study.seed}; theradose {study.version}. "
            "Section 1 describes each design as the protocol states it, with its decision table "
            "or prior and its dose transition pathways; section 2 gives the operating "
            "characteristics with their Monte Carlo standard errors; section 3 the figures; "
            "appendix A what is needed to reproduce every number."
        ),
        Heading("1. Designs", 2),
    ]
    for k, design in enumerate(study.designs, start=1):
        blocks += _design_blocks(design, f"1.{k}", n_cohorts, numbers)
    blocks += _oc_blocks(study, numbers)
    blocks += _figure_blocks(study, numbers)
    blocks += _appendix_blocks(study, inputs, command, n_cohorts, numbers)
    return blocks


def _listed(names: Sequence[str]) -> str:
    # Design names hold commas ("BOIN, target 30%"): semicolons keep a list of them readable.
    if len(names) < 3:
        return " and ".join(names)
    return "; ".join(names[:-1]) + "; and " + names[-1]


def _design_blocks(design: Design, number: str, n_cohorts: int, numbers: _Numbers) -> list[Block]:
    from theradose.protocol import protocol_references, protocol_sections
    from theradose.report import NONE, NoDecisionTable, decision_rows

    blocks: list[Block] = [Heading(f"{number} {design.name}", 3)]
    for heading, text in protocol_sections(design):
        blocks += [Heading(heading, 4), Paragraph(text)]
    try:
        columns, rows = decision_rows(design)
    except NoDecisionTable as error:
        blocks += [Heading("Decision table", 4), Paragraph(str(error), note=True)]
    else:
        what = "Prior" if design.method.model_based else "Decision table"
        blocks.append(Heading(what, 4))
        right = {"dlts", "decision"}
        blocks.append(
            Table(
                title=numbers.table(f"{what}: {design.name}"),
                columns=tuple(columns.values()),
                rows=tuple(tuple(_cell(row[key]) for key in columns) for row in rows),
                align=tuple("left" if key in right else "right" for key in columns),
                notes=(f"{NONE}: no such value (no count of DLTs gives that decision).",)
                if any(value is None for row in rows for value in row.values())
                else (),
            )
        )
    blocks += _pathway_blocks(design, n_cohorts, numbers)
    blocks += [Heading("References", 4), Items(tuple(protocol_references(design)))]
    return blocks


def _cell(value: Any) -> str:
    from theradose.report import NONE

    if value is None:
        return NONE
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _pathway_blocks(design: Design, n_cohorts: int, numbers: _Numbers) -> list[Block]:
    from theradose.pathway_report import PATH_COLUMNS, header_lines, path_rows, render_dot
    from theradose.pathways import dose_paths

    nodes = dose_paths(design, (), n_cohorts)
    notes = header_lines(design, nodes, n_cohorts)[1:-1]
    blocks: list[Block] = [
        Heading("Dose transition pathways", 4),
        Paragraph(
            f"The design's decision after every outcome of the first {n_cohorts} cohort"
            f"{'s' if n_cohorts > 1 else ''} of {design.cohort_size} (0 to {design.cohort_size} "
            "DLTs each), decided by the same rules as the simulations (Yap et al. 2017, Clin "
            "Cancer Res 23:7440–7447). An outcome such as 1NNT reads: level 1, two patients "
            "without a DLT (N), one with a DLT (T)."
            + "".join(f" {note[0].upper()}{note[1:]}." for note in notes)
        ),
    ]
    dot_source = render_dot(design, nodes, n_cohorts)
    picture = _dot_figure(dot_source, f"pathways-{_slug(design.name)}", len(nodes))
    if isinstance(picture, str):
        blocks.append(Paragraph(picture, note=True))
    else:
        blocks.append(
            replace(picture, caption=numbers.figure(f"Dose transition pathways: {design.name}."))
        )
    rows = path_rows(design, nodes)
    right = {"depth", "next_level", "mtd"}
    blocks.append(
        Table(
            title=numbers.table(f"Dose transition pathways: {design.name}"),
            columns=tuple(PATH_COLUMNS.values()),
            rows=tuple(tuple(_cell(row[key]) for key in PATH_COLUMNS) for row in rows),
            align=tuple("right" if key in right else "left" for key in PATH_COLUMNS),
        )
    )
    return blocks


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "design"


def _dot_figure(dot_source: str, name: str, n_nodes: int) -> Figure | str:
    """The pathway picture, or why it is not drawn (the table holds the same pathways)."""
    from theradose.pathway_report import render_picture

    if n_nodes > MAX_DRAWN_NODES:
        return (
            f"The pathways are not drawn: {n_nodes} nodes are too many for a legible picture "
            f"(at most {MAX_DRAWN_NODES}); the table below holds them all."
        )
    if shutil.which("dot") is None:
        return (
            "The pathways are not drawn: Graphviz's 'dot' is not installed where this report "
            "was made (Debian: apt install graphviz); the table below holds the same pathways."
        )
    drawn: dict[str, bytes] = {}
    try:
        for fmt in ("svg", "png"):
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / f"pathways.{fmt}"
                render_picture(dot_source, path)
                drawn[fmt] = path.read_bytes()
    except (RuntimeError, OSError) as error:
        return f"The pathways are not drawn ({error}); the table below holds them."
    return Figure(caption="", name=name, draw=drawn.__getitem__, dpi=96.0)  # dot's PNG dpi


def _oc_blocks(study: StudyResult, numbers: _Numbers) -> list[Block]:
    from theradose.report import oc_tables, study_footer

    footer = study_footer(study)
    blocks: list[Block] = [
        Heading("2. Operating characteristics", 2),
        Paragraph(
            footer[0] + " Each design was simulated under each scenario on the same virtual "
            "patients (common random numbers), so differences between designs are not Monte "
            "Carlo noise between patient sets."
        ),
    ]
    for renderable in oc_tables(study):
        for title, table in _rich_tables(renderable):
            blocks.append(replace(table, title=numbers.table(title)))
    if footer[1:]:
        blocks.append(Paragraph(" ".join(_sentence(line) for line in footer[1:]), note=True))
    shown = {
        line
        for block in blocks
        if isinstance(block, Table)
        for text in (*block.columns, *(row[0] for row in block.rows if row))
        for line in text.split("\n")
    }
    definitions = _definition_rows(shown)
    if definitions:
        blocks += [
            Heading("Definitions", 3),
            Table(
                title=numbers.table("The figures of the tables above"),
                columns=("figure", "definition"),
                rows=tuple(definitions),
            ),
        ]
    if study.warnings:
        blocks += [Heading("Warnings", 3), Items(tuple(study.warnings))]
    return blocks


def _definition_rows(shown: set[str]) -> list[tuple[str, str]]:
    """(label, definition) of every figure of :mod:`theradose.oc_report` whose label is shown
    in a table (as a row's name or a line of a column's header)."""
    from theradose import oc_report

    figures = [
        (figure.label, figure.definition)
        for group in ("FIGURES", "DURATION_FIGURES", "ORGAN_FIGURES", "PER_ORGAN_FIGURES")
        for figure in getattr(oc_report, group, ())
    ]
    figures += [
        (label, text) for label, _, text in getattr(oc_report, "LEVEL_FIGURES", {}).values()
    ]
    return [
        (label, text)
        for label, text in dict(figures).items()
        if any(label in line for line in shown)
    ]


def _sentence(line: str) -> str:
    return line if line.endswith((".", ")")) else line + "."


def _rich_tables(renderable: Any, title: str = "") -> list[tuple[str, Table]]:
    """The (title, :class:`Table`) pairs in what :func:`theradose.report.oc_tables` returns,
    whatever its shape: rich tables (titled by the text printed above them), table records
    (:class:`theradose.tables.TableRecord`: title, columns, rows, notes) or renderables that wrap
    one in their ``table``, in groups nested to any depth."""
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    if isinstance(renderable, RichTable):
        return [
            (
                title or _plain(renderable.title) or "Operating characteristics",
                _from_rich(renderable),
            )
        ]
    record = getattr(renderable, "table", renderable)
    if all(hasattr(record, key) for key in ("title", "columns", "rows", "notes")):
        return [(record.title or title, _from_record(record))]
    found = []
    if isinstance(renderable, Group):
        for part in renderable.renderables:
            if isinstance(part, Text | str):
                title = _plain(part).strip()
            else:
                found += _rich_tables(part, title)
    return found


def _from_rich(table: Any) -> Table:
    """A rich table as a :class:`Table` (untitled): headers, cells as plain text,
    justification, and the rows that end a section."""
    columns = tuple(_plain(column.header) for column in table.columns)
    cells = [[_plain(cell) for cell in column.cells] for column in table.columns]
    return Table(
        title="",
        columns=columns,
        rows=tuple(zip(*cells, strict=True)) if cells else (),
        align=tuple("right" if c.justify == "right" else "left" for c in table.columns),
        group_ends=frozenset(k for k, row in enumerate(table.rows) if row.end_section),
    )


def _from_record(record: Any) -> Table:
    """A table record (title, columns with header and align, rows of text, sections, notes) as
    a :class:`Table` (untitled)."""
    return Table(
        title="",
        columns=tuple(column.header for column in record.columns),
        rows=tuple(tuple(row) for row in record.rows),
        align=tuple(getattr(column, "align", "left") for column in record.columns),
        group_ends=frozenset(getattr(record, "sections", ())),
        notes=tuple(record.notes),
    )


def _plain(value: Any) -> str:
    from rich.text import Text

    if isinstance(value, Text):
        return value.plain
    return "" if value is None else str(value)


def _figure_blocks(study: StudyResult, numbers: _Numbers) -> list[Block]:
    from theradose.plots import study_figures

    blocks: list[Block] = [Heading("3. Figures", 2)]
    for kind, figure in study_figures(study).items():
        caption = FIGURE_CAPTIONS.get(kind, kind.replace("-", " ").capitalize() + ".")
        blocks.append(Figure(numbers.figure(caption), kind, _matplotlib_drawing(figure, kind)))
    return blocks


def _matplotlib_drawing(figure: Any, name: str) -> Callable[[str], bytes]:
    """Draw ``figure`` as SVG (text kept as text, ids salted by ``name``, no date, so the same
    report is the same file) or PNG; each format once."""
    drawn: dict[str, bytes] = {}

    def draw(fmt: str) -> bytes:
        if fmt not in drawn:
            import matplotlib

            buffer = io.BytesIO()
            settings = {"svg.fonttype": "none", "svg.hashsalt": name}
            metadata = {"Date": None} if fmt == "svg" else {}
            with matplotlib.rc_context(settings):
                figure.savefig(buffer, format=fmt, dpi=150, metadata=metadata)
            drawn[fmt] = buffer.getvalue()
        return drawn[fmt]

    return draw


def _appendix_blocks(
    study: StudyResult,
    inputs: Sequence[InputFile],
    command: str | None,
    n_cohorts: int,
    numbers: _Numbers,
) -> list[Block]:
    import numpy

    settings = (
        ("theradose version", study.version),
        ("seed", str(study.seed)),
        ("simulated trials per design and scenario", f"{study.n_trials:,}"),
        ("exact values", "computed" if study.has_exact else "not computed"),
        ("pathways", f"{n_cohorts} cohort(s) ahead from the start"),
        ("Python, NumPy", f"{platform.python_version()}, {numpy.__version__}"),
    )
    if not inputs:
        paths = [("design", d.path) for d in study.designs if d.path]
        if study.scenario_path:
            paths.append(("scenarios", study.scenario_path))
        inputs = [InputFile(role, path, "(not recorded)", 0) for role, path in paths]
    blocks: list[Block] = [
        Heading("Appendix A. Reproducibility", 2),
        Paragraph(
            "The same theradose version, inputs, seed and number of trials give the same "
            "numbers bit for bit, for any number of worker processes."
        ),
        Table(
            title=numbers.table("Settings"),
            columns=("setting", "value"),
            rows=settings,
        ),
        Table(
            title=numbers.table("Input files"),
            columns=("role", "file", "SHA-256"),
            rows=tuple((f.role, f.path, f.sha256) for f in inputs),
        ),
        Paragraph("The command that made this report:"),
        Code(command or _equivalent_command(study, n_cohorts)),
    ]
    if study.notes:
        blocks.append(Items(tuple(study.notes)))
    return blocks


def _equivalent_command(study: StudyResult, n_cohorts: int) -> str:
    designs = [d.path or f"<{d.name}>" for d in study.designs]
    words = ["theradose", "report", *designs, "--scenarios", study.scenario_path or "<scenarios>"]
    words += ["--trials", str(study.n_trials), "--seed", str(study.seed)]
    words += ["--cohorts", str(n_cohorts)] + (["--exact"] if study.has_exact else [])
    return shlex.join([*words, "--out", "report.html"]) + "  # equivalent; made from Python"


# ---------------------------------------------------------------------------------------------
# Writing


def write_report(blocks: Sequence[Block], path: str | os.PathLike[str]) -> list[Path]:
    """Write ``blocks`` to ``path`` in the format its suffix names (:data:`REPORT_SUFFIXES`),
    atomically; a Markdown report's figures go to :func:`figure_folder` first.

    Returns
    -------
    list of Path
        The files written: the figures, then the report.
    """
    from theradose.report import atomic_path, write_atomic

    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "html":
        write_atomic(path, render_html(blocks))
        return [path]
    if suffix == "md":
        folder = figure_folder(path)
        text, figures = render_markdown(blocks, folder.name)
        written = []
        if figures:
            folder.mkdir(exist_ok=True)
            for name, data in figures.items():
                with atomic_path(folder / name) as tmp:
                    tmp.write_bytes(data)
                written.append(folder / name)
        write_atomic(path, text)
        return [*written, path]
    if suffix == "docx":
        document = docx_document(blocks)
        with atomic_path(path) as tmp:
            document.save(str(tmp))
        return [path]
    raise ValueError(f"{path}: cannot write {suffix!r}; the suffix is one of {REPORT_SUFFIXES}")


def figure_folder(path: str | os.PathLike[str]) -> Path:
    """The folder of a Markdown report's PNG figures: ``report.md`` → ``report_files/``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_files")


# --- HTML


_CSS = """
body { margin: 0; background: #fff; color: #1b1b1b; }
.theradose-report { max-width: 64rem; margin: 0 auto; padding: 1.5rem 2rem 4rem;
  font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, "DejaVu Sans", sans-serif; }
.theradose-report h1 { font-size: 1.7rem; border-bottom: 2px solid #2f5597; padding-bottom: .3rem; }
.theradose-report h2 { font-size: 1.35rem; margin-top: 2.2rem; color: #2f5597; }
.theradose-report h3 { font-size: 1.15rem; margin-top: 1.8rem; }
.theradose-report h4 { font-size: 1rem; margin: 1.2rem 0 .3rem; }
.theradose-report p.note, .theradose-report .table-notes { font-size: .85rem; color: #555; }
.theradose-report nav ol { columns: 2; font-size: .9rem; }
.theradose-report .table-wrap { overflow-x: auto; margin: .8rem 0; }
.theradose-report table { border-collapse: collapse; font-size: .82rem;
  font-variant-numeric: tabular-nums; }
.theradose-report caption { caption-side: top; text-align: left; font-weight: 600;
  padding: .3rem 0; }
.theradose-report th, .theradose-report td { border: 1px solid #c8c8c8; padding: .2rem .45rem;
  vertical-align: top; }
.theradose-report th { background: #eef2f8; }
.theradose-report td.r, .theradose-report th.r { text-align: right; }
.theradose-report tr.group-end td { border-bottom: 2px solid #555; }
.theradose-report figure { margin: 1rem 0; }
.theradose-report figure svg { max-width: 100%; height: auto; }
.theradose-report figcaption { font-size: .88rem; color: #333; }
.theradose-report pre { background: #f5f5f5; padding: .6rem; overflow-x: auto;
  white-space: pre-wrap; word-break: break-all; }
@media print { .theradose-report nav { display: none; } .theradose-report { max-width: none; } }
"""


def _anchor(text: str, used: set[str]) -> str:
    anchor = _slug(text)
    candidate, k = anchor, 1
    while candidate in used:
        k += 1
        candidate = f"{anchor}-{k}"
    used.add(candidate)
    return candidate


def _escape(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def inline_svg(svg: str, prefix: str) -> str:
    """An SVG file made fit to sit inside an HTML page beside others: no XML declaration,
    doctype or comments before the ``<svg>`` element, and every id (with the references to it)
    prefixed, so two pictures' ids cannot clash."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r'(\bhref)="#([^"]+)"', rf'\1="#{prefix}-\2"', svg)
    return re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)


def render_html(blocks: Sequence[Block]) -> str:
    """One self-contained HTML page: CSS and SVG inline, no script, no external link."""
    used: set[str] = set()
    anchors = {id(b): _anchor(b.text, used) for b in blocks if isinstance(b, Heading)}
    title = next((b.text for b in blocks if isinstance(b, Heading)), "theradose report")
    body = []
    contents = [
        f'<li><a href="#{anchors[id(b)]}">{_escape(b.text)}</a></li>'
        for b in blocks
        if isinstance(b, Heading) and b.level in (2, 3)
    ]
    for block in blocks:
        if isinstance(block, Heading):
            level = min(block.level, 6)
            body.append(f'<h{level} id="{anchors[id(block)]}">{_escape(block.text)}</h{level}>')
            if block.level == 1 and contents:
                body.append('<nav aria-label="Contents"><ol>' + "".join(contents) + "</ol></nav>")
        elif isinstance(block, Paragraph):
            css = ' class="note"' if block.note else ""
            body.append(f"<p{css}>{_escape(block.text)}</p>")
        elif isinstance(block, Items):
            body.append("<ul>" + "".join(f"<li>{_escape(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, Figure):
            svg = inline_svg(block.draw("svg").decode("utf-8"), _anchor(block.name, used))
            body.append(
                f'<figure role="img" aria-label="{html.escape(block.caption)}">{svg}'
                f"<figcaption>{_escape(block.caption)}</figcaption></figure>"
            )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="theradose {html.escape(__version__)}">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        '<main class="theradose-report">\n' + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


def _html_table(table: Table) -> str:
    def css(k: int) -> str:
        return ' class="r"' if table.alignment(k) == "right" else ""

    head = "".join(f"<th{css(k)}>{_escape(c)}</th>" for k, c in enumerate(table.columns))
    rows = []
    for r, row in enumerate(table.rows):
        end = ' class="group-end"' if r in table.group_ends else ""
        cells = "".join(f"<td{css(k)}>{_escape(c)}</td>" for k, c in enumerate(row))
        rows.append(f"<tr{end}>{cells}</tr>")
    notes = "".join(f"<p class='table-notes'>{_escape(n)}</p>" for n in table.notes)
    return (
        f'<div class="table-wrap"><table><caption>{_escape(table.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{notes}</div>"
    )


# --- Markdown


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>") or " "


def render_markdown(
    blocks: Sequence[Block], figures: str | None = None
) -> tuple[str, dict[str, bytes]]:
    """GitHub-flavoured Markdown with pipe tables, and the PNG figures it links to.

    Parameters
    ----------
    figures : the folder, relative to the Markdown file, that holds the figures; None leaves
        the figures out, with a note where each would be (for a Markdown view without files,
        as in a notebook).

    Returns
    -------
    (str, dict)
        The Markdown, and the PNG files to write into ``figures`` by name.
    """
    lines: list[str] = []
    files: dict[str, bytes] = {}
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * min(block.level, 6) + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [f"_{block.text}_" if block.note else block.text, ""]
        elif isinstance(block, Items):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Code):
            lines += ["```sh", block.text, "```", ""]
        elif isinstance(block, Table):
            lines += [f"**{block.title}**", ""]
            lines.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
            rule = (
                "---:" if block.alignment(k) == "right" else "---"
                for k in range(len(block.columns))
            )
            lines.append("|" + "|".join(rule) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines += [""] + [f"_{note}_  " for note in block.notes] + ([""] if block.notes else [])
        elif isinstance(block, Figure):
            if figures is None:
                lines += [f"_{block.caption} (Not shown here: see the HTML or DOCX report.)_", ""]
                continue
            name = f"{block.name}.png"
            files[name] = block.draw("png")
            lines += [f"![{block.caption}]({figures}/{name})", "", f"_{block.caption}_", ""]
    return "\n".join(lines).rstrip() + "\n", files


# --- DOCX


def docx_document(blocks: Sequence[Block]) -> Any:
    """A Word document (python-docx): headings, paragraphs, real tables and PNG pictures, on A4
    pages with 2 cm margins."""
    import docx
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Cm, Pt

    document = docx.Document()
    section = document.sections[0]
    section.page_width, section.page_height = Cm(21.0), Cm(29.7)
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Cm(2.0))
    width = section.page_width - section.left_margin - section.right_margin
    document.styles["Normal"].font.size = Pt(10)
    title = next((b.text for b in blocks if isinstance(b, Heading)), "theradose report")
    document.core_properties.title = title
    document.core_properties.author = f"theradose {__version__}"
    for block in blocks:
        if isinstance(block, Heading):
            document.add_heading(block.text, level=min(block.level - 1, 9))
        elif isinstance(block, Paragraph):
            paragraph = document.add_paragraph()
            run = paragraph.add_run(block.text)
            if block.note:
                run.italic = True
                run.font.size = Pt(8.5)
        elif isinstance(block, Items):
            for item in block.items:
                document.add_paragraph(item, style="List Bullet")
        elif isinstance(block, Code):
            run = document.add_paragraph().add_run(block.text)
            run.font.name = "Courier New"
            run.font.size = Pt(8)
        elif isinstance(block, Table):
            _docx_table(document, block, width)
        elif isinstance(block, Figure):
            png = block.draw("png")
            natural = _png_width_inches(png, block.dpi)
            picture_width = width if natural is None else min(width, int(natural * 914400))
            document.add_picture(io.BytesIO(png), width=picture_width)
            document.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER
            document.add_paragraph(block.caption, style="Caption")
    return document


def _column_widths(table: Table, width: int) -> list[int]:
    """Column widths (EMU) sharing ``width`` in proportion to each column's longest line of
    text (a header by its longest word, as headers wrap), within 4 to 40 characters."""
    weights = []
    for k, header in enumerate(table.columns):
        lines = [line for row in table.rows for line in row[k].split("\n")]
        words = header.split()
        longest = max([len(line) for line in lines] + [len(w) for w in words] + [1])
        weights.append(min(max(longest, 4), 40))
    total = sum(weights)
    return [int(width * weight / total) for weight in weights]


def _docx_table(document: Any, table: Table, width: int) -> None:
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Pt

    caption = document.add_paragraph(style="Caption")
    caption.add_run(table.title)
    caption.paragraph_format.keep_with_next = True
    grid = document.add_table(rows=1 + len(table.rows), cols=len(table.columns))
    grid.style = "Table Grid"
    header_row = grid.rows[0]
    properties = header_row._tr.get_or_add_trPr()  # repeat the header on every page
    repeat = OxmlElement("w:tblHeader")
    repeat.set(qn("w:val"), "true")
    properties.append(repeat)
    widths = _column_widths(table, width)
    for k, column in enumerate(grid.columns):
        column.width = widths[k]  # LibreOffice reads the grid, Word each cell's width
    for r, row in enumerate([table.columns, *table.rows]):
        for k, (cell, text) in enumerate(zip(grid.rows[r].cells, row, strict=True)):
            cell.width = widths[k]
            paragraph = cell.paragraphs[0]
            run = paragraph.add_run(text)
            run.font.size = Pt(8)
            run.bold = r == 0
            if table.alignment(k) == "right":
                paragraph.alignment = WD_ALIGN_PARAGRAPH.RIGHT
    for note in table.notes:
        run = document.add_paragraph().add_run(note)
        run.italic = True
        run.font.size = Pt(8)
    if not table.notes:
        document.add_paragraph()


def _png_width_inches(png: bytes, dpi: float) -> float | None:
    """The PNG's width at ``dpi`` (its IHDR width), None when it is not a PNG."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    pixels = int.from_bytes(png[16:20], "big")
    return pixels / dpi
