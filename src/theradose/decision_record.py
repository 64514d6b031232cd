"""Decision records: what a dose-escalation meeting can file about one interim recommendation.

A record holds who asked and when, the software that answered, the exact inputs (the design file
and the data, byte for byte, with their SHA-256), the design as theradose read it (every
parameter, defaults included), the data as read, the decision and the rule behind it, the
estimates per level with the organ-dose exceedance and admissibility, and, for an MCMC
posterior, the sampler's settings and diagnostics. :func:`theradose.verification.verify_record`
recomputes the decision from the record's own inputs; :mod:`theradose.ledger` chains records into
a trial's history.

File contract (``format`` "theradose-decision-record", ``format_version`` 1; keys may be added,
never removed or renamed; levels and patients 1-based, as everywhere a user reads them):

- ``format``, ``format_version``; ``created_utc`` (ISO 8601, seconds, ``Z``); ``by`` and
  ``note`` (``--by``, ``--note``; null when not given);
- ``software``: ``theradose`` (its version), ``python``, ``platform``, ``packages`` (name →
  version: numpy and scipy, plus pymc, arviz and pytensor when the MCMC engine ran);
- ``command``: the command line (``sys.argv``) and ``cwd``, the folder it ran in;
- ``design``: ``path`` (as given), ``resolved_path``, ``sha256`` (of the file's bytes),
  ``text`` (the file's text, exactly: its UTF-8 encoding has that hash), ``source`` (the parsed
  TOML), ``name``, ``method``, ``parameters`` (:func:`design_parameters`: every parameter as
  theradose holds it, defaults included) and ``protocol`` (the design as protocol text);
- ``data``: ``kind`` ("outcomes" or "patients"), ``path``, ``resolved_path`` (null for an outcome
  string), ``sha256`` (of the patient file's bytes, or of the outcome string in UTF-8), ``text``
  (the file's text or the outcome string), ``outcomes`` (the cohorts as an outcome string),
  ``cohorts`` (per cohort: ``cohort``, ``level``, ``dlt`` flags 0/1), ``patients`` (per patient:
  ``patient``, ``level``, ``dlt``, ``followup_days``, ``dlt_day``, ``pending``, ``backfill``
  when the file has that column, ``response``, ``response_day`` and ``pending_response`` when
  it has a ``response`` column, and
  ``<organ>_gy_per_gbq`` per organ of the design; null for an outcome string), ``n_patients``,
  ``n_dlt``;
- ``options``: ``engine`` ("grid" or "mcmc"), ``dlt_window_days`` (``--dlt-window-days`` or
  null), ``mcmc`` (``draws``, ``tune``, ``chains``, ``seed``, ``target_accept``; null for grid);
- ``decision``: ``action`` ("next_level", "stop", "wait", "suspend" or "start_up_wait"),
  ``next_level``, ``next_activity``, ``stop_reason`` (a StopReason name in lower case),
  ``stop_reason_text``, ``rule`` (the rule that decided, in words), ``basis`` (the method's
  decision basis at the current level, as in the recommendation JSON), ``rule_states`` (where
  each stopping rule stands), ``mtd``, ``mtd_activity``, ``mtd_on_complete_data``,
  ``pending_patients``, ``review_in_days``, ``review_on``, ``complete_in_days``,
  ``inadmissible_levels`` (levels the organ-dose limits rule out), and, for a design with
  ``[backfill]`` only, ``backfill`` (the levels open for backfilling, their room and why the
  others are closed: :func:`theradose.report.backfill_to_dict`), and, for a design deciding on
  responses given a patient file only, ``pending_response_patients`` (still within the efficacy
  window without a response);
- ``levels``: per level ``level``, ``activity``, ``n``, ``dlt``, ``pending`` (patient files),
  ``response`` and ``pending_response`` (patient files, designs deciding on responses) and
  the method's estimates, ``p_exceed_<organ>`` and ``admissible`` when the design has organ
  limits (the same entries as the recommendation JSON's ``levels``);
- ``organ_limits``: per organ ``organ``, ``limit_gy`` or ``limit_bed_gy``, ``max_exceed_prob``,
  ``cycles``;
- ``model`` (the posterior's parameters, when the method has a model), ``warnings``, ``notes``,
  ``deviations``;
- ``mcmc``: null, or ``sampler``, ``seed``, ``draws``, ``tune``, ``chains``, ``target_accept``,
  ``divergences``, ``seconds``, ``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail`` and
  ``diagnostics`` (per parameter ``r_hat``, ``ess_bulk``, ``ess_tail``);
- ``printed``: the recommendation as the terminal showed it (plain text);
- ``record_sha256``: SHA-256 of the canonical JSON (:func:`canonical_json`) of every other key,
  so that an edit of a record file is detected without its ledger.

Files are read once, as bytes: the hash, the embedded text and what the recommendation used
are the same bytes (a file that changes while ``recommend`` runs is an error).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import io
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import theradose
from theradose.design import Design

RECORD_FORMAT = "theradose-decision-record"
RECORD_FORMAT_VERSION = 1
HASH_KEY = "record_sha256"
BASE_PACKAGES = ("numpy", "scipy")
MCMC_PACKAGES = ("pymc", "arviz", "pytensor")


class RecordError(ValueError):
    """A decision record that cannot be read or built; ``messages`` holds one line per problem."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


