"""The method registry (:data:`theradose.methods.METHODS`): its table names every method module,
and a design loads only its own method's module."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import theradose.methods
from theradose.methods import METHODS
from theradose.methods.spec import MethodSpec

DESIGNS = Path(__file__).resolve().parents[1] / "designs"


def discovered_specs() -> dict[str, tuple[str, MethodSpec]]:
    """Every module of the package that declares a ``SPEC``, by the spec's key."""
    found = {}
    for module_info in pkgutil.iter_modules(theradose.methods.__path__):
        module = importlib.import_module(f"theradose.methods.{module_info.name}")
        spec = vars(module).get("SPEC")
        if isinstance(spec, MethodSpec):
            assert spec.key not in found, f"two modules declare method {spec.key!r}"
            found[spec.key] = (module_info.name, spec)
    return found


def test_the_table_names_every_method_module_and_its_section():
    found = discovered_specs()
    assert sorted(found) == list(METHODS), "a method module missing from the registry's table?"
    for key, (module, spec) in found.items():
        assert METHODS.module(key) == module
        assert METHODS.section(key) == spec.section
        assert METHODS[key] is spec


def test_the_registry_is_a_mapping_in_key_order():
    assert list(METHODS) == sorted(METHODS)
    assert len(METHODS) == len(list(METHODS.items()))
    assert "boin" in METHODS and "mystery" not in METHODS
    assert METHODS.get("mystery") is None


def test_a_boin_design_loads_no_other_method():
    code = (
        "import sys\n"
        "from theradose.study import check_file\n"
        f"assert check_file({str(DESIGNS / 'boin.toml')!r}).ok\n"
        "print(*sorted(m for m in sys.modules if m.startswith('theradose.methods.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.rsplit(".", 1)[1] for name in out.stdout.split()}
    assert loaded == {"base", "boin", "interval", "spec", "three_plus_three"}
