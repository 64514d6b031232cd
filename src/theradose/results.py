"""Raw simulation results and the operating characteristics computed from them.

A chunk of simulated trials yields a :class:`ChunkResult` (per-trial arrays). :class:`Simulations`
accumulates sufficient statistics chunk by chunk (in chunk order, so sums are bit-identical for
any number of workers) in memory that does not grow with the number of trials.
:class:`OperatingCharacteristics` turns them into percentages and means against the scenario's
truth, each with its Monte Carlo standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from theradose.dose_summary import hist_quantile
from theradose.state import NO_LEVEL, StopReason, row_sums
from theradose.utility import outcome_classes, total_utility


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
    # Organ doses (designs with [dosimetry]; theradose.dose_summary): per trial, the patients
    # treated, of them capped, their activity (GBq) summed, and per design organ those whose TRUE
    # cumulative dose (or BED) passed its limit and the doses summed; per organ, a histogram of
    # the chunk's treated patients' TRUE cumulative doses
    treated_n: np.ndarray | None = None  # [trial]
    capped_n: np.ndarray | None = None  # [trial]
    activity_sum: np.ndarray | None = None  # [trial]
    exceed_n: np.ndarray | None = None  # [trial, organ]
    cumulative_sum: np.ndarray | None = None  # [trial, organ]
    cumulative_hist: np.ndarray | None = None  # [organ, HIST_BINS], the chunk's (not per trial)
    ruled_out_at: np.ndarray | None = None  # [trial, level] patients when ruled out, -1 never
    r: np.ndarray | None = None  # [trial, level] responses (scenarios with efficacy)
    b: np.ndarray | None = None  # [trial, level] patients with a DLT and a response
    backfill: np.ndarray | None = None  # [trial, level] backfill patients (designs that backfill)
    # The randomised optimisation stage (designs with [optimisation]; theradose.optimisation)
    optimised: np.ndarray | None = None  # [trial] the optimised level, NO_LEVEL for none
    stage_n: np.ndarray | None = None  # [trial, level] stage patients
    stage_y: np.ndarray | None = None  # [trial, level] stage DLTs
    stage_r: np.ndarray | None = None  # [trial, level] stage responses
    stage_b: np.ndarray | None = None  # [trial, level] stage patients with a DLT and a response
    stage_duration: np.ndarray | None = None  # [trial] months of the stage (with [timing])
    # [trial, level, organ] stage patients whose TRUE cumulative dose (or BED) passed the design
    # organ's limit, and [trial, level] the levels the organ-dose constraint admits at the end of
    # the stage (both: designs with organ limits)
    stage_exceed: np.ndarray | None = None
    stage_admissible: np.ndarray | None = None


@dataclass
class Simulations:
    """Sufficient statistics of simulated trials of one design under one scenario."""

    design: str
    scenario: str
    target: float
    dlt_prob: tuple[float, ...]
    true_mtd: int
    optimum: int = NO_LEVEL  # the constrained optimum (= the true MTD without organ limits)
    organs: tuple[str, ...] = ()  # the design's organs with limits
    organ_limits: tuple[float, ...] = ()  # Gy (absorbed dose or BED)
    max_patients: int = 0  # the design's maximum sample size (BOIN's risk of overdosing)
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
    # Allocation against the true MTD, per trial: a = patients at it, b = patients above it,
    # n = all patients; sums, squares and cross products with n give the pooled ratios and their
    # delta-method errors exactly, in integers (so merging is exact in any order).
    at_n_sum: int = 0
    at_n_sq: int = 0
    at_n_cross: int = 0
    above_n_sum: int = 0
    above_n_sq: int = 0
    above_n_cross: int = 0
    total_yn_cross: int = 0  # Σ DLTs × patients, for the pooled DLT rate's error
    trials_with_patients: int = 0  # trials that treated anyone (per-trial means are over them)
    at_mtd_sum: float = 0.0  # per-trial fraction of patients at the true MTD
    at_mtd_sq: float = 0.0
    dlt_rate_sum: float = 0.0  # per-trial fraction of patients with a DLT
    dlt_rate_sq: float = 0.0
    poor_allocation: int = 0  # trials with fewer than POOR_ALLOCATION_N patients at the true MTD
    overdose_majority: int = 0  # trials with more than half of their patients above the MTD
    overdose60: int = 0  # trials with more than 60% of max_patients above the MTD (BOIN)
    overdose80: int = 0
    n_hist: np.ndarray = field(default=None)  # [patients] trials with that sample size
    stop_counts: np.ndarray = field(default=None)  # [StopReason]
    durations: list = field(default_factory=list)  # float32 arrays, one per chunk (for quantiles)
    while_pending_sum: float = 0.0
    while_pending_sq: float = 0.0
    late_dlt_sum: int = 0
    late_dlt_sq: int = 0
    dosimetry: dict = field(default_factory=dict)  # name → summed array (see add_dosimetry)
    # Efficacy (scenarios with eff_prob): the truth, and sums for efficacy_figures
    eff_prob: tuple[float, ...] | None = None  # [level] true response probability
    both_prob: tuple[float, ...] | None = None  # [level] true P(DLT and response)
    utility: tuple[float, ...] | None = None  # [level] true mean utility (method using efficacy)
    obd: int = NO_LEVEL  # the true optimal biological dose (0-based)
    # utilities of (response without DLT, neither, both, DLT without response)
    utility_weights: tuple[float, ...] | None = None
    efficacy: dict = field(default_factory=dict)  # name → summed array (see _add_efficacy)
    # Backfilling (designs with [backfill]): backfill patients per level and in total, with squares
    backfill: dict = field(default_factory=dict)
    # The randomised optimisation stage (designs with [optimisation]): the truly optimal level
    # (0-based) and the stage's sums (theradose.optimisation.stage_sums)
    optimal_level: int = NO_LEVEL
    optimisation: dict = field(default_factory=dict)

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
            ("n_hist", self.max_patients + 1),
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
        total_n, total_y = row_sums(n), row_sums(y)
        self.total_n_sum += int(total_n.sum())
        self.total_n_sq += int((total_n * total_n).sum())
        self.total_y_sum += int(total_y.sum())
        self.total_y_sq += int((total_y * total_y).sum())
        self._add_allocation(n, total_n, total_y)
        self.stop_counts += np.bincount(chunk.stop_reason, minlength=len(StopReason))
        if chunk.treated_n is not None:
            self._add_dosimetry(chunk)
        if chunk.r is not None:
            self._add_efficacy(n, y, chunk.r.astype(np.int64), chunk.b.astype(np.int64))
        if chunk.optimised is not None:
            from theradose.optimisation import add_sums, stage_sums

            add_sums(self.optimisation, stage_sums(self, chunk))
        if chunk.backfill is not None:
            backfill = chunk.backfill.astype(np.int64)
            total = row_sums(backfill)
            for name, values in (
                ("sum", backfill.sum(0)),
                ("sq", (backfill * backfill).sum(0)),
                ("total_sum", int(total.sum())),
                ("total_sq", int((total * total).sum())),
            ):
                self.backfill[name] = self.backfill.get(name, 0) + values
        if chunk.duration is not None:
            self.durations.append(chunk.duration.astype(np.float32))
            self.while_pending_sum += float(chunk.while_pending.sum())
            self.while_pending_sq += float((chunk.while_pending**2).sum())
            late = chunk.dlt_after_last_decision.astype(np.int64)
            self.late_dlt_sum += int(late.sum())
            self.late_dlt_sq += int((late * late).sum())

    def _add_allocation(self, n: np.ndarray, total_n: np.ndarray, total_y: np.ndarray) -> None:
        """Patients at and above the true MTD, the DLT rate and the sample size, per trial,
        reduced to sums and counts (see :func:`allocation_figures`)."""
        first_above = self.true_mtd + 1  # NO_LEVEL + 1 = 0: every level is above
        at = n[:, self.true_mtd] if self.true_mtd != NO_LEVEL else np.zeros_like(total_n)
        above = row_sums(n[:, first_above:])
        treated = total_n > 0
        share = np.maximum(total_n, 1)
        self.trials_with_patients += int(treated.sum())
        for name, count in (("at_n", at), ("above_n", above)):
            setattr(self, f"{name}_sum", getattr(self, f"{name}_sum") + int(count.sum()))
            setattr(self, f"{name}_sq", getattr(self, f"{name}_sq") + int((count * count).sum()))
            cross = int((count * total_n).sum())
            setattr(self, f"{name}_cross", getattr(self, f"{name}_cross") + cross)
        self.total_yn_cross += int((total_y * total_n).sum())
        for name, part in (("above_mtd", above), ("at_mtd", at), ("dlt_rate", total_y)):
            fraction = part[treated] / share[treated]
            setattr(self, f"{name}_sum", getattr(self, f"{name}_sum") + float(fraction.sum()))
            setattr(self, f"{name}_sq", getattr(self, f"{name}_sq") + float((fraction**2).sum()))
        self.poor_allocation += int((at < POOR_ALLOCATION_N).sum())
        # integer comparisons: a > f·m ⇔ 10·a > (10·f)·m, no rounding at the boundary
        self.overdose_majority += int((2 * above > total_n).sum())
        self.overdose60 += int((10 * above > 6 * self.max_patients).sum())
        self.overdose80 += int((10 * above > 8 * self.max_patients).sum())
        self.n_hist = _add_counts(self.n_hist, np.bincount(total_n))

    def merge(self, other: Simulations) -> None:
        """Add another batch of the same design and scenario (call in chunk order)."""
        self.n_hist = _add_counts(self.n_hist, other.n_hist)
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
            *_ALLOCATION_SUMS,
            "while_pending_sum",
            "while_pending_sq",
            "late_dlt_sum",
            "late_dlt_sq",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.durations.extend(other.durations)
        for name, values in other.dosimetry.items():
            self._accumulate(name, values)
        for name, values in other.efficacy.items():
            self.efficacy[name] = self.efficacy[name] + values if name in self.efficacy else values
        for name, values in other.backfill.items():
            self.backfill[name] = self.backfill.get(name, 0) + values
        if other.optimisation:
            from theradose.optimisation import add_sums

            add_sums(self.optimisation, other.optimisation)

    def _add_efficacy(self, n: np.ndarray, y: np.ndarray, r: np.ndarray, b: np.ndarray) -> None:
        """Responses per level, and per trial (over the trials that treated anyone) the fraction
        of patients responding, at the true OBD, and the mean utility per patient — summed with
        their squares for the Monte Carlo errors (see :func:`efficacy_figures`)."""
        total_n = row_sums(n)
        treated = total_n > 0
        share = np.maximum(total_n, 1)
        per_trial = {"response": row_sums(r) / share}
        if self.utility_weights is not None:
            utility = total_utility(self.utility_weights, outcome_classes(n, y, r, b))
            per_trial["utility"] = utility.sum(1) / share
            if self.obd != NO_LEVEL:
                per_trial["at_obd"] = n[:, self.obd] / share
        sums = {"r_sum": r.sum(0), "r_sq": (r * r).sum(0), "treated": int(treated.sum())}
        for name, values in per_trial.items():
            sums[f"{name}_sum"] = float(values[treated].sum())
            sums[f"{name}_sq"] = float((values[treated] ** 2).sum())
        for name, values in sums.items():
            self.efficacy[name] = self.efficacy[name] + values if name in self.efficacy else values

    @property
    def timed(self) -> bool:
        return bool(self.durations)

    def _add_dosimetry(self, chunk: ChunkResult) -> None:
        """Per-trial fractions and means (summed, with squares, for their Monte Carlo errors)
        over the trials that treated anyone, the histograms of every patient's true cumulative
        organ dose (for percentiles in bounded memory), and when each level was first ruled
        out."""
        anyone = chunk.treated_n > 0  # a trial that stopped before treating anyone has no %
        self._accumulate("trials_treated", int(anyone.sum()))
        n_treated = np.maximum(chunk.treated_n, 1)
        per_trial = {
            "capped": chunk.capped_n / n_treated,
            "activity": chunk.activity_sum / n_treated,
        }
        if self.organs:
            per_trial["exceed"] = chunk.exceed_n / n_treated[:, None]
            per_trial["cumulative"] = chunk.cumulative_sum / n_treated[:, None]
        for name, values in per_trial.items():
            self._accumulate(f"{name}_sum", values[anyone].sum(axis=0))
            self._accumulate(f"{name}_sq", (values[anyone] ** 2).sum(axis=0))
        for j in range(len(self.organ_limits)):
            self._accumulate(f"hist_{j}", chunk.cumulative_hist[j])
        ruled = chunk.ruled_out_at >= 0
        self._accumulate("ruled_out", ruled.sum(axis=0))
        self._accumulate("ruled_out_n", np.where(ruled, chunk.ruled_out_at, 0).sum(axis=0))

    def _accumulate(self, name: str, values) -> None:
        values = np.asarray(values)
        self.dosimetry[name] = self.dosimetry[name] + values if name in self.dosimetry else values


POOR_ALLOCATION_N = 6  # Zhou, Yuan & Nie (2018): "fewer than 6 patients treated at the MTD"
_ALLOCATION_SUMS = (
    "at_n_sum",
    "at_n_sq",
    "at_n_cross",
    "above_n_sum",
    "above_n_sq",
    "above_n_cross",
    "total_yn_cross",
    "trials_with_patients",
    "at_mtd_sum",
    "at_mtd_sq",
    "dlt_rate_sum",
    "dlt_rate_sq",
    "poor_allocation",
    "overdose_majority",
    "overdose60",
    "overdose80",
)


def _add_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two histograms added, the shorter padded with zeros (sample sizes past the first's)."""
    size = max(a.size, b.size)
    return np.pad(a, (0, size - a.size)) + np.pad(b, (0, size - b.size))


