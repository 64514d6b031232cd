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
by its method in the registry (:data:`theradose.methods.METHODS`): this module reads the common
parts and hands the section to the method's own ``SPEC``, which builds the method with its
constraints and stopping rules. To add a method, add its module to :mod:`theradose.methods`; to
add a top-level key, add it to :data:`DESIGN_KEYS` and read it in :func:`design_from_dict`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from theradose.backfill import Backfill, closes_table
from theradose.constraints import OrganDoseLimits
from theradose.design import Design
from theradose.limits import MAX_COHORT_SIZE, MAX_LEVELS, MAX_PATIENTS
from theradose.methods import METHODS
from theradose.methods.spec import DesignFields, MethodSpec
from theradose.optimisation import read_optimisation
from theradose.scenario import Scenario
from theradose.stopping import MaxAtDose, SafetyStop
from theradose.timing import ACCRUALS, DEFAULT_ONSET_SHAPE, ONSETS, Onset, Timing
from theradose.validation import (
    CLOSED_UNIT,
    OPEN_UNIT,
    POSITIVE,
    ConfigError,
    FileReport,
    Interval,
    TomlTable,
    read_toml,
    show_value,
    suggest,
    toml_kind,
)

__all__ = [
    "ConfigError",
    "check_scenarios_fit",
    "design_from_dict",
    "load_design",
    "load_scenarios",
    "scenarios_from_dict",
]

DEFAULT_COHORT_SIZE = 3

# ---------------------------------------------------------------------------------------------
# Designs


STOPPING_KEYS = ("safety_cutoff", "safety_min_n", "max_at_dose")


def _parse_stopping(top: TomlTable, spec: MethodSpec | None) -> dict[str, Any]:
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
        "safety_min_n": table.integer("safety_min_n", 1, default=3, maximum=MAX_PATIENTS),
        "max_at_dose": table.integer("max_at_dose", 1, maximum=MAX_PATIENTS),
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
    "select_tried_only",
    "backfill",
    "optimisation",
)
DOSIMETRY_KEYS = (
    "cycles",
    "measurement_cv",
    "patient_cap",
    "cap_rule",
    "correlation",
    "dose_basis",
    "prescribe_to",
    "max_activity_gbq",
    "organ",
)
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


# What a required key of a dosimetry record holds, for "missing key" messages.
_REQUIRED = {
    "name": ' (the organ, e.g. "kidney")',
    "gy_per_gbq_median": " (median absorbed dose per unit activity, Gy/GBq, > 0)",
    "gy_per_gbq_cv": " (between-patient coefficient of variation of Gy/GBq, e.g. 0.4 for 40%)",
    "td50_gy": " (the absorbed dose, Gy, with a 50% probability of a DLT from this organ)",
}


