"""The Bayesian optimal interval (BOIN) design.

Liu, S. & Yuan, Y. (2015). Bayesian optimal interval designs for phase I clinical trials.
*J R Stat Soc C* 64:507–523. doi:10.1111/rssc.12089

With target φ and the highest sub-therapeutic and lowest overly toxic probabilities φ1, φ2,

    λe = log((1 − φ1)/(1 − φ)) / log(φ(1 − φ1) / (φ1(1 − φ)))
    λd = log((1 − φ)/(1 − φ2)) / log(φ2(1 − φ) / (φ(1 − φ2)))

After each cohort at level d (n patients, y DLTs there): escalate if y/n ≤ λe, de-escalate if
y/n ≥ λd, else stay. Level d and every higher level are eliminated when n ≥ 3 and
P(p_d > φ | y, n) > cutoff under a Beta(1, 1) prior. The MTD is chosen by isotonic regression
of the DLT rates over the treated, non-eliminated levels. Conventions follow the BOIN R package
(2.7.2): decisions use the boundary table, ties in the final selection go to the higher level
below the target and the lower one above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import beta

from theradose.isotonic import isotonic_increasing
from theradose.state import NO_LEVEL, StopReason, TrialState

MIN_N_TO_ELIMINATE = 3
_NEVER = np.iinfo(np.int32).max  # a DLT count no level can reach


def boundaries(target: float, p_saf: float, p_tox: float) -> tuple[float, float]:
    """The escalation and de-escalation boundaries (λe, λd) of Liu & Yuan (2015), eq. (2)."""
    lambda_e = np.log((1 - p_saf) / (1 - target)) / np.log(
        target * (1 - p_saf) / (p_saf * (1 - target))
    )
    lambda_d = np.log((1 - target) / (1 - p_tox)) / np.log(
        p_tox * (1 - target) / (target * (1 - p_tox))
    )
    return float(lambda_e), float(lambda_d)


def prob_above_target(n: np.ndarray, y: np.ndarray, target: float) -> np.ndarray:
    """P(p > target | y DLTs in n) under a Beta(1, 1) prior."""
    return beta.sf(target, y + 1, n - y + 1)


def _min_dlts_with_prob_above(n_max: int, target: float, cutoff: float) -> np.ndarray:
    """Per n (0..n_max), the fewest DLTs with P(p > target) > cutoff (``_NEVER``: none, n < 3)."""
    table = np.full(n_max + 1, _NEVER, dtype=np.int64)
    for n in range(MIN_N_TO_ELIMINATE, n_max + 1):
        y = np.arange(n + 1)
        hits = np.flatnonzero(prob_above_target(n, y, target) > cutoff)
        if hits.size:
            table[n] = hits[0]
    return table


@dataclass(frozen=True)
class Boin:
    """BOIN (``method = "boin"``); boundaries and tables are computed once, then indexed."""

    n_levels: int
    target: float
    max_patients: int
    p_saf: float | None = None
    p_tox: float | None = None
    elimination_cutoff: float = 0.95
    extra_safe: bool = False
    extra_safe_offset: float = 0.05
    key = "boin"
    count_based = True
    escalate_le: np.ndarray = field(init=False, repr=False)  # [n] escalate if y ≤ this
    deescalate_ge: np.ndarray = field(init=False, repr=False)  # [n] de-escalate if y ≥ this
    eliminate_ge: np.ndarray = field(init=False, repr=False)  # [n] eliminate if y ≥ this
    stop_ge: np.ndarray = field(init=False, repr=False)  # [n] extra-safe stop at level 1

    def __post_init__(self) -> None:
        if self.p_saf is None:
            object.__setattr__(self, "p_saf", 0.6 * self.target)
        if self.p_tox is None:
            object.__setattr__(self, "p_tox", 1.4 * self.target)
        lambda_e, lambda_d = self.lambdas
        n = np.arange(self.max_patients + 1)
        object.__setattr__(self, "escalate_le", np.floor(n * lambda_e).astype(np.int64))
        object.__setattr__(self, "deescalate_ge", np.ceil(n * lambda_d).astype(np.int64))
        object.__setattr__(
            self,
            "eliminate_ge",
            _min_dlts_with_prob_above(self.max_patients, self.target, self.elimination_cutoff),
        )
        stop_cutoff = self.elimination_cutoff - self.extra_safe_offset
        stop_ge = _min_dlts_with_prob_above(self.max_patients, self.target, stop_cutoff)
        object.__setattr__(
            self, "stop_ge", stop_ge if self.extra_safe else np.full_like(stop_ge, _NEVER)
        )

    @property
    def lambdas(self) -> tuple[float, float]:
        return boundaries(self.target, self.p_saf, self.p_tox)

    def _table_at(self, table: np.ndarray, n: np.ndarray) -> np.ndarray:
        return table[np.minimum(n, self.max_patients)]

    def counts(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        """(patients, DLTs) per level that decisions may use, [trial, level] each."""
        return state.n, state.y

    def eliminated(self, state: TrialState) -> np.ndarray:
        """Levels eliminated by the safety rule (the lowest qualifying one and all above),
        [trial, level]."""
        n, y = self.counts(state)
        hit = y >= self._table_at(self.eliminate_ge, n)
        return np.logical_or.accumulate(hit, axis=1)

    def allowed(self, state: TrialState) -> np.ndarray:
        return ~self.eliminated(state)

    def propose(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        d = np.maximum(state.level, 0)
        n_d, y_d = state.current(state.n), state.current(state.y)
        escalate = y_d <= self._table_at(self.escalate_le, n_d)
        deescalate = ~escalate & (y_d >= self._table_at(self.deescalate_ge, n_d))
        proposal = np.clip(d + escalate - deescalate, 0, self.n_levels - 1)
        stop = np.zeros(d.shape, dtype=np.int8)
        n_1, y_1 = state.n[:, 0], state.y[:, 0]
        stop[y_1 >= self._table_at(self.stop_ge, n_1)] = StopReason.TOO_TOXIC
        return proposal, stop

    def isotonic_estimate(self, state: TrialState, include: np.ndarray) -> np.ndarray:
        """Isotonic DLT-rate estimates over the ``include`` levels, [trial, level] (NaN elsewhere).

        (y + 0.05)/(n + 0.1) weighted by the inverse of its Beta(y + 0.05, n − y + 0.05) variance,
        as BOIN's ``select.mtd``.
        """
        y, n = state.y.astype(float), state.n.astype(float)
        p_hat = (y + 0.05) / (n + 0.1)
        var = (y + 0.05) * (n - y + 0.05) / ((n + 0.1) ** 2 * (n + 1.1))
        return isotonic_increasing(p_hat, np.where(include, 1.0 / var, 0.0))

    def select_mtd(self, state: TrialState) -> np.ndarray:
        eliminated = self.eliminated(state)
        if self.extra_safe:
            eliminated |= (state.y[:, 0] >= self._table_at(self.stop_ge, state.n[:, 0]))[:, None]
        admissible = (state.n > 0) & ~eliminated
        p_iso = self.isotonic_estimate(state, admissible)
        # BOIN adds i·1e-10 so that within a pooled block the higher level wins below the target
        # and the lower one above it.
        p_iso = p_iso + np.arange(1, self.n_levels + 1) * 1e-10
        distance = np.where(admissible, np.abs(p_iso - self.target), np.inf)
        selected = distance.argmin(axis=1)
        return np.where(admissible.any(axis=1) & ~eliminated[:, 0], selected, NO_LEVEL)

    def level_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        treated = state.n > 0
        over = np.where(
            treated, beta.sf(self.target, state.y + 0.05, state.n - state.y + 0.05), 0.0
        )
        return {
            "p_est": self.isotonic_estimate(state, treated),
            "p_overdose": np.where(
                treated, isotonic_increasing(over, treated.astype(float)), np.nan
            ),
            "eliminated": self.eliminated(state),
        }

    def decision_rows(self, n_max: int | None = None) -> list[dict[str, int | None]]:
        """BOIN's decision table: per number treated, the DLT counts that trigger each decision."""
        n_max = self.max_patients if n_max is None else n_max
        rows = []
        for n in range(1, n_max + 1):
            elim = int(self.eliminate_ge[min(n, self.max_patients)])
            rows.append(
                {
                    "n": n,
                    "escalate_if_dlt_le": int(self.escalate_le[n])
                    if self.escalate_le[n] >= 0
                    else None,
                    "deescalate_if_dlt_ge": int(self.deescalate_ge[n])
                    if self.deescalate_ge[n] <= n
                    else None,
                    "eliminate_if_dlt_ge": elim if elim <= n else None,
                }
            )
        return rows