def mean_with_se(total, total_sq, n: int):
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


def percent_with_se(count, n: int):
    """Percentage of ``n`` trials and its Monte Carlo (binomial) standard error."""
    p = np.asarray(count, dtype=float) / n
    return 100 * p, 100 * np.sqrt(p * (1 - p) / n)


@dataclass(frozen=True)
class OperatingCharacteristics:
    """Operating characteristics of a design under a scenario, with Monte Carlo standard errors.

    Keys of :meth:`as_dict` are part of the JSON contract (see docs/definitions.md).
    """

    values: dict
    se: dict

    @classmethod
    def from_simulations(cls, sim: Simulations) -> OperatingCharacteristics:
        t = sim.n_trials
        sel, sel_se = percent_with_se(sim.selected, t)
        bench, bench_se = percent_with_se(sim.benchmark_selected, t)
        n_mean, n_se = mean_with_se(sim.n_sum, sim.n_sq, t)
        y_mean, y_se = mean_with_se(sim.y_sum, sim.y_sq, t)
        tn, tn_se = mean_with_se(sim.total_n_sum, sim.total_n_sq, t)
        ty, ty_se = mean_with_se(sim.total_y_sum, sim.total_y_sq, t)
        treated = max(sim.trials_with_patients, 1)
        above, above_se = mean_with_se(sim.above_mtd_sum, sim.above_mtd_sq, treated)
        pcs_index = sim.true_mtd + 1  # index 0 is "no MTD": correct when no level is acceptable
        stops, stops_se = percent_with_se(sim.stop_counts, t)
        # BOIN12's own stop appears only where efficacy is simulated (other results keep their keys)
        reasons = [
            r
            for r in StopReason
            if r is not StopReason.RUNNING
            and (r is not StopReason.NONE_ACCEPTABLE or sim.eff_prob is not None)
        ]
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
        allocation_figures(sim, values, se)
        _dosimetry_figures(sim, values, se)
        efficacy_figures(sim, values, se)
        backfill_figures(sim, values, se)
        if sim.optimisation:
            from theradose.optimisation import optimisation_figures

            optimisation_figures(sim, values, se)
        timing_keys = (
            "duration_months_mean",
            "duration_months_p95",
            "enrolled_while_pending_pct",
            "dlt_after_last_decision_mean",
        )
        if sim.timed:
            durations = np.concatenate(sim.durations).astype(float)
            d_mean, d_se = mean_with_se(durations.sum(), (durations**2).sum(), t)
            p95, p95_se = _quantile_se(durations, 0.95)
            wp, wp_se = mean_with_se(sim.while_pending_sum, sim.while_pending_sq, t)
            late, late_se = mean_with_se(sim.late_dlt_sum, sim.late_dlt_sq, t)
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