# ---------------------------------------------------------------------------------------------
# Canonical JSON and hashes


def canonical_json(value: Any) -> bytes:
    """The canonical form that records and ledger lines are hashed over: keys sorted, no
    whitespace, UTF-8, no NaN (JSON null instead, via :func:`theradose.report.json_ready`).

    >>> canonical_json({"b": 1, "a": [0.5, None]})
    b'{"a":[0.5,null],"b":1}'
    """
    from theradose.report import json_ready

    return canonical_text(json_ready(value)).encode("utf-8")


def canonical_text(value: Any) -> str:
    """:func:`canonical_json` of a value that is JSON already (parsed JSON), as text."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha256_hex(data: bytes | str) -> str:
    """SHA-256 of bytes, or of a string's UTF-8 encoding, as 64 hex digits."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def record_hash(record: Mapping[str, Any], parsed: bool = False) -> str:
    """SHA-256 of the canonical JSON of a record without its ``record_sha256`` (``parsed``:
    the record is parsed JSON, which needs no conversion)."""
    rest = {k: v for k, v in record.items() if k != HASH_KEY}
    return sha256_hex(canonical_text(rest) if parsed else canonical_json(rest))


# ---------------------------------------------------------------------------------------------
# The inputs, read once


@dataclass(frozen=True)
class RecordInputs:
    """The bytes a recommendation was made from, as text, with their hashes.

    ``data_kind`` "outcomes": ``data_text`` is the outcome string (``data_path`` None);
    "patients": the patient file's text.
    """

    design_path: str
    design_text: str
    data_kind: str
    data_text: str
    data_path: str | None = None

    @property
    def design_sha256(self) -> str:
        return sha256_hex(self.design_text)

    @property
    def data_sha256(self) -> str:
        return sha256_hex(self.data_text)

    def design(self) -> Design:
        """The design, built from the text (:func:`theradose.config.design_from_dict`)."""
        from theradose.config import design_from_dict
        from theradose.validation import parse_toml

        # parse_toml: as read_toml words a bad file (too long an integer, too deep, not TOML)
        return design_from_dict(parse_toml(self.design_text, self.design_path), self.design_path)

    def patients(self, design: Design, dlt_window_days: float | None = None):
        """The patient file's records, read from the text as from the file (for ``design``,
        with ``--dlt-window-days`` when given: :func:`theradose.study.read_design_patients`)."""
        from theradose.study import read_design_patients
        from theradose.timing import DAYS_PER_MONTH

        window = None if dlt_window_days is None else dlt_window_days / DAYS_PER_MONTH
        text = self.data_text.removeprefix("\ufeff")  # as encoding="utf-8-sig" reads it
        return read_design_patients(
            io.StringIO(text, newline=""), design, window, name=self.data_path
        )


