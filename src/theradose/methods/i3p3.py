"""The i3+3 design.

Liu, M., Wang, S.-J. & Ji, Y. (2020). The i3+3 design for phase I clinical trials.
*J Biopharm Stat* 30:294–304. doi:10.1080/10543406.2019.1636811

With target φ and the equivalence interval EI = [φ − ε1, φ + ε2], after y DLTs among the n
patients at the current level:

- y/n < φ − ε1 (below EI): escalate;
- φ − ε1 ≤ y/n ≤ φ + ε2 (inside EI): stay;
- y/n > φ + ε2 (above EI): stay if (y − 1)/n < φ − ε1 (one DLT fewer would be below EI — the
  excess may be chance), else de-escalate.

The rule uses no model. The paper's safety rule — level d and all above are excluded when
P(p_d > φ | y, n) > 0.95 under Beta(1, 1) — and the MTD selection (isotonic regression) are
those of every interval design (:mod:`theradose.methods.interval`); as the authors' R package
FIND (``get_decision_i3plus3``), elimination counts from three patients.
"""

from __future__ import annotations

from dataclasses import dataclass

from theradose.methods.interval import Decision, IntervalDesign, interval_spec


@dataclass(frozen=True)
class I3p3(IntervalDesign):
    """i3+3 (``method = "i3+3"``): the observed rate against EI, with one DLT of leeway above it.

    Parameters
    ----------
    eps1, eps2 : EI = [target − eps1, target + eps2], closed
    """

    eps1: float = 0.05
    eps2: float = 0.05
    key = "i3+3"
    references = (
        (
            "Liu M, Wang SJ, Ji Y (2020). The i3+3 design for phase I clinical trials. J Biopharm"
            " Stat 30:294–304. doi:10.1080/10543406.2019.1636811"
        ),
    )
    count_based = True

    @property
    def interval(self) -> tuple[float, float]:
        """EI's bounds, rounded to 10 decimals so that a rate equal to a bound (1/4 = 0.3 − 0.05)
        compares as equal rather than by the rounding of φ − ε."""
        return round(self.target - self.eps1, 10), round(self.target + self.eps2, 10)

    def rule_text(self) -> str:
        return (
            f"i3+3 (Liu, Wang & Ji 2020): with the equivalence interval EI = "
            f"[{self.target - self.eps1:g}, {self.target + self.eps2:g}] and y DLTs among the n "
            "patients at the current level: y/n below EI escalate; in EI stay; above EI stay if "
            "(y − 1)/n is below EI, otherwise de-escalate."
        )

    def decision(self, n: int, y: int) -> Decision:
        """E below EI, S inside it; above it S if (y − 1)/n is below EI, else D."""
        low, high = self.interval
        if n == 0 or y / n < low:
            return Decision.ESCALATE
        if y / n <= high:
            return Decision.STAY
        if (y - 1) / n < low:
            return Decision.STAY
        return Decision.DEESCALATE


SPEC = interval_spec(I3p3, "i3p3")