def ratio_with_se(a_sum, a_sq, cross, b_sum, b_sq, n: int) -> tuple[float, float] | None:
    """Pooled ratio R = Σa / Σb over trials and its Monte Carlo standard error by the delta
    method: se(R) = sqrt(Σ(aᵢ − R·bᵢ)² / (n(n − 1))) / mean(b) (Cochran 1977, §6.3); None when
    Σb = 0."""
    if b_sum == 0:
        return None
    ratio = a_sum / b_sum
    if n < 2:
        return ratio, 0.0
    spread = max(a_sq - 2 * ratio * cross + ratio * ratio * b_sq, 0.0)
    return ratio, math.sqrt(spread / (n * (n - 1))) / (b_sum / n)


def _hist_quantiles(counts: np.ndarray, probs) -> np.ndarray:
    """Quantiles of the integers whose counts are ``counts`` (index = value), as
    ``numpy.quantile``'s default (linear interpolation between order statistics) gives them
    from the values themselves."""
    cum = np.cumsum(counts)
    position = (cum[-1] - 1) * np.asarray(probs, dtype=float)
    lo, hi = np.floor(position), np.ceil(position)
    at_lo = np.searchsorted(cum, lo, side="right")
    at_hi = np.searchsorted(cum, hi, side="right")
    return at_lo + (position - lo) * (at_hi - at_lo)


