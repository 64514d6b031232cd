"""The standard operating characteristics (allocation, overdosing, DLT rate, sample size) against
an independent computation from the per-trial records, against BOIN's get.oc, and their
presentation: Markdown tables, terminal tables within 100 columns, CSV summary rows, JSON
definitions, plots."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from factories import boin_design, crm_design, reference, scenario, three_plus_three_design
from theradose import oc_report, report
from theradose.results import N_QUANTILES
from theradose.study import run_study

ROOT = Path(__file__).resolve().parents[1]
N_LEVELS = 4
TRIALS = 12_000  # two chunks: the figures go through Simulations.merge


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A study and its per-trial records (``--trials-csv``)."""
    path = tmp_path_factory.mktemp("records") / "trials.csv"
    designs = [
        three_plus_three_design(n_levels=N_LEVELS),
        boin_design(n_levels=N_LEVELS, max_patients=15),
    ]
    scenarios = [
        scenario(0.05, 0.15, 0.30, 0.50, name="MTD at 3"),
        scenario(0.45, 0.60, 0.70, 0.80, name="none acceptable"),
    ]
    study = run_study(designs, scenarios, n_trials=TRIALS, seed=5, trials_csv=path)
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith("#")))
    return study, rows


def _trials(rows, design: str, scenario_name: str) -> dict[str, np.ndarray]:
    mine = [r for r in rows if r["design"] == design and r["scenario"] == scenario_name]
    n = np.array([[int(r[f"n_{k}"]) for k in range(1, N_LEVELS + 1)] for r in mine])
    y = np.array([[int(r[f"dlt_{k}"]) for k in range(1, N_LEVELS + 1)] for r in mine])
    selected = np.array([int(r["selected_level"]) - 1 if r["selected_level"] else -1 for r in mine])
    return {"n": n, "y": y, "selected": selected}


def _independent(trials, true_mtd: int, max_patients: int) -> dict[str, float | None]:
    """Each figure from the trials themselves, as docs/definitions.md defines it."""
    n, y, selected = trials["n"], trials["y"], trials["selected"]
    total, dlts = n.sum(1), y.sum(1)
    treated = total > 0
    at = n[:, true_mtd] if true_mtd >= 0 else np.zeros_like(total)
    above = n[:, true_mtd + 1 :].sum(1)
    has = true_mtd >= 0
    out = {
        "select_above_mtd_pct": 100 * np.mean(selected > true_mtd if has else selected >= 0),
        "patients_at_mtd_pooled_pct": 100 * at.sum() / total.sum() if has else None,
        "patients_at_mtd_trial_mean_pct": (
            100 * np.mean(at[treated] / total[treated]) if has else None
        ),
        "patients_above_mtd_pooled_pct": 100 * above.sum() / total.sum(),
        "patients_above_mtd_trial_mean_pct": 100 * np.mean(above[treated] / total[treated]),
        "poor_allocation_pct": 100 * np.mean(at < 6) if has else None,
        "overdose_majority_pct": 100 * np.mean(above > 0.5 * total),
        "overdose60_pct": 100 * np.mean(above > 0.6 * max_patients),
        "overdose80_pct": 100 * np.mean(above > 0.8 * max_patients),
        "dlt_rate_pooled_pct": 100 * dlts.sum() / total.sum(),
        "dlt_rate_trial_mean_pct": 100 * np.mean(dlts[treated] / total[treated]),
        "n_mean": total.mean(),
        "n_sd": total.std(ddof=1),
        "n_min": total.min(),
        "n_max": total.max(),
    }
    for key, prob in N_QUANTILES.items():
        out[key] = float(np.quantile(total, prob))
    out["overdose_patients_pct"] = out["patients_above_mtd_trial_mean_pct"]
    return out