def _read_text(path: str | os.PathLike[str]) -> str | None:
    """A file's text (UTF-8, exactly its bytes), or None when it cannot be read as such: the
    loaders then say why, in their own words."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def read_inputs(
    design: str | os.PathLike[str],
    outcomes: str | None = None,
    patients: str | os.PathLike[str] | None = None,
) -> RecordInputs:
    """Read the design file and the data (a patient file, or an outcome string) once.

    Raises
    ------
    theradose.config.ConfigError
        For a design file that cannot be read (the message :func:`~theradose.config.load_design`
        gives).
    theradose.patients.PatientFileError
        For a patient file that cannot be read.
    """
    from theradose.config import ConfigError, load_design
    from theradose.patients import PatientFileError, read_patients

    design_text = _read_text(design)
    if design_text is None:
        load_design(design)  # raises, saying why
        raise ConfigError([f"{os.fspath(design)}: cannot read"])
    if patients is None:
        return RecordInputs(os.fspath(design), design_text, "outcomes", outcomes or "")
    data_text = _read_text(patients)
    if data_text is None:
        read_patients(patients, 1)  # raises, saying why
        raise PatientFileError([f"{os.fspath(patients)}: cannot read"])
    return RecordInputs(os.fspath(design), design_text, "patients", data_text, os.fspath(patients))


def run_inputs(
    inputs: RecordInputs,
    engine: str = "grid",
    mcmc_options: Mapping[str, Any] | None = None,
    dlt_window_days: float | None = None,
):
    """The recommendation (:class:`theradose.study.RecommendationResult`) on ``inputs``: what
    ``theradose recommend`` computes, from the text rather than the files.

    Raises
    ------
    theradose.config.ConfigError, theradose.patients.PatientFileError,
    theradose.outcomes.OutcomeError
        As :func:`theradose.study.run_recommendation` and
        :func:`theradose.study.run_patient_recommendation` do.
    """
    from theradose.config import ConfigError
    from theradose.patients import PatientFileError
    from theradose.study import run_patient_recommendation, run_recommendation

    design = inputs.design()
    if inputs.data_kind == "outcomes":
        return run_recommendation(design, inputs.data_text, engine, dict(mcmc_options or {}))
    if engine != "grid":
        raise ConfigError(["--engine mcmc takes the trial's data as --outcomes, not --patients"])
    try:
        records = inputs.patients(design, dlt_window_days)
    except PatientFileError as file_error:
        try:  # every problem at once, the missing window too, as for a file
            run_patient_recommendation(design, _no_patients(), dlt_window_days)
        except ConfigError as window_error:
            raise PatientFileError([*window_error.messages, *file_error.messages]) from None
        raise
    return run_patient_recommendation(design, records, dlt_window_days)


def _no_patients():
    """No patients: run with them, a recommendation says only whether the window is known."""
    from theradose.patients import PatientRecords

    empty = np.empty(0)
    return PatientRecords(np.empty(0, dtype=np.int32), np.empty(0, dtype=bool), empty, empty)


# ---------------------------------------------------------------------------------------------
# The design's parameters


def _plain(value: Any, seen: dict[int, str], where: str) -> Any:
    """JSON-friendly form of a design part: a dataclass as its declared fields (derived and
    cached fields, declared ``repr=False`` or ``compare=False``, left out) with its type; an
    object met before as ``{"same_as": where it was}``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if id(value) in seen:
            return {"same_as": seen[id(value)]}
        seen[id(value)] = where
        out: dict[str, Any] = {"type": type(value).__name__}
        for f in dataclasses.fields(value):
            if f.name.startswith("_") or not (f.repr and f.compare):
                continue
            out[f.name] = _plain(getattr(value, f.name), seen, f"{where}.{f.name}")
        return out
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v, seen, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, seen, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str | np.generic):
        return value
    return repr(value)