def _hist_quantile_se(counts: np.ndarray, prob: float) -> tuple[float, float]:
    """:func:`_quantile_se` from a histogram of integers."""
    n = int(counts.sum())
    half = math.sqrt(prob * (1 - prob) / n)
    lo, q, hi = _hist_quantiles(counts, [max(prob - half, 0.0), prob, min(prob + half, 1.0)])
    return float(q), float((hi - lo) / 2)


# Sample-size quantiles: key → probability.
N_QUANTILES = {"n_p05": 0.05, "n_p25": 0.25, "n_median": 0.5, "n_p75": 0.75, "n_p95": 0.95}


def allocation_figures(sim: Simulations, values: dict, se: dict) -> None:
    """The standard operating characteristics of allocation, overdosing, toxicity and sample
    size (docs/definitions.md), with their Monte Carlo errors.

    Pooled figures are ratios of totals over all trials (Σ patients at the MTD / Σ patients);
    per-trial means average each trial's own proportion over the trials that treated anyone.
    Figures against the true MTD are None when no level is acceptable (no true MTD), except
    those about levels above it (then every level is above it).
    """
    t = sim.n_trials
    treated = max(sim.trials_with_patients, 1)
    has_mtd = sim.true_mtd != NO_LEVEL

    def put(key, pair, scale=100.0, defined=True):
        if pair is None or not defined:
            values[key] = se[key] = None
        else:
            values[key], se[key] = float(scale * pair[0]), float(scale * pair[1])

    above_selected = sim.selected[sim.true_mtd + 2 :].sum()  # index 0 is "no MTD"
    put("select_above_mtd_pct", percent_with_se(above_selected, t), 1.0)
    totals = (sim.total_n_sum, sim.total_n_sq, t)
    for name, prefix in (("at", "at_n"), ("above", "above_n")):
        sums = [getattr(sim, f"{prefix}_{k}") for k in ("sum", "sq", "cross")]
        pooled = ratio_with_se(*sums, totals[0], totals[1], t)
        put(f"patients_{name}_mtd_pooled_pct", pooled, defined=has_mtd or name == "above")
    put(
        "patients_at_mtd_trial_mean_pct",
        mean_with_se(sim.at_mtd_sum, sim.at_mtd_sq, treated),
        defined=has_mtd and sim.trials_with_patients > 0,
    )
    put(
        "patients_above_mtd_trial_mean_pct",
        mean_with_se(sim.above_mtd_sum, sim.above_mtd_sq, treated),
        defined=sim.trials_with_patients > 0,
    )
    put("poor_allocation_pct", percent_with_se(sim.poor_allocation, t), 1.0, defined=has_mtd)
    for key in ("overdose_majority", "overdose60", "overdose80"):
        put(f"{key}_pct", percent_with_se(getattr(sim, key), t), 1.0)
    pooled_dlt = ratio_with_se(
        sim.total_y_sum, sim.total_y_sq, sim.total_yn_cross, sim.total_n_sum, sim.total_n_sq, t
    )
    put("dlt_rate_pooled_pct", pooled_dlt)
    put(
        "dlt_rate_trial_mean_pct",
        mean_with_se(sim.dlt_rate_sum, sim.dlt_rate_sq, treated),
        defined=sim.trials_with_patients > 0,
    )
    _sample_size_figures(sim.n_hist, values, se)


