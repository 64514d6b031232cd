"""How a method is read from a design file and built: its :class:`MethodSpec`.

Each method module declares one ``SPEC``; :mod:`theradose.methods` names the modules in the
registry (each imported on its method's first use) that :mod:`theradose.config`, calibration
and the tests all build designs through. The spec is the only place where a method, its
constraints and its stopping rules are wired together from the file's options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from theradose.timing import Timing

if TYPE_CHECKING:
    from theradose.methods.base import Method
    from theradose.validation import TomlTable


@dataclass
class DesignFields:
    """The method-independent keys of a design file, as read (None where absent or invalid).

    ``start_level`` is 0-based here; ``n_levels`` comes from ``levels`` or ``doses``.
    """

    name: str | None = None
    method: str | None = None
    target: float | None = None
    doses: tuple[float, ...] | None = None
    dose_unit: str | None = None
    n_levels: int | None = None
    start_level: int | None = None
    cohort_size: int | None = None
    max_patients: int | None = None
    timing: Timing | None = None


Parts = tuple[Any, tuple[Any, ...], tuple[Any, ...]]  # (method, constraints, stopping rules)


@dataclass(frozen=True)
class MethodSpec:
    """How a value of ``method`` is read from a design file and built.

    Attributes
    ----------
    key : the value of ``method``
    method_class : the method's class; its declared capabilities (``model_based``, ``tite``, …)
        decide which common sections apply
    section : the name of the method's own table (``[boin]``)
    keys : the keys allowed in that table
    parse : reads the table (problems go to its report), returns the method's options
    build : the method object, its constraints and its stopping rules, from valid fields and
        options (the rules of the ``[stopping]`` section are added after them)
    fixed_cohort_size : the only cohort size the method allows, or None
    max_patients_per_level : default ``max_patients`` = this × levels; None makes it required
    """

    key: str
    method_class: type[Method]
    section: str
    keys: tuple[str, ...]
    parse: Callable[[TomlTable, DesignFields], dict[str, Any]]
    build: Callable[[DesignFields, dict[str, Any]], Parts]
    fixed_cohort_size: int | None = None
    max_patients_per_level: int | None = None

    @property
    def model_based(self) -> bool:
        return self.method_class.model_based

    @property
    def tite(self) -> bool:
        return self.method_class.tite

    @property
    def uses_efficacy(self) -> bool:
        return self.method_class.uses_efficacy

    @property
    def late_efficacy(self) -> bool:
        return self.method_class.late_efficacy


def extended(base: Any, cls: type, **extra: Any) -> Any:
    """A ``cls`` (a time-to-event method) with every setting of ``base`` (its method) plus
    ``extra``, so that a new setting of the base method can never be left behind."""
    settings = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
    return cls(**settings, **extra)
