"""Organ-dose constraints in the engine, dosimetry-driven scenarios and their design files."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import KIDNEY
from theradose.config import ConfigError, design_from_dict, load_design, load_scenarios
from theradose.constraints import OrganDoseLimits
from theradose.dosimetry import Dosimetry, OrganModel
from theradose.engine import run_trials
from theradose.pipeline import select_mtd
from theradose.results import OperatingCharacteristics
from theradose.scenario import Scenario, truth_for
from theradose.simulation import simulate
from theradose.state import StopReason
from theradose.virtual_patients import VirtualPatients, chunk_patients

DESIGNS = Path(__file__).resolve().parents[1] / "designs"
DOSES = [3.7, 5.55, 7.4, 9.25, 11.1]


def boin_with(organs=(), **dosimetry):
    source = {
        "method": "boin",
        "target": 0.25,
        "doses": DOSES,
        "max_patients": 24,
        "dosimetry": {"cycles": 4, **dosimetry, "organ": list(organs)},
    }
    return design_from_dict(source, "d.toml")




def _patients(design, scenario, n_trials=400, seed=1):
    return chunk_patients(seed, 0, n_trials, design.max_patients, False).with_dosimetry(
        design, scenario
    )


@pytest.mark.parametrize(
    "organ",
    [{"limit_gy": 1e6}, {"limit_gy": 5.0, "max_exceed_prob": 1.0}],
    ids=["unreachable-limit", "tracked-only"],
)
def test_a_very_loose_limit_changes_nothing(organ):
    """Same patients, same results: a limit no patient can reach, or a tight one that is only
    tracked (max_exceed_prob = 1), is no constraint at all."""
    scen = load_scenarios(DESIGNS / "dosimetry_scenarios.toml")[0]
    free = boin_with()
    loose = boin_with([{**KIDNEY, **organ}], measurement_cv=0.15)
    truth = truth_for(scen, free)
    a = run_trials(free, truth.dlt_prob, _patients(free, scen))
    b = run_trials(loose, truth.dlt_prob, _patients(loose, scen))
    np.testing.assert_array_equal(a.patient_level, b.patient_level)
    np.testing.assert_array_equal(a.patient_dlt, b.patient_dlt)
    np.testing.assert_array_equal(select_mtd(free, a), select_mtd(loose, b))
    assert not b.patient_capped.any() and (b.ruled_out_at < 0).all()


def test_no_level_admissible_stops_before_anyone_is_treated():
    design = boin_with([{**KIDNEY, "limit_gy": 1.0}])
    scen = Scenario("S", (0.05, 0.1, 0.2, 0.3, 0.5))
    state = run_trials(design, np.array(scen.dlt_prob), _patients(design, scen, 50))
    assert (state.stop_reason == StopReason.NO_ADMISSIBLE).all()
    assert (state.n_enrolled == 0).all() and (select_mtd(design, state) == -1).all()


def test_start_moves_down_to_the_highest_admissible_level():
    design = replace(boin_with([KIDNEY]), start_level=4)
    constraint = next(c for c in design.constraints if isinstance(c, OrganDoseLimits))
    scen = Scenario("S", (0.05, 0.1, 0.2, 0.3, 0.5))
    state = run_trials(design, np.array(scen.dlt_prob), _patients(design, scen, 20))
    prior = replace(state, patient_measured_gy_per_gbq=None, dosimetry_stats=None)
    prior_ok = constraint.allowed(prior)[0]
    assert 0 < np.flatnonzero(prior_ok)[-1] < 4
    assert (state.patient_level[:, 0] == np.flatnonzero(prior_ok)[-1]).all()


def test_never_treat_at_an_inadmissible_level():
    design = boin_with([KIDNEY], measurement_cv=0.15)
    scen = load_scenarios(DESIGNS / "dosimetry_scenarios.toml")[1]
    truth = truth_for(scen, design)
    state = run_trials(design, truth.dlt_prob, _patients(design, scen, 300))
    constraint = design.constraints[-1]
    for k in range(3, design.max_patients, 3):
        before = state.take(np.arange(state.n_trials))
        before.patient_level[:, k:] = -1
        before.dosimetry_stats = None  # recompute from the patients treated before k
        allowed = constraint.allowed(before)
        given = state.patient_level[:, k]
        treated = given >= 0
        assert allowed[np.flatnonzero(treated), given[treated]].all()


@settings(max_examples=30, deadline=None)
@given(
    limit=st.floats(8.0, 40.0),
    cv=st.floats(0.0, 0.3),
    rule=st.sampled_from(["reduce", "cycles"]),
    bed=st.booleans(),
)
def test_capping_keeps_every_estimated_cumulative_dose_within_the_limit(limit, cv, rule, bed):
    organ = dict(KIDNEY, max_exceed_prob=0.9)
    if bed:
        del organ["limit_gy"]
        organ.update(
            limit_bed_gy=limit,
            alpha_beta_gy=2.6,
            repair_half_time_h=2.8,
            effective_half_time_h=40.0,
        )
    else:
        organ["limit_gy"] = limit
    design = boin_with([organ], measurement_cv=cv, patient_cap=True, cap_rule=rule)
    scen = Scenario("S", (0.0, 0.0, 0.0, 0.0, 0.0))  # escalate to the top
    state = run_trials(design, np.array(scen.dlt_prob), _patients(design, scen, 60))
    treated = state.patient_level >= 0
    model = design.dosimetry.organs[0]
    g = state.patient_measured_gy_per_gbq[..., 0]
    first = np.asarray(DOSES)[np.maximum(state.patient_level, 0)]
    later = (state.patient_total_activity - first) / 3  # the same activity each later cycle
    schedule = np.stack([first] + [later] * 3, axis=-1)
    estimated = model.cumulative(schedule, g) if rule == "reduce" else None
    if rule == "reduce":
        cycle_one = model.cumulative(first[..., None], g)
        bound = np.maximum(model.limit, cycle_one) * (1 + 1e-9)
        assert np.all(estimated[treated] <= bound[treated])
    assert np.all(state.patient_total_activity[treated] <= 4 * first[treated] * (1 + 1e-12))
    assert np.all(state.patient_total_activity[treated] >= first[treated] * (1 - 1e-12))


def test_simulated_exceedance_matches_the_true_probability():
    """A one-level design: every patient gets the same schedule, so the % of patients past the
    kidney limit must agree with the level's true exceedance probability."""
    source = {
        "method": "boin",
        "target": 0.25,
        "doses": [9.25],
        "max_patients": 12,
        "dosimetry": {"cycles": 4, "organ": [dict(KIDNEY, max_exceed_prob=0.99)]},
    }
    design = design_from_dict(source, "one.toml")
    scen = Scenario("S", (0.0,))
    truth = truth_for(scen, design)
    sim = simulate([design], [scen], 4000, seed=5)[0][0]
    oc = OperatingCharacteristics.from_simulations(sim)
    p = truth.exceed_prob[0, 0]
    # 12 patients per trial, all on the same schedule: Bernoulli(p) each, independent
    se = np.sqrt(p * (1 - p) / (12 * 4000))
    assert oc.values["n_mean"] == 12
    assert abs(oc.values["organ_exceed_pct"]["kidney"] / 100 - p) < 4 * se


