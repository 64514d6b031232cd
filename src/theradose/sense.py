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


def study_warnings(designs, scenarios=()) -> list[str]:
    """The warnings of every design, in order, then those of a design × scenario pair
    (:func:`pair_warnings`)."""
    warnings = [warning for design in designs for warning in design_warnings(design)]
    return warnings + [w for design in designs for w in pair_warnings(design, scenarios)]


def pair_warnings(design: Design, scenarios) -> list[str]:
    """A design without ``[dosimetry]`` under scenarios whose DLTs or responses follow each
    patient's own organ or tumour doses: those doses are of one cycle of the level's activity,
    which the design never says — the user most likely meant its cycles."""
    if design.dosimetry is not None or design.doses is None:
        return []
    driven = [s.name for s in scenarios if s.truth is not None and (s.uses_ntcp or s.efficacy)]
    if not driven:
        return []
    where = design.path or repr(design.name)
    names = ", ".join(repr(name) for name in driven)
    return [
        f"{where}: no [dosimetry] section, so under the dosimetry-driven scenarios ({names}) each "
        "patient's organ and tumour doses are those of ONE cycle of the level's activity; give "
        "[dosimetry] cycles = N for a schedule of N cycles"
    ]
