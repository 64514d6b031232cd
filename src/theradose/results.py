"""Raw simulation results and the operating characteristics computed from them.

A chunk of simulated trials yields a :class:`ChunkResult` (per-trial arrays). :class:`Simulations`
accumulates sufficient statistics chunk by chunk (in chunk order, so sums are bit-identical for
any number of workers) in memory that does not grow with the number of trials.
:class:`OperatingCharacteristics` turns them into percentages and means against the scenario's
truth, each with its Monte Carlo standard error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from theradose.state import NO_LEVEL, StopReason


@dataclass
class ChunkResult:
    """Per-trial outcomes of one chunk."""

    n: np.ndarray  # [trial, level]
    y: np.ndarray  # [trial, level]
    mtd: np.ndarray  # [trial] selected level, NO_LEVEL for none
    stop_reason: np.ndarray  # [trial]
    benchmark_mtd: np.ndarray  # [trial] complete-information selection
    duration: np.ndarray | None = None  # [trial] months, when the design has timing
    while_pending: np.ndarray | None = None  # [trial] fraction enrolled while others pending
    dlt_after_last_decision: np.ndarray | None = None  # [trial]
    total_activity: np.ndarray | None = None  # [trial, patient] over all cycles (0: not treated)
    capped: np.ndarray | None = None  # [trial, patient]
    cumulative: np.ndarray | None = None  # [trial, patient, organ] true dose/BED (NaN: none)
    exceeds: np.ndarray | None = None  # [trial, patient, organ]
    ruled_out_at: np.ndarray | None = None  # [trial, level] patients when ruled out, -1 never


@dataclass
class Simulations:
    """Sufficient statistics of simulated trials of one design under one scenario."""

    design: str
    scenario: str
    target: float
    dlt_prob: tuple[float, ...]
    true_mtd: int
    optimum: int = NO_LEVEL  # the constrained optimum (the true MTD without organ limits)
    organs: tuple[str, ...] = ()  # the design's organs with limits
    organ_limits: tuple[float, ...] = ()  # Gy (absorbed dose or BED)
    n_trials: int = 0
    selected: np.ndarray = field(default=None)  # [1 + level] counts; index 0 = no MTD
    benchmark_selected: np.ndarray = field(default=None)  # [level] counts
    n_sum: np.ndarray = field(default=None)  # [level]
    n_sq: np.ndarray = field(default=None)  # [level]
    y_sum: np.ndarray = field(default=None)  # [level]
    y_sq: np.ndarray = field(default=None)  # [level]
    total_n_sum: int = 0
    total_n_sq: int = 0
    total_y_sum: int = 0
    total_y_sq: int = 0
    above_mtd_sum: float = 0.0  # per-trial fraction of patients above the true MTD
    above_mtd_sq: float = 0.0
    stop_counts: np.ndarray = field(default=None)  # [StopReason]
    durations: list = field(default_factory=list)  # float32 arrays, one per chunk (for quantiles)
    while_pending_sum: float = 0.0
    while_pending_sq: float = 0.0
    late_dlt_sum: int = 0
    late_dlt_sq: int = 0
    dosimetry: dict = field(default_factory=dict)  # name → summed array (see add_dosimetry)

    def __post_init__(self) -> None:
        levels = len(self.dlt_prob)
        zeros = lambda k: np.zeros(k, dtype=np.int64)  # noqa: E731
        for name, size in [
            ("selected", levels + 1),
            ("benchmark_selected", levels),
            ("n_sum", levels),
            ("n_sq", levels),
            ("y_sum", levels),
            ("y_sq", levels),
            ("stop_counts", len(StopReason)),
        ]:
            if getattr(self, name) is None:
                setattr(self, name, zeros(size))

    @property
    def n_levels(self) -> int:
        return len(self.dlt_prob)

    def add(self, chunk: ChunkResult) -> None:
        n = chunk.n.astype(np.int64)
        y = chunk.y.astype(np.int64)
        self.n_trials += n.shape[0]
        self.selected += np.bincount(chunk.mtd + 1, minlength=self.n_levels + 1)
        self.benchmark_selected += np.bincount(chunk.benchmark_mtd, minlength=self.n_levels)
        self.n_sum += n.sum(0)
        self.n_sq += (n * n).sum(0)
        self.y_sum += y.sum(0)
        self.y_sq += (y * y).sum(0)
        total_n, total_y = n.sum(1), y.sum(1)
        self.total_n_sum += int(total_n.sum())
        self.total_n_sq += int((total_n * total_n).sum())
        self.total_y_sum += int(total_y.sum())
        self.total_y_sq += int((total_y * total_y).sum())
        first_above = self.true_mtd + 1  # NO_LEVEL + 1 = 0: every level is above
        above = n[:, first_above:].sum(1) / np.maximum(total_n, 1)
        self.above_mtd_sum += float(above.sum())
        self.above_mtd_sq += float((above * above).sum())
        self.stop_counts += np.bincount(chunk.stop_reason, minlength=len(StopReason))
        if chunk.total_activity is not None:
            self._add_dosimetry(chunk)
        if chunk.duration is not None:
            self.durations.append(chunk.duration.astype(np.float32))
            self.while_pending_sum += float(chunk.while_pending.sum())
            self.while_pending_sq += float((chunk.while_pending**2).sum())
            late = chunk.dlt_after_last_decision.astype(np.int64)
            self.late_dlt_sum += int(late.sum())
            self.late_dlt_sq += int((late * late).sum())

    def merge(self, other: Simulations) -> None:
        """Add another batch of the same design and scenario (call in chunk order)."""
        for name in (
            "selected",
            "benchmark_selected",
            "n_sum",
            "n_sq",
            "y_sum",
            "y_sq",
            "stop_counts",
            "n_trials",
            "total_n_sum",
            "total_n_sq",
            "total_y_sum",
            "total_y_sq",
            "above_mtd_sum",
            "above_mtd_sq",
            "while_pending_sum",
            "while_pending_sq",
            "late_dlt_sum",
            "late_dlt_sq",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.durations.extend(other.durations)
        for name, values in other.dosimetry.items():
            self._accumulate(name, values)

    @property
    def timed(self) -> bool:
        return bool(self.durations)

    def _add_dosimetry(self, chunk: ChunkResult) -> None:
        """Per-trial fractions and means (summed, with squares, for their Monte Carlo errors)
        over the trials that treated anyone, a histogram of every patient's true cumulative organ
        dose (for percentiles in bounded memory), and when each level was first ruled out."""
        treated = chunk.total_activity > 0
        anyone = treated.any(axis=1)  # a trial that stopped before treating anyone has no %
        self._accumulate("trials_treated", int(anyone.sum()))
        n_treated = np.maximum(treated.sum(axis=1), 1)
        per_trial = {
            "capped": chunk.capped.sum(axis=1) / n_treated,
            "activity": chunk.total_activity.sum(axis=1) / n_treated,
        }
        if self.organs:
            per_trial["exceed"] = chunk.exceeds.sum(axis=1) / n_treated[:, None]
            per_trial["cumulative"] = (
                np.nan_to_num(np.nansum(chunk.cumulative, axis=1)) / (n_treated[:, None])
            )
        for name, values in per_trial.items():
            self._accumulate(f"{name}_sum", values[anyone].sum(axis=0))
            self._accumulate(f"{name}_sq", (values[anyone] ** 2).sum(axis=0))
        for j, limit in enumerate(self.organ_limits):
            values = chunk.cumulative[..., j]
            values = values[np.isfinite(values)]
            counts, _ = np.histogram(values, bins=_HIST_BINS, range=(0.0, _HIST_SPAN * limit))
            counts[-1] += int((values >= _HIST_SPAN * limit).sum())
            self._accumulate(f"hist_{j}", counts)
        ruled = chunk.ruled_out_at >= 0
        self._accumulate("ruled_out", ruled.sum(axis=0))
        self._accumulate("ruled_out_n", np.where(ruled, chunk.ruled_out_at, 0).sum(axis=0))

    def _accumulate(self, name: str, values) -> None:
        values = np.asarray(values)
        self.dosimetry[name] = self.dosimetry[name] + values if name in self.dosimetry else values


_HIST_BINS = 4000
_HIST_SPAN = 4.0  # histogram of cumulative organ dose up to 4 × the limit (the rest: last bin)


def _hist_quantile(counts: np.ndarray, limit: float, prob: float) -> float | None:
    if counts.sum() == 0:  # nobody treated
        return None
    cdf = np.cumsum(counts) / counts.sum()
    index = int(np.searchsorted(cdf, prob))
    return float((index + 0.5) * _HIST_SPAN * limit / _HIST_BINS)


def _mean_se(total, total_sq, n: int):
    """Mean and Monte Carlo standard error of the mean from a sum and a sum of squares."""
    mean = np.asarray(total, dtype=float) / n
    if n < 2:
        return mean, np.zeros_like(mean)
    var = (np.asarray(total_sq, dtype=float) - n * mean * mean) / (n - 1)
    return mean, np.sqrt(np.maximum(var, 0.0) / n)


def _quantile_se(values: np.ndarray, prob: float) -> tuple[float, float]:
    """A quantile and its Monte Carlo standard error from the order statistics at
    prob ± sqrt(prob(1 − prob)/n) (the binomial interval for a quantile, halved)."""
    n = values.size
    half = np.sqrt(prob * (1 - prob) / n)
    lo, q, hi = np.quantile(values, [max(prob - half, 0.0), prob, min(prob + half, 1.0)])
    return float(q), float((hi - lo) / 2)


def _pct_se(count, n: int):
    p = np.asarray(count, dtype=float) / n
    return 100 * p, 100 * np.sqrt(p * (1 - p) / n)


@dataclass(frozen=True)
class OperatingCharacteristics:
    """Operating characteristics of a design under a scenario, with Monte Carlo standard errors.

    Keys of :meth:`as_dict` are part of the JSON contract (see README).
    """

    values: dict
    se: dict

    @classmethod
    def from_simulations(cls, sim: Simulations) -> OperatingCharacteristics:
        t = sim.n_trials
        sel, sel_se = _pct_se(sim.selected, t)
        bench, bench_se = _pct_se(sim.benchmark_selected, t)
        n_mean, n_se = _mean_se(sim.n_sum, sim.n_sq, t)
        y_mean, y_se = _mean_se(sim.y_sum, sim.y_sq, t)
        tn, tn_se = _mean_se(sim.total_n_sum, sim.total_n_sq, t)
        ty, ty_se = _mean_se(sim.total_y_sum, sim.total_y_sq, t)
        above, above_se = _mean_se(sim.above_mtd_sum, sim.above_mtd_sq, t)
        pcs_index = sim.true_mtd + 1  # index 0 is "no MTD": correct when no level is acceptable
        stops, stops_se = _pct_se(sim.stop_counts, t)
        reasons = [r for r in StopReason if r is not StopReason.RUNNING]
        values = {
            "selection_pct": sel[1:].tolist(),
            "no_selection_pct": float(sel[0]),
            "pcs": float(sel[pcs_index]),
            "patients_mean": n_mean.tolist(),
            "dlt_mean": y_mean.tolist(),
            "n_mean": float(tn),
            "dlt_total_mean": float(ty),
            "overdose_patients_pct": float(100 * above),
            "benchmark_selection_pct": bench.tolist(),
            "stop_reason_pct": {r.name.lower(): float(stops[r]) for r in reasons},
        }
        se = {
            "selection_pct": sel_se[1:].tolist(),
            "no_selection_pct": float(sel_se[0]),
            "pcs": float(sel_se[pcs_index]),
            "patients_mean": n_se.tolist(),
            "dlt_mean": y_se.tolist(),
            "n_mean": float(tn_se),
            "dlt_total_mean": float(ty_se),
            "overdose_patients_pct": float(100 * above_se),
            "benchmark_selection_pct": bench_se.tolist(),
            "stop_reason_pct": {r.name.lower(): float(stops_se[r]) for r in reasons},
        }
        values["pcs_constrained"] = float(sel[sim.optimum + 1])
        se["pcs_constrained"] = float(sel_se[sim.optimum + 1])
        _dosimetry_figures(sim, values, se)
        timing_keys = (
            "duration_months_mean",
            "duration_months_p95",
            "enrolled_while_pending_pct",
            "dlt_after_last_decision_mean",
        )
        if sim.timed:
            durations = np.concatenate(sim.durations).astype(float)
            d_mean, d_se = _mean_se(durations.sum(), (durations**2).sum(), t)
            p95, p95_se = _quantile_se(durations, 0.95)
            wp, wp_se = _mean_se(sim.while_pending_sum, sim.while_pending_sq, t)
            late, late_se = _mean_se(sim.late_dlt_sum, sim.late_dlt_sq, t)
            for key, value, error in zip(
                timing_keys,
                (d_mean, p95, 100 * wp, late),
                (d_se, p95_se, 100 * wp_se, late_se),
                strict=True,
            ):
                values[key], se[key] = float(value), float(error)
        else:
            for key in timing_keys:
                values[key] = se[key] = None
        return cls(values=values, se=se)


def _dosimetry_figures(sim: Simulations, values: dict, se: dict) -> None:
    """Organ-dose figures: % of patients past each organ limit, mean and 95th percentile of the
    true cumulative dose (or BED), % of patients capped, mean activity given, and per level the
    % of trials in which the constraint ruled it out and the mean patients treated by then."""
    keys = (
        "organ_exceed_pct",
        "organ_cumulative_mean",
        "organ_cumulative_p95",
        "capped_pct",
        "activity_mean",
        "ruled_out_pct",
        "ruled_out_after_n_mean",
    )
    d, t = sim.dosimetry, sim.n_trials
    if not d:
        for key in keys:
            values[key] = se[key] = None
        return
    # per-patient figures: means over the trials that treated anyone (None when none did)
    n = int(d["trials_treated"])
    mean_se = lambda name: _mean_se(d[f"{name}_sum"], d[f"{name}_sq"], max(n, 1))  # noqa: E731
    number = lambda x, scale=1.0: None if n == 0 else float(scale * x)  # noqa: E731
    capped, capped_se = mean_se("capped")
    activity, activity_se = mean_se("activity")
    values["capped_pct"], se["capped_pct"] = number(capped, 100), number(capped_se, 100)
    values["activity_mean"], se["activity_mean"] = number(activity), number(activity_se)
    for key in ("organ_exceed_pct", "organ_cumulative_mean", "organ_cumulative_p95"):
        values[key], se[key] = {}, {}
    if sim.organs:
        exceed, exceed_se = mean_se("exceed")
        cumulative, cumulative_se = mean_se("cumulative")
        for j, (organ, limit) in enumerate(zip(sim.organs, sim.organ_limits, strict=True)):
            values["organ_exceed_pct"][organ] = number(exceed[j], 100)
            se["organ_exceed_pct"][organ] = number(exceed_se[j], 100)
            values["organ_cumulative_mean"][organ] = number(cumulative[j])
            se["organ_cumulative_mean"][organ] = number(cumulative_se[j])
            values["organ_cumulative_p95"][organ] = _hist_quantile(d[f"hist_{j}"], limit, 0.95)
            se["organ_cumulative_p95"][organ] = None
    ruled = d["ruled_out"]
    pct, pct_se = _pct_se(ruled, t)
    values["ruled_out_pct"], se["ruled_out_pct"] = pct.tolist(), pct_se.tolist()
    with np.errstate(invalid="ignore", divide="ignore"):
        after = np.where(ruled > 0, d["ruled_out_n"] / np.maximum(ruled, 1), np.nan)
    values["ruled_out_after_n_mean"] = [None if np.isnan(v) else float(v) for v in after]
    se["ruled_out_after_n_mean"] = None


def true_mtd_label(true_mtd: int) -> int | None:
    """1-based true MTD for reports, None when no level is acceptable."""
    return None if true_mtd == NO_LEVEL else true_mtd + 1
