"""Dose-finding methods and their registry.

Each method is one module here holding its class (a :class:`~theradose.methods.base.Method`:
the maths and its paper) and its ``SPEC`` (:class:`~theradose.methods.spec.MethodSpec`: how a
design file's section builds it). :data:`METHODS` maps each value of a design file's ``method``
to its module's ``SPEC``; configuration, calibration, reports and the conformance tests all go
through it.

A module is imported only when its method is used, so that checking or simulating a BOIN design
does not pay for importing the model-based methods: the registry's table below names each
method's module and design-file section, and ``tests/test_method_registry.py`` checks the table
against every module's ``SPEC`` (adding a method is its module and one line here).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from theradose.methods.base import Method
from theradose.methods.boin import Boin
from theradose.methods.interval import Decision, IntervalDesign
from theradose.methods.spec import DesignFields, MethodSpec
from theradose.methods.three_plus_three import ThreePlusThree


class MethodRegistry(Mapping[str, MethodSpec]):
    """Each method's :class:`MethodSpec` by its key, its module imported on first look-up.

    Parameters
    ----------
    table : ``{key: (module, section)}``: the module of this package holding the method's
        ``SPEC``, and the design-file section it reads (known without importing the module)
    """

    def __init__(self, table: Mapping[str, tuple[str, str]]) -> None:
        self._table = dict(sorted(table.items()))
        self._specs: dict[str, MethodSpec] = {}

    def __getitem__(self, key: str) -> MethodSpec:
        spec = self._specs.get(key)
        if spec is None:
            module_name, _ = self._table[key]
            spec = importlib.import_module(f"{__name__}.{module_name}").SPEC
            self._specs[key] = spec
        return spec

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, key: object) -> bool:
        return key in self._table

    def module(self, key: str) -> str:
        """The name of the module (in this package) that holds method ``key``."""
        return self._table[key][0]

    def section(self, key: str) -> str:
        """The design-file section method ``key`` reads, without importing its module."""
        return self._table[key][1]


METHODS = MethodRegistry(
    {
        "3+3": ("three_plus_three", "three_plus_three"),
        "blrm": ("blrm", "blrm"),
        "boin": ("boin", "boin"),
        "boin12": ("boin12", "boin12"),
        "crm": ("crm", "crm"),
        "ewoc": ("ewoc", "ewoc"),
        "i3+3": ("i3p3", "i3p3"),
        "keyboard": ("keyboard", "keyboard"),
        "mtpi2": ("mtpi2", "mtpi2"),
        "tite-boin": ("tite_boin", "boin"),
        "tite-boin12": ("tite_boin12", "boin12"),
        "tite-crm": ("tite_crm", "crm"),
    }
)

__all__ = [
    "METHODS",
    "Boin",
    "Decision",
    "DesignFields",
    "IntervalDesign",
    "Method",
    "MethodRegistry",
    "MethodSpec",
    "ThreePlusThree",
]
