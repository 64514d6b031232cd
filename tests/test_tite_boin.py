"""TITE-BOIN (Yuan et al. 2018): the decision table, and consistency with BOIN."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from factories import boin_design
from theradose.cli import app
from theradose.config import design_from_dict
from theradose.engine import run_trials
from theradose.methods.tite_boin import TiteBoin
from theradose.pipeline import select_mtd
from theradose.results import OperatingCharacteristics
from theradose.scenario import Scenario
from theradose.simulation import simulate
from theradose.timing import Onset
from theradose.virtual_patients import VirtualPatients


def tite_boin(**timing):
    source = {
        "method": "tite-boin",
        "target": 0.3,
        "levels": 6,
        "cohort_size": 3,
        "max_patients": 30,
        "timing": {"accrual_per_month": 2.0, "dlt_window_months": 3.0, **timing},
    }
    return design_from_dict(source, "tite_boin.toml")


def _row(rows, n, y, m):
    return next(r for r in rows if (r["n"], r["dlt"], r["pending"]) == (n, y, m))


def test_table_reproduces_the_paper_table_1():
    """Yuan et al. (2018), Table 1, target 0.2: the STFT cut-offs quoted in the paper."""
    rows = TiteBoin(6, 0.2, 30).tite_decision_rows([3, 6, 9, 12])
    assert _row(rows, 9, 1, 3)["decision"] == "E if STFT ≥ 0.77, else S"
    assert _row(rows, 9, 1, 4)["decision"] == "E if STFT ≥ 2.15, else S"
    for pending, cutoff in zip([1, 2, 3, 4], [0.52, 1.59, 2.66, 3.73], strict=True):
        row = _row(rows, 9, 2, pending)
        assert row["decision"] == f"D if STFT ≤ {cutoff:.2f}, else S"
        assert row["stft_cutoff"] == pytest.approx(cutoff, abs=0.005)
    assert _row(rows, 9, 1, 5)["decision"] == "SUS"  # more than half pending
    assert _row(rows, 3, 0, 2)["decision"] == "SUS"
    assert _row(rows, 3, 2, 0)["decision"] == "DE"
    assert _row(rows, 9, 0, 0)["decision"] == "E"


def test_the_cut_offs_are_where_the_imputed_rate_meets_the_boundaries():
    method = TiteBoin(6, 0.2, 30)
    lambda_e, lambda_d = method.lambdas
    for row in method.tite_decision_rows([6, 9, 12, 15]):
        cut = row["stft_cutoff"]
        if cut is None:
            continue
        n, y, m = row["n"], row["dlt"], row["pending"]
        boundary = lambda_e if row["decision"].startswith("E") else lambda_d
        assert method.imputed_rate(n, y, m, cut) == pytest.approx(boundary, abs=1e-3)


def _patients(n_trials, n_patients, seed):
    rng = np.random.default_rng(seed)
    return VirtualPatients(*(rng.random((n_trials, n_patients)) for _ in range(3)))


def test_with_nobody_pending_tite_boin_is_boin():
    tite = tite_boin(accrual_per_month=0.001, accrual="fixed")
    boin = boin_design(max_patients=30)
    patients = _patients(400, 30, seed=5)
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.7])
    a, b = run_trials(tite, p, patients), run_trials(boin, p, patients.tolerance)
    np.testing.assert_array_equal(a.patient_level, b.patient_level)
    np.testing.assert_array_equal(select_mtd(tite, a), select_mtd(boin, b))
    assert not a.patient_while_pending.any()


def test_fast_accrual_shortens_the_trial_at_a_price_in_pending_patients():
    scenarios = [Scenario("late", (0.05, 0.1, 0.2, 0.3, 0.5, 0.7), Onset("late", 3.0))]
    plain = design_from_dict(
        {
            "method": "boin",
            "target": 0.3,
            "levels": 6,
            "max_patients": 30,
            "timing": {"accrual_per_month": 2.0, "dlt_window_months": 3.0},
        },
        "boin.toml",
    )
    tite = tite_boin()
    sims = simulate([plain, tite], scenarios, 1000, seed=2)
    boin_oc, tite_oc = (OperatingCharacteristics.from_simulations(row[0]) for row in sims)
    assert tite_oc.values["duration_months_mean"] < 0.8 * boin_oc.values["duration_months_mean"]
    assert boin_oc.values["enrolled_while_pending_pct"] == 0
    assert tite_oc.values["enrolled_while_pending_pct"] > 20
    assert tite_oc.values["pcs"] > 35


def test_table_command_json(tmp_path):
    path = tmp_path / "tb.toml"
    path.write_text(
        'method = "tite-boin"\ntarget = 0.2\nlevels = 5\nmax_patients = 12\n'
        "[timing]\naccrual_per_month = 2\ndlt_window_months = 3\n"
    )
    result = CliRunner().invoke(app, ["table", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert set(rows[0]) == {"n", "dlt", "pending", "decision", "stft_cutoff"}
    assert {r["n"] for r in rows} == {3, 6, 9, 12}


def test_example_designs_load():
    designs = Path(__file__).resolve().parents[1] / "designs"
    from theradose.config import load_design

    assert load_design(designs / "tite_boin.toml").method_key == "tite-boin"
    assert load_design(designs / "tite_crm.toml").method_key == "tite-crm"


def test_recommendations_replay_simulated_trials_without_deviation():
    """Given a simulated trial patient by patient, the recommendation recomputes every decision
    the engine made (suspensions included) from the data known at each arrival: none deviates."""
    from theradose.recommendation import recommend_from_patients

    design = tite_boin(accrual_per_month=3.0)
    late = Onset("late", 3.0)
    p = np.array([0.1, 0.2, 0.3, 0.45, 0.6, 0.7])
    state = run_trials(design, p, _patients(30, 30, 7), late)
    assert state.patient_while_pending.any()
    for trial in range(state.n_trials):
        treated = state.patient_level[trial] >= 0
        level, dlt = state.patient_level[trial][treated], state.patient_dlt[trial][treated]
        # follow-up = −arrival: the replay's times are the engine's, bit for bit
        args = (-state.patient_arrival[trial][treated], state.patient_dlt_time[trial][treated])
        assert recommend_from_patients(design, level, dlt, *args).deviations == ()
        if level.size > 4:
            moved = level.copy()
            moved[3] = (moved[3] + 1) % design.n_levels
            deviations = recommend_from_patients(design, moved, dlt, *args).deviations
            assert deviations and deviations[0].startswith("patient 4 was treated")


def test_recommendation_suspends_accrual_while_too_many_are_pending():
    from theradose.recommendation import recommend_from_patients

    design = tite_boin()  # window 3 months, suspend while more than half the level is pending
    days = np.array([200, 190, 180, 20, 15, 10]) / 30.4375
    rec = recommend_from_patients(design, np.array([0, 0, 0, 1, 1, 1]), np.zeros(6, bool), days)
    assert rec.suspended and rec.next_level is None and not rec.stop
    assert rec.review_in == pytest.approx(3.0 - days[3])  # patient 4's window closes first
    assert rec.pending == (False, False, False, True, True, True) and rec.deviations == ()
    assert rec.basis["suspended"] and rec.basis["too_many_pending"]  # 3 of 3 pending
    assert rec.basis["too_few_complete"] and (rec.basis["level"], rec.basis["m"]) == (1, 3)
    # once two of the three have completed their window, accrual resumes
    later = recommend_from_patients(
        design, np.array([0, 0, 0, 1, 1, 1]), np.zeros(6, bool), days + 3.01 - days[4]
    )
    assert not later.suspended and later.next_level == 2


def test_decision_basis_is_the_imputed_rate_by_hand():
    """Yuan et al. (2018), p̃ = (y + (m − STFT)·π̂/(1 − π̂))/n, π̂ = (y + φ/2)/(n − m + 1), at
    the current level, with the quantities the decision used."""
    from theradose.recommendation import recommend_from_patients

    design = tite_boin()  # window 3 months
    level = np.array([0, 0, 0, 1, 1, 1, 1])
    dlt = np.array([False, False, False, True, False, False, False])
    followup = np.array([6.0, 5.5, 5.0, 2.0, 3.5, 1.5, 0.6])  # months
    rec = recommend_from_patients(design, level, dlt, followup, np.array([0, 0, 0, 1.0, 0, 0, 0]))
    n, y, m, stft = 4, 1, 2, 1.5 / 3 + 0.6 / 3  # patient 4's DLT completes them
    pi_hat = (y + 0.15) / (n - m + 1)
    p_tilde = (y + (m - stft) * pi_hat / (1 - pi_hat)) / n
    basis = rec.basis
    assert (basis["level"], basis["n"], basis["y"], basis["m"]) == (1, n, y, m)
    assert basis["stft"] == pytest.approx(stft, rel=1e-12)
    assert basis["p_tilde"] == pytest.approx(p_tilde, rel=1e-12)
    lambda_e, lambda_d = design.method.lambdas
    assert (basis["lambda_e"], basis["lambda_d"]) == (lambda_e, lambda_d)
    expected = 1 if p_tilde <= lambda_e else -1 if p_tilde >= lambda_d else 0
    assert basis["direction"] == expected == rec.next_level - 1
    assert not basis["suspended"] and not rec.suspended  # 2 of 4 pending: not more than half


def test_interim_mtd_estimate_leaves_pending_patients_out():
    """The MTD estimate and p_est use complete data (BOIN's selection on the patients whose
    window closed or who had a DLT); at the end of a trial that is everyone (unchanged)."""
    from theradose.recommendation import recommend, recommend_from_patients

    design = tite_boin()
    level = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1])
    dlt = np.array([False, False, False, True, True, False, False, False, False])
    followup = np.array([9, 8.5, 8, 6, 5.5, 5, 0.3, 0.2, 0.1])  # patients 7-9 just treated
    rec = recommend_from_patients(design, level, dlt, followup, np.array([0, 0, 0, 1, 1] + [0] * 4))
    assert rec.mtd_on_complete_data and rec.pending[6:] == (True, True, True)
    # as if patients 7 to 9 had not been treated: "1NNN 2TTN"
    complete = recommend(design, [(0, (False,) * 3), (1, (True, True, False))])
    assert rec.mtd == complete.mtd
    np.testing.assert_allclose(rec.level_summary["p_est"], complete.level_summary["p_est"])
    assert rec.n == (3, 6, 0, 0, 0, 0) and rec.y == (0, 2, 0, 0, 0, 0)
