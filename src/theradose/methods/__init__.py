"""Dose-finding methods and their registry.

Each method is one module here holding its class (a :class:`~theradose.methods.base.Method`:
the maths and its paper) and its ``SPEC`` (:class:`~theradose.methods.spec.MethodSpec`: how a
design file's section builds it). :data:`METHODS` holds every module's ``SPEC`` by its key, found
by listing this package, so adding a method is adding its module: configuration, calibration,
reports and the conformance tests all go through the registry.
"""

from __future__ import annotations

import importlib
import pkgutil

from theradose.methods.base import Method
from theradose.methods.boin import Boin
from theradose.methods.interval import Decision, IntervalDesign
from theradose.methods.spec import DesignFields, MethodSpec
from theradose.methods.three_plus_three import ThreePlusThree


def _registered() -> dict[str, MethodSpec]:
    specs = []
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        spec = vars(module).get("SPEC")
        if isinstance(spec, MethodSpec):
            specs.append(spec)
    return {spec.key: spec for spec in sorted(specs, key=lambda spec: spec.key)}


METHODS: dict[str, MethodSpec] = _registered()

__all__ = [
    "METHODS",
    "Boin",
    "Decision",
    "DesignFields",
    "IntervalDesign",
    "Method",
    "MethodSpec",
    "ThreePlusThree",
]
