"""The virtual patients of a chunk of simulated trials: their random draws, by stream.

Randomness: chunk ``i`` of a run draws from ``SeedSequence(seed, spawn_key=(i, stream))`` — the
same as ``SeedSequence(seed).spawn(...)`` children — so results do not depend on the number of
workers. Patients' latent tolerances (and, with efficacy, their response variables) are drawn
patient-major, so a design with fewer patients sees the same first patients as one with more
(common random numbers across designs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from theradose.design import Design
from theradose.scenario import Scenario

TOLERANCE_STREAM = 0
ARRIVAL_STREAM = 1
ONSET_STREAM = 2
DOSIMETRY_STREAM = 3
TURNED_AWAY_STREAM = 4
EFFICACY_STREAM = 5
BACKFILL_STREAM = 6
OPTIMISATION_STREAM = 7  # the randomised stage's patients (theradose.optimisation)
RESPONSE_TIME_STREAM = 8  # when in the efficacy window each response occurs (TITE-BOIN12)


@dataclass(frozen=True)
class VirtualPatients:
    """The random draws that make a chunk's virtual patients, [trial, patient] each.

    ``tolerance``: DLT at level d iff u < p_d (common random numbers across designs);
    ``arrival``, ``onset``: U(0, 1) draws turned into accrual gaps and DLT onset times by the
    design's timing and the scenario's onset model (None when no design needs time);
    ``dosimetry_seed``: the stream of the patients' organ Gy/GBq; ``organs`` (the scenario's
    DosimetryTruth), ``true_gy_per_gbq`` [trial, patient, organ] and ``measured_gy_per_gbq``
    [trial, patient, design organ]: the patients' dosimetry for one design and scenario;
    ``turned_away_seed``: the stream of accrual gaps after arrivals a design turns away;
    ``efficacy_seed``: the stream of the patients' second latent uniform v, and ``response``
    [trial, patient]: their latent v' for one scenario (:meth:`with_efficacy`; None without
    efficacy) — a response at level d iff v' < p_E(d); ``backfill_seed``: the stream of accrual
    gaps of the arrivals a design may backfill while it holds accrual.
    """

    tolerance: np.ndarray
    arrival: np.ndarray | None = None
    onset: np.ndarray | None = None
    dosimetry_seed: np.random.SeedSequence | None = None
    organs: object = None
    true_gy_per_gbq: np.ndarray | None = None
    measured_gy_per_gbq: np.ndarray | None = None
    turned_away_seed: np.random.SeedSequence | None = None
    efficacy_seed: np.random.SeedSequence | None = None
    response: np.ndarray | None = None
    backfill_seed: np.random.SeedSequence | None = None
    optimisation_seed: np.random.SeedSequence | None = None  # the randomised stage's stream
    # U(0, 1) draws turned into response times by the scenario's response onset, [trial, patient]
    # (:meth:`with_response_draws`, from ``response_time_seed``: a method with late efficacy)
    response_onset: np.ndarray | None = None
    response_time_seed: np.random.SeedSequence | None = None

    def head(self, n_patients: int) -> VirtualPatients:
        """The first ``n_patients`` patients of every trial."""
        cut = lambda a: None if a is None else a[:, :n_patients]  # noqa: E731
        return replace(
            self,
            tolerance=cut(self.tolerance),
            arrival=cut(self.arrival),
            onset=cut(self.onset),
            true_gy_per_gbq=cut(self.true_gy_per_gbq),
            measured_gy_per_gbq=cut(self.measured_gy_per_gbq),
            response=cut(self.response),
            response_onset=cut(self.response_onset),
        )

    def with_response_draws(self) -> VirtualPatients:
        """These patients with their U(0, 1) response-time draws (drawn patient-major from their
        own stream on first use, so no other design pays for them or sees them change)."""
        if self.response_onset is not None:
            return self
        n_trials, n_patients = self.tolerance.shape
        rng = np.random.default_rng(self.response_time_seed or np.random.SeedSequence(0))
        return replace(self, response_onset=rng.random((n_patients, n_trials)).T)

    def with_efficacy(self, scenario: Scenario) -> VirtualPatients:
        """These patients' latent response variable v' under ``scenario`` (itself when the
        scenario gives no efficacy: neither ``eff_prob`` nor ``[scenario.efficacy]``). A patient
        responds iff v' < p_E: the level's, or their own from their tumour dose
        (:func:`theradose.dosimetry.patient_response_prob`).

        Each patient has a second uniform v from its own stream (so the tolerances u, and every
        result without efficacy, are those of a run without it), drawn patient-major like u: a
        design with fewer patients sees the same first patients. DLT and response are joined by
        a Gaussian copula with ρ = ``tox_eff_correlation``:

            v' = Φ(ρ Φ⁻¹(u) + √(1 − ρ²) Φ⁻¹(v))

        so v' is U(0, 1), v' = v when ρ = 0, and corr(Φ⁻¹(u), Φ⁻¹(v')) = ρ: with ρ > 0 a patient
        with a DLT (small u) is more likely to respond (small v').
        """
        if not scenario.efficacy:
            return self
        n_trials, n_patients = self.tolerance.shape
        rng = np.random.default_rng(self.efficacy_seed or np.random.SeedSequence(0))
        v = rng.random((n_patients, n_trials)).T
        rho = float(scenario.tox_eff_correlation)
        if rho != 0.0:
            from theradose import special_functions as special

            # the quantile function at 0 is −∞: keep both draws inside (0, 1)
            tiny = np.finfo(float).tiny
            z_u = special.ndtri(np.clip(self.tolerance, tiny, 1.0))
            z_v = special.ndtri(np.clip(v, tiny, 1.0))
            v = special.ndtr(rho * z_u + np.sqrt(1.0 - rho * rho) * z_v)
        return replace(self, response=v)

    def with_dosimetry(self, design: Design, scenario: Scenario) -> VirtualPatients:
        """These patients' organ Gy/GBq for ``design`` under ``scenario`` (common random numbers:
        the same draws whatever the design's measurement error)."""
        from theradose.dosimetry import log_sd, sample_patients_by_organ
        from theradose.scenario import organ_truth

        truth = organ_truth(scenario, design)
        if truth is None:
            return self
        dosimetry = design.dosimetry
        cv = 0.0 if dosimetry is None else dosimetry.measurement_cv
        n_trials, n_patients = self.tolerance.shape
        seed = self.dosimetry_seed or np.random.SeedSequence(0)
        rng = np.random.default_rng(seed)
        index = None  # the design's organs among the truth's: the ones measured
        if dosimetry is not None and dosimetry.organs:
            index = truth.index(dosimetry.names)
        # theradose.dosimetry.sample_patients' draws, kept [organ, patient, trial]: each organ's
        # values one contiguous block for the engine's per-organ reads
        true, measured = sample_patients_by_organ(
            rng, truth.organs, n_trials, n_patients, float(log_sd(cv)), truth.correlation, index
        )
        design_measured = None
        if index is not None:
            if measured is None:  # exact dosimetry: the true values (never written to)
                same = np.array_equal(index, np.arange(len(truth.organs)))
                measured = true if same else true[index]
            design_measured = measured.transpose(2, 1, 0)
        return replace(
            self,
            organs=truth,
            true_gy_per_gbq=true.transpose(2, 1, 0),
            measured_gy_per_gbq=design_measured,
        )


def _uniforms(seed: int, chunk: int, stream: int, n_trials: int, n_patients: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk, stream)))
    return rng.random((n_patients, n_trials)).T


def chunk_tolerance(seed: int, chunk: int, n_trials: int, n_patients: int) -> np.ndarray:
    """Latent tolerances u ~ U(0, 1) of chunk ``chunk``, [trial, patient]."""
    return _uniforms(seed, chunk, TOLERANCE_STREAM, n_trials, n_patients)


def chunk_patients(
    seed: int, chunk: int, n_trials: int, n_patients: int, timed: bool
) -> VirtualPatients:
    """The virtual patients of chunk ``chunk``; arrival and onset draws only when ``timed``.

    Each kind of draw has its own stream, so adding one never changes another; organ Gy/GBq are
    drawn from their stream when a design or scenario needs them (``with_dosimetry``).
    """
    dosimetry_seed = np.random.SeedSequence(seed, spawn_key=(chunk, DOSIMETRY_STREAM))
    efficacy_seed = np.random.SeedSequence(seed, spawn_key=(chunk, EFFICACY_STREAM))
    optimisation_seed = np.random.SeedSequence(seed, spawn_key=(chunk, OPTIMISATION_STREAM))
    tolerance = chunk_tolerance(seed, chunk, n_trials, n_patients)
    if not timed:
        return VirtualPatients(
            tolerance,
            dosimetry_seed=dosimetry_seed,
            efficacy_seed=efficacy_seed,
            optimisation_seed=optimisation_seed,
        )
    return VirtualPatients(
        tolerance,
        _uniforms(seed, chunk, ARRIVAL_STREAM, n_trials, n_patients),
        _uniforms(seed, chunk, ONSET_STREAM, n_trials, n_patients),
        dosimetry_seed=dosimetry_seed,
        turned_away_seed=np.random.SeedSequence(seed, spawn_key=(chunk, TURNED_AWAY_STREAM)),
        efficacy_seed=efficacy_seed,
        backfill_seed=np.random.SeedSequence(seed, spawn_key=(chunk, BACKFILL_STREAM)),
        optimisation_seed=optimisation_seed,
        response_time_seed=np.random.SeedSequence(seed, spawn_key=(chunk, RESPONSE_TIME_STREAM)),
    )
