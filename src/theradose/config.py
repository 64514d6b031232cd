"""Design and scenario files (TOML) → :class:`~theradose.design.Design` and
:class:`~theradose.scenario.Scenario` objects.

Every error of a file is collected and raised together as one :class:`ConfigError`, one line per
problem, each naming the file, the key, the value given and what is allowed::

    designs/boin.toml: target = 1.5: must be a number in (0, 1)
    designs/boin.toml: unknown key 'cohort_sise' (did you mean 'cohort_size'?)
    designs/boin.toml: [boin] p_saf = 0.4: must be below target (0.3)
    scen.toml: scenario[2] ("S2") dlt_prob: must be non-decreasing, got [0.1, 0.05, 0.2]

Scalars are reported as ``key = value: problem``; arrays, which can be long, as
``key: problem, got [values]``. Levels are 1-based in every message, as in the files.

A design file holds the keys of :data:`DESIGN_KEYS` and at most one method section, the one named
by its method in :data:`METHODS`. To add a method, write a parser and a builder for its section
and add a :class:`MethodSpec` to :data:`METHODS`; to add a top-level key, add it to
:data:`DESIGN_KEYS` and read it in :func:`design_from_dict`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from theradose.constraints import (
    Coherence,
    EscalationStep,
    MaxIncrement,
    NoSkip,
    OrganDoseLimits,
)
from theradose.design import Design
from theradose.methods import Boin, ThreePlusThree
from theradose.methods.blrm import (
    DEFAULT_MAX_OVERDOSE_PROB,
    DEFAULT_TARGET_INTERVAL,
    Blrm,
)
from theradose.methods.crm import (
    DEFAULT_INTERCEPT,
    DEFAULT_PRIOR_VAR,
    ESTIMATES,
    Crm,
    EmpiricModel,
    LogisticModel,
    lee_cheung_skeleton,
    skeleton_problem,
)
from theradose.methods.ewoc import (
    DEFAULT_FEASIBILITY_BOUND,
    DEFAULT_FEASIBILITY_MAX,
    FINALS,
    ROUNDINGS,
    Ewoc,
)
from theradose.methods.tite_boin import TiteBoin
from theradose.methods.tite_crm import WEIGHTS as TITE_WEIGHTS
from theradose.methods.tite_crm import TiteCrm
from theradose.scenario import Scenario
from theradose.stopping import MaxAtDose, MaxPatients, SafetyStop
from theradose.timing import ACCRUALS, DEFAULT_ONSET_SHAPE, ONSETS, Onset, Timing

__all__ = [
    "ConfigError",
    "check_scenarios_fit",
    "design_from_dict",
    "load_design",
    "load_scenarios",
    "scenarios_from_dict",
]

# BOIN's published defaults (Liu & Yuan 2015; BOIN R package): φ1 = 0.6 φ, φ2 = 1.4 φ.
BOIN_P_SAF_FACTOR = 0.6
BOIN_P_TOX_FACTOR = 1.4
BOIN_MAX_AT_DOSE = 100
DEFAULT_COHORT_SIZE = 3

_MISSING: Any = object()
_MAX_SHOWN_ITEMS = 12


class ConfigError(Exception):
    """Errors found in a design or scenario file, all of them, one line each.

    Parameters
    ----------
    messages : the problems, each one line naming file, key, value and what is allowed; a single
        string is split into lines.

    Attributes
    ----------
    messages : list[str]
    """

    def __init__(self, messages: Sequence[str] | str) -> None:
        if isinstance(messages, str):
            messages = messages.splitlines()
        self.messages: list[str] = list(messages)
        super().__init__("\n".join(self.messages))

    def __str__(self) -> str:
        return "\n".join(self.messages)


# ---------------------------------------------------------------------------------------------
# Reading values and reporting problems


def show_value(value: Any) -> str:
    """A value as it would be written in TOML, on one line (for messages; None: "(none)")."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        shown = [show_value(v) for v in value[:_MAX_SHOWN_ITEMS]]
        if len(value) > _MAX_SHOWN_ITEMS:
            shown.append(f"... ({len(value)} values)")
        return "[" + ", ".join(shown) + "]"
    if isinstance(value, Mapping):
        items = list(value.items())
        shown = [f"{k} = {show_value(v)}" for k, v in items[:_MAX_SHOWN_ITEMS]]
        if len(items) > _MAX_SHOWN_ITEMS:
            shown.append("...")
        return "{" + ", ".join(shown) + "}"
    return str(value)


def _kind(value: Any) -> str:
    """'a string', 'a boolean', ...: the TOML type of a value, for 'got ...' in messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return "a date/time"


def _is_number(value: Any) -> bool:
    # bool is an int in Python, but `true` is never a number in a design file.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _suggest(word: str, choices: Iterable[str]) -> str | None:
    by_lower = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


@dataclass(frozen=True)
class Interval:
    """Allowed values of a number: ``(0, 1)``, ``[0, 0.5)``, ``> 0``; never NaN or infinite."""

    low: float | None = None
    high: float | None = None
    low_closed: bool = False
    high_closed: bool = False

    def __contains__(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        if self.low is not None and (x < self.low or (x == self.low and not self.low_closed)):
            return False
        return not (
            self.high is not None and (x > self.high or (x == self.high and not self.high_closed))
        )

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            left = "[" if self.low_closed else "("
            right = "]" if self.high_closed else ")"
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{'>=' if self.low_closed else '>'} {self.low:g}"
        if self.high is not None:
            return f"{'<=' if self.high_closed else '<'} {self.high:g}"
        return "finite"


OPEN_UNIT = Interval(0.0, 1.0)
CLOSED_UNIT = Interval(0.0, 1.0, low_closed=True, high_closed=True)
POSITIVE = Interval(low=0.0)


class _Report:
    """The problems found in one file so far."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        self.messages.append(f"{self.path}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            raise ConfigError(self.messages)


