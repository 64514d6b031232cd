"""scipy.special's functions, imported on first use.

Every command imports the method registry, and ``scipy.special`` takes 0.1–0.3 s to import
(its array-API layer loads parts of numpy most commands never touch). Modules call
``special.expit(x)`` through this module instead, so the import happens when a function is
first called — once per process, then a plain attribute.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    value = getattr(importlib.import_module("scipy.special"), name)
    globals()[name] = value
    return value
