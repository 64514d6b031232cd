"""Sense checks of a design: problems that leave a design valid but that its user should know.

A design file can be valid and still not do what its author meant: a BLRM prior whose overdose
bound stops the trial at the first DLT, an EWOC top level that the rule can never give. Each
method knows its own pitfalls (:meth:`theradose.methods.base.Method.design_warnings`); this is
the one place that gathers them, for ``validate``, ``table`` and ``simulate`` alike, and names
the design's file in each. Printing them is :mod:`theradose.cli`'s and :mod:`theradose.report`'s.
"""

from __future__ import annotations

from theradose.design import Design


def design_warnings(design: Design) -> list[str]:
    """The warnings of ``design``, one line each, each starting with its file (or its name)."""
    where = design.path or repr(design.name)
    return [f"{where}: {warning}" for warning in design.method.design_warnings(design)]


def study_warnings(designs: list[Design] | tuple[Design, ...]) -> list[str]:
    """The warnings of every design, in order."""
    return [warning for design in designs for warning in design_warnings(design)]