class _Table:
    """One TOML table being read, where it sits in the file, and the report its problems go to.

    Each reader returns the value, the default when the key is absent, or None when the value is
    invalid or absent without a default; problems are recorded, never raised, so that every
    problem of a file is reported at once.
    """

    def __init__(self, report: _Report, data: Mapping[str, Any], where: str = "") -> None:
        self.report = report
        self.data = data
        self.where = where  # "", "[boin] ", 'scenario[2] ("S2") '

    def error(self, text: str) -> None:
        self.report.add(f"{self.where}{text}")

    def value_error(self, key: str, value: Any, problem: str) -> None:
        self.error(f"{key} = {show_value(value)}: {problem}")

    def type_error(self, key: str, value: Any, expected: str) -> None:
        self.value_error(key, value, f"must be {expected}, got {_kind(value)}")

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in self.data:
            if key in allowed:
                continue
            guess = _suggest(key, allowed)
            hint = f"did you mean '{guess}'?" if guess else "allowed: " + ", ".join(allowed)
            self.error(f"unknown key '{key}' ({hint})")

    def _get(self, key: str, default: Any, required: str) -> Any:
        if key in self.data:
            return self.data[key]
        if required:
            self.error(f"missing key '{key}' ({required})")
        return default

    def number(
        self, key: str, interval: Interval, *, default: Any = None, required: str = ""
    ) -> float | None:
        value = self._get(key, _MISSING, required)
        if value is _MISSING:
            return default
        if not _is_number(value):
            self.type_error(key, value, f"a number {interval}")
            return None
        if value not in interval:
            self.value_error(key, value, f"must be a number {interval}")
            return None
        return float(value)

    def integer(
        self, key: str, minimum: int, *, default: Any = None, required: str = ""
    ) -> int | None:
        value = self._get(key, _MISSING, required)
        if value is _MISSING:
            return default
        if not _is_integer(value):
            self.type_error(key, value, f"an integer >= {minimum}")
            return None
        if value < minimum:
            self.value_error(key, value, f"must be an integer >= {minimum}")
            return None
        return value

    def boolean(self, key: str, *, default: Any = None) -> bool | None:
        value = self._get(key, _MISSING, "")
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.type_error(key, value, "true or false")
            return None
        return value

    def string(self, key: str, *, default: Any = None, required: str = "") -> str | None:
        value = self._get(key, _MISSING, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            self.type_error(key, value, "a string")
            return None
        return value

    def choice(self, key: str, choices: Iterable[str], *, required: str = "") -> str | None:
        choices = list(choices)
        value = self._get(key, _MISSING, required)
        if value is _MISSING:
            return None
        allowed = ", ".join(show_value(c) for c in choices)
        if not isinstance(value, str):
            self.type_error(key, value, f"one of {allowed}")
            return None
        if value not in choices:
            guess = _suggest(value, choices)
            hint = f" (did you mean {show_value(guess)}?)" if guess else ""
            self.value_error(key, value, f"must be one of {allowed}{hint}")
            return None
        return value

    def numbers(
        self, key: str, interval: Interval, order: str, *, required: str = ""
    ) -> tuple[float, ...] | None:
        """A non-empty array of numbers in ``interval``, ``order`` "increasing" (strictly) or
        "non-decreasing"."""
        value = self._get(key, _MISSING, required)
        if value is _MISSING:
            return None
        if not isinstance(value, list):
            self.type_error(key, value, f"an array of numbers {interval}")
            return None
        shown = show_value(value)
        if not value:
            self.error(f"{key}: must hold at least one value, got []")
            return None
        for level, item in enumerate(value, start=1):
            if not _is_number(item):
                self.error(
                    f"{key}: must be an array of numbers, got {shown} "
                    f"(level {level} is {_kind(item)})"
                )
                return None
        outside = [level for level, item in enumerate(value, start=1) if item not in interval]
        if outside:
            self.error(
                f"{key}: every value must be {interval}, got {shown} "
                f"(level {outside[0]} is {show_value(value[outside[0] - 1])})"
            )
            return None
        for level in range(2, len(value) + 1):
            lower, upper = value[level - 2], value[level - 1]
            if order == "increasing" and not upper > lower:
                self.error(
                    f"{key}: must be strictly increasing, got {shown} "
                    f"(level {level} is not above level {level - 1})"
                )
                return None
            if order == "non-decreasing" and upper < lower:
                self.error(
                    f"{key}: must be non-decreasing, got {shown} "
                    f"(level {level} is below level {level - 1})"
                )
                return None
        return tuple(float(v) for v in value)

    def section(self, name: str) -> _Table:
        """The sub-table ``[name]`` (empty when absent or not a table)."""
        value = self.data.get(name, {})
        if not isinstance(value, Mapping):
            self.type_error(name, value, f"a table ([{name}])")
            value = {}
        return _Table(self.report, value, f"{self.where}[{name}] ")


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        message = "file not found"
    except IsADirectoryError:
        message = "is a directory, not a file"
    except OSError as err:
        message = f"cannot read: {err.strerror or err}"
    except tomllib.TOMLDecodeError as err:
        message = f"invalid TOML: {err}"
    except UnicodeDecodeError as err:
        message = f"invalid TOML: not UTF-8 text ({err.reason} at byte {err.start})"
    raise ConfigError([f"{path}: {message}"])


# ---------------------------------------------------------------------------------------------
# Designs


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


@dataclass(frozen=True)
class MethodSpec:
    """How a value of ``method`` is read from a design file and built.

    Attributes
    ----------
    key : the value of ``method``
    section : the name of the method's own table (``[boin]``)
    keys : the keys allowed in that table
    parse : reads the table (problems go to its report), returns the method's options
    build : the method object, its constraints and its stopping rules, from valid fields and
        options (the rules of the ``[stopping]`` section are added after them)
    fixed_cohort_size : the only cohort size the method allows, or None
    max_patients_per_level : default ``max_patients`` = this × levels; None makes it required
    """

    key: str
    section: str
    keys: tuple[str, ...]
    parse: Callable[[_Table, DesignFields], dict[str, Any]]
    build: Callable[[DesignFields, dict[str, Any]], tuple[Any, tuple[Any, ...], tuple[Any, ...]]]
    fixed_cohort_size: int | None = None
    max_patients_per_level: int | None = None
    model_based: bool = False  # has a posterior: the safety stop of [stopping] applies
    tite: bool = False  # decides from follow-up times: needs [timing]


def _parse_three_plus_three(table: _Table, fields: DesignFields) -> dict[str, Any]:
    return {"deescalate": table.boolean("deescalate", default=True)}


def _build_three_plus_three(fields: DesignFields, options: dict[str, Any]):
    method = ThreePlusThree(fields.n_levels, deescalate=options["deescalate"])
    return method, (), (MaxPatients(fields.max_patients),)


def _parse_boin(table: _Table, fields: DesignFields) -> dict[str, Any]:
    target = fields.target
    p_saf = table.number("p_saf", OPEN_UNIT)
    p_tox = table.number("p_tox", OPEN_UNIT)
    if target is not None:
        if p_saf is None and "p_saf" not in table.data:
            p_saf = BOIN_P_SAF_FACTOR * target
        elif p_saf is not None and not p_saf < target:
            table.value_error("p_saf", p_saf, f"must be below target ({target:g})")
        if p_tox is None and "p_tox" not in table.data:
            p_tox = BOIN_P_TOX_FACTOR * target
            if p_tox >= 1:
                table.error(
                    f"p_tox: the default {BOIN_P_TOX_FACTOR:g} × target = {p_tox:g} is not "
                    f"below 1; give p_tox, a number in ({target:g}, 1)"
                )
        elif p_tox is not None and not p_tox > target:
            table.value_error("p_tox", p_tox, f"must be above target ({target:g})")
    cutoff = table.number("elimination_cutoff", OPEN_UNIT, default=0.95)
    offset = table.number("extra_safe_offset", Interval(0.0, 0.5, low_closed=True), default=0.05)
    if cutoff is not None and offset is not None and not offset < cutoff:
        # The extra-safe rule stops when P(p1 > target) > cutoff − offset; that must stay > 0.
        table.value_error(
            "extra_safe_offset", offset, f"must be below elimination_cutoff ({cutoff:g})"
        )
    return {
        "p_saf": p_saf,
        "p_tox": p_tox,
        "elimination_cutoff": cutoff,
        "extra_safe": table.boolean("extra_safe", default=False),
        "extra_safe_offset": offset,
        "max_at_dose": table.integer("max_at_dose", 1, default=BOIN_MAX_AT_DOSE),
    }


def _build_boin(fields: DesignFields, options: dict[str, Any]):
    method = Boin(
        fields.n_levels,
        fields.target,
        fields.max_patients,
        p_saf=options["p_saf"],
        p_tox=options["p_tox"],
        elimination_cutoff=options["elimination_cutoff"],
        extra_safe=options["extra_safe"],
        extra_safe_offset=options["extra_safe_offset"],
    )
    stopping = (
        MaxPatients(fields.max_patients),
        MaxAtDose(options["max_at_dose"], only_when_staying=True),
    )
    return method, (), stopping


CRM_MODELS = ("empiric", "logistic")
CRM_START_UPS = ("none", "cohorts")
CRM_SKELETON_KEYS = ("halfwidth", "prior_mtd")


def _parse_crm_skeleton(table: _Table, fields: DesignFields, model: str | None, intercept):
    """``skeleton = [...]`` or ``[crm.skeleton]`` with halfwidth and prior_mtd (Lee & Cheung)."""
    value = table.data.get("skeleton", _MISSING)
    if value is _MISSING:
        table.error(
            "missing key 'skeleton' (the prior DLT probability of each level, or a "
            "[crm.skeleton] table with halfwidth and prior_mtd)"
        )
        return None
    if isinstance(value, Mapping):
        sub = table.section("skeleton")
        sub.check_keys(CRM_SKELETON_KEYS)
        target = fields.target
        limit = min(target, 1 - target) if target is not None else 0.5
        halfwidth = sub.number(
            "halfwidth", Interval(0.0, limit), required=f"a number in (0, {limit:g})"
        )
        prior_mtd = sub.integer("prior_mtd", 1, required="the level guessed to be the MTD")
        if None in (halfwidth, prior_mtd, target, fields.n_levels, model):
            return None
        if prior_mtd > fields.n_levels:
            sub.value_error("prior_mtd", prior_mtd, f"must be an integer in 1..{fields.n_levels}")
            return None
        skeleton = lee_cheung_skeleton(
            halfwidth, target, prior_mtd - 1, fields.n_levels, model, intercept
        )
        problem = skeleton_problem(skeleton, model, intercept)
        if problem:
            sub.value_error(
                "halfwidth", halfwidth, f"too large for {fields.n_levels} levels: {problem}"
            )
            return None
        return skeleton
    skeleton = table.numbers("skeleton", OPEN_UNIT, "increasing")
    if skeleton is None or fields.n_levels is None:
        return None
    if len(skeleton) != fields.n_levels:
        table.error(
            f"skeleton: has {len(skeleton)} values, but the design has {fields.n_levels} levels"
        )
        return None
    problem = skeleton_problem(skeleton, model or "empiric", intercept)
    if problem:
        table.error(f"skeleton: {problem}")
        return None
    return skeleton


def _parse_crm(table: _Table, fields: DesignFields) -> dict[str, Any]:
    model = table.choice("model", CRM_MODELS) or ("empiric" if "model" not in table.data else None)
    intercept = table.number("intercept", Interval(), default=DEFAULT_INTERCEPT)
    if "intercept" in table.data and model == "empiric":
        table.error('intercept: only for model = "logistic"')
    estimate = table.choice("estimate", ESTIMATES)
    start_up = table.choice("start_up", CRM_START_UPS)
    start_up_cohort_size = table.integer("start_up_cohort_size", 1, default=1)
    if "start_up_cohort_size" in table.data and start_up != "cohorts":
        table.error('start_up_cohort_size: only with start_up = "cohorts"')
    return {
        "model": model,
        "intercept": intercept,
        "skeleton": _parse_crm_skeleton(table, fields, model, intercept),
        "prior_var": table.number("prior_var", POSITIVE, default=DEFAULT_PRIOR_VAR),
        "estimate": estimate or ("plugin" if "estimate" not in table.data else None),
        "start_up": start_up or ("none" if "start_up" not in table.data else None),
        "start_up_cohort_size": start_up_cohort_size,
        "no_skip": table.boolean("no_skip", default=True),
        "coherent": table.boolean("coherent", default=True),
    }


def _build_crm(fields: DesignFields, options: dict[str, Any]):
    skeleton = options["skeleton"]
    if options["model"] == "logistic":
        model = LogisticModel(skeleton, options["intercept"])
    else:
        model = EmpiricModel(skeleton)
    method = Crm(
        fields.n_levels,
        fields.target,
        model,
        fields.max_patients,
        prior_var=options["prior_var"],
        estimate=options["estimate"],
        start_up=options["start_up"],
        start_up_cohort_size=options["start_up_cohort_size"],
    )
    constraints = []
    if options["no_skip"]:
        constraints.append(EscalationStep(1))
    if options["coherent"]:
        constraints.append(Coherence(fields.target))
    return method, tuple(constraints), (MaxPatients(fields.max_patients),)


def _parse_tite_crm(table: _Table, fields: DesignFields) -> dict[str, Any]:
    options = _parse_crm(table, fields)
    weights = table.choice("weights", TITE_WEIGHTS)
    options["weights"] = weights or ("linear" if "weights" not in table.data else None)
    options["start_up_wait_months"] = table.number("start_up_wait_months", POSITIVE)
    if "start_up_wait_months" in table.data and options["start_up"] != "cohorts":
        table.error('start_up_wait_months: only with start_up = "cohorts"')
    options["coherent"] = False  # the last patient's outcome is not known yet
    return options


def _parse_tite_boin(table: _Table, fields: DesignFields) -> dict[str, Any]:
    options = _parse_boin(table, fields)
    options["max_pending_fraction"] = table.number(
        "max_pending_fraction", Interval(0.0, 1.0, high_closed=True), default=0.5
    )
    options["min_complete"] = table.integer("min_complete", 0, default=1)
    return options


def _extended(base: Any, cls: type, **extra: Any) -> Any:
    """A ``cls`` (a time-to-event method) with every setting of ``base`` (its method) plus
    ``extra``, so that a new setting of the base method can never be left behind."""
    settings = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
    return cls(**settings, **extra)


def _build_tite_boin(fields: DesignFields, options: dict[str, Any]):
    boin, constraints, stopping = _build_boin(fields, options)
    method = _extended(
        boin,
        TiteBoin,
        window=fields.timing.dlt_window_months,
        max_pending_fraction=options["max_pending_fraction"],
        min_complete=options["min_complete"],
    )
    return method, constraints, stopping


def _build_tite_crm(fields: DesignFields, options: dict[str, Any]):
    crm, constraints, stopping = _build_crm(fields, options)
    method = _extended(
        crm,
        TiteCrm,
        window=fields.timing.dlt_window_months,
        weights=options["weights"],
        start_up_wait=options["start_up_wait_months"],
    )
    return method, constraints, stopping


def _pair(
    table: _Table, key: str, interval: Interval, *, default: Any = None, required: str = ""
) -> tuple[float, float] | None:
    """Two numbers in ``interval``, such as a prior's means (``[2.15, 0.52]``)."""
    if key not in table.data:
        if required:
            table.error(f"missing key '{key}' ({required})")
        return default
    value = table.data[key]
    if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)):
        table.error(f"{key}: must be an array of two numbers {interval}, got {show_value(value)}")
        return None
    if any(v not in interval for v in value):
        table.error(f"{key}: every value must be {interval}, got {show_value(value)}")
        return None
    return float(value[0]), float(value[1])