def _described(part: Any, plain: Any, *args: Any) -> Any:
    if isinstance(plain, dict) and "same_as" not in plain:
        try:
            return {**plain, "text": part.describe(*args)}
        except (AttributeError, NotImplementedError, TypeError):
            return plain
    return plain


def design_parameters(design: Design) -> dict[str, Any]:
    """Every parameter of a design as theradose holds it, defaults included.

    The top-level keys are as in a design file (``start_level`` 1-based, ``select_tried_only``
    resolved to the method's convention when the file leaves it out); ``method``,
    ``constraints``, ``stopping``, ``timing`` and ``dosimetry`` are the objects' declared fields
    (levels inside them 0-based, as the objects hold them), each with its ``type`` and, where it
    has one, its protocol ``text``. A part that repeats another (a safety stop holding the
    method) is ``{"same_as": "method"}``.
    """
    seen: dict[int, str] = {}
    method = _described(design.method, _plain(design.method, seen, "method"))
    timing = _described(design.timing, _plain(design.timing, seen, "timing"))
    dosimetry = _plain(design.dosimetry, seen, "dosimetry")
    if design.dosimetry is not None:
        dosimetry = _described(design.dosimetry, dosimetry)
    constraints = [
        _described(c, _plain(c, seen, f"constraints[{i}]"))
        for i, c in enumerate(design.constraints)
    ]
    stopping = [
        _described(r, _plain(r, seen, f"stopping[{i}]")) for i, r in enumerate(design.stopping)
    ]
    return {
        "name": design.name,
        "method_key": design.method_key,
        "target": design.target,
        "n_levels": design.n_levels,
        "doses": None if design.doses is None else list(design.doses),
        "dose_unit": design.dose_unit,
        "start_level": design.start_level + 1,
        "cohort_size": design.cohort_size,
        "max_patients": design.max_patients,
        "select_tried_only": design.selects_tried_only,
        "method": method,
        "constraints": constraints,
        "stopping": stopping,
        "timing": timing,
        "dosimetry": dosimetry,
    }


def _organ_limits(design: Design) -> list[dict[str, Any]]:
    if design.dosimetry is None:
        return []
    return [
        {
            "organ": organ.name,
            "limit_gy": organ.limit_gy,
            "limit_bed_gy": organ.limit_bed_gy,
            "max_exceed_prob": organ.max_exceed_prob,
            "cycles": design.dosimetry.cycles,
        }
        for organ in design.dosimetry.organs
    ]


# ---------------------------------------------------------------------------------------------
# The record