def _sample_size_figures(counts: np.ndarray, values: dict, se: dict) -> None:
    """Sample size: SD (its error by the delta method from the 4th central moment), quantiles
    (errors as :func:`_quantile_se`), smallest and largest, and the % of trials per size."""
    t = int(counts.sum())
    sizes = np.arange(counts.size)
    mean = float(counts @ sizes) / t
    m2 = float(counts @ (sizes - mean) ** 2) / t
    m4 = float(counts @ (sizes - mean) ** 4) / t
    sd = math.sqrt(m2 * t / (t - 1)) if t > 1 else 0.0
    values["n_sd"] = sd
    se["n_sd"] = math.sqrt(max(m4 - m2 * m2, 0.0) / t) / (2 * sd) if sd > 0 else 0.0
    for key, prob in N_QUANTILES.items():
        values[key], se[key] = _hist_quantile_se(counts, prob)
    present = np.flatnonzero(counts)
    values["n_min"], values["n_max"] = int(present[0]), int(present[-1])
    se["n_min"] = se["n_max"] = None
    pct, pct_se = percent_with_se(counts, t)
    values["n_distribution_pct"], se["n_distribution_pct"] = pct.tolist(), pct_se.tolist()


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
    mean_se = lambda name: mean_with_se(d[f"{name}_sum"], d[f"{name}_sq"], max(n, 1))  # noqa: E731
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
            values["organ_cumulative_p95"][organ] = hist_quantile(d[f"hist_{j}"], limit, 0.95)
            se["organ_cumulative_p95"][organ] = None
    ruled = d["ruled_out"]
    pct, pct_se = percent_with_se(ruled, t)
    values["ruled_out_pct"], se["ruled_out_pct"] = pct.tolist(), pct_se.tolist()
    with np.errstate(invalid="ignore", divide="ignore"):
        after = np.where(ruled > 0, d["ruled_out_n"] / np.maximum(ruled, 1), np.nan)
    values["ruled_out_after_n_mean"] = [None if np.isnan(v) else float(v) for v in after]
    se["ruled_out_after_n_mean"] = None