BLRM_DEFAULT_MAX_INCREMENT = 1.0  # NBG 2008: at most double the highest activity given


def _parse_blrm(table: _Table, fields: DesignFields) -> dict[str, Any]:
    if fields.doses is None and fields.n_levels is not None:
        table.error(
            "the BLRM needs the activity of each level: give 'doses' (strictly increasing, > 0) "
            "rather than 'levels'"
        )
    reference = table.number(
        "reference_dose", POSITIVE, required="d*, the activity the model is centred on, > 0"
    )
    mean = _pair(table, "prior_mean", Interval(), required="the prior means of (log α, log β)")
    sd = _pair(
        table, "prior_sd", POSITIVE, required="the prior standard deviations of (log α, log β)"
    )
    corr = None
    if "prior_corr" in table.data and _is_number(table.data["prior_corr"]):
        value = table.data["prior_corr"]
        if value in Interval(-1.0, 1.0):
            corr = float(value)
        else:
            table.value_error(
                "prior_corr",
                value,
                "must be a number in (-1, 1): the prior covariance must be positive definite",
            )
    else:
        corr = table.number("prior_corr", Interval(-1.0, 1.0), default=0.0)
    interval = _pair(table, "target_interval", OPEN_UNIT, default=DEFAULT_TARGET_INTERVAL)
    if interval is not None:
        low, high = interval
        if not low < high:
            table.error(f"target_interval: must be increasing, got {show_value(list(interval))}")
            interval = None
        elif fields.target is not None and not low <= fields.target <= high:
            table.error(
                f"target_interval: must contain target ({fields.target:g}), got "
                f"{show_value(list(interval))}"
            )
            interval = None
    return {
        "reference_dose": reference,
        "prior_mean": mean,
        "prior_sd": sd,
        "prior_corr": corr,
        "target_interval": interval,
        "max_overdose_prob": table.number(
            "max_overdose_prob", OPEN_UNIT, default=DEFAULT_MAX_OVERDOSE_PROB
        ),
        "max_increment": table.number(
            "max_increment", POSITIVE, default=BLRM_DEFAULT_MAX_INCREMENT
        ),
    }