def test_constrained_optimum_and_new_figures_are_reported():
    designs = [load_design(DESIGNS / n) for n in ("boin_psma.toml", "boin_psma_dosimetry.toml")]
    scenarios = load_scenarios(DESIGNS / "dosimetry_scenarios.toml")
    sims = simulate(designs, scenarios, 300, seed=2)
    free, limited = (OperatingCharacteristics.from_simulations(row[1]) for row in sims)
    organs = {"kidney", "red_marrow", "parotid"}
    # the free design tracks the same organs (max_exceed_prob = 1): its patients pass the limits
    # far more often, and it never rules a level out
    assert set(free.values["organ_exceed_pct"]) == set(limited.values["organ_exceed_pct"]) == organs
    for organ in organs:
        assert free.values["organ_exceed_pct"][organ] > limited.values["organ_exceed_pct"][organ]
    assert free.values["capped_pct"] == 0
    assert all(v == 0 for v in free.values["ruled_out_pct"])
    assert limited.values["capped_pct"] > 0
    assert limited.values["activity_mean"] < free.values["activity_mean"]
    assert sims[1][1].optimum <= sims[1][1].true_mtd
    assert limited.values["pcs_constrained"] >= 0


@pytest.mark.parametrize(
    ("organ", "message"),
    [
        ({"gy_per_gbq_median": -0.4}, "gy_per_gbq_median = -0.4"),
        ({"gy_per_gbq_cv": 0}, "gy_per_gbq_cv = 0"),
        ({"limit_gy": None, "limit_bed_gy": 40.0}, "alpha_beta_gy"),
        ({"limit_gy": "23"}, "limit_gy"),
        ({"limt_gy": 1}, "unknown key 'limt_gy' (did you mean 'limit_gy'?)"),
    ],
)
def test_bad_organ_settings(organ, message):
    values = {k: v for k, v in {**KIDNEY, **organ}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        boin_with([values])
    text = str(caught.value)
    assert message in text and "[dosimetry] organ[1]" in text, text


def test_unknown_organ_in_a_scenario(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        '[[scenario]]\nname = "x"\n[scenario.organ.kidney]\ngy_per_gbq_median = 0.5\n'
        'gy_per_gbq_cv = 0.3\n[scenario.toxicity]\nmodel = "ntcp"\n'
        "[scenario.toxicity.liver]\ntd50_gy = 30\nm = 0.1\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_scenarios(path)
    assert "toxicity.liver: no [scenario.organ.liver]" in str(caught.value)


def test_bad_organ_onset_gets_one_line_per_problem(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        '[[scenario]]\nname = "x"\n[scenario.organ.kidney]\ngy_per_gbq_median = 0.5\n'
        'gy_per_gbq_cv = 0.3\n[scenario.toxicity]\nmodel = "ntcp"\n'
        '[scenario.toxicity.kidney]\ntd50_gy = 30\nm = 0.1\ndlt_onset = "soon"\n'
        "onset_shap = 2\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_scenarios(path)
    assert caught.value.messages == [
        f"{path}: scenario[1] (\"x\") [toxicity] [kidney] unknown key 'onset_shap' (did you "
        "mean 'onset_shape'?)",
        f'{path}: scenario[1] ("x") [toxicity] [kidney] dlt_onset = "soon": must be one of '
        '"uniform", "late", "early"',
    ]


def test_example_files_load():
    for name in ("boin_psma_dosimetry.toml", "crm_dotatate_bed.toml", "boin_psma.toml"):
        design = load_design(DESIGNS / name)
        assert isinstance(design.dosimetry, Dosimetry)
    bed = load_design(DESIGNS / "crm_dotatate_bed.toml").dosimetry.organs[0]
    assert isinstance(bed, OrganModel) and bed.limit_is_bed
    scenarios = load_scenarios(DESIGNS / "dosimetry_scenarios.toml")
    assert all(s.uses_ntcp for s in scenarios)
    assert isinstance(_patients(load_design(DESIGNS / name), scenarios[0], 2), VirtualPatients)


def test_recommend_with_measured_dosimetry(tmp_path):
    """High measured kidney uptake rules out every level but the first; the report gives each
    level's exceedance probability per organ and admissibility."""
    import json

    from typer.testing import CliRunner

    from theradose.cli import app

    rows = [
        "level,dlt,followup_days,kidney_gy_per_gbq,red_marrow_gy_per_gbq",
        "1,0,200,0.9,0.03",
        "1,0,190,1.1,0.03",
        "1,0,180,0.8,0.02",
    ]
    path = tmp_path / "patients.csv"
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "rec.json"
    design = str(DESIGNS / "boin_psma_dosimetry.toml")
    # the design has no [timing]: the window is given (every patient has completed it)
    args = ["recommend", design, "--patients", str(path), "--dlt-window-days", "90"]
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    admissible = [level["admissible"] for level in data["levels"]]
    assert admissible == [True, False, False, False, False]
    assert data["next_level"] == 1
    kidney = [level["p_exceed_kidney"] for level in data["levels"]]
    assert kidney == sorted(kidney) and kidney[1] > 0.10 >= kidney[0]
    # without the measurements (prior only) level 2 is admissible: the data moved the constraint
    prior = CliRunner().invoke(app, ["recommend", design, "--outcomes", "1NNN", "--json", str(out)])
    assert prior.exit_code == 0 and json.loads(out.read_text())["next_level"] == 2


def test_patient_file_rejects_a_bad_measurement(tmp_path):
    from typer.testing import CliRunner

    from theradose.cli import app

    path = tmp_path / "patients.csv"
    path.write_text("level,dlt,followup_days,kidney_gy_per_gbq\n1,0,200,-0.4\n")
    design = str(DESIGNS / "boin_psma_dosimetry.toml")
    result = CliRunner().invoke(app, ["recommend", design, "--patients", str(path)])
    assert result.exit_code == 2
    assert "column 'kidney_gy_per_gbq': '-0.4' must be a measured Gy/GBq > 0" in result.stderr


METHOD_SECTIONS = {
    "3+3": {"method": "3+3", "cohort_size": 3},
    "boin": {"method": "boin"},
    "crm": {"method": "crm", "crm": {"skeleton": {"halfwidth": 0.05, "prior_mtd": 2}}},
    "ewoc": {"method": "ewoc"},
    "blrm": {
        "method": "blrm",
        "blrm": {
            "reference_dose": 7.4,
            "prior_mean": [-1.0986, 0.0],
            "prior_sd": [1.0, 0.7],
            "prior_corr": 0.0,
            "target_interval": [0.16, 0.33],
            "max_overdose_prob": 0.25,
        },
    },
    "tite-crm": {
        "method": "tite-crm",
        "cohort_size": 1,
        "crm": {"skeleton": {"halfwidth": 0.05, "prior_mtd": 2}},
        "timing": {"accrual_per_month": 2.0, "dlt_window_months": 2.0},
    },
    "tite-boin": {
        "method": "tite-boin",
        "timing": {"accrual_per_month": 2.0, "dlt_window_months": 2.0},
    },
}


@pytest.mark.parametrize("method", list(METHOD_SECTIONS))
def test_every_method_runs_with_organ_limits(method):
    source = {
        "target": 0.25,
        "doses": DOSES,
        "max_patients": 15,
        "cohort_size": 3,
        **METHOD_SECTIONS[method],
        "dosimetry": {"cycles": 4, "measurement_cv": 0.15, "patient_cap": True, "organ": [KIDNEY]},
    }
    design = design_from_dict(source, f"{method}.toml")
    scenarios = load_scenarios(DESIGNS / "dosimetry_scenarios.toml")
    sim = simulate([design], scenarios[1:], 60, seed=4)[0][0]
    oc = OperatingCharacteristics.from_simulations(sim)
    assert set(oc.values["organ_exceed_pct"]) == {"kidney"}
    assert 0 <= oc.values["capped_pct"] <= 100
    assert len(oc.values["ruled_out_pct"]) == 5


@pytest.mark.parametrize("ntcp", [True, False], ids=["ntcp", "fixed-probabilities"])
@pytest.mark.parametrize("tite", [False, True], ids=["cohorts", "tite-boin"])
def test_running_statistics_are_those_of_the_patients_treated(tite, ntcp):
    """The engine keeps the constraint's statistics as running sums over the chunk's patients;
    after every trial they equal the statistics of the patients it treated, and the records
    follow from each patient's level and dosimetry: kept as each cohort is capped for its DLT
    probabilities (a dosimetry-driven scenario), or written at the end."""
    from theradose.dosimetry import DosimetryStats, ScheduleMoments, capped_moments, true_cumulative

    source = {
        "method": "tite-boin" if tite else "boin",
        "target": 0.25,
        "doses": DOSES,
        "max_patients": 24,
        "boin": {"max_at_dose": 9},  # trials of many lengths
        "dosimetry": {
            "cycles": 4,
            "measurement_cv": 0.15,
            "patient_cap": True,
            "organ": [
                KIDNEY,
                {**KIDNEY, "name": "red_marrow", "gy_per_gbq_median": 0.03, "limit_gy": 2.0},
            ],
        },
    }
    if tite:
        source["timing"] = {"accrual_per_month": 3.0, "dlt_window_months": 2.0}
    design = design_from_dict(source, "d.toml")
    scen = load_scenarios(DESIGNS / "dosimetry_scenarios.toml")[0]
    if not ntcp:
        scen = Scenario("fixed", (0.05, 0.12, 0.25, 0.4, 0.55))
    truth = truth_for(scen, design)
    patients = chunk_patients(3, 0, 300, design.max_patients, tite).with_dosimetry(design, scen)
    state = run_trials(design, truth.dlt_prob, patients)
    treated = state.patient_level >= 0
    assert 0 < treated.sum(axis=1).min() < treated.sum(axis=1).max()  # trials of many lengths
    expected = DosimetryStats.from_measured(patients.measured_gy_per_gbq, treated)
    for name in ("count", "sum_log", "sum_sq_log"):
        np.testing.assert_allclose(
            getattr(state.dosimetry_stats, name), getattr(expected, name), rtol=1e-12, atol=1e-9
        )
    planned = np.asarray(DOSES)[np.maximum(state.patient_level, 0)]
    moments, capped = capped_moments(planned, patients.measured_gy_per_gbq, design.dosimetry)
    np.testing.assert_array_equal(state.patient_capped, capped & treated)
    assert state.patient_capped.any()
    np.testing.assert_array_equal(state.patient_total_activity[treated], moments.total[treated])
    assert np.isnan(state.patient_total_activity[~treated]).all()
    kidney = design.dosimetry.organs[0]
    organ = patients.organs.organs[patients.organs.index(["kidney"])[0]]
    true_g = patients.true_gy_per_gbq[..., patients.organs.index(["kidney"])[0]]
    cumulative = true_cumulative(kidney, organ, ScheduleMoments(*moments), true_g)
    np.testing.assert_array_equal(state.patient_cumulative[..., 0][treated], cumulative[treated])
    np.testing.assert_array_equal(
        state.patient_exceeds[..., 0], treated & (cumulative > kidney.limit * (1 + 1e-9))
    )
    _assert_summary_of_records(design, state)
    # without the per-patient records the engine reduces the same values
    lean = run_trials(design, truth.dlt_prob, patients, dose_records=False)
    assert lean.patient_cumulative is None and lean.patient_measured_gy_per_gbq is None
    assert lean.patient_total_activity is None and lean.patient_capped is None
    for name in vars(state.dose_summary):
        np.testing.assert_array_equal(
            getattr(lean.dose_summary, name), getattr(state.dose_summary, name), err_msg=name
        )


def _assert_summary_of_records(design, state):
    """The engine's per-trial dose summary is the reduction of the per-patient records."""
    from theradose.dose_summary import HIST_BINS, HIST_SPAN

    summary, treated = state.dose_summary, state.patient_level >= 0
    assert summary.exceed_n.any() and summary.capped_n.any()
    np.testing.assert_array_equal(summary.treated_n, treated.sum(axis=1))
    np.testing.assert_array_equal(summary.capped_n, state.patient_capped.sum(axis=1))
    np.testing.assert_allclose(
        summary.activity_sum, np.nansum(state.patient_total_activity, axis=1), rtol=1e-14
    )
    np.testing.assert_array_equal(summary.exceed_n, state.patient_exceeds.sum(axis=1))
    np.testing.assert_allclose(
        summary.cumulative_sum, np.nansum(state.patient_cumulative, axis=1), rtol=1e-14
    )
    for j, organ in enumerate(design.dosimetry.organs):
        doses = state.patient_cumulative[..., j][treated]
        edges = np.linspace(0.0, HIST_SPAN * organ.limit, HIST_BINS + 1)
        expected = np.histogram(np.minimum(doses, edges[-1]), bins=edges)[0]
        np.testing.assert_array_equal(summary.cumulative_hist[j], expected)
        assert summary.cumulative_hist[j].sum() == treated.sum()


def _onset_scenario(kidney_onset, marrow_onset):
    from theradose.config import scenarios_from_dict

    tox = {"model": "ntcp", "background_prob": 0.03}
    tox["kidney"] = {"td50_gy": 28.0, "m": 0.12, **kidney_onset}
    tox["red_marrow"] = {"td50_gy": 2.0, "gamma50": 2.0, **marrow_onset}
    organs = {
        "kidney": {"gy_per_gbq_median": 0.6, "gy_per_gbq_cv": 0.4},
        "red_marrow": {"gy_per_gbq_median": 0.05, "gy_per_gbq_cv": 0.35},
    }
    entry = {"name": "onsets", "organ": organs, "toxicity": tox}
    return scenarios_from_dict({"scenario": [entry]}, "s.toml")[0]


def _timed_boin():
    source = {
        "method": "boin",
        "target": 0.25,
        "doses": DOSES,
        "max_patients": 24,
        "dosimetry": {"cycles": 4},
        "timing": {"accrual_per_month": 2.0, "dlt_window_months": 3.0},
    }
    return design_from_dict(source, "d.toml")


def test_each_organ_gives_its_dlts_their_own_onset():
    """Marrow DLTs early, kidney DLTs late, the background uniform: each DLT's onset follows the
    organ that causes it, the cause drawn with probability H_k / ΣH given the patient's doses."""
    from theradose.dosimetry import ScheduleMoments, dlt_causes
    from theradose.timing import Onset

    scen = _onset_scenario({"dlt_onset": "late", "onset_shape": 4.0}, {"dlt_onset": "early"})
    design = _timed_boin()
    truth = truth_for(scen, design)
    patients = chunk_patients(6, 0, 3000, design.max_patients, True).with_dosimetry(design, scen)
    state = run_trials(design, truth.dlt_prob, patients, scen.onset)
    dlt = state.patient_dlt
    fraction = state.patient_dlt_time[dlt] / 3.0
    activity = np.asarray(DOSES)[np.maximum(state.patient_level, 0)] * 4
    schedule = ScheduleMoments(activity, activity * activity / 4)
    causes = dlt_causes(patients.true_gy_per_gbq, schedule, patients.organs)[dlt]
    hazard = -np.log1p(-np.clip(causes, 0.0, 1 - 1e-15))  # as dlt_cause
    share = hazard / hazard.sum(axis=1, keepdims=True)
    onsets = [Onset("uniform"), Onset("late", 4.0), Onset("early")]
    for x in (0.25, 0.5, 0.75):
        p = share @ np.array([o.cdf(x) for o in onsets])  # each DLT's P(onset ≤ x)
        observed = (fraction <= x).sum()
        assert abs(observed - p.sum()) <= 4 * np.sqrt((p * (1 - p)).sum()), x
    assert dlt.sum() > 1000 and 0.2 < share[:, 1].mean() < 0.8  # both organs matter


def test_organ_onsets_equal_to_the_scenarios_change_nothing():
    design = _timed_boin()
    plain = _onset_scenario({}, {})
    same = _onset_scenario({"dlt_onset": "uniform"}, {"dlt_onset": "uniform"})
    runs = []
    for scen in (plain, same):
        truth = truth_for(scen, design)
        patients = chunk_patients(7, 0, 300, design.max_patients, True).with_dosimetry(design, scen)
        runs.append(run_trials(design, truth.dlt_prob, patients, scen.onset))
    np.testing.assert_array_equal(runs[0].patient_level, runs[1].patient_level)
    np.testing.assert_array_equal(runs[0].patient_dlt_time, runs[1].patient_dlt_time)


def test_per_patient_figures_count_only_trials_that_treated_anyone(tmp_path):
    """A trial that stops before treating anyone has no '% of patients': with no level
    admissible every such figure is None ('—' in the table), not 0."""
    from typer.testing import CliRunner

    from theradose.cli import app

    scen = Scenario("S", (0.05, 0.1, 0.2, 0.3, 0.5))
    none = boin_with([{**KIDNEY, "limit_gy": 1.0}])
    some = boin_with([KIDNEY], measurement_cv=0.15)
    sims = simulate([none, some], [scen], 200, seed=4)
    empty, full = (OperatingCharacteristics.from_simulations(row[0]) for row in sims)
    assert empty.values["capped_pct"] is None and empty.values["activity_mean"] is None
    assert empty.values["organ_exceed_pct"] == {"kidney": None}
    assert empty.values["organ_cumulative_p95"] == {"kidney": None}
    assert full.values["activity_mean"] > 0
    design = tmp_path / "none.toml"
    design.write_text(
        'method = "boin"\ntarget = 0.25\ndoses = [3.7, 5.55, 7.4, 9.25, 11.1]\n'
        "max_patients = 24\n[dosimetry]\ncycles = 4\n[[dosimetry.organ]]\n"
        + "".join(
            f"{k} = {v!r}\n".replace("'", '"') for k, v in {**KIDNEY, "limit_gy": 1.0}.items()
        )
    )
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            str(design),
            "--scenarios",
            str(DESIGNS / "dosimetry_scenarios.toml"),
            "--trials",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output  # the report renders with those None figures
