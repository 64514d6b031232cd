"""The Keyboard design.

Yan, F., Mandrekar, S. J. & Yuan, Y. (2017). Keyboard: a novel Bayesian toxicity probability
interval design for phase I clinical trials. *Clin Cancer Res* 23:3994–4003.
doi:10.1158/1078-0432.CCR-16-2592

With target φ, the target key is [φ − ε1, φ + ε2]; keys of the same width ε1 + ε2 are laid on
both sides of it until they reach 0 and 1. With y DLTs among the n patients at the current level
and a Beta(1, 1) prior, p | y, n ~ Beta(1 + y, 1 + n − y); the strongest key is the one with the
largest posterior probability

    P(a < p < b | y, n) · (ε1 + ε2)/(b − a)   for the key [a, b],

the factor counting a key cut short by 0 or 1 as if it had the full width (it is 1 for every
other key), as the Keyboard R package does (``get.boundary.kb``, version 0.1.3). Strongest key
below the target key → escalate, the target key → stay, above → de-escalate; ties go to the
higher key, as in the package. That is mTPI-2's unit probability mass times a constant, so the
two designs decide alike wherever no keys tie (Ji & Yang 2017, arXiv:1706.03277); they differ
in how ties are broken (mTPI-2 in ``escalation`` escalates). Elimination and the MTD selection
are those of every interval design (:mod:`theradose.methods.interval`): the package eliminates
from one patient on (``elimination_min_n = 1``), BOIN's convention is three.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theradose import special_functions as special
from theradose.methods.interval import Decision, IntervalDesign, interval_spec

_SLIVER = 1e-9  # keys narrower than this are rounding left-overs at 0 or 1


def keys(target: float, eps1: float, eps2: float) -> tuple[np.ndarray, int]:
    """The keys as edges [key, 2] (lower, upper) from 0 up to 1, and the index of the target key."""
    width = eps1 + eps2
    low, high = target - eps1, target + eps2
    n_left = int(np.ceil(low / width - 1e-10))
    n_right = int(np.ceil((1.0 - high) / width - 1e-10))
    left = [(max(low - (i + 1) * width, 0.0), low - i * width) for i in reversed(range(n_left))]
    right = [(high + i * width, min(high + (i + 1) * width, 1.0)) for i in range(n_right)]
    edges = np.array(left + [(low, high)] + right)
    wide = edges[:, 1] - edges[:, 0] > _SLIVER
    return edges[wide], int(wide[:n_left].sum())


@dataclass(frozen=True)
class Keyboard(IntervalDesign):
    """Keyboard (``method = "keyboard"``): the strongest key decides.

    Parameters
    ----------
    eps1, eps2 : the target key is [target − eps1, target + eps2]; every key is eps1 + eps2 wide
    """

    eps1: float = 0.05
    eps2: float = 0.05
    key = "keyboard"
    references = (
        (
            "Yan F, Mandrekar SJ, Yuan Y (2017). Keyboard: a novel Bayesian toxicity probability "
            "interval design for phase I clinical trials. Clin Cancer Res 23:3994–4003. "
            "doi:10.1158/1078-0432.CCR-16-2592"
        ),
    )
    count_based = True

    def key_strength(self, n: int, y: int) -> np.ndarray:
        """Posterior probability of each key (cut keys scaled to the full width), [key]."""
        edges, _ = keys(self.target, self.eps1, self.eps2)
        a, b = 1 + y, 1 + n - y
        prob = special.betainc(a, b, edges[:, 1]) - special.betainc(a, b, edges[:, 0])
        return prob * (self.eps1 + self.eps2) / (edges[:, 1] - edges[:, 0])

    def rule_text(self) -> str:
        return (
            "Keyboard (Yan, Mandrekar & Yuan 2017): the target key is "
            f"[{self.target - self.eps1:g}, {self.target + self.eps2:g}] and [0, 1] is cut into "
            "keys of the same width; the key with the highest posterior probability "
            "(Beta(1, 1) prior) given the DLTs at the current level decides: below the target "
            "key escalate, on it stay, above it de-escalate."
        )

    def decision(self, n: int, y: int) -> Decision:
        """Escalate if the strongest key lies below the target key, stay if it is the target key,
        de-escalate if it lies above (ties: the higher key)."""
        strength = self.key_strength(n, y)
        _, target_key = keys(self.target, self.eps1, self.eps2)
        strongest = int(np.flatnonzero(strength == strength.max())[-1])
        if strongest < target_key:
            return Decision.ESCALATE
        if strongest == target_key:
            return Decision.STAY
        return Decision.DEESCALATE


SPEC = interval_spec(Keyboard, "keyboard")
