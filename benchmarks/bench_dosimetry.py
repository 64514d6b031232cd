"""Dosimetry throughput: the per-cohort operations of a dosimetry-constrained simulation.

Run with ``python benchmarks/bench_dosimetry.py [--trials N] [--repeats R]``. Times, for a batch
of trials (default 10,000) with 6 levels, 3 organs and 36 patients: the conjugate update, the
exceedance probabilities [trial, level, organ], the admissibility mask, patient capping of
every patient, sampling the patients, and the true level quantities of a scenario. Not a test:
numbers go in docs/speed.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from theradose.dosimetry import (
    Dosimetry,
    DosimetryStats,
    DosimetryTruth,
    OrganModel,
    OrganNtcp,
    OrganTruth,
    Toxicity,
    admissible_levels,
    cap_activities,
    exceedance_prob,
    level_truths,
    sample_patients,
    update_posterior,
)

ACTIVITY = np.array([1.85, 3.7, 5.55, 7.4, 9.25, 11.1])
KIDNEY = dict(alpha_beta_gy=2.6, repair_half_time_h=2.8, effective_half_time_h=40.0)


def design() -> Dosimetry:
    return Dosimetry(
        organs=(
            OrganModel(
                name="kidney",
                gy_per_gbq_median=0.43,
                gy_per_gbq_cv=0.37,
                limit_bed_gy=40.0,
                **KIDNEY,
            ),
            OrganModel(name="marrow", gy_per_gbq_median=0.03, gy_per_gbq_cv=0.3, limit_gy=2.0),
            OrganModel(name="parotid", gy_per_gbq_median=1.9, gy_per_gbq_cv=0.6, limit_gy=25.0),
        ),
        cycles=4,
        measurement_cv=0.15,
        patient_cap=True,
    )


def scenario() -> DosimetryTruth:
    return DosimetryTruth(
        organs=(
            OrganTruth(name="kidney", gy_per_gbq_median=0.55, gy_per_gbq_cv=0.4, **KIDNEY),
            OrganTruth(name="marrow", gy_per_gbq_median=0.03, gy_per_gbq_cv=0.3),
            OrganTruth(name="parotid", gy_per_gbq_median=1.9, gy_per_gbq_cv=0.6),
        ),
        toxicity=Toxicity(
            background_prob=0.05,
            organs=(
                OrganNtcp(name="kidney", td50_gy=28.0, m=0.10),
                OrganNtcp(name="marrow", td50_gy=3.0, gamma50=2.0),
            ),
        ),
    )


def timed(label: str, repeats: int, fn, per: int | None = None) -> None:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    elapsed = (time.perf_counter() - start) / repeats
    rate = f" = {per / elapsed:>12,.0f} /s" if per else ""
    print(f"{label:<58} {1e3 * elapsed:9.2f} ms{rate}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=36)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    n, m, r = args.trials, args.patients, args.repeats

    dosimetry, truth = design(), scenario()
    rng = np.random.default_rng(1)
    patients = sample_patients(rng, truth.organs, n, m, measurement_cv=dosimetry.measurement_cv)
    treated = np.arange(m)[None, :] < rng.integers(0, m + 1, size=n)[:, None]
    stats = DosimetryStats.from_measured(patients.measured_gy_per_gbq, treated)
    post = update_posterior(dosimetry, stats)
    planned = rng.choice(ACTIVITY, size=(n, m))

    print(f"{n:,} trials × {ACTIVITY.size} levels × {len(dosimetry.organs)} organs, {m} patients")
    timed(
        "sufficient statistics from measured Gy/GBq",
        r,
        lambda: DosimetryStats.from_measured(patients.measured_gy_per_gbq, treated),
        n,
    )
    timed("conjugate update [trial, organ]", r, lambda: update_posterior(dosimetry, stats), n)
    timed(
        "exceedance_prob [trial, level, organ]",
        r,
        lambda: exceedance_prob(post, dosimetry, ACTIVITY),
        n,
    )
    timed(
        "admissible_levels [trial, level]",
        r,
        lambda: admissible_levels(post, dosimetry, ACTIVITY),
        n,
    )
    timed(
        f"cap_activities, reduce [trial, patient, cycle] ({n * m:,} patients)",
        r,
        lambda: cap_activities(planned, patients.measured_gy_per_gbq, dosimetry),
        n * m,
    )
    timed(
        "cap_activities, cycles rule",
        r,
        lambda: cap_activities(planned, patients.measured_gy_per_gbq, dosimetry, rule="cycles"),
        n * m,
    )
    timed(
        "sample_patients [trial, patient, organ]",
        r,
        lambda: sample_patients(rng, truth.organs, n, m, measurement_cv=0.15),
        n * m,
    )
    one = Dosimetry(organs=dosimetry.organs[:1], cycles=4, measurement_cv=0.15, patient_cap=True)
    timed(
        "level_truths, uncapped, quadrature",
        3,
        lambda: level_truths(truth, one, ACTIVITY, patient_cap=False),
    )
    timed(
        "level_truths, capped by 1 organ, quadrature", 3, lambda: level_truths(truth, one, ACTIVITY)
    )
    timed(
        "level_truths, capped by 3 organs, qmc 16 × 2^15",
        1,
        lambda: level_truths(truth, dosimetry, ACTIVITY),
    )


if __name__ == "__main__":
    main()
