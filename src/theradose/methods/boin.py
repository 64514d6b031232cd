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
(2.7.2): decisions use the boundary table (escalate if y ≤ ⌊nλe⌋, de-escalate if y ≥ ⌈nλd⌉),
ties in the final selection go to the higher level below the target and the lower one above it.
Elimination, the table and the selection are those of every interval design
(:mod:`theradose.methods.interval`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theradose.methods.interval import (
    MIN_N_TO_ELIMINATE,
    NEVER,
    Decision,
    IntervalDesign,
    min_dlts_with_prob_above,
    prob_above_target,
)
from theradose.methods.spec import DesignFields, MethodSpec
from theradose.state import StopReason, TrialState
from theradose.stopping import MaxAtDose, MaxPatients
from theradose.validation import OPEN_UNIT, Interval, TomlTable

__all__ = ["MIN_N_TO_ELIMINATE", "Boin", "boundaries", "prob_above_target"]


def boundaries(target: float, p_saf: float, p_tox: float) -> tuple[float, float]:
    """The escalation and de-escalation boundaries (λe, λd) of Liu & Yuan (2015), eq. (2)."""
    lambda_e = np.log((1 - p_saf) / (1 - target)) / np.log(
        target * (1 - p_saf) / (p_saf * (1 - target))
    )
    lambda_d = np.log((1 - target) / (1 - p_tox)) / np.log(
        p_tox * (1 - target) / (target * (1 - p_tox))
    )
    return float(lambda_e), float(lambda_d)


@dataclass(frozen=True)
class Boin(IntervalDesign):
    """BOIN (``method = "boin"``); boundaries and tables are computed once, then indexed."""

    p_saf: float | None = None
    p_tox: float | None = None
    extra_safe: bool = False
    extra_safe_offset: float = 0.05
    key = "boin"
    references = (
        (
            "Liu S, Yuan Y (2015). Bayesian optimal interval designs for phase I clinical trials."
            " J R Stat Soc C 64:507–523. doi:10.1111/rssc.12089"
        ),
    )
    count_based = True
    escalate_le: np.ndarray = field(init=False, repr=False, compare=False)  # [n] escalate if y ≤
    deescalate_ge: np.ndarray = field(init=False, repr=False, compare=False)  # [n] de-escalate ≥
    stop_ge: np.ndarray = field(init=False, repr=False, compare=False)  # [n] extra-safe stop

    def __post_init__(self) -> None:
        if self.p_saf is None:
            object.__setattr__(self, "p_saf", 0.6 * self.target)
        if self.p_tox is None:
            object.__setattr__(self, "p_tox", 1.4 * self.target)
        lambda_e, lambda_d = self.lambdas
        n = np.arange(self.max_patients + 1)
        object.__setattr__(self, "escalate_le", np.floor(n * lambda_e).astype(np.int64))
        object.__setattr__(self, "deescalate_ge", np.ceil(n * lambda_d).astype(np.int64))
        stop_cutoff = self.elimination_cutoff - self.extra_safe_offset
        stop_ge = min_dlts_with_prob_above(self.max_patients, self.target, stop_cutoff)
        object.__setattr__(
            self, "stop_ge", stop_ge if self.extra_safe else np.full_like(stop_ge, NEVER)
        )
        super().__post_init__()

    def decision(self, n: int, y: int) -> Decision:
        """Escalate if y ≤ ⌊nλe⌋, else de-escalate if y ≥ ⌈nλd⌉, else stay."""
        if y <= self.escalate_le[n]:
            return Decision.ESCALATE
        if y >= self.deescalate_ge[n]:
            return Decision.DEESCALATE
        return Decision.STAY

    @property
    def lambdas(self) -> tuple[float, float]:
        return boundaries(self.target, self.p_saf, self.p_tox)

    def rule_text(self) -> str:
        lambda_e, lambda_d = self.lambdas
        return (
            f"BOIN (Liu & Yuan 2015): after each cohort, with y DLTs among the n patients treated "
            f"at the current level, escalate if y/n ≤ λe = {lambda_e:.4f}, de-escalate if y/n ≥ "
            f"λd = {lambda_d:.4f}, otherwise stay (φ1 = {self.p_saf:.4g}, φ2 = {self.p_tox:.4g})."
        )

    def decision_basis(self, state: TrialState) -> dict[str, np.ndarray]:
        """At the current level (0-based ``level``): ``n``, ``y`` and ``rate`` = y/n, the
        boundaries ``lambda_e``, ``lambda_d`` and ``direction`` (+1 escalate: y/n ≤ λe;
        −1 de-escalate: y/n ≥ λd; 0 stay), [trial] each."""
        n, y = state.current(state.n), state.current(state.y)
        lambda_e, lambda_d = self.lambdas
        return {
            "level": np.maximum(state.level, 0),
            "n": n,
            "y": y,
            "rate": np.where(n > 0, y / np.maximum(n, 1), np.nan),
            "lambda_e": np.full(n.shape, lambda_e),
            "lambda_d": np.full(n.shape, lambda_d),
            "direction": self._direction(state),
        }

    def stop_reason(self, state: TrialState) -> np.ndarray:
        """The extra-safe stop: level 1 very likely too toxic (P(p1 > φ) > cutoff − offset)."""
        stop = np.zeros(state.n_trials, dtype=np.int8)
        n_1, y_1 = state.n[:, 0], state.y[:, 0]
        stop[y_1 >= self._table_at(self.stop_ge, n_1)] = StopReason.TOO_TOXIC
        return stop

    def excluded_from_selection(self, state: TrialState) -> np.ndarray:
        eliminated = self.eliminated(state)
        if self.extra_safe:
            eliminated |= (state.y[:, 0] >= self._table_at(self.stop_ge, state.n[:, 0]))[:, None]
        return eliminated


# ---------------------------------------------------------------------------------------------
# The design file

# BOIN's published defaults (Liu & Yuan 2015; BOIN R package): φ1 = 0.6 φ, φ2 = 1.4 φ.
BOIN_P_SAF_FACTOR = 0.6
BOIN_P_TOX_FACTOR = 1.4
BOIN_MAX_AT_DOSE = 100


def parse_boin(table: TomlTable, fields: DesignFields) -> dict[str, Any]:
    target = fields.target
    p_saf = table.number("p_saf", OPEN_UNIT)
    p_tox = table.number("p_tox", OPEN_UNIT)
    if target is not None:
        if p_saf is None and "p_saf" not in table.data:
            p_saf = BOIN_P_SAF_FACTOR * target
        elif p_saf is not None and not p_saf < target:
            table.value_error("p_saf", p_saf, f"must be below target ({target:g})")
        if p_tox is None and "p_tox" not in table.data:
            p_tox = BOIN_P_TOX_FACTOR * target
            if p_tox >= 1:
                table.error(
                    f"p_tox: the default {BOIN_P_TOX_FACTOR:g} × target = {p_tox:g} is not "
                    f"below 1; give p_tox, a number in ({target:g}, 1)"
                )
        elif p_tox is not None and not p_tox > target:
            table.value_error("p_tox", p_tox, f"must be above target ({target:g})")
    cutoff = table.number("elimination_cutoff", OPEN_UNIT, default=0.95)
    offset = table.number("extra_safe_offset", Interval(0.0, 0.5, low_closed=True), default=0.05)
    if cutoff is not None and offset is not None and not offset < cutoff:
        # The extra-safe rule stops when P(p1 > target) > cutoff − offset; that must stay > 0.
        table.value_error(
            "extra_safe_offset", offset, f"must be below elimination_cutoff ({cutoff:g})"
        )
    return {
        "p_saf": p_saf,
        "p_tox": p_tox,
        "elimination_cutoff": cutoff,
        "extra_safe": table.boolean("extra_safe", default=False),
        "extra_safe_offset": offset,
        "max_at_dose": table.integer("max_at_dose", 1, default=BOIN_MAX_AT_DOSE),
    }


def build_boin(fields: DesignFields, options: dict[str, Any]):
    method = Boin(
        fields.n_levels,
        fields.target,
        fields.max_patients,
        p_saf=options["p_saf"],
        p_tox=options["p_tox"],
        elimination_cutoff=options["elimination_cutoff"],
        extra_safe=options["extra_safe"],
        extra_safe_offset=options["extra_safe_offset"],
    )
    stopping = (
        MaxPatients(fields.max_patients),
        MaxAtDose(options["max_at_dose"], only_when_staying=True),
    )
    return method, (), stopping


SPEC = MethodSpec(
    key="boin",
    method_class=Boin,
    section="boin",
    keys=(
        "p_saf",
        "p_tox",
        "elimination_cutoff",
        "extra_safe",
        "extra_safe_offset",
        "max_at_dose",
    ),
    parse=parse_boin,
    build=build_boin,
)
