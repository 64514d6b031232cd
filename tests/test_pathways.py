"""Dose transition pathways: against escalation's get_dose_paths, and equal to the interim
answer at every node for every registered method."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factories import example_design, reference
from theradose.cli import app
from theradose.config import design_from_dict
from theradose.methods import METHODS
from theradose.outcomes import parse_outcomes
from theradose.pathways import PathwaysTooLarge, dose_paths, n_path_nodes
from theradose.recommendation import recommend

DESIGNS = Path(__file__).resolve().parents[1] / "designs"
ESCALATION = reference("escalation.json")["dose_paths"]
runner = CliRunner()


def _escalation_design(entry):
    """Our design file for the escalation call of a dose_paths entry."""
    n_levels = 5
    if entry["design"] == "boin":
        return design_from_dict(
            {"method": "boin", "target": 0.25, "levels": n_levels, "max_patients": 30}, "b.toml"
        )
    assert entry["design"] == "three_plus_three" and "allow_deescalate = FALSE" in entry[
        "design_notes"
    ]
    source = {"method": "3+3", "target": 0.3, "levels": n_levels}
    return design_from_dict({**source, "three_plus_three": {"deescalate": False}}, "t.toml")


@pytest.mark.parametrize("entry", ESCALATION, ids=lambda e: e["design"])
def test_pathways_match_escalation(entry):
    """Every node of escalation's tree: the same next dose and the same carry-on flag (at a stop,
    escalation's next_dose is the recommended dose: our MTD)."""
    design = _escalation_design(entry)
    history = parse_outcomes(entry["previous_outcomes"], design.n_levels)
    nodes = {n.path: n for n in dose_paths(design, history, len(entry["cohort_sizes"]))}
    assert len(nodes) == entry["n_nodes"]
    for ref in entry["nodes"]:
        node = nodes[ref["path"]]
        assert node.goes_on == ref["continue"], ref["path"]
        level = node.next_level if node.goes_on else node.mtd
        assert (None if level is None else level + 1) == ref["next_dose"], ref["path"]


@pytest.mark.parametrize("key", list(METHODS))
def test_every_node_is_the_interim_answer(key):
    """Each node's decision and MTD estimate equal ``recommend`` on that node's outcome string:
    pathways, interim answers and simulation run one pipeline."""
    design = example_design(key)
    efficacy = design.method.uses_efficacy  # outcome letters N, T, E, B (BOIN12)
    nodes = dose_paths(design, parse_outcomes("1NNN"[: 1 + design.cohort_size], None, efficacy), 2)
    assert len(nodes) <= n_path_nodes(design.cohort_size, 2, efficacy)
    for node in nodes:
        rec = recommend(design, parse_outcomes(node.path, design.n_levels, efficacy))
        assert rec.next_level == node.next_level, node.path
        assert rec.mtd == node.mtd, node.path
        assert rec.stop_reason == node.stop_reason, node.path


def test_a_stopped_node_has_no_children_and_every_outcome_is_there():
    design = example_design("3+3")
    nodes = dose_paths(design, [], 3)
    children = {}
    for index, node in enumerate(nodes):
        children.setdefault(node.parent, []).append(index)
    for index, node in enumerate(nodes):
        kids = children.get(index, [])
        if not node.goes_on or node.depth == 3:
            assert kids == []
        else:
            assert sorted(nodes[k].new_outcomes.split()[-1][1:].count("T") for k in kids) == [
                0, 1, 2, 3
            ]  # fmt: skip


def test_organ_limits_are_learnt_from_the_dosimetry_so_far():
    """A 3+3 whose kidney limit admits only level 1 under the prior: the pathways never go
    above it, and 0/3 there treats three more."""
    source = tomllib.loads((DESIGNS / "three_plus_three.toml").read_text())
    source["dosimetry"] = {
        "cycles": 4,
        "organ": [
            {
                "name": "kidney",
                "gy_per_gbq_median": 0.43,
                "gy_per_gbq_cv": 0.37,
                "limit_gy": 8.0,
                "max_exceed_prob": 0.10,
            }
        ],
    }
    design = design_from_dict(source, "tpt_k.toml")
    nodes = dose_paths(design, [], 2)
    assert nodes[0].next_level == 0
    assert all(node.next_level in (None, 0) for node in nodes)
    first = next(n for n in nodes if n.path == "1NNN")
    assert first.next_level == 0


def test_a_tree_too_large_is_refused_before_any_work():
    with pytest.raises(PathwaysTooLarge, match="pathway nodes"):
        dose_paths(example_design("boin"), [], 10)


def test_cli_formats(tmp_path):
    design = str(DESIGNS / "boin.toml")
    result = runner.invoke(app, ["paths", design, "-o", "1NNN", "-k", "2", "-f", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert len(document["nodes"]) == 21 and document["nodes"][0]["path"] == "1NNN"
    csv_file = tmp_path / "paths.csv"
    result = runner.invoke(app, ["paths", design, "-k", "1", "-f", "csv", "--out", str(csv_file)])
    assert result.exit_code == 0, result.output
    assert csv_file.read_text().splitlines()[0] == "path,depth,decision,next_level,mtd"
    result = runner.invoke(app, ["paths", design, "-k", "2", "-f", "dot"])
    assert result.output.startswith("digraph pathways {")
    assert result.output.count("->") == 16  # 17 nodes from the start: 1TTT stops
    result = runner.invoke(app, ["paths", design, "-k", "9"])
    assert result.exit_code == 2 and "at most 100,000" in result.output
    result = runner.invoke(app, ["paths", design, "--out", str(tmp_path / "nope" / "p.json")])
    assert result.exit_code == 2 and not (tmp_path / "nope").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_cli_draws_the_tree(tmp_path, suffix):
    picture = tmp_path / f"paths{suffix}"
    result = runner.invoke(app, ["paths", str(DESIGNS / "crm.toml"), "--out", str(picture)])
    assert result.exit_code == 0, result.output
    head = picture.read_bytes()[:200]
    assert (b"<svg" in head or b"<?xml" in head) if suffix == ".svg" else head[:4] == b"\x89PNG"


def test_a_backfill_design_says_its_backfill_patients_are_not_enumerated():
    design = Path(__file__).resolve().parents[1] / "designs" / "boin_backfill.toml"
    result = CliRunner().invoke(app, ["paths", str(design), "--cohorts", "1"])
    assert result.exit_code == 0, result.output
    assert "backfill patients (who arrive while a cohort is pending) are not enumerated" in (
        result.stdout
    )
