"""Presentation of results: the JSON and CSV contracts, rich tables, decision tables,
recommendations and atomic writes (designs built in code, no files)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tomllib
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from factories import boin_design, scenario, three_plus_three_design
from theradose import __version__, report
from theradose.study import run_recommendation, run_study

N_LEVELS = 4


@pytest.fixture(scope="module")
def study():
    designs = [
        three_plus_three_design(n_levels=N_LEVELS),
        boin_design(n_levels=N_LEVELS, max_patients=12),
    ]
    scenarios = [
        scenario(0.05, 0.15, 0.30, 0.50, name="MTD at 3"),
        scenario(0.50, 0.60, 0.70, 0.80, name="all toxic"),
    ]
    return run_study(designs, scenarios, n_trials=600, seed=11, exact=True)


@pytest.fixture(scope="module")
def study_without_exact():
    designs = [boin_design(n_levels=N_LEVELS, max_patients=12)]
    return run_study(designs, [scenario(0.05, 0.15, 0.30, 0.50)], n_trials=200, seed=2)


def render(renderable) -> str:
    console = Console(width=250, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# --- JSON contract ------------------------------------------------------------------------------


def test_json_contract_top_level(study):
    data = json.loads(report.to_json(report.study_to_dict(study)))
    assert {"version", "seed", "n_trials", "designs", "scenarios", "results"} <= set(data)
    assert data["version"] == __version__
    assert (data["seed"], data["n_trials"]) == (11, 600)
    assert [d["name"] for d in data["designs"]] == ["3+3", "BOIN 0.3"]
    assert [d["method"] for d in data["designs"]] == ["3+3", "boin"]
    for design in data["designs"]:
        assert {"name", "method", "path", "source"} <= set(design)
    assert data["scenarios"] == [
        {"name": "MTD at 3", "dlt_prob": [0.05, 0.15, 0.30, 0.50]},
        {"name": "all toxic", "dlt_prob": [0.50, 0.60, 0.70, 0.80]},
    ]


def test_json_results_one_per_design_and_scenario(study):
    data = report.study_to_dict(study)
    pairs = [(r["design"], r["scenario"]) for r in data["results"]]
    assert pairs == [
        ("3+3", "MTD at 3"),
        ("3+3", "all toxic"),
        ("BOIN 0.3", "MTD at 3"),
        ("BOIN 0.3", "all toxic"),
    ]
    keys = {
        "design", "scenario", "true_mtd", "selection_pct", "no_selection_pct", "patients_mean",
        "dlt_mean", "n_mean", "dlt_total_mean", "pcs", "benchmark_selection_pct", "se",
    }  # fmt: skip
    for result in data["results"]:
        assert keys <= set(result)
        assert {k for k in keys if k not in ("design", "scenario", "true_mtd", "se")} <= set(
            result["se"]
        )
        for key in ("selection_pct", "patients_mean", "dlt_mean", "benchmark_selection_pct"):
            assert len(result[key]) == N_LEVELS
            assert len(result["se"][key]) == N_LEVELS
        assert sum(result["selection_pct"]) + result["no_selection_pct"] == pytest.approx(100)
        assert result["n_mean"] == pytest.approx(sum(result["patients_mean"]))


def test_json_true_mtd_is_one_based_or_null_and_pcs_matches(study):
    results = report.study_to_dict(study)["results"]
    by_scenario = {r["scenario"]: r for r in results if r["design"] == "BOIN 0.3"}
    assert by_scenario["MTD at 3"]["true_mtd"] == 3
    assert by_scenario["MTD at 3"]["pcs"] == by_scenario["MTD at 3"]["selection_pct"][2]
    assert by_scenario["all toxic"]["true_mtd"] is None
    assert by_scenario["all toxic"]["pcs"] == by_scenario["all toxic"]["no_selection_pct"]


def test_json_values_are_the_simulated_summary(study):
    results = report.study_to_dict(study)["results"]
    oc = study.oc[1][0]
    assert results[2]["selection_pct"] == pytest.approx(oc.values["selection_pct"])
    assert results[2]["se"]["patients_mean"] == pytest.approx(oc.se["patients_mean"])


def test_json_exact_values_when_computed(study, study_without_exact):
    for result in report.study_to_dict(study)["results"]:
        exact = result["exact"]
        assert {"selection_pct", "no_selection_pct", "patients_mean", "dlt_mean"} <= set(exact)
        assert len(exact["selection_pct"]) == N_LEVELS
        assert sum(exact["selection_pct"]) + exact["no_selection_pct"] == pytest.approx(100)
        # 600 trials: simulated and exact selection agree within 5 Monte Carlo SEs (+ 0.5 %
        # for levels that are almost never chosen, whose SE is near zero).
        for sim, se, ex in zip(
            result["selection_pct"],
            result["se"]["selection_pct"],
            exact["selection_pct"],
            strict=True,
        ):
            assert abs(sim - ex) <= 5 * se + 0.5
    for result in report.study_to_dict(study_without_exact)["results"]:
        assert "exact" not in result


def test_json_is_strict_nan_becomes_null():
    text = report.to_json({"a": [1.0, float("nan")], "b": np.float64("inf"), "c": np.bool_(True)})
    assert json.loads(text) == {"a": [1.0, None], "b": None, "c": True}
    assert "NaN" not in text


# --- CSV ----------------------------------------------------------------------------------------


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_one_row_per_level_and_none(study):
    rows = read_csv(report.study_to_csv(study))
    assert len(rows) == 2 * 2 * (N_LEVELS + 2)
    first = rows[: N_LEVELS + 2]
    assert [r["level"] for r in first] == ["1", "2", "3", "4", "none", "summary"]
    assert {r["design"] for r in first} == {"3+3"} and {r["scenario"] for r in first} == {
        "MTD at 3"
    }
    assert list(rows[0])[:10] == list(report.CSV_COLUMNS)
    assert {"exact_selection_pct", "exact_patients_mean", "exact_dlt_mean"} <= set(rows[0])


def test_csv_values_match_the_json(study):
    rows = read_csv(report.study_to_csv(study))
    result = report.study_to_dict(study)["results"][3]  # BOIN under "all toxic"
    block = rows[3 * (N_LEVELS + 2) : 4 * (N_LEVELS + 2)]
    assert {r["design"] for r in block} == {"BOIN 0.3"}
    for level, row in enumerate(block[:N_LEVELS]):
        assert float(row["selection_pct"]) == pytest.approx(result["selection_pct"][level])
        assert float(row["selection_se"]) == pytest.approx(result["se"]["selection_pct"][level])
        assert float(row["patients_mean"]) == pytest.approx(result["patients_mean"][level])
        assert float(row["dlt_mean"]) == pytest.approx(result["dlt_mean"][level])
        assert float(row["exact_selection_pct"]) == pytest.approx(
            result["exact"]["selection_pct"][level]
        )
    none_row = block[N_LEVELS]
    assert float(none_row["selection_pct"]) == pytest.approx(result["no_selection_pct"])
    assert none_row["patients_mean"] == "" and none_row["is_true_mtd"] == "True"
    assert none_row["seed"] == "11" and none_row["n_trials"] == "600"


def test_csv_has_no_exact_columns_without_exact(study_without_exact):
    rows = read_csv(report.study_to_csv(study_without_exact))
    assert not any(key.startswith("exact") for key in rows[0])


def test_csv_activity_column_uses_the_design_doses():
    from dataclasses import replace

    design = replace(boin_design(n_levels=3, max_patients=9), doses=(1.85, 3.7, 5.55))
    study = run_study([design], [scenario(0.1, 0.3, 0.5)], n_trials=50, seed=1)
    rows = read_csv(report.study_to_csv(study))
    assert [r["activity"] for r in rows] == ["1.85", "3.7", "5.55", "", ""]


# --- rich OC table ------------------------------------------------------------------------------


def test_oc_table_marks_the_true_mtd_and_shows_exact_rows(study):
    text = render(report.oc_tables(study)[0])
    lines = text.splitlines()
    assert lines[0].startswith("Scenario MTD at 3:") and lines[0].endswith("true MTD level 3")
    marked = [line for line in lines if " MTD " in line and line.startswith("│")]
    assert len(marked) == 1 and marked[0].split("│")[1].strip() == "3"  # level 3's row
    assert "0.3 MTD" in marked[0]
    oc = study.oc[1][0]
    assert f"{oc.values['selection_pct'][2]:.1f} ±{oc.se['selection_pct'][2]:.1f}" in marked[0]
    exact = study.exact[1][0]
    assert f"exact {exact['selection_pct'][2]:.1f}" in text
    # beneath selection %, patients and DLTs of every level, and the "none" selection
    assert text.count("exact") == 2 * (3 * N_LEVELS + 1)


def test_oc_summary_table_shows_pcs_and_stop_reasons(study):
    text = render(report.oc_tables(study)[3])  # summary of "all toxic"
    assert "correct" not in text  # that mark belongs to the per-level table
    oc = study.oc[0][1]
    pcs_row = next(line for line in text.splitlines() if "PCS % (true MTD)" in line)
    assert f"{oc.values['pcs']:.1f} ±{oc.se['pcs']:.1f}" in pcs_row
    assert "% stopped: lowest level too toxic" in text
    assert "PCS % (constrained optimum)" not in text  # no design has organ limits
    per_level = render(report.oc_tables(study)[2])
    none_row = next(line for line in per_level.splitlines() if line.startswith("│ none"))
    assert "correct" in none_row and "true MTD none" in per_level


def test_footer_records_version_seed_and_trials(study):
    footer = " ".join(report.study_footer(study))
    assert __version__ in footer and "600 simulated trials" in footer and "seed 11" in footer


# --- decision tables ----------------------------------------------------------------------------


def test_boin_decision_json_is_the_rows_with_null_where_none():
    design = boin_design(n_levels=5, max_patients=12)
    rows = json.loads(report.render_decision_table(design, "json"))
    assert rows == design.method.decision_rows()
    assert list(rows[0]) == [
        "n",
        "escalate_if_dlt_le",
        "deescalate_if_dlt_ge",
        "eliminate_if_dlt_ge",
    ]
    assert rows[0]["eliminate_if_dlt_ge"] is None  # no elimination with one patient
    # Liu & Yuan (2015), target 0.3: with 6 patients escalate if ≤ 1, de-escalate if ≥ 3,
    # eliminate if ≥ 4.
    assert rows[5] == {
        "n": 6,
        "escalate_if_dlt_le": 1,
        "deescalate_if_dlt_ge": 3,
        "eliminate_if_dlt_ge": 4,
    }


def test_boin_decision_markdown_and_csv():
    design = boin_design(n_levels=5, max_patients=12)
    markdown = report.render_decision_table(design, "markdown")
    assert markdown.startswith("# Decision table: BOIN 0.3")
    assert "λe = 0.2365" in markdown and "λd = 0.3585" in markdown
    assert "levels: 1, 2, 3, 4, 5" in markdown
    assert "| 1 | 0 | 1 | — |" in markdown
    assert "| 6 | 1 | 3 | 4 |" in markdown
    assert __version__ in markdown
    rows = read_csv(report.render_decision_table(design, "csv"))
    assert len(rows) == 12
    assert rows[0] == {
        "n": "1",
        "escalate_if_dlt_le": "0",
        "deescalate_if_dlt_ge": "1",
        "eliminate_if_dlt_ge": "",
    }


def test_three_plus_three_decision_table_in_every_format():
    design = three_plus_three_design(n_levels=3)
    assert json.loads(report.render_decision_table(design, "json")) == design.method.rule_rows()
    text = render(report.render_decision_table(design, "rich"))
    assert "Decision table: 3+3" in text and "treat 3 more at this level" in text
    assert "1 of 3" in report.render_decision_table(design, "markdown")
    assert read_csv(report.render_decision_table(design, "csv"))[0]["dlts"] == "0 of 3"
    with pytest.raises(ValueError, match="format"):
        report.render_decision_table(design, "html")


def test_design_header_lists_activities():
    from dataclasses import replace

    design = replace(boin_design(n_levels=2, max_patients=6), doses=(1.85, 3.7), dose_unit="GBq")
    lines = report.design_header_lines(design)
    assert "levels: 1 (1.85 GBq), 2 (3.7 GBq)" in lines


# --- recommendations ----------------------------------------------------------------------------


def test_recommendation_json_boin_stays_after_one_of_three():
    result = run_recommendation(boin_design(n_levels=5), "1NNN 2NTN")
    data = json.loads(report.to_json(report.recommendation_to_dict(result)))
    assert {"next_level", "stop", "stop_reason", "mtd", "levels", "deviations", "version",
            "design"} <= set(data)  # fmt: skip
    # 1/3 at level 2: 1 > floor(3 λe) = 0 and 1 < ceil(3 λd) = 2: stay at level 2.
    assert data["next_level"] == 2 and data["stop"] is False and data["stop_reason"] is None
    assert data["mtd"] == 2
    assert data["version"] == __version__ and data["design"] == "BOIN 0.3"
    assert data["outcomes"] == "1NNN 2NTN"
    assert [lv["level"] for lv in data["levels"]] == [1, 2, 3, 4, 5]
    assert [(lv["n"], lv["dlt"]) for lv in data["levels"]][:3] == [(3, 0), (3, 1), (0, 0)]
    assert data["levels"][2]["p_est"] is None  # untreated: NaN → null
    assert data["levels"][1]["p_est"] == pytest.approx(
        result.recommendation.level_summary["p_est"][1]
    )
    assert data["levels"][0]["eliminated"] is False


def test_recommendation_stop_and_deviation():
    result = run_recommendation(three_plus_three_design(n_levels=4), "1TTN")
    data = report.recommendation_to_dict(result)
    assert data["stop"] is True and data["next_level"] is None
    assert data["stop_reason"] == "too_toxic" and data["mtd"] is None
    text = render(report.recommendation_rich(result))
    assert "Stop the trial: lowest level too toxic." in text
    assert "Current MTD estimate: none." in text

    skipped = run_recommendation(three_plus_three_design(n_levels=4), "1NNN 3NNN")
    data = report.recommendation_to_dict(skipped)
    assert data["deviations"] == ["cohort 2 was treated at level 3; the design said 2"]
    assert "Deviation: cohort 2" in render(report.recommendation_rich(skipped))


def test_recommendation_rich_names_the_next_level_with_activity():
    from dataclasses import replace

    design = replace(boin_design(n_levels=3, max_patients=9), doses=(1.85, 3.7, 5.55),
                     dose_unit="GBq")  # fmt: skip
    text = render(report.recommendation_rich(run_recommendation(design, "1NNN")))
    assert "Next cohort: level 2 (3.7 GBq)." in text
    assert "← next" in text


# --- atomic writes ------------------------------------------------------------------------------


def test_write_atomic_replaces_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    report.write_atomic(target, "new ✓\n")
    assert target.read_text(encoding="utf-8") == "new ✓\n"
    assert os.listdir(tmp_path) == ["out.json"]
    assert (target.stat().st_mode & 0o777) == 0o666 & ~report._umask()


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), report.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_study_writers_produce_parseable_files(tmp_path, study):
    report.write_study_json(study, tmp_path / "r.json")
    report.write_study_csv(study, tmp_path / "r.csv")
    assert json.loads((tmp_path / "r.json").read_text())["n_trials"] == 600
    assert len(read_csv((tmp_path / "r.csv").read_text())) == 2 * 2 * (N_LEVELS + 2)
    assert sorted(os.listdir(tmp_path)) == ["r.csv", "r.json"]


def test_selection_plot_has_one_panel_per_scenario(tmp_path, study):
    from theradose.plots import plot_selection, save_figure

    figure = plot_selection(study)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["Scenario MTD at 3", "Scenario all toxic"]
    bars = [p for p in visible[0].patches if p.get_height() > 0 and p.get_width() < 0.5]
    heights = sorted(round(b.get_height(), 6) for b in bars)
    expected = [*study.oc[0][0].values["selection_pct"], study.oc[0][0].values["no_selection_pct"]]
    expected += [*study.oc[1][0].values["selection_pct"], study.oc[1][0].values["no_selection_pct"]]
    assert heights == sorted(round(v, 6) for v in expected if v > 0)
    one = plot_selection(study, "all toxic")
    assert [ax.get_title() for ax in one.axes if ax.get_visible()] == ["Scenario all toxic"]
    save_figure(one, tmp_path / "sel.png")
    assert (tmp_path / "sel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["sel.png"]
    with pytest.raises(ValueError, match="no scenario named"):
        plot_selection(study, "S9")
    assert math.isfinite(figure.get_figwidth())


def test_designs_without_exact_values_get_a_note(monkeypatch):
    import theradose.exact

    real = theradose.exact.exact_operating_characteristics

    def only_three_plus_three(design, scenario):
        if design.method_key != "3+3":
            raise ValueError(f"design {design.name!r} is not count-based")
        return real(design, scenario)

    monkeypatch.setattr(theradose.exact, "exact_operating_characteristics", only_three_plus_three)
    designs = [three_plus_three_design(n_levels=3), boin_design(n_levels=3, max_patients=9)]
    study = run_study(designs, [scenario(0.1, 0.3, 0.5)], n_trials=100, seed=1, exact=True)
    assert study.exact[0][0] is not None and study.exact[1][0] is None
    assert study.notes == ("no exact values for 'BOIN 0.3': design 'BOIN 0.3' is not count-based",)
    data = report.study_to_dict(study)
    assert ["exact" in r for r in data["results"]] == [True, False]
    assert data["notes"] == list(study.notes)
    rows = read_csv(report.study_to_csv(study))
    assert rows[0]["exact_selection_pct"] != "" and rows[5]["exact_selection_pct"] == ""
    assert study.notes[0] in report.study_footer(study)
    text = render(report.oc_tables(study)[0])
    assert text.count("exact") == 3 * 3 + 1  # the 3+3's cells only


# --- trial duration (designs with [timing]) -----------------------------------------------------


@pytest.fixture(scope="module")
def timed_study():
    from dataclasses import replace

    from theradose.timing import Timing

    waits = boin_design(n_levels=N_LEVELS, max_patients=12)
    waits = replace(waits, name="BOIN timed", timing=Timing(2.0, 3.0, "fixed"))
    designs = [waits, boin_design(n_levels=N_LEVELS, max_patients=12)]
    return run_study(designs, [scenario(0.05, 0.15, 0.30, 0.50)], n_trials=200, seed=4)


def test_summary_table_shows_duration_only_when_a_design_has_timing(timed_study, study):
    text = render(report.oc_tables(timed_study)[1])
    oc = timed_study.oc[0][0]
    mean, se = oc.values["duration_months_mean"], oc.se["duration_months_mean"]
    # 4 cohorts of 3 arriving half a month apart (2 a month), each waiting its 3-month window
    assert mean == pytest.approx(4 * (1.5 + 3.0), abs=1e-5) and se == pytest.approx(0, abs=1e-5)
    assert f"{mean:.1f} ±{se:.1f}" in text
    assert "duration, months" in text and "DLTs after the last decision" in text
    lines = text.splitlines()
    duration_rows = [line for line in lines if "duration, months" in line]
    duration_rows += [line for line in lines if "pending" in line or "DLTs after" in line]
    # the untimed design's column (the last) is "—" on each duration row
    assert [row.split("│")[-2].strip() for row in duration_rows] == [report.NONE] * 4
    assert "duration" not in render(report.oc_tables(study)[1])


def test_json_and_csv_carry_duration_figures(timed_study, study):
    results = report.study_to_dict(timed_study)["results"]
    for key, _, _ in report.TIMING_FIGURES:
        assert isinstance(results[0][key], float) and isinstance(results[0]["se"][key], float)
        assert results[1][key] is None and results[1]["se"][key] is None
    assert all(r["duration_months_mean"] is None for r in report.study_to_dict(study)["results"])

    columns = report.study_csv_columns(timed_study)
    assert set(report.CSV_TIMING_COLUMNS) <= set(columns)
    rows = read_csv(report.study_to_csv(timed_study))
    timed_rows, untimed_rows = rows[: N_LEVELS + 2], rows[N_LEVELS + 2 :]
    p95 = results[0]["duration_months_p95"]
    assert {float(r["duration_months_p95"]) for r in timed_rows} == {p95}
    assert {r["enrolled_while_pending_pct"] for r in timed_rows} == {"0.0"}
    assert all(r[c] == "" for r in untimed_rows for c in report.CSV_TIMING_COLUMNS)
    assert not set(report.CSV_TIMING_COLUMNS) & set(report.study_csv_columns(study))


def test_recommendation_json_from_outcomes_has_no_patients_or_warnings():
    data = report.recommendation_to_dict(run_recommendation(boin_design(n_levels=5), "1NNN"))
    assert (data["warnings"], data["notes"], data["suspended"]) == ([], [], False)
    assert data["patients"] is None and data["patients_path"] is None
    assert data["review_in_days"] is None and "pending" not in data["levels"][0]


DESIGNS = Path(__file__).resolve().parents[1] / "designs"


def test_json_records_each_scenario_as_read_from_its_file():
    """A dosimetry-driven scenario's organs, NTCP and onsets are not in its dlt_prob: the JSON
    keeps the scenario's table as read, enough to re-run it after the file changed."""
    scenarios = DESIGNS / "dosimetry_scenarios.toml"
    study = run_study([DESIGNS / "boin_psma_dosimetry.toml"], scenarios, n_trials=50, seed=1)
    data = json.loads(report.to_json(report.study_to_dict(study)))
    with open(scenarios, "rb") as f:
        tables = tomllib.load(f)["scenario"]
    assert [s["source"] for s in data["scenarios"]] == json.loads(json.dumps(tables))