def _build_record(table: TomlTable, factory, values: dict[str, Any]):
    """``factory(**values)`` from theradose.dosimetry, its problems reported in this table."""
    from theradose.dosimetry import DosimetryError

    fields = dataclasses.fields(factory)
    known = {f.name for f in fields}
    values = {k: v for k, v in values.items() if k in known}  # unknown keys: reported already
    missing = [
        f.name
        for f in fields
        if f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    for name in missing:
        table.error(f"missing key '{name}'{_REQUIRED.get(name, '')}")
    if missing:
        return None
    try:
        return factory(**values)
    except DosimetryError as error:
        for message in error.messages:
            table.error(message)
    except TypeError as error:  # a value of the wrong type where the record compares numbers
        table.error(str(error))
    return None


def _read_dosimetry(top: TomlTable, fields: DesignFields) -> Any:
    """The ``[dosimetry]`` section: cycles, measurement error, capping and organ limits."""
    if "dosimetry" not in top.data:
        return None
    from theradose.dosimetry import Dosimetry, OrganModel

    table = top.section("dosimetry")
    table.check_keys(DOSIMETRY_KEYS)
    organs_data = table.data.get("organ", [])
    if not isinstance(organs_data, list) or not all(isinstance(o, Mapping) for o in organs_data):
        table.type_error("organ", organs_data, "an array of tables ([[dosimetry.organ]])")
        organs_data = []
    organs, ok = [], True
    for index, entry in enumerate(organs_data, start=1):
        label = f" ({show_value(entry['name'])})" if isinstance(entry.get("name"), str) else ""
        sub = TomlTable(table.report, entry, f"{table.where}organ[{index}]{label} ")
        sub.check_keys(ORGAN_KEYS)
        organ = _build_record(sub, OrganModel, dict(entry))
        ok &= organ is not None
        organs.append(organ)
    personalised = table.data.get("dose_basis") == "absorbed_dose"
    if (organs or personalised) and fields.doses is None:
        what = (
            "the prescribed absorbed dose (Gy) of each level"
            if personalised
            else "the activity of each level"
        )
        need = 'dose_basis = "absorbed_dose" needs' if personalised else "organ limits need"
        top.error(f"[dosimetry] {need} {what}: give 'doses'")
        ok = False
    values = {k: v for k, v in table.data.items() if k != "organ"}
    if not ok:
        return None
    return _build_record(table, Dosimetry, {"organs": tuple(organs), **values})


TIMING_KEYS = ("accrual_per_month", "accrual", "dlt_window_months", "efficacy_window_months")


def _read_timing(top: TomlTable, fields: DesignFields, spec: MethodSpec | None) -> None:
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
    # The efficacy assessment window: for a method that decides on responses (BOIN12 waits for
    # it before each decision; TITE-BOIN12 sees each response when it occurs within it, by
    # default within the DLT window).
    efficacy_window = None
    if spec is not None and spec.late_efficacy:
        efficacy_window = table.number("efficacy_window_months", POSITIVE, default=window)
    elif "efficacy_window_months" in table.data:
        if spec is not None and not spec.uses_efficacy and "optimisation" not in top.data:
            table.error(
                f"efficacy_window_months: only with a method that decides on responses "
                f"(boin12, tite-boin12) or a design with [optimisation] (its stage's responses), "
                f"not method = {show_value(spec.key)}"
            )
        else:
            efficacy_window = table.number("efficacy_window_months", POSITIVE)
    late = spec is not None and spec.late_efficacy
    if None not in (rate, window, accrual) and not (late and efficacy_window is None):
        fields.timing = Timing(rate, window, accrual, efficacy_window)


BACKFILL_KEYS = ("enabled", "max_per_level")


def _read_backfill(top: TomlTable) -> int | None:
    """The ``[backfill]`` section (Zhao et al. 2024, BF-BOIN): ``max_per_level`` when
    backfilling is enabled, else None (absent, ``enabled = false`` or invalid)."""
    if "backfill" not in top.data:
        return None
    table = top.section("backfill")
    table.check_keys(BACKFILL_KEYS)
    enabled = table.boolean("enabled", default=False)
    max_per_level = table.integer(
        "max_per_level",
        1,
        required="backfill patients per level, an integer >= 1" if enabled else "",
        maximum=MAX_PATIENTS,
        why="the most patients a design may enrol",
    )
    if enabled and "timing" not in top.data:
        top.error(
            "[backfill] enabled = true needs a [timing] section (accrual_per_month, "
            "dlt_window_months): patients are backfilled while a cohort's DLT window is open"
        )
        return None
    return max_per_level if enabled else None


def _read_levels(top: TomlTable, fields: DesignFields) -> None:
    fields.doses = top.numbers("doses", POSITIVE, "increasing")
    if fields.doses is not None and len(fields.doses) > MAX_LEVELS:
        top.error(f"doses: {len(fields.doses)} levels; at most {MAX_LEVELS} are allowed")
        fields.doses = None
    levels = top.integer("levels", 1, maximum=MAX_LEVELS, why="the most levels allowed")
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


def _read_start_level(top: TomlTable, fields: DesignFields) -> None:
    start = top.integer("start_level", 1, default=1)
    if start is None or fields.n_levels is None:
        return
    if start > fields.n_levels:
        top.value_error(
            "start_level", start, f"must be an integer in 1..{fields.n_levels} (the levels)"
        )
        return
    fields.start_level = start - 1


def _read_sample_size(top: TomlTable, fields: DesignFields, spec: MethodSpec | None) -> None:
    fields.cohort_size = top.integer(
        "cohort_size", 1, default=DEFAULT_COHORT_SIZE, maximum=MAX_COHORT_SIZE
    )
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
    max_patients = top.integer(
        "max_patients",
        1,
        default=default,
        required=required,
        maximum=MAX_PATIENTS,
        why="the most patients a design may enrol",
    )
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
    report = FileReport(path)
    if not isinstance(data, Mapping):
        report.add(f"must be a table of keys, got {toml_kind(data)}")
        report.raise_if_any()
    if isinstance(data.get("scenario"), list) and not any(k in data for k in DESIGN_KEYS):
        report.add(
            "holds [[scenario]] tables: this is a scenario file, not a design (give it with "
            "--scenarios)"
        )
        report.raise_if_any()
    top = TomlTable(report, data)
    top.check_keys(DESIGN_KEYS + tuple(dict.fromkeys(METHODS.section(k) for k in METHODS)))

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
    select_tried_only = top.boolean("select_tried_only")
    _read_sample_size(top, fields, spec)

    sections = dict.fromkeys(METHODS.section(k) for k in METHODS)
    for section in sections:
        if spec is not None and section in data and section != spec.section:
            owners = " or ".join(show_value(k) for k in METHODS if METHODS.section(k) == section)
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
    backfill_per_level = _read_backfill(top)
    optimisation = read_optimisation(top, fields, spec)

    report.raise_if_any()
    method, constraints, stopping = spec.build(fields, options)
    if dosimetry is not None and dosimetry.organs:
        constraints = constraints + (OrganDoseLimits(dosimetry, fields.doses),)
    stopping = stopping + _stopping_rules(method, stopping_options)
    backfill = None
    if backfill_per_level is not None:
        n_max = fields.max_patients + backfill_per_level * max(fields.n_levels - 1, 0)
        if getattr(method, "max_patients", n_max) < n_max:
            # A level may hold more than max_patients with its backfill patients: the method's
            # tables (decisions, elimination) must cover every count it can reach.
            method = dataclasses.replace(method, max_patients=n_max)
        backfill = Backfill(backfill_per_level, closes_table(method, fields.target, n_max))
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
        select_tried_only=select_tried_only,
        backfill=backfill,
        optimisation=optimisation,
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
    return design_from_dict(read_toml(path), path)


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
    "eff_prob",
    "efficacy",
    "tox_eff_correlation",
    "response_onset",
    "response_onset_shape",
)
EFFICACY_KEYS = ("model", "organ", "d50_gy", "gamma50", "dose")


