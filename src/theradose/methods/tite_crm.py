"""The time-to-event CRM (TITE-CRM).

Cheung, Y. K. & Chappell, R. (2000). Sequential designs for phase I clinical trials with
late-onset toxicities. *Biometrics* 56:1177–1182. doi:10.1111/j.0006-341X.2000.01177.x

The CRM likelihood with a weight w_i ∈ [0, 1] for each patient without a DLT so far:

    L(β) = Π_{DLT} p_{d_i}(β) · Π_{no DLT} (1 − w_i p_{d_i}(β))

Linear weights: w_i = follow-up / window. Adaptive weights (Cheung & Chappell 2000, §3):
with z DLTs observed at follow-up fractions t_(1) ≤ … ≤ t_(z) (t_(0) = 0, t_(z+1) = 1) and κ of
them at or before the patient's follow-up u_i, w_i = (κ + (u_i − t_(κ)) / (t_(κ+1) − t_(κ))) /
(z + 1). Patients with complete follow-up weigh 1, so the final selection, made when everyone's
window has closed, is the CRM's. Decisions need each patient's follow-up: the method reads the
trial's time and per-patient records, never the eventual outcomes of pending patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from theradose.methods.crm import SPEC as CRM_SPEC
from theradose.methods.crm import Crm, build_crm, parse_crm
from theradose.methods.spec import DesignFields, MethodSpec, extended
from theradose.posterior import log_integrand
from theradose.state import TrialState
from theradose.validation import POSITIVE, TomlTable

WEIGHTS = ("linear", "adaptive")
_BLOCK = 256  # trials per block: keeps the [trial, node] products in cache


@dataclass(frozen=True)
class TiteData:
    """Per trial: counts of observed DLTs and of complete non-DLT follow-ups, and the pending
    patients' levels and weights ([trial, slot]; weight 0 in unused slots)."""

    n: np.ndarray  # [trial, level] observed DLTs + complete follow-ups
    y: np.ndarray  # [trial, level] observed DLTs
    pending_level: np.ndarray  # [trial, slot]
    pending_weight: np.ndarray  # [trial, slot]


@dataclass(frozen=True)
class TiteCrm(Crm):
    """TITE-CRM (``method = "tite-crm"``): decides at each arrival with weighted follow-up."""

    window: float = 1.0  # DLT assessment window, months
    weights: str = "linear"
    start_up_wait: float | None = None  # months; None: the DLT window
    key = "tite-crm"
    references = (
        (
            "Cheung YK, Chappell R (2000). Sequential designs for phase I clinical trials with "
            "late-onset toxicities. Biometrics 56:1177–1182."
        ),
        (
            "Cheung YK (2011). Dose Finding by the Continual Reassessment Method. Chapman & "
            "Hall/CRC."
        ),
    )
    label = "TITE-CRM (Cheung & Chappell 2000)"
    count_based = False
    tite = True
    holds_accrual = True
    turns_away = True  # arrivals during a start-up wait are not enrolled

    def suspend(self, state: TrialState) -> np.ndarray:
        """Trials whose start-up must wait before moving up a level, [trial]: read after
        :func:`theradose.pipeline.decide`, so a move up that a constraint forbids (an organ-dose
        limit) is no move and no wait."""
        moving_up = self.in_start_up(state) & (state.next_level > state.level)
        if not moving_up.any():
            return moving_up
        # dfcrm's test, as a difference: (arrival now) − (last arrival) ≥ wait
        return moving_up & (state.time - self._last_arrival(state) < self._wait)

    def start_up_wait_ends(self, state: TrialState) -> np.ndarray:
        """When the last patient will have been followed for the start-up wait, [trial]."""
        return self._last_arrival(state) + self._wait

    @property
    def _wait(self) -> float:
        return self.window if self.start_up_wait is None else self.start_up_wait

    @staticmethod
    def _last_arrival(state: TrialState) -> np.ndarray:
        arrival = np.where(np.isnan(state.patient_arrival), -np.inf, state.patient_arrival)
        return arrival.max(axis=1)

    def describe(self) -> str:
        text = super().describe()
        weight = (
            f"the fraction of the {self.window:g}-month window followed up"
            if self.weights == "linear"
            else f"the adaptive weight of Cheung & Chappell (window {self.window:g} months)"
        )
        text += f" Decides at each arrival; a patient without a DLT so far weighs {weight}."
        if self.start_up == "cohorts":
            wait = self.window if self.start_up_wait is None else self.start_up_wait
            text += (
                f" Before moving up in the start-up, the last patient must have been followed for "
                f"{wait:g} months; patients arriving meanwhile are not enrolled."
            )
        return text

    def _fingerprint(self, state: TrialState) -> bytes:
        return state.patient_level.tobytes() + state.time.tobytes() + state.n.tobytes()

    def dlts_so_far(self, state: TrialState) -> np.ndarray:
        return state.observed_dlt(self.window).sum(axis=1)

    def _data(self, state: TrialState):
        enrolled = state.patient_level >= 0
        follow = state.followup(self.window)
        dlt = state.observed_dlt(self.window)
        pending = state.pending(self.window)
        complete = enrolled & ~dlt & ~pending
        # counts per trial and level: one bincount over (trial, level) cells
        cell = np.arange(state.n_trials)[:, None] * self.n_levels + state.patient_level
        cells = state.n_trials * self.n_levels
        y = np.bincount(cell[dlt], minlength=cells).reshape(state.n_trials, self.n_levels)
        n = y + np.bincount(cell[complete], minlength=cells).reshape(y.shape)
        onset = np.where(dlt, state.patient_dlt_time / self.window, np.inf)
        weight = self._weights(follow, onset, pending)
        # each trial's pending patients, in order, in slots 0, 1, …
        rank = np.cumsum(pending, axis=1) - 1
        slots = int(rank[:, -1].max(initial=-1)) + 1 if rank.size else 0
        trial, patient = np.nonzero(pending)
        slot = rank[trial, patient]
        pending_level = np.zeros((state.n_trials, slots), dtype=state.patient_level.dtype)
        pending_level[trial, slot] = state.patient_level[trial, patient]
        pending_weight = np.zeros((state.n_trials, slots))
        pending_weight[trial, slot] = weight[trial, patient]
        data = TiteData(n=n, y=y, pending_level=pending_level, pending_weight=pending_weight)
        return data, np.arange(state.n_trials)

    def _weights(self, follow: np.ndarray, onset: np.ndarray, pending: np.ndarray) -> np.ndarray:
        """Weights of patients without a DLT so far; ``onset``: observed DLT onsets as fractions
        of the window (inf where none), [trial, patient]."""
        if self.weights == "linear":
            return follow
        # Adaptive: place each pending patient among the observed DLT onset fractions.
        times = np.sort(onset, axis=1)
        z = np.isfinite(onset).sum(axis=1)  # [trial]
        kappa = (times[:, None, :] <= follow[:, :, None]).sum(axis=2)  # [trial, patient]
        edge = np.zeros((times.shape[0], 1))
        padded = np.concatenate([edge, times, edge + 1.0], axis=1)
        t_lo = np.take_along_axis(padded, kappa, axis=1)
        t_hi_index = np.minimum(kappa + 1, padded.shape[1] - 1)
        t_hi = np.take_along_axis(padded, t_hi_index, axis=1)
        t_hi = np.where(kappa >= z[:, None], 1.0, t_hi)
        with np.errstate(invalid="ignore", divide="ignore"):
            within = np.where(t_hi > t_lo, (follow - t_lo) / (t_hi - t_lo), 0.0)
        weight = (kappa + within) / (z[:, None] + 1)
        return np.where(pending, np.clip(weight, 0.0, 1.0), 1.0)

    def _log_f(self, data: TiteData, nodes: np.ndarray) -> np.ndarray:
        values = log_integrand(self.model, self.prior_sd, data.n, data.y, nodes)
        if data.pending_level.shape[1] == 0:
            return values
        p = np.ascontiguousarray(self.model.p(nodes).T)  # [level, node]
        level = np.ascontiguousarray(data.pending_level, dtype=np.intp)
        weight = np.ascontiguousarray(data.pending_weight, dtype=float)
        pending_products = _pending_kernel()
        product = np.empty((min(_BLOCK, values.shape[0]), nodes.size))
        for lo in range(0, values.shape[0], _BLOCK):  # trials a block at a time, in cache
            rows = slice(lo, lo + _BLOCK)
            out = product[: values[rows].shape[0]]
            pending_products(p, level[rows], weight[rows], out)
            values[rows] += np.log(out, out=out)
        return values