def _build_blrm(fields: DesignFields, options: dict[str, Any]):
    method = Blrm(
        fields.doses,
        fields.target,
        fields.max_patients,
        reference_dose=options["reference_dose"],
        prior_mean=options["prior_mean"],
        prior_sd=options["prior_sd"],
        prior_corr=options["prior_corr"],
        target_interval=options["target_interval"],
        max_overdose_prob=options["max_overdose_prob"],
    )
    constraints = (MaxIncrement(fields.doses, options["max_increment"]), NoSkip())
    return method, constraints, (MaxPatients(fields.max_patients),)


def _parse_ewoc(table: _Table, fields: DesignFields) -> dict[str, Any]:
    if fields.n_levels is not None and fields.n_levels < 2:
        table.error("EWOC needs at least two levels (the MTD is placed between the first and last)")
    bound = table.number("feasibility_bound", OPEN_UNIT, default=DEFAULT_FEASIBILITY_BOUND)
    highest = table.number("feasibility_max", OPEN_UNIT, default=DEFAULT_FEASIBILITY_MAX)
    if bound is not None and highest is not None and highest < bound:
        table.value_error(
            "feasibility_max", highest, f"must be at least feasibility_bound ({bound:g})"
        )
    rounding = table.choice("rounding", ROUNDINGS)
    final = table.choice("final", FINALS)
    return {
        "feasibility_bound": bound,
        "feasibility_step": table.number(
            "feasibility_step", Interval(0.0, 1.0, low_closed=True), default=0.0
        ),
        "feasibility_max": highest,
        "rounding": rounding or ("down" if "rounding" not in table.data else None),
        "final": final or ("next_dose" if "final" not in table.data else None),
        "rho_prior": _pair(table, "rho_prior", POSITIVE, default=(1.0, 1.0)),
        "mtd_prior": _pair(table, "mtd_prior", POSITIVE, default=(1.0, 1.0)),
    }