def test_figures_equal_an_independent_computation_from_the_trial_records(recorded):
    study, rows = recorded
    checked = 0
    for design, scen, sim, oc, _ in study.cells():
        trials = _trials(rows, design.name, scen.name)
        assert trials["n"].shape[0] == TRIALS
        expected = _independent(trials, sim.true_mtd, design.max_patients)
        for key, value in expected.items():
            got = oc.values[key]
            if value is None:
                assert got is None, key
            else:
                assert got == pytest.approx(float(value), rel=1e-12, abs=1e-12), key
                checked += 1
        total = trials["n"].sum(1)
        counts = np.bincount(total, minlength=len(oc.values["n_distribution_pct"]))
        np.testing.assert_allclose(oc.values["n_distribution_pct"], 100 * counts / TRIALS)
    assert checked >= 4 * 18


def test_errors_equal_an_independent_computation(recorded):
    """Delta-method error of the pooled ratios, binomial errors of the trial percentages."""
    study, rows = recorded
    design, scen, sim, oc, _ = next(iter(study.cells()))  # 3+3 under "MTD at 3"
    trials = _trials(rows, design.name, scen.name)
    total = trials["n"].sum(1)
    at = trials["n"][:, sim.true_mtd]
    ratio = at.sum() / total.sum()
    residual = at - ratio * total
    se = np.sqrt((residual**2).sum() / (TRIALS * (TRIALS - 1))) / total.mean()
    assert oc.se["patients_at_mtd_pooled_pct"] == pytest.approx(100 * se, rel=1e-9)
    p = oc.values["poor_allocation_pct"] / 100
    assert oc.se["poor_allocation_pct"] == pytest.approx(100 * np.sqrt(p * (1 - p) / TRIALS))
    assert oc.se["n_sd"] > 0 and oc.se["n_median"] >= 0


def test_figures_do_not_depend_on_the_number_of_workers(recorded):
    study, _ = recorded
    again = run_study(study.designs, study.scenarios, n_trials=TRIALS, seed=5, workers=2)
    for first, second in zip(study.oc, again.oc, strict=True):
        for a, b in zip(first, second, strict=True):
            assert a.values == b.values and a.se == b.se


def test_figures_survive_a_continued_run(tmp_path, recorded):
    study, _ = recorded
    kept = run_study(study.designs, study.scenarios[:1], n_trials=TRIALS, seed=5, run_dir=tmp_path)
    again = run_study(study.designs, study.scenarios[:1], n_trials=TRIALS, seed=5, run_dir=tmp_path)
    for a, b, c in zip(kept.oc, again.oc, study.oc, strict=True):
        assert a[0].values == b[0].values == c[0].values


# --- BOIN get.oc ----------------------------------------------------------------------------------


GET_OC = reference("boin_oc.json")["results"]
REFERENCE_FIGURES = {  # theradose key → (get.oc field or derived_by_driver field, in %?)
    "overdose60_pct": ("overdose60", 1.0),
    "overdose80_pct": ("overdose80", 1.0),
    "patients_at_mtd_pooled_pct": ("pct_patients_at_mtd", 1.0),
    "patients_above_mtd_pooled_pct": ("pct_patients_above_target", 1.0),
    "select_above_mtd_pct": ("pct_select_above_mtd", 1.0),
    "dlt_rate_pooled_pct": ("dlt_rate", 100.0),
}


@pytest.fixture(scope="module")
def boin_study():
    call = GET_OC[0]["call"]
    design = boin_design(
        target=call["target"], max_patients=call["ncohort"] * call["cohortsize"], n_levels=6
    )
    scenarios = [scenario(*r["p_true"], name=r["scenario"]) for r in GET_OC[::2]]
    return run_study([design], scenarios, n_trials=20_000, seed=9)


@pytest.mark.parametrize("ref", GET_OC, ids=lambda r: f"{r['scenario']}-seed{r['call']['seed']}")
def test_standard_figures_agree_with_boin_get_oc(boin_study, ref):
    """Within 4 standard errors of the difference (ours and get.oc's, which ran 10,000 trials:
    its error is ours scaled by sqrt(20,000 / 10,000))."""
    j = [s.name for s in boin_study.scenarios].index(ref["scenario"])
    oc = boin_study.oc[0][j]
    n_ref = ref["call"]["ntrial"]
    for key, (field, scale) in REFERENCE_FIGURES.items():
        expected = ref.get(field, ref["derived_by_driver"].get(field))
        expected = scale * expected
        ours, se = oc.values[key], oc.se[key]
        combined = se * np.sqrt(1 + boin_study.n_trials / n_ref)
        if key.startswith("overdose") or key == "select_above_mtd_pct":  # binomial: pool p
            p = (
                (ours * boin_study.n_trials + expected * n_ref)
                / (boin_study.n_trials + n_ref)
                / 100
            )
            combined = 100 * np.sqrt(p * (1 - p) * (1 / boin_study.n_trials + 1 / n_ref))
        assert abs(ours - expected) <= 4 * combined + 1e-9, (key, ours, expected, combined)


