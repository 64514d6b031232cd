"""The time-to-event BOIN (TITE-BOIN).

Yuan, Y., Lin, R., Li, D., Nie, L. & Warren, K. E. (2018). Time-to-event Bayesian optimal
interval design to accelerate phase I trials. *Clin Cancer Res* 24:4921–4930.
doi:10.1158/1078-0432.CCR-18-0246

At the current level, with n patients, y DLTs observed so far and m patients pending (no DLT
yet, window still open) whose follow-up fractions sum to STFT (the standardized total follow-up
time), each pending outcome is imputed from the completed data: with the prior Beta(φ/2, 1 − φ/2),
π̂ = (y + φ/2)/(n − m + 1), and a pending patient contributes (1 − w_i)·π̂/(1 − π̂), so

    p̃ = (y + (m − STFT)·π̂/(1 − π̂)) / n.

Escalate if p̃ ≤ λe, de-escalate if p̃ ≥ λd (BOIN's boundaries), else stay. Because p̃ falls as
STFT grows, each (n, y, m) has STFT cut-offs, tabulated before the trial (Table 1 of the paper).
Accrual is suspended while more than ``max_pending_fraction`` of the level's patients are pending,
or fewer than ``min_complete`` have complete data — unless the observed data alone already call
for de-escalation. Elimination uses the observed DLTs among all patients treated at the level;
the MTD is BOIN's selection on complete data (pending patients left out of an interim estimate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from theradose.methods.boin import SPEC as BOIN_SPEC
from theradose.methods.boin import Boin, build_boin, parse_boin, prob_above_target
from theradose.methods.spec import DesignFields, MethodSpec, extended
from theradose.state import StopReason, TrialState
from theradose.validation import Interval, TomlTable

TITE_BOIN_COLUMNS = {
    "n": "patients at the level",
    "dlt": "DLTs observed",
    "pending": "pending",
    "decision": "decision",
    "stft_cutoff": "STFT cut-off",
}


@dataclass(frozen=True)
class TiteBoin(Boin):
    """TITE-BOIN (``method = "tite-boin"``): BOIN deciding with pending patients."""

    window: float = 1.0  # DLT assessment window, months
    max_pending_fraction: float = 0.5
    min_complete: int = 1
    key = "tite-boin"
    references = (
        (
            "Liu S, Yuan Y (2015). Bayesian optimal interval designs for phase I clinical trials."
            " J R Stat Soc C 64:507–523. doi:10.1111/rssc.12089"
        ),
        (
            "Yuan Y, Lin R, Li D, Nie L, Warren KE (2018). Time-to-event Bayesian optimal "
            "interval design to accelerate phase I trials. Clin Cancer Res 24:4921–4930. "
            "doi:10.1158/1078-0432.CCR-18-0246"
        ),
    )
    count_based = False
    tite = True
    holds_accrual = True
    selects_on_complete_data = True  # selection_counts: an interim MTD estimate leaves pending out

    def counts(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        """Patients treated and DLTs observed so far per level."""
        dlt = state.observed_dlt(self.window)
        # one bincount over (trial, level) cells: a sum along the patients of a [trial, patient,
        # level] array is many times slower
        cell = np.arange(state.n_trials)[:, None] * self.n_levels + state.patient_level
        cells = state.n_trials * self.n_levels
        y = np.bincount(cell[dlt], minlength=cells).reshape(state.n_trials, self.n_levels)
        return state.n, y

    def _current(self, state: TrialState):
        """(n, y, m, STFT) at each trial's current level, [trial] each."""
        at_current = state.patient_level == np.maximum(state.level, 0)[:, None]
        pending = at_current & state.pending(self.window)
        dlt = at_current & state.observed_dlt(self.window)
        stft = np.where(pending, state.followup(self.window), 0.0).sum(axis=1)
        return at_current.sum(axis=1), dlt.sum(axis=1), pending.sum(axis=1), stft

    def imputed_rate(self, n, y, m, stft) -> np.ndarray:
        """p̃ = (y + (m − STFT)·π̂/(1 − π̂))/n with π̂ = (y + φ/2)/(n − m + 1)."""
        pi_hat = (y + self.target / 2) / (n - m + 1)
        return (y + (m - stft) * pi_hat / (1 - pi_hat)) / np.maximum(n, 1)

    def _direction(self, state: TrialState) -> np.ndarray:
        """+1 (p̃ ≤ λe), −1 (p̃ ≥ λd) or 0 at the current level, [trial]."""
        lambda_e, lambda_d = self.lambdas
        rate = self.imputed_rate(*self._current(state))
        escalate = rate <= lambda_e
        deescalate = ~escalate & (rate >= lambda_d)
        return escalate.astype(np.int8) - deescalate

    def selection_counts(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        """(patients, DLTs) per level among the patients with complete data (a DLT seen, or the
        window closed), [trial, level] each: the MTD estimate and the estimates per level, so an
        interim estimate never counts a pending patient as free of DLT. Once every window has
        closed (the end of a simulated trial) these are all the patients."""
        complete = (state.patient_level >= 0) & ~state.pending(self.window)
        at_level = state.patient_level[:, :, None] == np.arange(self.n_levels)
        dlt = state.observed_dlt(self.window)
        return (
            (at_level & complete[:, :, None]).sum(axis=1),
            (at_level & dlt[:, :, None]).sum(axis=1),
        )

    def decision_basis(self, state: TrialState) -> dict[str, np.ndarray]:
        """At the current level (0-based ``level``): ``n`` patients, ``y`` DLTs observed, ``m``
        pending, ``stft``, the imputed rate ``p_tilde``, the boundaries ``lambda_e``,
        ``lambda_d``, ``direction`` (+1 p̃ ≤ λe, −1 p̃ ≥ λd, 0 stay), and the suspension rule:
        ``suspended``, because ``too_many_pending`` (m > ``max_pending_fraction``·n) or
        ``too_few_complete`` (n − m < ``min_complete``), unless ``observed_deescalates``
        (y ≥ λd·n), [trial] each."""
        n, y, m, stft = self._current(state)
        lambda_e, lambda_d = self.lambdas
        too_many_pending = m > self.max_pending_fraction * n
        too_few_complete = n - m < self.min_complete
        observed_deescalates = y >= lambda_d * n
        return {
            "level": np.maximum(state.level, 0),
            "n": n,
            "y": y,
            "m": m,
            "stft": stft,
            "p_tilde": self.imputed_rate(n, y, m, stft),
            "lambda_e": np.full(n.shape, lambda_e),
            "lambda_d": np.full(n.shape, lambda_d),
            "direction": self._direction(state),
            "suspended": (too_many_pending | too_few_complete) & ~observed_deescalates,
            "too_many_pending": too_many_pending,
            "too_few_complete": too_few_complete,
            "observed_deescalates": observed_deescalates,
            "max_pending_fraction": np.full(n.shape, self.max_pending_fraction),
            "min_complete": np.full(n.shape, self.min_complete),
        }

    def propose(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        d = np.maximum(state.level, 0)
        proposal = np.clip(d + self._direction(state), 0, self.n_levels - 1)
        stop = np.zeros(d.shape, dtype=np.int8)
        n_all, y_obs = self.counts(state)
        stop[y_obs[:, 0] >= self._table_at(self.stop_ge, n_all[:, 0])] = StopReason.TOO_TOXIC
        return proposal, stop

    def rule_text(self) -> str:
        return super().rule_text() + (
            f" TITE-BOIN (Yuan et al. 2018): at each new patient's arrival, a patient still "
            f"within the {self.window:g}-month DLT window without a DLT counts by the fraction "
            "of the window followed up (the standardized total follow-up time); y/n is replaced "
            "by the imputed rate p̃. Accrual is suspended while more than "
            f"{self.max_pending_fraction:g} of the level's patients are pending or fewer than "
            f"{self.min_complete} have complete data, unless the observed DLTs already call for "
            "de-escalation. The MTD is selected on complete data."
        )

    def suspend(self, state: TrialState) -> np.ndarray:
        """Trials that must wait for more follow-up before the next patient, [trial]."""
        n, y, m, _ = self._current(state)
        _, lambda_d = self.lambdas
        too_much_pending = (m > self.max_pending_fraction * n) | (n - m < self.min_complete)
        return too_much_pending & (y < lambda_d * n)

    def protocol_table(self, cohort_size: int, max_patients: int):
        """The decision table with pending patients: STFT cut-offs per (n, y, m)."""
        return TITE_BOIN_COLUMNS, self.tite_decision_rows(
            range(cohort_size, max_patients + 1, cohort_size)
        )

    def tite_decision_rows(self, n_values) -> list[dict]:
        """The decision table: per (patients, DLTs, pending) the decision, with STFT cut-offs.

        Decisions: "E", "S", "D", "DE" (de-escalate and eliminate), "SUS" (suspend accrual), or
        conditional on STFT: "E if STFT ≥ c, else S", "D if STFT ≤ c, else S".
        """
        lambda_e, lambda_d = self.lambdas
        rows = []
        for n in n_values:
            for y in range(n + 1):
                eliminate = (
                    n >= 3 and prob_above_target(n, y, self.target) > self.elimination_cutoff
                )
                for m in range(n - y + 1):
                    rows.append(self._table_row(n, y, m, eliminate, lambda_e, lambda_d))
        return rows

    def _table_row(self, n, y, m, eliminate, lambda_e, lambda_d) -> dict:
        row = {"n": n, "dlt": y, "pending": m, "decision": "S", "stft_cutoff": None}
        if eliminate:
            row["decision"] = "DE"
        elif y >= lambda_d * n:
            row["decision"] = "D"
        elif m > self.max_pending_fraction * n or n - m < self.min_complete:
            row["decision"] = "SUS"
        elif m == 0:
            row["decision"] = "E" if y <= lambda_e * n else "S"
        else:
            pi_hat = (y + self.target / 2) / (n - m + 1)
            odds = (1 - pi_hat) / pi_hat
            stft_e = m - odds * (n * lambda_e - y)  # escalate iff STFT ≥ this
            stft_d = m - odds * (n * lambda_d - y)  # de-escalate iff STFT ≤ this
            if stft_e <= 0:
                row["decision"] = "E"
            elif stft_e < m:
                row["decision"] = f"E if STFT ≥ {stft_e:.2f}, else S"
                row["stft_cutoff"] = round(float(stft_e), 4)
            elif stft_d >= 0:
                row["decision"] = f"D if STFT ≤ {stft_d:.2f}, else S"
                row["stft_cutoff"] = round(float(stft_d), 4)
        return row


# ---------------------------------------------------------------------------------------------
# The design file


def parse_tite_boin(table: TomlTable, fields: DesignFields) -> dict[str, Any]:
    options = parse_boin(table, fields)
    options["max_pending_fraction"] = table.number(
        "max_pending_fraction", Interval(0.0, 1.0, high_closed=True), default=0.5
    )
    options["min_complete"] = table.integer("min_complete", 0, default=1)
    return options


def build_tite_boin(fields: DesignFields, options: dict[str, Any]):
    boin, constraints, stopping = build_boin(fields, options)
    method = extended(
        boin,
        TiteBoin,
        window=fields.timing.dlt_window_months,
        max_pending_fraction=options["max_pending_fraction"],
        min_complete=options["min_complete"],
    )
    return method, constraints, stopping


SPEC = MethodSpec(
    key="tite-boin",
    method_class=TiteBoin,
    section="boin",
    keys=(*BOIN_SPEC.keys, "max_pending_fraction", "min_complete"),
    parse=parse_tite_boin,
    build=build_tite_boin,
)
