"""Backfilling (BF-BOIN, Zhao, Yuan, Korn & Freidlin 2024, Clin Cancer Res 30:673) in the
vectorised engine against the one-trial-at-a-time reference simulator (``reference_sim.bf_boin``,
written from the rules of docs/dose-optimisation.md and imports nothing from theradose).

Both see the same random draws, so every trial must agree exactly — every patient's level, DLT,
arrival time and whether they were backfilled, hence n, y and backfill patients per level, the
selected MTD and when the trial ended:

- the per-patient draws (latent tolerance u, accrual gap, DLT onset, by place in order of
  arrival) are made here from the run's ``SeedSequence(seed, spawn_key=(chunk, stream))``
  streams, checked equal to ``chunk_patients``'s, and handed to both;
- the backfill arrivals' gaps come from one generator per chunk that the engine draws from for
  all its trials together, so which trial gets which draw depends on the batch. The batch test
  records, for each trial, the draws it was given (``BackfillDrawLog``) and hands the reference
  that sequence; the reference takes them one per gap, and must use exactly as many as the
  engine did. The single-trial test needs no recording: with one trial per chunk the trial's
  draws are its chunk's backfill stream, made here from its SeedSequence.

This comparison found two engine deviations from the rules, since mended (one trial each
below): BOIN's tables ended at n = max_patients, though with backfilling a level can hold more
(the method's tables now cover every count a level can reach); and elimination was recomputed
from the counts at each decision, so a level eliminated while backfill patients there were
pending was allowed again when they completed without a DLT (BOIN eliminates "from the trial":
the interval designs now keep it). Before the fix about 1 in 2,400 trials of S1-late/S4-late
and 1 in 240 of the toxic scenario differed; after it, 18,000 trials agreed exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reference_sim import NONE, RefBackfillTrial, RefStop, bf_boin, outcome_string
from theradose import engine
from theradose.config import design_from_dict, load_design, load_scenarios
from theradose.engine import run_trials
from theradose.pipeline import select_mtd
from theradose.scenario import Scenario
from theradose.state import StopReason
from theradose.timing import Onset
from theradose.virtual_patients import (
    ARRIVAL_STREAM,
    BACKFILL_STREAM,
    ONSET_STREAM,
    TOLERANCE_STREAM,
    VirtualPatients,
    chunk_patients,
)

ROOT = Path(__file__).resolve().parents[1]
BF_BOIN = ROOT / "designs/boin_backfill.toml"
LATE = {s.name: s for s in load_scenarios(ROOT / "designs/late_onset.toml")}
# Level 1 close to the target: elimination and the de-escalation boundary close levels often.
TOXIC = Scenario("toxic", (0.30, 0.45, 0.55, 0.65, 0.75, 0.85), Onset("uniform"))
N_TRIALS = 300


def fixed_accrual_design():
    """designs/boin_backfill.toml with fixed accrual: arrivals 0.5 months apart, a 3-month
    window, so arrivals fall exactly on window ends and decisions (the ties of the rules)."""
    source = load_design(BF_BOIN).source
    timing = {**source["timing"], "accrual": "fixed"}
    return design_from_dict({**source, "timing": timing}, "bf-boin-fixed.toml")


def draws(seed: int, chunk: int, stream: int, n_trials: int, n_places: int) -> np.ndarray:
    """U(0, 1) draws of one stream of a chunk, patient-major as the engine's, [trial, place]."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk, stream)))
    return rng.random((n_places, n_trials)).T


def patients_of(seed: int, chunk: int, n_trials: int, n_places: int) -> VirtualPatients:
    u, arrival, onset = (
        draws(seed, chunk, stream, n_trials, n_places)
        for stream in (TOLERANCE_STREAM, ARRIVAL_STREAM, ONSET_STREAM)
    )
    run = chunk_patients(seed, chunk, n_trials, n_places, True)
    for mine, engines in ((u, run.tolerance), (arrival, run.arrival), (onset, run.onset)):
        assert np.array_equal(mine, engines)  # the run's own draws
    seed_seq = np.random.SeedSequence(seed, spawn_key=(chunk, BACKFILL_STREAM))
    return VirtualPatients(u, arrival, onset, backfill_seed=seed_seq)