# --- presentation ---------------------------------------------------------------------------------


def _markdown_tables(text: str) -> list[list[list[str]]]:
    """Every pipe table of a Markdown text, as rows of cells (header first), via markdown-it."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables, table, row = [], None, None
    for token in tokens:
        if token.type == "table_open":
            table = []
        elif token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append(token.content)
        elif token.type == "tr_close":
            table.append(row)
            row = None
        elif token.type == "table_close":
            tables.append(table)
    return tables


def test_markdown_parses_as_tables_with_every_figure(recorded):
    study, _ = recorded
    text = report.study_markdown(study)
    tables = _markdown_tables(text)
    assert len(tables) == len(oc_report.study_tables(study)) == 2 * len(study.scenarios)
    for table in tables:
        assert len({len(row) for row in table}) == 1  # every row as wide as the header
    summary = tables[1]
    labels = [row[0] for row in summary]
    for figure in oc_report.FIGURES:
        if figure.key != "pcs_constrained":  # only with organ limits
            assert figure.label.replace("<", "&lt;") in labels or figure.label in labels, figure
    pcs = next(row for row in summary if row[0] == "PCS % (true MTD)")
    oc = study.oc[0][0]
    assert pcs[1] == f"{oc.values['pcs']:.1f} ±{oc.se['pcs']:.1f}"
    assert f"{study.n_trials} simulated trials per design and scenario" in text


@pytest.fixture(scope="module")
def demo_studies():
    """The demo's two runs, with few trials."""
    designs = ROOT / "designs"
    first = run_study(
        [designs / "three_plus_three.toml", designs / "boin.toml"],
        designs / "scenarios.toml",
        n_trials=300,
        seed=1,
        exact=True,
    )
    second = run_study(
        [designs / "boin_psma.toml", designs / "boin_psma_dosimetry.toml"],
        designs / "dosimetry_scenarios.toml",
        n_trials=200,
        seed=1,
    )
    return first, second


def test_terminal_tables_fit_100_columns(demo_studies):
    from theradose.tables import _rich_table, _width, column_parts

    for study in demo_studies:
        console = Console(width=100, record=True, file=io.StringIO())
        for table in oc_report.study_tables(study):
            for indices in column_parts(table, console, 100):
                # the natural width: no cell squeezed or wrapped to make it fit
                assert _width(console, _rich_table(table, indices)) <= 100, table.title
        report.print_study(study, console)
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= 100
        assert "…" not in text  # nothing truncated


def test_organ_limit_designs_show_both_pcs_and_the_prior_exceedance(demo_studies):
    study = demo_studies[1]
    console = Console(width=100, record=True, file=io.StringIO())
    report.print_study(study, console)
    text = console.export_text()
    assert "PCS % (true MTD)" in text and "PCS % (constrained optimum)" in text
    assert "optimum" in text and "prior exceedance of the organ limits" in text
    limited = study.designs[1]
    exceed = oc_report.prior_exceedance(limited)
    constraint = next(c for c in limited.constraints if c.organ_limits)
    from theradose.state import TrialState

    direct = constraint.exceedance(TrialState.start(1, limited.n_levels, 0))[0]
    np.testing.assert_allclose(exceed["kidney"], direct[:, 0])
    assert f"{exceed['kidney'][4]:.3f}" in text
    header = "\n".join(report.design_header_lines(limited))
    assert "prior P(kidney cumulative dose > limit) per level" in header
    data = report.study_to_dict(study)
    assert data["designs"][1]["prior_exceed_prob"]["kidney"] == pytest.approx(exceed["kidney"])