def pending_products(p, level, weight, out) -> None:
    """Π over each trial's pending patients of 1 − w·p_d(β), [trial, node], into ``out``.

    ``p`` [level, node]; ``level``, ``weight`` [trial, slot] (weight 0: no patient). Factors lie
    in [1 − w, 1], so the product cannot underflow; one log of it is many times cheaper than a
    log1p per pending patient and node. Compiled by numba (:func:`_pending_kernel`): in numpy each
    patient costs a gather and three passes over the nodes.
    """
    n_nodes = p.shape[1]
    for t in range(weight.shape[0]):
        for j in range(n_nodes):
            out[t, j] = 1.0
        for k in range(weight.shape[1]):
            w = weight[t, k]
            if w > 0:
                d = level[t, k]
                for j in range(n_nodes):
                    out[t, j] *= 1.0 - w * p[d, j]


@cache
def _pending_kernel():
    import numba  # on first use: importing it takes a noticeable part of a second

    return numba.njit(cache=True, nogil=True)(pending_products)


# ---------------------------------------------------------------------------------------------
# The design file


def parse_tite_crm(table: TomlTable, fields: DesignFields) -> dict[str, Any]:
    options = parse_crm(table, fields)
    weights = table.choice("weights", WEIGHTS)
    options["weights"] = weights or ("linear" if "weights" not in table.data else None)
    options["start_up_wait_months"] = table.number("start_up_wait_months", POSITIVE)
    if "start_up_wait_months" in table.data and options["start_up"] != "cohorts":
        table.error('start_up_wait_months: only with start_up = "cohorts"')
    options["coherent"] = False  # the last patient's outcome is not known yet
    return options


def build_tite_crm(fields: DesignFields, options: dict[str, Any]):
    crm, constraints, stopping = build_crm(fields, options)
    method = extended(
        crm,
        TiteCrm,
        window=fields.timing.dlt_window_months,
        weights=options["weights"],
        start_up_wait=options["start_up_wait_months"],
    )
    return method, constraints, stopping


SPEC = MethodSpec(
    method_class=TiteCrm,
    key="tite-crm",
    section="crm",
    # the CRM's keys but coherence (the last patient's outcome is not known yet)
    keys=(
        *(key for key in CRM_SPEC.keys if key != "coherent"),
        "start_up_wait_months",
        "weights",
    ),
    parse=parse_tite_crm,
    build=build_tite_crm,
    fixed_cohort_size=1,
)
