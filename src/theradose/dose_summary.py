"""What the organ-dose operating characteristics need of a chunk's patients, reduced trial by
trial when the trials end (:func:`theradose.engine.run_trials`): per trial, the patients treated,
how many were capped, the activity they were given and, per design organ with a limit, how many
passed it and their summed TRUE cumulative absorbed dose (or BED); per organ, a histogram of
every treated patient's TRUE cumulative dose, for its percentiles in bounded memory.

The engine reduces a block of trials at a time, one organ at a time, while the block's
per-patient values are in cache, instead of handing on [trial, patient, organ] records written
once and reduced once along their middle axis (which cost more than computing the values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HIST_BINS = 4000
HIST_SPAN = 4.0  # the histogram covers [0, 4 × the limit); its last bin also holds all above


@dataclass
class DoseSummary:
    """Per-trial sums of a chunk's treated patients' dose records, and per-organ histograms
    (the fields of the same names of :class:`theradose.results.ChunkResult`)."""

    treated_n: np.ndarray  # [trial] patients given activity
    capped_n: np.ndarray  # [trial] of them, patients whose later cycles were reduced
    activity_sum: np.ndarray  # [trial] their activity over all cycles (GBq), summed
    exceed_n: np.ndarray  # [trial, organ] of them, patients whose TRUE cumulative dose passed
    cumulative_sum: np.ndarray  # [trial, organ] their TRUE cumulative dose or BED (Gy), summed
    cumulative_hist: np.ndarray  # [organ, HIST_BINS] every enrolled patient's, binned

    @classmethod
    def empty(cls, n_trials: int, n_organs: int) -> DoseSummary:
        return cls(
            treated_n=np.zeros(n_trials, dtype=np.int64),
            capped_n=np.zeros(n_trials, dtype=np.int64),
            activity_sum=np.zeros(n_trials),
            exceed_n=np.zeros((n_trials, n_organs), dtype=np.int64),
            cumulative_sum=np.zeros((n_trials, n_organs)),
            cumulative_hist=np.zeros((n_organs, HIST_BINS), dtype=np.int64),
        )

    def add_schedules(self, trials: slice, enrolled, total, capped) -> None:
        """The block ``trials``' patients: ``enrolled`` [trial, patient], their activity over
        all cycles ``total`` and whether they were capped (any value where nobody was)."""
        given = np.where(enrolled, total, 0.0)
        self.activity_sum[trials] = given.sum(axis=1)
        self.treated_n[trials] = (given > 0).sum(axis=1)
        self.capped_n[trials] = (capped & enrolled).sum(axis=1)

    def add_organ(self, trials: slice, organ: int, enrolled, cumulative, exceeds, limit) -> None:
        """The block ``trials``' TRUE cumulative doses of ``organ`` [trial, patient] and whether
        each passed the organ's ``limit`` (Gy), any value where nobody was (one organ at a
        time: sums along the patients' contiguous rows, several times faster than along the
        middle axis of [trial, patient, organ])."""
        self.exceed_n[trials, organ] = (exceeds & enrolled).sum(axis=1)
        self.cumulative_sum[trials, organ] = np.where(enrolled, cumulative, 0.0).sum(axis=1)
        add_to_histogram(self.cumulative_hist[organ], cumulative[enrolled], limit)


def add_to_histogram(counts: np.ndarray, values: np.ndarray, limit: float) -> None:
    """Add ``values`` (≥ 0; NaN and infinity ignored) to ``counts`` [HIST_BINS], in place:
    ``HIST_BINS`` equal bins over [0, HIST_SPAN × limit), value v in bin ⌊v · HIST_BINS /
    (HIST_SPAN × limit)⌋ (the product rounded once), the last bin also holding every value
    above. These are ``numpy.histogram``'s bins but for a value within a rounding error of an
    edge, which may fall on either side of it."""
    finite = np.isfinite(values)
    if not finite.all():
        values = values[finite]
    index = np.multiply(values, HIST_BINS / (HIST_SPAN * limit))
    np.minimum(index, HIST_BINS - 1, out=index)
    counts += np.bincount(index.astype(np.intp), minlength=HIST_BINS)


def hist_quantile(counts: np.ndarray, limit: float, prob: float) -> float | None:
    """The ``prob`` quantile of a histogram of :func:`add_to_histogram` (its bin's midpoint),
    None when it is empty."""
    if counts.sum() == 0:  # nobody treated
        return None
    cdf = np.cumsum(counts) / counts.sum()
    index = int(np.searchsorted(cdf, prob))
    return float((index + 0.5) * HIST_SPAN * limit / HIST_BINS)