def _build_ewoc(fields: DesignFields, options: dict[str, Any]):
    doses = fields.doses or tuple(float(k) for k in range(1, fields.n_levels + 1))
    method = Ewoc(doses, fields.target, fields.max_patients, **options)
    # The ewoc package's no-skipping rule: never more than one level above the last cohort's.
    return method, (EscalationStep(1),), (MaxPatients(fields.max_patients),)


METHODS: dict[str, MethodSpec] = {
    spec.key: spec
    for spec in (
        MethodSpec(
            key="3+3",
            section="three_plus_three",
            keys=("deescalate",),
            parse=_parse_three_plus_three,
            build=_build_three_plus_three,
            fixed_cohort_size=3,
            max_patients_per_level=6,
        ),
        MethodSpec(
            key="boin",
            section="boin",
            keys=(
                "p_saf",
                "p_tox",
                "elimination_cutoff",
                "extra_safe",
                "extra_safe_offset",
                "max_at_dose",
            ),
            parse=_parse_boin,
            build=_build_boin,
        ),
        MethodSpec(
            key="crm",
            section="crm",
            keys=(
                "model",
                "skeleton",
                "prior_var",
                "intercept",
                "estimate",
                "no_skip",
                "coherent",
                "start_up",
                "start_up_cohort_size",
            ),
            parse=_parse_crm,
            build=_build_crm,
            model_based=True,
        ),
        MethodSpec(
            key="blrm",
            section="blrm",
            keys=(
                "reference_dose",
                "prior_mean",
                "prior_sd",
                "prior_corr",
                "target_interval",
                "max_overdose_prob",
                "max_increment",
            ),
            parse=_parse_blrm,
            build=_build_blrm,
            model_based=True,
        ),
        MethodSpec(
            key="ewoc",
            section="ewoc",
            keys=(
                "feasibility_bound",
                "feasibility_step",
                "feasibility_max",
                "rounding",
                "final",
                "rho_prior",
                "mtd_prior",
            ),
            parse=_parse_ewoc,
            build=_build_ewoc,
            model_based=True,
        ),
        MethodSpec(
            key="tite-boin",
            section="boin",
            keys=(
                "p_saf",
                "p_tox",
                "elimination_cutoff",
                "extra_safe",
                "extra_safe_offset",
                "max_at_dose",
                "max_pending_fraction",
                "min_complete",
            ),
            parse=_parse_tite_boin,
            build=_build_tite_boin,
            tite=True,
        ),
        MethodSpec(
            key="tite-crm",
            section="crm",
            keys=(
                "model",
                "skeleton",
                "prior_var",
                "intercept",
                "estimate",
                "no_skip",
                "start_up",
                "start_up_cohort_size",
                "start_up_wait_months",
                "weights",
            ),
            parse=_parse_tite_crm,
            build=_build_tite_crm,
            fixed_cohort_size=1,
            model_based=True,
            tite=True,
        ),
    )
}