def _read_organ_truth(table: TomlTable) -> Any:
    """``[scenario.organ.<name>]``, ``[scenario.toxicity]`` and ``[scenario.efficacy]`` →
    DosimetryTruth (or None)."""
    data = table.data
    if "organ" not in data and "toxicity" not in data and "efficacy" not in data:
        return None
    from theradose.dosimetry import DosimetryTruth, Efficacy, OrganNtcp, OrganTruth, Toxicity

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
                guess = suggest(key, TOXICITY_KEYS)
                hint = f"did you mean '{guess}'?" if guess else "allowed: model, background_prob"
                tox.error(f"unknown key '{key}' ({hint}; an organ's NTCP is a [toxicity.<organ>])")
                continue
            sub = tox.section(key)
            sub.check_keys(NTCP_KEYS)
            ntcps.append(_build_record(sub, OrganNtcp, {"name": key, **sub.data}))
        scalars = {k: tox.data[k] for k in TOXICITY_KEYS if k in tox.data}
        if None not in ntcps:
            toxicity = _build_record(tox, Toxicity, {**scalars, "organs": tuple(ntcps)})
    efficacy = None
    if "efficacy" in data:
        sub = table.section("efficacy")
        if "tox_eff_correlation" in sub.data:
            sub.error(
                "tox_eff_correlation: give it in the [[scenario]] table itself, beside "
                "[scenario.efficacy] (as with eff_prob)"
            )
        sub.check_keys((*EFFICACY_KEYS, "tox_eff_correlation"))
        efficacy = _build_record(sub, Efficacy, dict(sub.data))
        if efficacy is None:
            return None
    if None in organs or ("toxicity" in data and toxicity is None):
        return None
    values = {"organs": tuple(organs), "toxicity": toxicity, "efficacy": efficacy}
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
    report = FileReport(path)
    if not isinstance(data, Mapping):
        report.add(f"must be a table of keys, got {toml_kind(data)}")
        report.raise_if_any()
    top = TomlTable(report, data)
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
        table = TomlTable(report, entry, f"scenario[{index}]{label} ")
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
        # Efficacy: the true response probability of each level (any shape: it may plateau or
        # fall) and the copula correlation of DLT and response within a patient.
        # Or each patient's response probability from their own tumour dose ([efficacy]).
        eff_prob = table.numbers("eff_prob", CLOSED_UNIT, "any")
        rho = table.number("tox_eff_correlation", Interval(-1.0, 1.0), default=0.0)
        given = "eff_prob" in table.data or "efficacy" in table.data
        if "tox_eff_correlation" in table.data and not given:
            table.error(
                "tox_eff_correlation: only with eff_prob (the response probabilities) or "
                "[scenario.efficacy] (responses from each patient's tumour dose)"
            )
        if "eff_prob" in table.data and "efficacy" in table.data:
            table.error(
                "eff_prob: not with [scenario.efficacy] (there each patient's response "
                "probability follows their own tumour dose); give one or the other"
            )
        if eff_prob is not None and dlt_prob and len(eff_prob) != len(dlt_prob):
            table.error(
                f"eff_prob: has {len(eff_prob)} values, dlt_prob {len(dlt_prob)}; give one "
                "response probability per level"
            )
        response_onset = _read_response_onset(table)
        if name is not None and dlt_prob is not None and kind is not None and shape is not None:
            scenarios.append(
                Scenario(
                    name,
                    dlt_prob,
                    Onset(kind, shape),
                    truth,
                    eff_prob,
                    rho or 0.0,
                    response_onset=response_onset or Onset(),
                    source=dict(entry),
                )
            )
    report.raise_if_any()
    return scenarios


