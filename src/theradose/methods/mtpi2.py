"""The modified toxicity probability interval design, mTPI-2 ("Ockham's razor" version).

Guo, W., Wang, S.-J., Yang, S., Lynn, H. & Ji, Y. (2017). A Bayesian interval dose-finding design
addressing Ockham's razor: mTPI-2. *Contemp Clin Trials* 58:23–33. doi:10.1016/j.cct.2017.04.006

With target φ and the equivalence interval EI = [φ − ε1, φ + ε2], the unit interval is cut into
EI and intervals of the same width ε1 + ε2 below it (the lowest one ending at 0, possibly
shorter) and above it (the highest ending at 1). With y DLTs among the n patients at the current
level and a Beta(α, β) prior (α = β = 1), p | y, n ~ Beta(α + y, β + n − y), and each interval
I = [a, b] has unit probability mass

    UPM(I) = P(a < p < b | y, n) / (b − a).

The interval with the highest UPM decides: below EI → escalate, EI → stay, above EI → de-escalate.
Ties go to escalation, then staying, as in the R package ``escalation`` (0.2.3, ``get_mtpi2``),
whose decisions this module reproduces. Its exclusion rule — a level is excluded when
P(p > φ) ≥ ξ (0.95) with ≥ 2 patients there, which blocks escalation into it, and the trial stops
when the lowest level calls for de-escalation with P(p1 > φ) > ξ — is here the elimination of
every interval design (level and all above, n ≥ ``elimination_min_n``, default 3; set 2 for
``escalation``'s count). With the decisions of this module the two give the same moves: at an
excluded level the decision is always to de-escalate, and where escalation is blocked, staying
beats de-escalating (tests/test_interval.py checks both over the whole table). The MTD is
selected as every interval design does (isotonic regression over the treated, non-eliminated
levels), not by ``escalation``'s ``select_mtpi2_mtd``, which also pools untested levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theradose import special_functions as special
from theradose.methods.interval import Decision, IntervalDesign, interval_spec
from theradose.validation import POSITIVE

# Intervals narrower than this are rounding left-overs at 0 or 1 (e.g. 0.2 − 2 × 0.1), not
# intervals of the partition.
_SLIVER = 1e-9


def partition(target: float, eps1: float, eps2: float) -> tuple[np.ndarray, np.ndarray]:
    """The edges of the intervals below and above EI, ``(below, above)``, each [interval, 2]
    (lower, upper), the one next to EI first; EI itself is [φ − ε1, φ + ε2]."""
    width = eps1 + eps2
    low, high = max(target - eps1, 0.0), min(target + eps2, 1.0)
    n_below = int(np.floor(low / width + 1e-10)) + 1
    upper = low - np.arange(n_below) * width
    below = np.column_stack([np.maximum(upper - width, 0.0), upper])
    n_above = int(np.floor((1.0 - high) / width + 1e-10)) + 1
    lower = high + np.arange(n_above) * width
    above = np.column_stack([lower, np.minimum(lower + width, 1.0)])
    keep = lambda edges: edges[edges[:, 1] - edges[:, 0] > _SLIVER]  # noqa: E731
    return keep(below), keep(above)


@dataclass(frozen=True)
class Mtpi2(IntervalDesign):
    """mTPI-2 (``method = "mtpi2"``): the interval of highest unit probability mass decides.

    Parameters
    ----------
    eps1, eps2 : EI = [target − eps1, target + eps2]; their sum is the width of every interval
    prior_a, prior_b : the Beta prior of the DLT probability at a level
    """

    eps1: float = 0.05
    eps2: float = 0.05
    prior_a: float = 1.0
    prior_b: float = 1.0
    key = "mtpi2"
    references = (
        (
            "Guo W, Wang SJ, Yang S, Lynn H, Ji Y (2017). A Bayesian interval dose-finding design"
            " addressing Ockham's razor: mTPI-2. Contemp Clin Trials 58:23–33. "
            "doi:10.1016/j.cct.2017.04.006"
        ),
    )
    count_based = True

    def upm(self, n: int, y: int) -> tuple[np.ndarray, float, np.ndarray]:
        """Unit probability masses (below EI [interval], EI, above EI [interval]) after y DLTs
        in n patients."""
        below, above = partition(self.target, self.eps1, self.eps2)
        low, high = max(self.target - self.eps1, 0.0), min(self.target + self.eps2, 1.0)
        a, b = self.prior_a + y, self.prior_b + n - y

        def cdf(x):
            return special.betainc(a, b, x)

        def mass(edges: np.ndarray) -> np.ndarray:
            return (cdf(edges[:, 1]) - cdf(edges[:, 0])) / (
                edges[:, 1] - edges[:, 0]
            )

        equivalence = (cdf(high) - cdf(low)) / (high - low)
        return mass(below), float(equivalence), mass(above)

    def rule_text(self) -> str:
        return (
            f"mTPI-2 (Guo et al. 2017): the equivalence interval is [{self.target - self.eps1:g}, "
            f"{self.target + self.eps2:g}] and the rest of [0, 1] is split into intervals of the "
            f"same width; with a Beta({self.prior_a:g}, {self.prior_b:g}) prior, the interval of "
            "highest unit probability mass given the DLTs at the current level decides: below "
            "the equivalence interval escalate, in it stay, above it de-escalate."
        )

    def decision(self, n: int, y: int) -> Decision:
        """Escalate if an interval below EI has the highest UPM, else stay if EI has, else
        de-escalate."""
        below, equivalence, above = self.upm(n, y)
        best = max(below.max(initial=-np.inf), equivalence, above.max(initial=-np.inf))
        if below.size and below.max() == best:
            return Decision.ESCALATE
        if equivalence == best:
            return Decision.STAY
        return Decision.DEESCALATE


SPEC = interval_spec(Mtpi2, "mtpi2", {"prior_a": POSITIVE, "prior_b": POSITIVE})