STOPPING_KEYS = ("safety_cutoff", "safety_min_n", "max_at_dose")


def _parse_stopping(top: _Table, spec: MethodSpec | None) -> dict[str, Any]:
    """The optional ``[stopping]`` section: rules that any design may add, combined by "any"."""
    table = top.section("stopping")
    table.check_keys(STOPPING_KEYS)
    cutoff = table.number("safety_cutoff", OPEN_UNIT)
    if spec is not None and not spec.model_based:
        for key in ("safety_cutoff", "safety_min_n"):
            if key in table.data:
                table.error(
                    f"{key}: the safety stop needs a model-based method (crm), "
                    f"not method = {show_value(spec.key)}"
                )
    return {
        "safety_cutoff": cutoff,
        "safety_min_n": table.integer("safety_min_n", 1, default=3),
        "max_at_dose": table.integer("max_at_dose", 1),
    }


def _stopping_rules(method: Any, options: dict[str, Any]) -> tuple[Any, ...]:
    rules = []
    if options["safety_cutoff"] is not None:
        rules.append(SafetyStop(method, options["safety_cutoff"], options["safety_min_n"]))
    if options["max_at_dose"] is not None:
        rules.append(MaxAtDose(options["max_at_dose"]))
    return tuple(rules)


DESIGN_KEYS: tuple[str, ...] = (
    "name",
    "method",
    "target",
    "doses",
    "dose_unit",
    "levels",
    "start_level",
    "cohort_size",
    "max_patients",
    "stopping",
    "timing",
    "dosimetry",
)
DOSIMETRY_KEYS = ("cycles", "measurement_cv", "patient_cap", "cap_rule", "correlation", "organ")
ORGAN_KEYS = (
    "name",
    "gy_per_gbq_median",
    "gy_per_gbq_cv",
    "prior_strength",
    "limit_gy",
    "limit_bed_gy",
    "alpha_beta_gy",
    "repair_half_time_h",
    "effective_half_time_h",
    "max_exceed_prob",
)
TRUTH_ORGAN_KEYS = (
    "gy_per_gbq_median",
    "gy_per_gbq_cv",
    "alpha_beta_gy",
    "repair_half_time_h",
    "effective_half_time_h",
)
TOXICITY_KEYS = ("model", "background_prob")
NTCP_KEYS = ("td50_gy", "m", "gamma50", "dlt_onset", "onset_shape")


def _build_record(table: _Table, factory, values: dict[str, Any]):
    """``factory(**values)`` from theradose.dosimetry, its problems reported in this table."""
    from theradose.dosimetry import DosimetryError

    known = {f.name for f in dataclasses.fields(factory)}
    values = {k: v for k, v in values.items() if k in known}  # unknown keys: reported already
    try:
        return factory(**values)
    except DosimetryError as error:
        for message in error.messages:
            table.error(message)
    except TypeError as error:  # a value of the wrong type where the record compares numbers
        table.error(str(error))
    return None


def _read_dosimetry(top: _Table, fields: DesignFields) -> Any:
    """The ``[dosimetry]`` section: cycles, measurement error, capping and organ limits."""
    from theradose.dosimetry import Dosimetry, OrganModel

    if "dosimetry" not in top.data:
        return None
    table = top.section("dosimetry")
    table.check_keys(DOSIMETRY_KEYS)
    organs_data = table.data.get("organ", [])
    if not isinstance(organs_data, list) or not all(isinstance(o, Mapping) for o in organs_data):
        table.type_error("organ", organs_data, "an array of tables ([[dosimetry.organ]])")
        organs_data = []
    organs, ok = [], True
    for index, entry in enumerate(organs_data, start=1):
        label = f" ({show_value(entry['name'])})" if isinstance(entry.get("name"), str) else ""
        sub = _Table(table.report, entry, f"{table.where}organ[{index}]{label} ")
        sub.check_keys(ORGAN_KEYS)
        organ = _build_record(sub, OrganModel, dict(entry))
        ok &= organ is not None
        organs.append(organ)
    if organs and fields.doses is None:
        top.error("[dosimetry] organ limits need the activity of each level: give 'doses'")
        ok = False
    values = {k: v for k, v in table.data.items() if k != "organ"}
    if not ok:
        return None
    return _build_record(table, Dosimetry, {"organs": tuple(organs), **values})


TIMING_KEYS = ("accrual_per_month", "accrual", "dlt_window_months")


def _read_timing(top: _Table, fields: DesignFields, spec: MethodSpec | None) -> None:
    """The ``[timing]`` section: accrual and the DLT window (required by time-to-event methods)."""
    if "timing" not in top.data:
        if spec is not None and spec.tite:
            top.error(
                f"missing section [timing] (accrual_per_month, dlt_window_months): "
                f"method = {show_value(spec.key)} decides from follow-up times"
            )
        return
    table = top.section("timing")
    table.check_keys(TIMING_KEYS)
    rate = table.number("accrual_per_month", POSITIVE, required="patients per month, > 0")
    window = table.number("dlt_window_months", POSITIVE, required="months, > 0")
    accrual = table.choice("accrual", ACCRUALS) or (
        "poisson" if "accrual" not in table.data else None
    )
    if None not in (rate, window, accrual):
        fields.timing = Timing(rate, window, accrual)


