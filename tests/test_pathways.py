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


# ---------------------------------------------------------------------------------------------
# Designs with [backfill] (BF-BOIN, Zhao et al. 2024): escalation cohorts enumerated, no further
# backfill patients assumed, those already treated counted with complete follow-up

BACKFILL = DESIGNS / "boin_backfill.toml"  # BOIN target 0.3, cohorts of 3, a 3-month window
BACKFILL_HEADER = "level,dlt,followup_days,dlt_day,backfill\n"
# Cohorts at levels 1, 2 and 3; two backfill patients at level 1 during cohort 2's window (one
# with a DLT on day 20), whose outcomes are both known before cohort 3's window closed.
BACKFILLED = BACKFILL_HEADER + (
    "1,0,400,,0\n" * 3 + "2,0,300,,0\n" * 3 + "1,1,280,20,1\n1,0,270,,1\n"
    + "3,0,200,,0\n3,1,190,30,0\n3,0,180,,0\n"
)


def test_a_backfill_design_says_what_the_pathways_assume():
    result = runner.invoke(app, ["paths", str(BACKFILL), "--cohorts", "1"])
    assert result.exit_code == 0, result.output
    assert (
        "escalation cohorts only: no further backfill patients are assumed (they arrive at "
        "random while a cohort is pending); backfill patients already treated (--patients) "
        "count at their level with complete follow-up"
    ) in " ".join(result.stdout.split())


def _patient_rows(path: str, start_days: float) -> str:
    """The new cohorts of a pathway as patient-file rows: escalation patients, each cohort
    treated after the one before, every window closed (the pathway's complete follow-up)."""
    rows = []
    for k, cohort in enumerate(path.split()):
        days = start_days - 2 * k  # later cohorts: shorter follow-up, still past the window
        rows += [f"{cohort[0]},{int(letter == 'T')},{days},{1 if letter == 'T' else ''},0\n"
                 for letter in cohort[1:]]
    return "".join(rows)


def test_backfill_pathways_from_a_patient_file_are_the_interim_answers(tmp_path):
    """The root is the recommendation on the patient file; every node, the recommendation on the
    file with that node's cohorts added (as escalation patients, complete): the backfill
    patients count at level 1 (2 patients, 1 DLT) along every pathway, and no others join."""
    from theradose.config import load_design
    from theradose.pathways import pathways_from_data
    from theradose.patients import read_patients
    from theradose.study import run_patient_recommendation

    design = load_design(BACKFILL)
    trial = tmp_path / "trial.csv"
    trial.write_text(BACKFILLED, encoding="utf-8")
    nodes = pathways_from_data(design, patients=str(trial), n_cohorts=2)
    assert nodes[0].path == "1NNN 2NNN 3NTN" and len(nodes) == 21
    for node in nodes:
        extended = tmp_path / "extended.csv"
        extended.write_text(BACKFILLED + _patient_rows(node.new_outcomes, 100), encoding="utf-8")
        rec = run_patient_recommendation(design, extended).recommendation
        assert not rec.wait and rec.deviations == (), node.path
        assert (rec.next_level, rec.stop_reason, rec.mtd) == (
            node.next_level,
            node.stop_reason,
            node.mtd,
        ), node.path
        assert rec.n[0] == 5 + 3 * node.new_outcomes.count("1")  # 3 + 2 backfill at level 1
    # The backfill DLT at level 1 (1 in 5) moves the MTD estimate after "3NTT 2TTT" to level 1;
    # without the backfill patients (0 in 3 there) it would be level 2.
    ending = {node.path: node for node in nodes}["1NNN 2NNN 3NTN 3NTT 2TTT"]
    assert ending.mtd == 0
    # Without the backfill column the two backfill patients would be a cohort of their own.
    plain = tmp_path / "plain.csv"
    plain.write_text(BACKFILLED.replace(",1\n", ",0\n"), encoding="utf-8")
    assert read_patients(plain, 6).backfill.sum() == 0
    as_cohorts = pathways_from_data(design, patients=str(plain), n_cohorts=1)
    assert as_cohorts[0].path == "1NNN 2NNN 1TN 3NTN"


def test_backfill_pathways_take_pending_outcomes_as_final(tmp_path):
    """A backfill patient still in the window counts as the file has them (no DLT so far): the
    root is the recommendation once every window has closed (every follow-up 62 days longer)."""
    from theradose.config import load_design
    from theradose.pathways import pathways_from_data
    from theradose.study import run_patient_recommendation

    design = load_design(BACKFILL)
    rows = [(1, 0, 400, "", 0)] * 3 + [(2, 0, 300, "", 0)] * 3 + [(3, 0, 150, "", 0)] * 3
    rows += [(2, 0, 30, "", 1), (2, 1, 20, 5, 1)]

    def patient_file(later: float) -> Path:
        path = tmp_path / f"trial_{later:g}.csv"
        lines = [f"{lv},{t},{days + later},{day},{bf}\n" for lv, t, days, day, bf in rows]
        path.write_text(BACKFILL_HEADER + "".join(lines), encoding="utf-8")
        return path

    today = run_patient_recommendation(design, patient_file(0)).recommendation
    assert today.n[1] == 4 and not today.wait  # the DLT is known; one backfill patient pending
    root = pathways_from_data(design, patients=str(patient_file(0)), n_cohorts=1)[0]
    complete = run_patient_recommendation(design, patient_file(62)).recommendation
    assert complete.n[1] == 5 and complete.backfill.pending == (0,) * 6
    assert (root.next_level, root.mtd) == (complete.next_level, complete.mtd)


@pytest.mark.parametrize("key", ["boin", "tite-boin", "tite-crm", "crm", "3+3", "blrm"])
def test_backfill_pathways_for_every_kind_of_design(tmp_path, key):
    """Pathways with backfill patients for interval, time-to-event and model-based designs: the
    root is the recommendation on the file (every window closed), and every format renders."""
    from factories import example_source
    from theradose.pathway_report import (
        render_csv,
        render_json,
        render_markdown,
        render_tree,
    )
    from theradose.pathways import pathways_from_data
    from theradose.study import run_patient_recommendation

    source = {
        **example_source(key),
        "timing": {"accrual_per_month": 2.0, "dlt_window_months": 3.0},
        "backfill": {"enabled": True, "max_per_level": 4},
    }
    design = design_from_dict(source, f"bf-{key}.toml")
    trial = tmp_path / "trial.csv"
    trial.write_text(BACKFILLED, encoding="utf-8")
    nodes = pathways_from_data(design, patients=str(trial), n_cohorts=2)
    rec = run_patient_recommendation(design, trial).recommendation
    assert not rec.wait and not rec.suspended
    assert (nodes[0].next_level, nodes[0].stop_reason, nodes[0].mtd) == (
        rec.next_level,
        rec.stop_reason,
        rec.mtd,
    )
    for render in (render_markdown, render_json, render_tree):
        assert render(design, nodes, 2)
    assert render_csv(design, nodes)


def test_backfill_patients_need_a_backfill_design_for_paths(tmp_path):
    trial = tmp_path / "trial.csv"
    trial.write_text(BACKFILLED, encoding="utf-8")
    timed = str(DESIGNS / "boin_timed.toml")
    result = runner.invoke(app, ["paths", timed, "--patients", str(trial)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "has no [backfill]" in lines[0]