def software_versions(mcmc: bool = False) -> dict[str, Any]:
    """theradose, Python, the platform and the packages the decision used."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in BASE_PACKAGES + (MCMC_PACKAGES if mcmc else ()):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "theradose": theradose.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
    }


def _action(rec) -> str:
    if rec.stop:
        return "stop"
    if rec.wait:
        return "wait"
    if rec.start_up_wait:
        return "start_up_wait"
    if rec.suspended:
        return "suspend"
    return "next_level"


_DIRECTIONS = {1: "escalate", 0: "stay", -1: "de-escalate"}


def _rule_text(result) -> str:
    """The rule that decided, in one line."""
    rec, design = result.recommendation, result.design
    action = _action(rec)
    if action == "stop":
        return f"stopping rule: {rec.stop_reason.label}"
    if action == "wait":
        parts = []
        for which, where in (
            (rec.pending_patients, "in the DLT window without a DLT"),
            (rec.pending_response_patients, "in the efficacy window without a response"),
        ):
            if which:
                shown = [str(p) for p in which]
                listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"
                who = f"patient {listed} is" if len(shown) == 1 else f"patients {listed} are"
                parts.append(f"{who} still {where}")
        return "the design decides on complete data and " + "; ".join(parts)
    if action == "start_up_wait":
        return "the start-up moves up only once the last patient has been followed long enough"
    if action == "suspend":
        if rec.pending_response:
            return (
                "the design's suspension rule holds accrual for more follow-up (too many of the "
                "current level's patients pending for the DLT or for the response)"
            )
        return "the design's suspension rule holds accrual for more follow-up"
    basis = rec.basis
    if basis and "direction" in basis:
        direction = _DIRECTIONS.get(int(basis["direction"]), str(basis["direction"]))
        text = f"{design.method_key} at level {int(basis['level']) + 1}: {direction}"
    else:
        text = f"{design.method_key}: the method's next level"
    return text + ", then the constraints and stopping rules (" + _constraint_names(design) + ")"


def _constraint_names(design: Design) -> str:
    names = [type(c).__name__ for c in design.constraints]
    return ", ".join(names) if names else "no constraints"


def _printed(result) -> str:
    from rich.console import Console

    from theradose import report

    # Plain text into a buffer, also inside Jupyter (which rich would otherwise display).
    console = Console(
        file=io.StringIO(), width=200, record=True, color_system=None, force_jupyter=False
    )
    console.print(report.recommendation_rich(result))
    if result.mcmc is not None:
        console.print(report.mcmc_diagnostics_rich(result.mcmc))
    return console.export_text()


def _mcmc_section(result, options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    from theradose.report import mcmc_to_dict

    run = result.mcmc
    if run is None:
        return None
    return {
        **_sampler_settings(options),
        **mcmc_to_dict(run),
        "max_r_hat": run.max_r_hat,
        "min_ess_bulk": run.min_ess_bulk,
        "min_ess_tail": run.min_ess_tail,
    }


def _sampler_settings(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """draws, tune, chains, seed, target_accept: those given, the sampler's defaults for the
    rest."""
    from theradose.mcmc import McmcSampler

    sampler = McmcSampler(**dict(options or {}))
    keys = ("draws", "tune", "chains", "seed", "target_accept")
    return {key: getattr(sampler, key) for key in keys}


def _data_section(result, inputs: RecordInputs, cwd: str) -> dict[str, Any]:
    from theradose.outcomes import format_outcomes
    from theradose.report import recommendation_to_dict

    design, rec = result.design, result.recommendation
    cohorts = [
        {"cohort": i + 1, "level": cohort[0] + 1, "dlt": [int(flag) for flag in cohort[1]]}
        | ({"response": [int(flag) for flag in cohort[2]]} if len(cohort) > 2 else {})
        for i, cohort in enumerate(result.cohorts)
    ]
    patients = None
    if result.patients is not None:
        patients = recommendation_to_dict(result)["patients"]
        measured = result.patients.gy_per_gbq
        organs = () if design.dosimetry is None else design.dosimetry.names
        for i, entry in enumerate(patients):
            for j, organ in enumerate(organs):
                value = None if measured is None else float(measured[i, j])
                entry[f"{organ}_gy_per_gbq"] = value
    return {
        "kind": inputs.data_kind,
        "path": inputs.data_path,
        "resolved_path": None
        if inputs.data_path is None
        else os.path.normpath(os.path.join(cwd, inputs.data_path)),
        "sha256": inputs.data_sha256,
        "text": inputs.data_text,
        "outcomes": format_outcomes(result.cohorts),
        "cohorts": cohorts,
        "patients": patients,
        "n_patients": int(sum(rec.n)),
        "n_dlt": int(sum(rec.y)),
    }


def decision_record(
    result,
    inputs: RecordInputs,
    *,
    engine: str = "grid",
    mcmc_options: Mapping[str, Any] | None = None,
    dlt_window_days: float | None = None,
    by: str | None = None,
    note: str | None = None,
    argv: Sequence[str] | None = None,
    now: datetime.datetime | None = None,
    cwd: str | None = None,
) -> dict[str, Any]:
    """The decision record of a recommendation (see the module's file contract).

    Parameters
    ----------
    result : theradose.study.RecommendationResult
        The recommendation made from ``inputs`` (:func:`run_inputs`).
    inputs : RecordInputs
        The design and data it was made from.
    engine, mcmc_options, dlt_window_days : the options it was made with
    by, note : who asked, and a free note (``--by``, ``--note``)
    argv : the command line; default ``sys.argv``
    now : the time of the record; default now (UTC)
    cwd : the folder relative paths are taken from; default the current one

    Returns
    -------
    dict
        JSON-ready, with its ``record_sha256``.
    """
    from theradose.report import json_ready, recommendation_to_dict

    cwd = os.getcwd() if cwd is None else cwd
    now = datetime.datetime.now(datetime.UTC) if now is None else now
    design, rec = result.design, result.recommendation
    shown = recommendation_to_dict(result)
    decision = {
        "action": _action(rec),
        "next_level": shown["next_level"],
        "next_activity": shown["next_activity"],
        "stop_reason": shown["stop_reason"],
        "stop_reason_text": shown["stop_reason_text"],
        "rule": _rule_text(result),
        "basis": shown["basis"],
        "rule_states": shown["rule_states"],
        "mtd": shown["mtd"],
        "mtd_activity": shown["mtd_activity"],
        "mtd_on_complete_data": shown["mtd_on_complete_data"],
        "pending_patients": shown["pending_patients"],
        "review_in_days": shown["review_in_days"],
        "review_on": shown["review_on"],
        "complete_in_days": shown["complete_in_days"],
        "inadmissible_levels": [
            entry["level"] for entry in shown["levels"] if entry.get("admissible") is False
        ],
    }
    if "backfill" in shown:  # a design with [backfill] only: other records stay as they were
        decision["backfill"] = shown["backfill"]
    if "pending_response_patients" in shown:  # responses with follow-up only (as above)
        decision["pending_response_patients"] = shown["pending_response_patients"]
    record = {
        "format": RECORD_FORMAT,
        "format_version": RECORD_FORMAT_VERSION,
        "created_utc": now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "by": by,
        "note": note,
        "software": software_versions(mcmc=result.mcmc is not None),
        "command": {"argv": list(sys.argv if argv is None else argv), "cwd": cwd},
        "design": {
            "path": inputs.design_path,
            "resolved_path": os.path.normpath(os.path.join(cwd, inputs.design_path)),
            "sha256": inputs.design_sha256,
            "text": inputs.design_text,
            "source": design.source,
            "name": design.name,
            "method": design.method_key,
            "parameters": design_parameters(design),
            "protocol": _protocol_lines(design),
        },
        "data": _data_section(result, inputs, cwd),
        "options": {
            "engine": engine,
            "dlt_window_days": dlt_window_days,
            "mcmc": _sampler_settings(mcmc_options) if engine == "mcmc" else None,
        },
        "decision": decision,
        "levels": shown["levels"],
        "organ_limits": _organ_limits(design),
        "model": dict(rec.model_summary),
        "warnings": list(rec.warnings),
        "notes": list(rec.notes),
        "deviations": list(rec.deviations),
        "mcmc": _mcmc_section(result, mcmc_options),
        "printed": _printed(result),
    }
    record = json_ready(record)
    record[HASH_KEY] = record_hash(record)
    return record


def _protocol_lines(design: Design) -> list[str]:
    from theradose.report import design_header_lines

    return design_header_lines(design)[:-1]  # the last line names the version and file


def recommend_recorded(
    design: str | os.PathLike[str],
    outcomes: str | None = None,
    patients: str | os.PathLike[str] | None = None,
    *,
    engine: str = "grid",
    mcmc_options: Mapping[str, Any] | None = None,
    dlt_window_days: float | None = None,
    by: str | None = None,
    note: str | None = None,
    argv: Sequence[str] | None = None,
):
    """What ``theradose recommend`` does: the recommendation and its decision record, from the
    files read once.

    Returns
    -------
    (RecommendationResult, dict)
    """
    inputs = read_inputs(design, outcomes, patients)
    result = run_inputs(inputs, engine, mcmc_options, dlt_window_days)
    record = decision_record(
        result,
        inputs,
        engine=engine,
        mcmc_options=mcmc_options,
        dlt_window_days=dlt_window_days,
        by=by,
        note=note,
        argv=argv,
    )
    return result, record


# ---------------------------------------------------------------------------------------------
# Files


def write_record(record: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a record as indented JSON, atomically."""
    from theradose.report import to_json, write_atomic

    write_atomic(path, to_json(record))


def recommendation_json(result, record: Mapping[str, Any]) -> dict[str, Any]:
    """The recommendation JSON (:func:`theradose.report.recommendation_to_dict`) with the
    decision record under ``record``: what ``recommend --json`` writes."""
    from theradose.report import recommendation_to_dict

    return {**recommendation_to_dict(result), "record": dict(record)}


def write_recommendation_json(result, record: Mapping[str, Any], path) -> None:
    """Write :func:`recommendation_json` atomically."""
    from theradose.report import to_json, write_atomic

    write_atomic(path, to_json(recommendation_json(result, record)))


REQUIRED_KEYS = ("format_version", "created_utc", "software", "design", "data", "decision")


def as_record(value: Any, name: str = "<record>") -> dict[str, Any]:
    """The decision record in parsed JSON: a record itself, or the ``record`` of a
    ``recommend --json`` file.

    Raises
    ------
    RecordError
        When it is neither, or lacks what a record needs (naming the missing keys).
    """
    if isinstance(value, Mapping) and value.get("format") != RECORD_FORMAT:
        inner = value.get("record")
        if isinstance(inner, Mapping) and inner.get("format") == RECORD_FORMAT:
            value = inner
    if not isinstance(value, Mapping) or value.get("format") != RECORD_FORMAT:
        raise RecordError(
            [f"{name}: not a theradose decision record (no format {RECORD_FORMAT!r})"]
        )
    missing = [key for key in REQUIRED_KEYS if key not in value]
    if missing:
        raise RecordError(
            [f"{name}: not a complete decision record (missing {', '.join(missing)})"]
        )
    version = value["format_version"]
    if not isinstance(version, int) or version > RECORD_FORMAT_VERSION:
        raise RecordError(
            [
                f"{name}: record format version {version!r}; this theradose reads up to "
                f"{RECORD_FORMAT_VERSION}"
            ]
        )
    objects = ("design", "data", "decision", "software")
    bad = [key for key in objects if not isinstance(value[key], Mapping)]
    bad += [
        key
        for key in ("options", "command")
        if value.get(key) is not None and not isinstance(value[key], Mapping)
    ]
    if bad:
        raise RecordError([f"{name}: {', '.join(bad)} must be JSON objects"])
    return dict(value)


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a decision record file (or a ``recommend --json`` file holding one).

    Raises
    ------
    RecordError
        For a file that cannot be read, is not JSON, or holds no record.
    """
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError([f"{name}: file not found"]) from None
    except IsADirectoryError:
        raise RecordError([f"{name}: is a directory, not a file"]) from None
    except UnicodeDecodeError as error:
        raise RecordError(
            [f"{name}: not UTF-8 text ({error.reason} at byte {error.start})"]
        ) from None
    except OSError as error:
        raise RecordError([f"{name}: cannot read: {error.strerror or error}"]) from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as error:
        raise RecordError([f"{name}: not JSON: {error}"]) from None
    return as_record(value, name)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")