def _read_levels(top: _Table, fields: DesignFields) -> None:
    fields.doses = top.numbers("doses", POSITIVE, "increasing")
    levels = top.integer("levels", 1)
    if "doses" not in top.data and "levels" not in top.data:
        top.error(
            "missing key 'doses' or 'levels' (the activity of each level, strictly increasing, "
            "or the number of levels)"
        )
    if fields.doses is not None and levels is not None and levels != len(fields.doses):
        top.value_error("levels", levels, f"does not match doses ({len(fields.doses)} values)")
    elif fields.doses is not None:
        fields.n_levels = len(fields.doses)
    else:
        fields.n_levels = levels


def _read_start_level(top: _Table, fields: DesignFields) -> None:
    start = top.integer("start_level", 1, default=1)
    if start is None or fields.n_levels is None:
        return
    if start > fields.n_levels:
        top.value_error(
            "start_level", start, f"must be an integer in 1..{fields.n_levels} (the levels)"
        )
        return
    fields.start_level = start - 1


def _read_sample_size(top: _Table, fields: DesignFields, spec: MethodSpec | None) -> None:
    fields.cohort_size = top.integer("cohort_size", 1, default=DEFAULT_COHORT_SIZE)
    fixed = spec.fixed_cohort_size if spec else None
    if fixed is not None and fields.cohort_size not in (None, fixed):
        top.value_error(
            "cohort_size",
            fields.cohort_size,
            f"must be {fixed} for method = {show_value(spec.key)}",
        )
        fields.cohort_size = None

    required = ""
    default = None
    if spec is not None and spec.max_patients_per_level is None:
        required = f"an integer >= cohort_size, required for method = {show_value(spec.key)}"
    elif spec is not None and fields.n_levels is not None:
        default = spec.max_patients_per_level * fields.n_levels
    max_patients = top.integer("max_patients", 1, default=default, required=required)
    if (
        max_patients is not None
        and fields.cohort_size is not None
        and max_patients < fields.cohort_size
    ):
        top.value_error(
            "max_patients",
            max_patients,
            f"must be an integer >= cohort_size ({fields.cohort_size})",
        )
        max_patients = None
    fields.max_patients = max_patients


def design_from_dict(data: Mapping[str, Any], path: str | os.PathLike[str]) -> Design:
    """Build a :class:`~theradose.design.Design` from a parsed design file.

    Parameters
    ----------
    data : the file's contents, as ``tomllib`` parses them
    path : the file, for messages and as the default name (its stem)

    Returns
    -------
    Design
        with a 0-based ``start_level``, ``source`` = ``data`` and ``path`` = ``str(path)``.

    Raises
    ------
    ConfigError
        with every problem of the file.
    """
    path = os.fspath(path)
    report = _Report(path)
    if not isinstance(data, Mapping):
        report.add(f"must be a table of keys, got {_kind(data)}")
        report.raise_if_any()
    top = _Table(report, data)
    top.check_keys(DESIGN_KEYS + tuple(spec.section for spec in METHODS.values()))

    fields = DesignFields()
    fields.name = top.string("name", default=Path(path).stem)
    fields.method = top.choice(
        "method", METHODS, required="one of " + ", ".join(show_value(k) for k in METHODS)
    )
    spec = METHODS.get(fields.method) if fields.method else None
    fields.target = top.number(
        "target", OPEN_UNIT, required=f"the target DLT probability, a number {OPEN_UNIT}"
    )
    _read_levels(top, fields)
    fields.dose_unit = top.string("dose_unit", default="")
    _read_start_level(top, fields)
    _read_sample_size(top, fields, spec)

    sections = dict.fromkeys(other.section for other in METHODS.values())
    for section in sections:
        if spec is not None and section in data and section != spec.section:
            owners = " or ".join(show_value(k) for k, o in METHODS.items() if o.section == section)
            top.error(
                f"section [{section}] is only for method = {owners} "
                f"(this design has method = {show_value(spec.key)})"
            )
    options: dict[str, Any] = {}
    if spec is not None:
        section = top.section(spec.section)
        section.check_keys(spec.keys)
        options = spec.parse(section, fields)
    stopping_options = _parse_stopping(top, spec)
    _read_timing(top, fields, spec)
    dosimetry = _read_dosimetry(top, fields)

    report.raise_if_any()
    method, constraints, stopping = spec.build(fields, options)
    if dosimetry is not None and dosimetry.organs:
        constraints = constraints + (OrganDoseLimits(dosimetry, fields.doses),)
    stopping = stopping + _stopping_rules(method, stopping_options)
    return Design(
        name=fields.name,
        method=method,
        target=fields.target,
        n_levels=fields.n_levels,
        start_level=fields.start_level,
        cohort_size=fields.cohort_size,
        max_patients=fields.max_patients,
        doses=fields.doses,
        dose_unit=fields.dose_unit,
        constraints=constraints,
        stopping=stopping,
        timing=fields.timing,
        dosimetry=dosimetry,
        source=dict(data),
        path=path,
    )


def load_design(path: str | os.PathLike[str]) -> Design:
    """Read a design file (TOML); see :func:`design_from_dict`.

    Raises
    ------
    ConfigError
        when the file is missing, is not valid TOML, or has invalid contents (all reported).
    """
    path = os.fspath(path)
    return design_from_dict(_read_toml(path), path)


# ---------------------------------------------------------------------------------------------
# Scenarios

SCENARIO_KEYS: tuple[str, ...] = (
    "name",
    "dlt_prob",
    "dlt_onset",
    "onset_shape",
    "organ",
    "toxicity",
    "correlation",
)


