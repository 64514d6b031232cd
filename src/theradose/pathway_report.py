"""Dose transition pathways for a protocol: a tree (rich), a table (Markdown, CSV, JSON) and a
picture (Graphviz DOT, rendered to SVG or PNG when Graphviz's ``dot`` is installed)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from theradose import __version__
from theradose.design import Design
from theradose.pathways import PathNode
from theradose.report import level_text, to_csv, to_json

PATH_FORMATS = ("rich", "markdown", "csv", "json", "dot")
PATH_COLUMNS = {
    "path": "outcomes so far",
    "depth": "cohorts ahead",
    "decision": "decision",
    "next_level": "next level",
    "mtd": "MTD estimate",
}
RENDERED_SUFFIXES = (".svg", ".png")


def decision_text(design: Design, node: PathNode) -> str:
    if node.goes_on:
        return f"treat at {level_text(design, node.next_level)}"
    mtd = f", MTD {level_text(design, node.mtd)}" if node.mtd is not None else ", no MTD"
    return f"stop ({node.stop_reason.label}){mtd}"


def path_rows(design: Design, nodes: Sequence[PathNode]) -> list[dict[str, Any]]:
    """One row per node: the outcomes, how many cohorts ahead, the decision in words, the next
    level (1-based, None when stopping) and the MTD estimate (1-based, None for none)."""
    return [
        {
            "path": node.path or "(start)",
            "depth": node.depth,
            "decision": decision_text(design, node),
            "next_level": None if node.next_level is None else node.next_level + 1,
            "mtd": None if node.mtd is None else node.mtd + 1,
        }
        for node in nodes
    ]


def header_lines(design: Design, nodes: Sequence[PathNode], n_cohorts: int) -> list[str]:
    lines = [
        f"Dose transition pathways: {design.name} ({design.method_key}), "
        f"{n_cohorts} cohort(s) of {design.cohort_size} ahead, {len(nodes)} nodes",
    ]
    if nodes and nodes[0].path:
        lines.append(f"from the trial so far: {nodes[0].path}")
    if design.method.tite:
        lines.append("time-to-event design: every patient is shown with complete follow-up")
    if design.backfill is not None:
        lines.append(
            "escalation cohorts only: no further backfill patients are assumed (they arrive at "
            "random while a cohort is pending); backfill patients already treated (--patients) "
            "count at their level with complete follow-up"
        )
    if design.dosimetry is not None and design.dosimetry.organs:
        lines.append(
            "organ-dose limits as learnt from the dosimetry measured so far (the future "
            "patients' dosimetry is unknown)"
        )
    lines.append(f"theradose {__version__}" + (f" ({design.path})" if design.path else ""))
    return lines


def _children(nodes: Sequence[PathNode]) -> dict[int | None, list[int]]:
    children: dict[int | None, list[int]] = {}
    for index, node in enumerate(nodes):
        children.setdefault(node.parent, []).append(index)
    return children


def render_tree(design: Design, nodes: Sequence[PathNode], n_cohorts: int):
    """A rich tree: each cohort's outcome, then the decision after it."""
    from rich.console import Group
    from rich.text import Text
    from rich.tree import Tree

    children = _children(nodes)
    root = Tree(Text(f"{nodes[0].path or 'start'} → {decision_text(design, nodes[0])}"))

    def grow(branch, index):
        for child in children.get(index, []):
            node = nodes[child]
            cohort = node.new_outcomes.split()[-1]
            grow(branch.add(f"{cohort} → {decision_text(design, node)}"), child)

    grow(root, 0)
    header = [
        Text(line, style="dim" if i else "bold")
        for i, line in enumerate(header_lines(design, nodes, n_cohorts))
    ]
    return Group(*header, root)


def render_markdown(design: Design, nodes: Sequence[PathNode], n_cohorts: int) -> str:
    lines = [f"# {header_lines(design, nodes, n_cohorts)[0]}", ""]
    lines += [f"{line}  " for line in header_lines(design, nodes, n_cohorts)[1:]]
    lines += ["", "| " + " | ".join(PATH_COLUMNS.values()) + " |"]
    lines.append("|" + "|".join("---" for _ in PATH_COLUMNS) + "|")
    for row in path_rows(design, nodes):
        cells = ["—" if row[k] is None else str(row[k]) for k in PATH_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_csv(design: Design, nodes: Sequence[PathNode]) -> str:
    return to_csv(path_rows(design, nodes), list(PATH_COLUMNS))


def render_json(design: Design, nodes: Sequence[PathNode], n_cohorts: int) -> str:
    document = {
        "version": __version__,
        "design": design.name,
        "design_path": design.path,
        "method": design.method_key,
        "cohorts_ahead": n_cohorts,
        "notes": header_lines(design, nodes, n_cohorts)[1:-1],
        "nodes": [
            {**row, "parent": node.parent, "new_outcomes": node.new_outcomes}
            for row, node in zip(path_rows(design, nodes), nodes, strict=True)
        ],
    }
    return to_json(document)


def render_dot(design: Design, nodes: Sequence[PathNode], n_cohorts: int) -> str:
    """Graphviz DOT: one box per node (its cohort and the decision), edges from the parent."""

    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    title = header_lines(design, nodes, n_cohorts)[0]
    lines = [
        "digraph pathways {",
        "  rankdir=LR;",
        f"  label={quoted(title)}; labelloc=t;",
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
    ]
    for index, node in enumerate(nodes):
        cohort = node.new_outcomes.split()[-1] if node.new_outcomes else (node.path or "start")
        colour = "" if node.goes_on else ", style=filled, fillcolor=lightgrey"
        label = f"{cohort}\\n{decision_text(design, node)}"
        lines.append(f'  n{index} [label="{label.replace(chr(34), "")}"{colour}];')
        if node.parent is not None:
            lines.append(f"  n{node.parent} -> n{index};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_picture(dot_source: str, path: Path) -> None:
    """Render DOT to ``path`` (.svg or .png) with Graphviz's ``dot``.

    Raises
    ------
    RuntimeError
        When Graphviz is not installed, or ``dot`` fails.
    """
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            f"{path}: rendering needs Graphviz's 'dot' (Debian: apt install graphviz); "
            "write the DOT source with --format dot instead"
        )
    from theradose.report import atomic_path

    with atomic_path(path) as tmp:
        result = subprocess.run(
            [dot, f"-T{path.suffix[1:]}", "-o", str(tmp)],
            input=dot_source.encode(),
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"{path}: dot failed: {message}")