def _read_response_onset(table: TomlTable) -> Onset | None:
    """``response_onset`` ("uniform", "late", "early") and ``response_onset_shape``: when in the
    efficacy window a response occurs (None when invalid; errors go to the table's report)."""
    kind = table.choice("response_onset", ONSETS) or (
        "uniform" if "response_onset" not in table.data else None
    )
    shape = table.number("response_onset_shape", POSITIVE, default=DEFAULT_ONSET_SHAPE)
    if "response_onset_shape" in table.data and kind == "uniform":
        table.error('response_onset_shape: only with response_onset = "late" or "early"')
    efficacy = "eff_prob" in table.data or "efficacy" in table.data
    if "response_onset" in table.data and not efficacy:
        table.error(
            "response_onset: only with eff_prob (the response probabilities) or "
            "[scenario.efficacy]"
        )
    return None if kind is None or shape is None else Onset(kind, shape)


def load_scenarios(path: str | os.PathLike[str]) -> list[Scenario]:
    """Read a scenario file (TOML); see :func:`scenarios_from_dict`."""
    path = os.fspath(path)
    return scenarios_from_dict(read_toml(path), path)


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
    report = FileReport(os.fspath(path))
    where = f" ({design.path})" if design.path else ""
    for index, scenario in enumerate(scenarios, start=1):
        if scenario.uses_ntcp and design.doses is None:
            report.add(
                f"scenario[{index}] ({show_value(scenario.name)}): DLTs come from organ doses, but "
                f"design {show_value(design.name)}{where} gives no activity per level ('doses')"
            )
        elif scenario.tumour_response is not None and design.doses is None:
            report.add(
                f"scenario[{index}] ({show_value(scenario.name)}): responses come from tumour "
                f"doses ([efficacy]), but design {show_value(design.name)}{where} gives no "
                "activity per level ('doses')"
            )
        if design.optimisation is not None and not scenario.efficacy:
            report.add(
                f"scenario[{index}] ({show_value(scenario.name)}): design "
                f"{show_value(design.name)}{where} has [optimisation], whose stage draws "
                "responses; give eff_prob, the true response probability of each level, or "
                "[scenario.efficacy]"
            )
        elif design.method.uses_efficacy and not scenario.efficacy:
            report.add(
                f"scenario[{index}] ({show_value(scenario.name)}): design "
                f"{show_value(design.name)}{where} (method {design.method.key}) decides on "
                "responses; give eff_prob, the true response probability of each level, or "
                "[scenario.efficacy]"
            )
        dlt_fits = scenario.n_levels is None or scenario.n_levels == design.n_levels
        eff_prob = scenario.eff_prob
        if eff_prob is not None and len(eff_prob) != design.n_levels and dlt_fits:
            report.add(
                f"scenario[{index}] ({show_value(scenario.name)}) eff_prob: has "
                f"{len(scenario.eff_prob)} values, but design {show_value(design.name)}{where} "
                f"has {design.n_levels} levels"
            )
        if scenario.n_levels is not None and scenario.n_levels != design.n_levels:
            report.add(
                f"scenario[{index}] ({show_value(scenario.name)}) dlt_prob: has "
                f"{scenario.n_levels} values, but design {show_value(design.name)}{where} "
                f"has {design.n_levels} levels"
            )
    report.raise_if_any()