def _read_organ_truth(table: _Table) -> Any:
    """``[scenario.organ.<name>]`` and ``[scenario.toxicity]`` → DosimetryTruth (or None)."""
    from theradose.dosimetry import DosimetryTruth, OrganNtcp, OrganTruth, Toxicity

    data = table.data
    if "organ" not in data and "toxicity" not in data:
        return None
    organs = []
    section = table.section("organ")
    for name in section.data:
        sub = section.section(name)
        sub.check_keys(TRUTH_ORGAN_KEYS)
        organs.append(_build_record(sub, OrganTruth, {"name": name, **sub.data}))
    toxicity = None
    if "toxicity" in data:
        tox = table.section("toxicity")
        ntcps = []
        for key, value in tox.data.items():
            if key in TOXICITY_KEYS:
                continue
            if not isinstance(value, Mapping):
                guess = _suggest(key, TOXICITY_KEYS)
                hint = f"did you mean '{guess}'?" if guess else "allowed: model, background_prob"
                tox.error(f"unknown key '{key}' ({hint}; an organ's NTCP is a [toxicity.<organ>])")
                continue
            sub = tox.section(key)
            sub.check_keys(NTCP_KEYS)
            ntcps.append(_build_record(sub, OrganNtcp, {"name": key, **sub.data}))
        scalars = {k: tox.data[k] for k in TOXICITY_KEYS if k in tox.data}
        if None not in ntcps:
            toxicity = _build_record(tox, Toxicity, {**scalars, "organs": tuple(ntcps)})
    if None in organs or ("toxicity" in data and toxicity is None):
        return None
    values = {"organs": tuple(organs), "toxicity": toxicity}
    if "correlation" in data:
        values["correlation"] = data["correlation"]
    return _build_record(table, DosimetryTruth, values)


def scenarios_from_dict(data: Mapping[str, Any], path: str | os.PathLike[str]) -> list[Scenario]:
    """Build the scenarios of a parsed scenario file (one ``[[scenario]]`` table each).

    Each needs a unique ``name`` and ``dlt_prob``, the true DLT probability of each level:
    non-empty, non-decreasing, within [0, 1].

    Raises
    ------
    ConfigError
        with every problem of the file; also when it holds no ``[[scenario]]``.
    """
    path = os.fspath(path)
    report = _Report(path)
    if not isinstance(data, Mapping):
        report.add(f"must be a table of keys, got {_kind(data)}")
        report.raise_if_any()
    top = _Table(report, data)
    top.check_keys(("scenario",))
    tables = data.get("scenario", [])
    if not isinstance(tables, list) or not all(isinstance(t, Mapping) for t in tables):
        top.type_error("scenario", tables, "an array of tables ([[scenario]])")
        tables = []
    elif not tables:
        report.add("no scenarios: add at least one [[scenario]] table with name and dlt_prob")

    scenarios = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(tables, start=1):
        name = entry.get("name")
        label = f" ({show_value(name)})" if isinstance(name, str) else ""
        table = _Table(report, entry, f"scenario[{index}]{label} ")
        table.check_keys(SCENARIO_KEYS)
        name = table.string("name", required='a unique name, such as "S1"')
        if name is not None and name in first_index:
            table.value_error(
                "name", name, f"must be unique, also used by scenario[{first_index[name]}]"
            )
        elif name is not None:
            first_index[name] = index
        truth = _read_organ_truth(table)
        ntcp = truth is not None and truth.toxicity is not None and truth.toxicity.uses_ntcp
        toxicity = table.data.get("toxicity")
        if truth is None and isinstance(toxicity, Mapping):  # its errors are reported already
            ntcp = toxicity.get("model", "ntcp") == "ntcp"
        dlt_prob = table.numbers(
            "dlt_prob",
            CLOSED_UNIT,
            "non-decreasing",
            required=""
            if ntcp
            else "the true DLT probability of each level, non-decreasing, in [0, 1]",
        )
        if ntcp and dlt_prob is not None:
            table.error('dlt_prob: not with [toxicity] model = "ntcp" (DLTs come from organ doses)')
        if ntcp:
            dlt_prob = ()
        kind = table.choice("dlt_onset", ONSETS) or (
            "uniform" if "dlt_onset" not in table.data else None
        )
        shape = table.number("onset_shape", POSITIVE, default=DEFAULT_ONSET_SHAPE)
        if "onset_shape" in table.data and kind == "uniform":
            table.error('onset_shape: only with dlt_onset = "late" or "early"')
        if name is not None and dlt_prob is not None and kind is not None and shape is not None:
            scenarios.append(Scenario(name, dlt_prob, Onset(kind, shape), truth))
    report.raise_if_any()
    return scenarios


def load_scenarios(path: str | os.PathLike[str]) -> list[Scenario]:
    """Read a scenario file (TOML); see :func:`scenarios_from_dict`."""
    path = os.fspath(path)
    return scenarios_from_dict(_read_toml(path), path)


def check_scenarios_fit(
    design: Design, scenarios: Sequence[Scenario], path: str | os.PathLike[str]
) -> None:
    """Check that every scenario gives one DLT probability per level of ``design``.

    Parameters
    ----------
    design : the design the scenarios will be simulated under
    scenarios : as read from ``path``, in file order
    path : the scenario file, for messages

    Raises
    ------
    ConfigError
        naming each scenario whose ``dlt_prob`` has the wrong length.
    """
    report = _Report(os.fspath(path))
    where = f" ({design.path})" if design.path else ""
    for index, scenario in enumerate(scenarios, start=1):
        if scenario.uses_ntcp and design.doses is None:
            report.add(
                f"scenario[{index}] ({show_value(scenario.name)}): DLTs come from organ doses, but "
                f"design {show_value(design.name)}{where} gives no activity per level ('doses')"
            )
        if scenario.n_levels is not None and scenario.n_levels != design.n_levels:
            report.add(
                f"scenario[{index}] ({show_value(scenario.name)}) dlt_prob: has "
                f"{scenario.n_levels} values, but design {show_value(design.name)}{where} "
                f"has {design.n_levels} levels"
            )
    report.raise_if_any()
