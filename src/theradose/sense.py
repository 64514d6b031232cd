"""Sense checks of a design: problems that leave a design valid but that its user should know.

A design file can be valid and still not do what its author meant: a BLRM prior whose overdose
bound stops the trial at the first DLT, an EWOC top level that the rule can never give. Each
method knows its own pitfalls (:meth:`theradose.methods.base.Method.design_warnings`); this is
the one place that gathers them, for ``validate``, ``table`` and ``simulate`` alike, and names
the design's file in each. Printing them is :mod:`theradose.cli`'s and :mod:`theradose.report`'s.
"""

from __future__ import annotations

from theradose.design import Design
from theradose.limits import MAX_PLAUSIBLE_CV, PLAUSIBLE_GY_PER_GBQ


def design_warnings(design: Design) -> list[str]:
    """The warnings of ``design``, one line each, each starting with its file (or its name)."""
    where = design.path or repr(design.name)
    warnings = list(design.method.design_warnings(design))
    method = design.method
    never_holds = method.tite and (not method.holds_accrual or method.turns_away)
    if design.backfill is not None and never_holds:
        warnings.append(
            f"[backfill]: method {method.key!r} enrols every arrival or turns it away (it never "
            "holds accrual while it waits), so no patient will be backfilled"
        )
    if design.dosimetry is not None:
        for index, organ in enumerate(design.dosimetry.organs, start=1):
            warnings += organ_warnings(organ, f"[dosimetry] organ[{index}] ({organ.name!r}) ")
    return [f"{where}: {warning}" for warning in warnings]


def scenario_warnings(scenarios, path: str) -> list[str]:
    """Implausible organ truths of scenarios read from ``path``, one line each."""
    out = []
    for index, scenario in enumerate(scenarios, start=1):
        if scenario.truth is None:
            continue
        for organ in scenario.truth.organs:
            where = f"scenario[{index}] ({scenario.name!r}) [organ.{organ.name}] "
            out += [f"{path}: {w}" for w in organ_warnings(organ, where)]
    return out


def organ_warnings(organ, where: str = "") -> list[str]:
    """A lognormal organ's Gy/GBq median or CV unlike any published radiopharmaceutical's
    (:data:`theradose.limits.PLAUSIBLE_GY_PER_GBQ`, :data:`~theradose.limits.MAX_PLAUSIBLE_CV`):
    most likely a unit slip (Gy/MBq, a CV given in percent)."""
    out = []
    low, high = PLAUSIBLE_GY_PER_GBQ
    median = organ.gy_per_gbq_median
    if not low <= median <= high:
        out.append(
            f"{where}gy_per_gbq_median = {median:g}: outside {low:g}..{high:g} Gy/GBq, the range "
            "of published radiopharmaceuticals (a unit slip?)"
        )
    cv = organ.gy_per_gbq_cv
    if cv > MAX_PLAUSIBLE_CV:
        out.append(
            f"{where}gy_per_gbq_cv = {cv:g}: a coefficient of variation of {cv:.0%}; "
            f"if {cv:g}% was meant, write {cv / 100:g}"
        )
    return out


def study_warnings(designs: list[Design] | tuple[Design, ...]) -> list[str]:
    """The warnings of every design, in order."""
    return [warning for design in designs for warning in design_warnings(design)]