def backfill_figures(sim: Simulations, values: dict, se: dict) -> None:
    """Backfilling figures, only for a design that backfills (Zhao et al. 2024, BF-BOIN): the
    mean backfill patients per level (``backfill_patients_mean``, part of ``patients_mean``)
    and per trial (``backfill_total_mean``, part of ``n_mean``)."""
    b = sim.backfill
    if not b:
        return
    t = sim.n_trials
    mean, error = mean_with_se(b["sum"], b["sq"], t)
    values["backfill_patients_mean"], se["backfill_patients_mean"] = mean.tolist(), error.tolist()
    mean, error = mean_with_se(b["total_sum"], b["total_sq"], t)
    values["backfill_total_mean"], se["backfill_total_mean"] = float(mean), float(error)


EFFICACY_KEYS = (
    "true_eff_prob",
    "true_utility",
    "true_obd",
    "obd_selection_pct",
    "patients_at_obd_pct",
    "response_mean",
    "response_rate_pct",
    "utility_per_patient_mean",
)


def efficacy_figures(sim: Simulations, values: dict, se: dict) -> None:
    """Efficacy figures, only for a scenario with efficacy (docs/dose-optimisation.md, "Dose
    optimisation: efficacy and BOIN12"): the truth (``true_eff_prob``, ``true_utility``,
    ``true_obd`` 1-based), the % of trials selecting the true OBD (selecting none is correct
    when no level is acceptable), the % of each trial's patients treated at the OBD, mean
    responses per level, the % of each trial's patients responding and each trial's mean utility
    per patient (the last three are means over the trials that treated anyone). Figures that
    need a utility (a method using efficacy) are None for other designs."""
    e = sim.efficacy
    if sim.eff_prob is None or not e:
        return
    t = sim.n_trials
    treated = max(int(e["treated"]), 1)
    has_utility = sim.utility is not None
    values["true_eff_prob"], se["true_eff_prob"] = list(sim.eff_prob), None
    values["true_utility"] = list(sim.utility) if has_utility else None
    values["true_obd"] = true_mtd_label(sim.obd) if has_utility else None
    se["true_utility"] = se["true_obd"] = None
    r_mean, r_se = mean_with_se(e["r_sum"], e["r_sq"], t)
    values["response_mean"], se["response_mean"] = r_mean.tolist(), r_se.tolist()

    def put(key, name, scale, defined=True):
        if not defined or f"{name}_sum" not in e or e["treated"] == 0:
            values[key] = se[key] = None
            return
        mean, error = mean_with_se(e[f"{name}_sum"], e[f"{name}_sq"], treated)
        values[key], se[key] = float(scale * mean), float(scale * error)

    put("response_rate_pct", "response", 100.0)
    put("utility_per_patient_mean", "utility", 1.0, has_utility)
    put("patients_at_obd_pct", "at_obd", 100.0, has_utility and sim.obd != NO_LEVEL)
    if has_utility:
        pct, pct_se = percent_with_se(sim.selected[sim.obd + 1], t)
        values["obd_selection_pct"], se["obd_selection_pct"] = float(pct), float(pct_se)
    else:
        values["obd_selection_pct"] = se["obd_selection_pct"] = None


def true_mtd_label(true_mtd: int) -> int | None:
    """1-based true MTD for reports, None when no level is acceptable."""
    return None if true_mtd == NO_LEVEL else true_mtd + 1
