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
the final MTD is BOIN's, on complete data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theradose.methods.boin import Boin, prob_above_target
from theradose.state import StopReason, TrialState


@dataclass(frozen=True)
class TiteBoin(Boin):
    """TITE-BOIN (``method = "tite-boin"``): BOIN deciding with pending patients."""

    window: float = 1.0  # DLT assessment window, months
    max_pending_fraction: float = 0.5
    min_complete: int = 1
    key = "tite-boin"
    count_based = False
    tite = True

    def counts(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        """Patients treated and DLTs observed so far per level."""
        dlt = state.observed_dlt(self.window)
        at_level = state.patient_level[:, :, None] == np.arange(self.n_levels)
        return state.n, (at_level & dlt[:, :, None]).sum(axis=1)

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

    def propose(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        lambda_e, lambda_d = self.lambdas
        n, y, m, stft = self._current(state)
        rate = self.imputed_rate(n, y, m, stft)
        escalate = rate <= lambda_e
        deescalate = ~escalate & (rate >= lambda_d)
        d = np.maximum(state.level, 0)
        proposal = np.clip(d + escalate - deescalate, 0, self.n_levels - 1)
        stop = np.zeros(d.shape, dtype=np.int8)
        n_all, y_obs = self.counts(state)
        stop[y_obs[:, 0] >= self._table_at(self.stop_ge, n_all[:, 0])] = StopReason.TOO_TOXIC
        return proposal, stop

    def suspend(self, state: TrialState) -> np.ndarray:
        """Trials that must wait for more follow-up before the next patient, [trial]."""
        n, y, m, _ = self._current(state)
        _, lambda_d = self.lambdas
        too_much_pending = (m > self.max_pending_fraction * n) | (n - m < self.min_complete)
        return too_much_pending & (y < lambda_d * n)

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
