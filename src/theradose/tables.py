"""One table record and one renderer per format (rich for the terminal, Markdown).

Results build :class:`TableRecord` objects (title, columns, rows, notes); they never format
them. :func:`render_rich` gives a renderable that fits the terminal's width at print time: when
the table is wider, its columns are split into several tables, each repeating the key columns
(such as the level or the figure's name) and never separating the columns of one group (one
design's, one figure's). :func:`render_markdown` writes a GitHub-flavoured pipe table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.measure import Measurement
    from rich.table import Table

HEADER_WIDTH = 18  # a header line longer than this and than the column's cells wraps at spaces


@dataclass(frozen=True)
class Column:
    """A column: its header ("\\n" separates header lines), alignment and group."""

    header: str
    align: str = "right"  # "left" or "right"
    group: str = ""  # columns of one group stay together when a table is split
    wrap_at: int | None = None  # cells wider than this wrap at spaces (a long label column)


@dataclass(frozen=True)
class TableRecord:
    """A table as data: every cell is text ("\\n" separates lines within a cell).

    Attributes
    ----------
    title : shown above the table
    columns : the columns, key columns first
    rows : one tuple of cells per row
    key_columns : how many leading columns identify a row (repeated in every part of a split)
    sections : indices of rows after which a rule is drawn (rich) — groups of rows
    notes : lines under the table (definitions, footnotes)
    """

    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, ...], ...]
    key_columns: int = 1
    sections: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(
                    f"{self.title}: a row has {len(row)} cells for {len(self.columns)}"
                )


# ---------------------------------------------------------------------------------------------
# Markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>") or " "


def render_markdown(table: TableRecord, level: int = 3) -> str:
    """The table as Markdown: a heading (``level`` #), the pipe table, the notes as a list."""
    lines = [f"{'#' * level} {table.title}", ""] if table.title else []
    lines.append("| " + " | ".join(_md_cell(c.header.replace("\n", " ")) for c in table.columns))
    lines[-1] += " |"
    lines.append(
        "|" + "|".join("---:" if c.align == "right" else "---" for c in table.columns) + "|"
    )
    for row in table.rows:
        lines.append("| " + " | ".join(_md_cell(cell) for cell in row) + " |")
    if table.notes:
        lines.append("")
        lines += [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# rich


def _rich_table(table: TableRecord, indices: Sequence[int]) -> Table:
    from rich.table import Table
    from rich.text import Text

    out = Table(show_lines=False, pad_edge=True)
    for k in indices:
        column = table.columns[k]
        cells = [row[k] for row in table.rows]
        widest = max((len(line) for cell in cells for line in cell.split("\n")), default=0)
        if column.wrap_at is not None:
            widest = min(widest, column.wrap_at)
        words = max((len(word) for word in column.header.split()), default=0)
        header = max((len(line) for line in column.header.split("\n")), default=0)
        out.add_column(
            Text(column.header),
            justify=column.align,
            overflow="fold",
            max_width=max(widest, words, min(header, HEADER_WIDTH)),
            min_width=max(widest, 1),
        )
    for r, row in enumerate(table.rows):
        out.add_row(*(Text(row[k]) for k in indices), end_section=r in table.sections)
    return out


def _width(console: Console, table: Table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update(width=10_000), table).maximum


def column_parts(table: TableRecord, console: Console, width: int) -> list[list[int]]:
    """Column indices of each part: the key columns, then whole groups, as many as fit in
    ``width`` (a group wider than ``width`` alone gets a part of its own)."""
    keys = list(range(table.key_columns))
    groups: list[list[int]] = []
    for k in range(table.key_columns, len(table.columns)):
        group = table.columns[k].group
        if groups and group and table.columns[groups[-1][-1]].group == group:
            groups[-1].append(k)
        else:
            groups.append([k])
    parts: list[list[int]] = []
    current: list[int] = []
    for group in groups:
        trial = keys + current + group
        if current and _width(console, _rich_table(table, trial)) > width:
            parts.append(keys + current)
            current = list(group)
        else:
            current += group
    if current or not parts:
        parts.append(keys + current)
    return parts


class FittedTable:
    """A rich renderable of a :class:`TableRecord` that splits its columns into as many tables
    as the console's width needs, at print time."""

    def __init__(self, table: TableRecord) -> None:
        self.table = table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        table = self.table
        parts = column_parts(table, console, options.max_width)
        for i, indices in enumerate(parts):
            title = table.title
            if len(parts) > 1:
                title += f" ({i + 1} of {len(parts)})"
            if title:
                yield Text(title, style="bold")
            yield _rich_table(table, indices)
        for note in table.notes:
            yield Text(note, style="dim")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        from rich.measure import Measurement

        widths = [
            _width(console, _rich_table(self.table, indices))
            for indices in column_parts(self.table, console, options.max_width)
        ]
        return Measurement(min(widths), min(max(widths), options.max_width))


def render_rich(table: TableRecord) -> FittedTable:
    """The table for the terminal, split to the console's width when printed."""
    return FittedTable(table)