def test_csv_summary_rows_carry_the_json_figures(demo_studies):
    study = demo_studies[1]
    rows = list(csv.DictReader(io.StringIO(report.study_to_csv(study))))
    results = report.study_to_dict(study)["results"]
    summaries = [r for r in rows if r["level"] == "summary"]
    assert len(summaries) == len(results) == 4
    for row, result in zip(summaries, results, strict=True):
        assert (row["design"], row["scenario"]) == (result["design"], result["scenario"])
        for figure in oc_report.FIGURES:
            assert float(row[figure.key]) == pytest.approx(result[figure.key])
            assert float(row[f"{figure.key}_se"]) == pytest.approx(result["se"][figure.key])
        for key, pct in result["stop_reason_pct"].items():
            assert float(row[f"stop_{key}_pct"]) == pytest.approx(pct)
        for organ, pct in result["organ_exceed_pct"].items():
            assert float(row[f"organ_exceed_pct_{organ}"]) == pytest.approx(pct)
    level_rows = [r for r in rows if r["level"] not in ("summary", "none")]
    assert all(r["pcs"] == "" for r in level_rows)


def test_every_figure_is_defined_in_the_definitions_page_and_the_json(recorded):
    study, _ = recorded
    data = report.study_to_dict(study)
    section = (ROOT / "docs" / "definitions.md").read_text(encoding="utf-8")
    keys = [f.key for f in oc_report.FIGURES + oc_report.DURATION_FIGURES]
    keys += [f.key for f in oc_report.ORGAN_FIGURES + oc_report.PER_ORGAN_FIGURES]
    for key in keys:
        assert f"`{key}`" in section, key
        assert key in data["definitions"]
        assert key in data["results"][0]
    assert json.loads(json.dumps(data)) == data
    # figures of designs that backfill or have a randomised stage (not in this study)
    from theradose.optimisation import OPTIMISATION_DEFINITIONS

    for key in [*OPTIMISATION_DEFINITIONS, "backfill_patients_mean", "backfill_total_mean"]:
        assert f"`{key}`" in section, key
    assert {"backfill_patients_mean", "backfill_total_mean"} <= set(oc_report.definitions())


def test_crm_estimate_is_labelled_by_how_it_is_computed():
    plugin = crm_design()
    assert "plug-in" in plugin.method.estimate_labels["p_est"]
    mean = replace(plugin, method=replace(plugin.method, estimate="posterior_mean"))
    assert mean.method.estimate_labels["p_est"] == "posterior mean DLT rate"


def test_plots_are_written_beside_the_selection_chart(tmp_path, demo_studies):
    from theradose.plots import plot_selection, save_study_figures

    study = demo_studies[1]
    written = save_study_figures(study, tmp_path / "oc.png")
    names = [p.name for p in written]
    assert names == ["oc.png", "oc-allocation.png", "oc-organ-doses.png"]
    for path in written:
        data = path.read_bytes()
        assert data[:4] == b"\x89PNG" and len(data) > 20_000
    figure = plot_selection(study)
    assert figure.legends and not any(ax.get_legend() for ax in figure.axes)  # below the bars
    labels = figure.legends[0].get_texts()
    assert {"true MTD", "constrained optimum (organ limits)"} <= {t.get_text() for t in labels}


def test_duration_plot_for_designs_with_timing(tmp_path):
    from theradose.plots import save_study_figures
    from theradose.timing import Timing

    timed = replace(boin_design(n_levels=3, max_patients=9), timing=Timing(2.0, 3.0, "fixed"))
    study = run_study([timed], [scenario(0.1, 0.3, 0.5)], n_trials=100, seed=1)
    written = save_study_figures(study, tmp_path / "d.svg")
    assert [p.name for p in written] == ["d.svg", "d-allocation.svg", "d-duration.svg"]
    assert re.search(r"<svg", written[-1].read_text())


def test_sample_size_figures_from_a_histogram_match_numpy():
    from theradose.results import _hist_quantiles

    values = np.random.default_rng(3).integers(0, 40, size=999)
    counts = np.bincount(values)
    probs = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]
    np.testing.assert_allclose(_hist_quantiles(counts, probs), np.quantile(values, probs))