class BackfillDrawLog:
    """The draws of the engine's backfill stream, by the trial they went to.

    ``Backfilling.arrivals(state, rows, until)`` gives each trial of ``rows`` one gap, then, while
    any arrive before ``until``, calls ``arrive(state, live_rows, when)`` and gives each of those
    trials its next gap. So the draws of each ``rng.random(k)`` call go, in order, to the rows of
    the last ``arrivals`` or ``arrive`` call (checked: k equals their number).
    """

    def __init__(self, monkeypatch, n_trials: int) -> None:
        self.by_trial: list[list[float]] = [[] for _ in range(n_trials)]
        self.rows = np.empty(0, dtype=np.intp)
        log = self
        cls = engine.Backfilling
        init, arrivals, arrive = cls.__init__, cls.arrivals, cls.arrive

        class Recording:
            def __init__(self, rng) -> None:
                self.rng = rng

            def random(self, k: int) -> np.ndarray:
                values = self.rng.random(k)
                assert k == log.rows.size, "backfill draws not one per trial still arriving"
                for row, value in zip(log.rows.tolist(), values.tolist(), strict=True):
                    log.by_trial[row].append(value)
                return values

        def recording_init(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self.rng = Recording(self.rng)

        def recording_arrivals(self, state, rows, until):
            log.rows = np.asarray(rows)
            return arrivals(self, state, rows, until)

        def recording_arrive(self, state, rows, when):
            log.rows = np.asarray(rows)
            return arrive(self, state, rows, when)

        monkeypatch.setattr(cls, "__init__", recording_init)
        monkeypatch.setattr(cls, "arrivals", recording_arrivals)
        monkeypatch.setattr(cls, "arrive", recording_arrive)


def reference_trial(design, scenario, patients, t: int, backfill_u) -> RefBackfillTrial:
    timing = design.timing
    method = design.method
    return bf_boin(
        patients.tolerance[t].tolist(),
        patients.arrival[t].tolist(),
        patients.onset[t].tolist(),
        list(backfill_u),
        scenario.dlt_prob,
        design.target,
        design.cohort_size,
        design.max_patients,
        design.backfill.max_per_level,
        timing.accrual_per_month,
        timing.dlt_window_months,
        accrual=timing.accrual,
        onset=scenario.onset.kind,
        onset_shape=scenario.onset.shape,
        start_level=design.start_level,
        p_saf=method.p_saf,
        p_tox=method.p_tox,
        cutoff=method.elimination_cutoff,
    )


def timeline(levels, dlts, backfill) -> str:
    """'1NNN 2NTN' with each backfill patient's letter lower-case."""
    text = outcome_string(levels, dlts)
    letters = iter(bool(b) for b in backfill)
    return "".join(c.lower() if c in "NT" and next(letters) else c for c in text)


def assert_same_trial(design, state, mtd, t: int, ref: RefBackfillTrial, drawn=None) -> None:
    placed = len(ref.patients)
    levels = state.patient_level[t, :placed].tolist()
    dlts = state.patient_dlt[t, :placed].tolist()
    backfill = state.patient_backfill[t, :placed].tolist()
    where = (
        f"trial {t}: reference {timeline(ref.levels, ref.dlts, [p.backfill for p in ref.patients])}"
        f" (MTD {ref.mtd + 1}, {ref.stop.value}); engine {timeline(levels, dlts, backfill)} "
        f"(MTD {mtd[t] + 1}, {StopReason(int(state.stop_reason[t])).name}); MTDs 1-based, "
        "0 none; backfill patients lower-case"
    )
    assert levels == list(ref.levels), where
    assert dlts == list(ref.dlts), where
    assert backfill == [p.backfill for p in ref.patients], where
    assert (state.patient_level[t, placed:] < 0).all(), where
    np.testing.assert_allclose(
        state.patient_arrival[t, :placed], [p.arrival for p in ref.patients], rtol=0, atol=1e-9
    )
    assert state.n[t].tolist() == list(ref.n), where
    assert state.y[t].tolist() == list(ref.y), where
    assert state.n_backfill[t].tolist() == list(ref.n_backfill), where
    assert state.n_enrolled[t] == ref.n_escalation, where
    assert mtd[t] == ref.mtd, where
    assert state.stopped_at[t] == pytest.approx(ref.stopped_at, abs=1e-9), where
    expected = StopReason.TOO_TOXIC if ref.stop is RefStop.TOO_TOXIC else StopReason.MAX_PATIENTS
    assert state.stop_reason[t] == expected, where
    if drawn is not None:
        assert ref.backfill_draws == len(drawn), f"{where}: backfill-stream draws used differ"


def run_both(monkeypatch, design, scenario, seed: int, n_trials: int = N_TRIALS):
    """The engine's batch of ``n_trials`` and the reference, trial by trial, on the same draws."""
    patients = patients_of(seed, 0, n_trials, design.n_places)
    log = BackfillDrawLog(monkeypatch, n_trials)
    state = run_trials(design, np.asarray(scenario.dlt_prob), patients, scenario.onset)
    mtd = select_mtd(design, state)
    refs = []
    for t in range(n_trials):
        try:
            ref = reference_trial(design, scenario, patients, t, log.by_trial[t])
        except IndexError:
            pytest.fail(f"trial {t}: the reference needs more backfill gaps than the engine drew")
        assert_same_trial(design, state, mtd, t, ref, log.by_trial[t])
        refs.append(ref)
    return state, refs


@pytest.mark.parametrize(
    ("design_name", "scenario", "seed"),
    [
        ("poisson", LATE["S1-late"], 7),
        ("poisson", LATE["S4-late"], 8),
        ("fixed", LATE["S1-late"], 9),
        ("poisson", TOXIC, 10),
    ],
    ids=["S1-late", "S4-late", "S1-late-fixed-accrual", "toxic"],
)
def test_engine_matches_reference_trial_by_trial(monkeypatch, design_name, scenario, seed):
    design = load_design(BF_BOIN) if design_name == "poisson" else fixed_accrual_design()
    state, refs = run_both(monkeypatch, design, scenario, seed)
    # the comparison exercised the rules: backfilling, arrivals turned away, closed levels
    assert sum(sum(r.n_backfill) for r in refs) > 5 * N_TRIALS
    assert sum(r.turned_away for r in refs) > N_TRIALS
    if scenario is TOXIC:
        assert sum(r.stop is RefStop.TOO_TOXIC for r in refs) > 10
        assert sum(r.mtd == NONE for r in refs) > 10


def test_single_trial_chunks_match_reference_on_the_backfill_stream_itself():
    """One trial per chunk: the trial's backfill gaps are its chunk's backfill stream in order,
    made here from ``SeedSequence(seed, spawn_key=(chunk, BACKFILL_STREAM))`` — no recording."""
    design, scenario, seed = load_design(BF_BOIN), LATE["S4-late"], 21
    for chunk in range(40):
        patients = patients_of(seed, chunk, 1, design.n_places)
        state = run_trials(design, np.asarray(scenario.dlt_prob), patients, scenario.onset)
        gaps = np.random.default_rng(patients.backfill_seed).random(500).tolist()
        ref = reference_trial(design, scenario, patients, 0, gaps)
        assert_same_trial(design, state, select_mtd(design, state), 0, ref)


def single_trial(scenario: Scenario, chunk: int, seed: int = 21):
    design = load_design(BF_BOIN)
    patients = patients_of(seed, chunk, 1, design.n_places)
    state = run_trials(design, np.asarray(scenario.dlt_prob), patients, scenario.onset)
    gaps = np.random.default_rng(patients.backfill_seed).random(500).tolist()
    ref = reference_trial(design, scenario, patients, 0, gaps)
    assert_same_trial(design, state, select_mtd(design, state), 0, ref)


def test_elimination_with_more_patients_at_a_level_than_max_patients():
    """Level 1 ends with 16 DLTs in 39 patients (33 escalation, 6 backfill): P(p > 0.3) =
    0.937 ≤ 0.95, not eliminated, so the MTD is level 1; the engine applies n = 36's boundary
    (16 DLTs eliminate) — as the engine did before its tables reached 45 — and stops."""
    single_trial(TOXIC, 1085)


def test_decision_with_more_patients_at_a_level_than_max_patients():
    """At month 47.6 level 1 holds 9 DLTs in 39 patients: 9/39 = 0.231 ≤ λe = 0.236, escalate;
    read at n = 36 (escalate only with ≤ 8 DLTs) the trial would stay."""
    single_trial(TOXIC, 1055)


def test_an_eliminated_level_stays_eliminated():
    """At month 27.1 level 4 has 5 DLTs in the 9 patients whose outcomes are known (one backfill
    patient pending): P(p > 0.3) > 0.95, levels 4–6 are eliminated and the trial goes down to
    level 3. The pending patient completes without a DLT (5/10, below the cutoff); BOIN keeps
    the levels eliminated ("eliminated from the trial", Liu & Yuan 2015; get.oc's ``elimi``),
    the engine recomputing elimination from the counts went back to level 4 at month 38.7."""
    single_trial(LATE["S1-late"], 1167)


def test_reference_replays_the_hand_checked_trial():
    """test_backfill.py's hand-checked trial (BOIN, 3 levels, fixed accrual 1 a month, 2-month
    window, at most 2 backfill patients per level), on the reference alone."""
    u = [0.99] * 13
    u[6] = 0.0  # the first backfill patient has a DLT
    ref = bf_boin(
        u, [0.5] * 13, [0.5] * 13, [0.5] * 20, (0.1, 0.2, 0.3), 0.3, 3, 9, 2, 1.0, 2.0, "fixed"
    )
    assert ref.levels == (0, 0, 0, 1, 1, 1, 0, 2, 2, 2, 1)
    assert [p.backfill for p in ref.patients] == [False] * 6 + [True] + [False] * 3 + [True]
    assert [p.arrival for p in ref.patients] == [1, 2, 3, 6, 7, 8, 9, 11, 12, 13, 14]
    assert (ref.n, ref.y, ref.n_backfill) == ((4, 4, 3), (1, 0, 0), (1, 1, 0))
    assert (ref.n_escalation, ref.stopped_at, ref.turned_away) == (9, 15.0, 1)
    assert ref.stop is RefStop.MAX_PATIENTS
