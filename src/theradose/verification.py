"""Verification of a decision record (:mod:`theradose.decision_record`): is the filed decision
still the one theradose gives on the filed inputs, and are those inputs the files on disk?

:func:`verify_record` checks, in turn,

1. the record's integrity: its ``record_sha256`` against the canonical JSON of the rest;
2. the embedded inputs: the design text and the data against their recorded SHA-256;
3. the software: the recorded theradose and package versions against those installed;
4. the files, when given or found at their recorded paths: their SHA-256 against the record's,
   and, when one differs, what changed (the design's keys, the data file's lines) and what the
   decision would be on the files as they are now (grid posteriors only: an MCMC run is not
   repeated for this);
5. the decision: recomputed from the record's own inputs and options (the embedded design text
   and data, the engine, the DLT window, the MCMC seed and settings) and compared with the
   recorded decision, estimates per level, organ-dose exceedance and admissibility, model,
   warnings, notes, deviations and MCMC diagnostics — numbers to a relative 1e-9.

Any difference fails the verification; a file that is not found is reported as not checked.
"""

from __future__ import annotations

import datetime
import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import theradose
from theradose.decision_record import (
    HASH_KEY,
    RecordError,
    RecordInputs,
    decision_record,
    record_hash,
    run_inputs,
    sha256_hex,
    software_versions,
)

REL_TOL = 1e-9
ABS_TOL = 1e-12
MAX_LISTED = 12  # differences listed per part of the record; the rest are counted

# Parts of a record recomputed and compared; "review_on" is a date counted from the day the
# recommendation was made, "seconds" the sampler's running time: neither is part of a decision.
COMPARED = ("decision", "levels", "organ_limits", "model", "warnings", "notes", "deviations")
COMPARED_DATA = ("outcomes", "cohorts", "patients", "n_patients", "n_dlt")
COMPARED_DESIGN = ("source", "name", "method", "parameters", "protocol")
IGNORED = {"review_on", "seconds"}


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify_record`.

    Attributes
    ----------
    same : what was checked and found as recorded, one line each
    differences : what differs, one line each (detail lines start with two spaces)
    unchecked : what could not be checked (a file not found), one line each
    decision : the recorded decision in words
    n_differences : how many differences (``differences`` adds detail lines)
    on_files : when a file differs from the record, the decision on the files as they are now,
        in words
    """

    same: tuple[str, ...] = ()
    differences: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()
    decision: str = ""
    n_differences: int = 0
    on_files: str | None = None

    @property
    def ok(self) -> bool:
        return self.n_differences == 0


def decision_text(decision: Mapping[str, Any]) -> str:
    """A recorded decision in words: 'next level 3 (7.4)', 'stop: …', 'wait (patient 9 …)'."""
    action = decision.get("action")
    if action == "stop":
        return f"stop ({decision.get('stop_reason_text') or decision.get('stop_reason')})"
    if action == "wait":
        # pending for the DLT or, for a design deciding on responses, for the response
        either = set(decision.get("pending_patients") or [])
        either |= set(decision.get("pending_response_patients") or [])
        pending = ", ".join(str(p) for p in sorted(either))
        return f"wait (pending: patient {pending})" if pending else "wait"
    if action == "suspend":
        return "suspend accrual"
    if action == "start_up_wait":
        return "wait (start-up)"
    activity = decision.get("next_activity")
    shown = f"next level {decision.get('next_level')}"
    return shown + (f" ({activity:g})" if isinstance(activity, int | float) else "")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


def _label(item: Any, index: int) -> str:
    if isinstance(item, Mapping):
        for key in ("level", "patient", "cohort", "organ"):
            if key in item:
                return f"[{key} {item[key]}]"
    return f"[{index + 1}]"


def differences(recorded: Any, now: Any, where: str = "") -> list[str]:
    """Where two JSON values differ, one line each: 'levels[level 3].p_est: 0.21, recorded
    0.2'; numbers equal to a relative 1e-9.

    >>> differences({"a": [1, 2.0]}, {"a": [1, 2.5]})
    ['a[2]: 2.5, recorded 2.0']
    """
    if isinstance(recorded, Mapping) and isinstance(now, Mapping):
        out = []
        for key in sorted(set(recorded) | set(now), key=str):
            if key in IGNORED:
                continue
            path = f"{where}.{key}" if where else str(key)
            if key not in now:
                out.append(f"{path}: absent, recorded {_short(recorded[key])}")
            elif key not in recorded:
                out.append(f"{path}: {_short(now[key])}, not in the record")
            else:
                out += differences(recorded[key], now[key], path)
        return out
    if isinstance(recorded, list) and isinstance(now, list):
        out = []
        for i in range(max(len(recorded), len(now))):
            if i >= len(now):
                out.append(f"{where}{_label(recorded[i], i)}: absent, recorded")
            elif i >= len(recorded):
                out.append(f"{where}{_label(now[i], i)}: {_short(now[i])}, not in the record")
            else:
                out += differences(recorded[i], now[i], where + _label(recorded[i], i))
        return out
    if _equal(recorded, now):
        return []
    return [f"{where}: {_short(now)}, recorded {_short(recorded)}"]


def _short(value: Any, width: int = 70) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _listed(lines: list[str]) -> list[str]:
    shown = [f"  {line}" for line in lines[:MAX_LISTED]]
    if len(lines) > MAX_LISTED:
        shown.append(f"  … and {len(lines) - MAX_LISTED} more")
    return shown


def _find(section: Mapping[str, Any], given: str | os.PathLike[str] | None) -> Path | None:
    """The file to check: the one given, else the recorded path (resolved in the folder the
    record was made in, then as given from here)."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise RecordError([f"{os.fspath(given)}: file not found"])
        return path
    given_path, resolved = section.get("path"), section.get("resolved_path")
    for candidate in (resolved, given_path):
        if isinstance(candidate, str) and candidate and Path(candidate).is_file():
            found = Path(candidate)
            if isinstance(given_path, str) and Path(given_path).is_file():
                if os.path.samefile(given_path, found):
                    return Path(given_path)  # shown as recorded
            return found
    return None


def _design_changes(recorded: Mapping[str, Any], text: str) -> list[str]:
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return [f"the file is no longer valid TOML ({error})"]
    from theradose.report import json_ready

    changes = differences(recorded.get("source"), json_ready(parsed))
    if not changes:
        return ["every key and value as recorded: only comments or layout changed"]
    return [f"key {line}" for line in changes]


def _text_changes(recorded: str, now: str) -> list[str]:
    """Changed lines of a text file, 1-based, as 'line 4: now …, recorded …'."""
    old, new = recorded.splitlines(), now.splitlines()
    out = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            before = old[i1 + k] if i1 + k < i2 else None
            after = new[j1 + k] if j1 + k < j2 else None
            line = j1 + k + 1 if after is not None else i1 + k + 1
            if before is None:
                out.append(f"line {line} added: {after!r}")
            elif after is None:
                out.append(f"line {line} removed (was {before!r})")
            else:
                out.append(f"line {line}: {after!r}, recorded {before!r}")
    if not out:
        out.append("the same lines: only line endings or the last newline changed")
    return out


def verify_record(
    record: Mapping[str, Any],
    design_file: str | os.PathLike[str] | None = None,
    data_file: str | os.PathLike[str] | None = None,
) -> Verification:
    """Check a decision record (see the module's description).

    Parameters
    ----------
    record : a decision record (:func:`theradose.decision_record.read_record`)
    design_file, data_file : the files to check against the recorded hashes; by default the
        recorded paths, when the files are there

    Raises
    ------
    RecordError
        When a file given is not there.
    """
    same: list[str] = []
    diffs: list[str] = []
    unchecked: list[str] = []
    count = 0

    def differ(line: str, details: list[str] = ()) -> None:
        nonlocal count
        count += 1
        diffs.append(line)
        diffs.extend(_listed(list(details)))

    design, data = record["design"], record["data"]
    decision = decision_text(record["decision"])

    recorded_hash = record.get(HASH_KEY)
    if not isinstance(recorded_hash, str):
        differ("the record has no record_sha256: edits of it cannot be detected")
    elif record_hash(record) != recorded_hash:
        differ(
            "the record was edited after it was written: its content does not match its "
            f"record_sha256 ({recorded_hash[:12]}…)"
        )
    else:
        same.append(f"record integrity (record_sha256 {recorded_hash[:12]}…)")

    for label, section in (("design", design), ("data", data)):
        text = section.get("text")
        if not isinstance(text, str) or sha256_hex(text) != section.get("sha256"):
            differ(f"the record's embedded {label} does not match its recorded sha256")

    _check_versions(record, same, differ)

    current_design = _check_file(
        "design", design, design_file, same, unchecked, differ, _design_changes
    )
    current_data = None
    if data.get("kind") == "patients":
        current_data = _check_file("data", data, data_file, same, unchecked, differ, None)
    elif data_file is not None:
        unchecked.append("--data: the record's data is an outcome string, held in the record")

    inputs = RecordInputs(
        design_path=str(design.get("path")),
        design_text=str(design.get("text", "")),
        data_kind=str(data.get("kind")),
        data_text=str(data.get("text", "")),
        data_path=data.get("path"),
    )
    options = record.get("options") or {}
    recomputed = _recompute(record, inputs, options)
    if isinstance(recomputed, str):
        differ(f"the decision could not be recomputed from the record's inputs: {recomputed}")
    else:
        found = _compare(record, recomputed)
        if found:
            differ(
                "the decision recomputed from the record's inputs differs: "
                f"{decision_text(recomputed['decision'])}, recorded {decision}",
                found,
            )
        else:
            same.append(f"decision recomputed from the record's inputs: {decision}")

    on_files = None
    if (current_design or current_data) and options.get("engine", "grid") == "grid":
        now_inputs = RecordInputs(
            inputs.design_path,
            current_design or inputs.design_text,
            inputs.data_kind,
            current_data or inputs.data_text,
            inputs.data_path,
        )
        fresh = _recompute(record, now_inputs, options)
        if isinstance(fresh, str):
            on_files = f"no decision ({fresh})"
        else:
            on_files = decision_text(fresh["decision"])
    return Verification(tuple(same), tuple(diffs), tuple(unchecked), decision, count, on_files)


def _check_versions(record, same, differ) -> None:
    software = record.get("software") or {}
    recorded = software.get("theradose")
    if recorded != theradose.__version__:
        differ(f"theradose {theradose.__version__} is installed; the record was made by {recorded}")
    packages = software.get("packages") or {}
    installed = software_versions(mcmc=any(k in packages for k in ("pymc", "arviz")))["packages"]
    changed = [
        f"{name} {installed.get(name)} is installed; the record was made with {version}"
        for name, version in packages.items()
        if installed.get(name) != version
    ]
    for line in changed:
        differ(line)
    if recorded == theradose.__version__ and not changed:
        listed = ", ".join(f"{name} {version}" for name, version in packages.items())
        same.append(f"software: theradose {recorded}" + (f", {listed}" if listed else ""))


def _check_file(label, section, given, same, unchecked, differ, describe) -> str | None:
    """Compare a file with the record's hash; its text when it differs (else None)."""
    path = _find(section, given)
    if path is None:
        where = section.get("resolved_path") or section.get("path")
        unchecked.append(
            f"{label} file not found at {where}: its sha256 was not checked (give --{label} FILE)"
        )
        return None
    raw = path.read_bytes()
    digest = sha256_hex(raw)
    if digest == section.get("sha256"):
        same.append(f"{label} file {path} (sha256 {digest[:12]}…)")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        differ(f"{label} file {path} differs from the record and is no longer UTF-8 text")
        return None
    recorded_text = str(section.get("text", ""))
    details = (describe or (lambda _, now: _text_changes(recorded_text, now)))(section, text)
    differ(
        f"{label} file {path} was changed since the record: sha256 {digest[:12]}…, "
        f"recorded {str(section.get('sha256'))[:12]}…",
        details,
    )
    return text


def _recompute(record, inputs: RecordInputs, options: Mapping[str, Any]) -> dict | str:
    """A fresh record on ``inputs`` with the record's options, or why none can be made."""
    from theradose.config import ConfigError
    from theradose.outcomes import OutcomeError
    from theradose.patients import PatientFileError

    engine = options.get("engine", "grid")
    try:
        result = run_inputs(inputs, engine, options.get("mcmc"), options.get("dlt_window_days"))
    except (ConfigError, PatientFileError) as error:
        return "; ".join(error.messages)
    except (OutcomeError, ValueError, TypeError) as error:
        return str(error)
    except ImportError as error:  # an MCMC record where pymc is not installed
        return f"{error.name or 'a package'} is not installed ({error})"
    command = record.get("command") or {}
    return decision_record(
        result,
        inputs,
        engine=engine,
        mcmc_options=options.get("mcmc"),
        dlt_window_days=options.get("dlt_window_days"),
        by=record.get("by"),
        note=record.get("note"),
        argv=command.get("argv") or [],
        now=_created(record),
        cwd=command.get("cwd") or os.getcwd(),
    )


def _created(record) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(record["created_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
    except (KeyError, TypeError, ValueError):
        return None


def _compare(record: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[str]:
    out = []
    for key in COMPARED:
        out += differences(record.get(key), fresh.get(key), key)
    for key in COMPARED_DATA:
        out += differences(record["data"].get(key), fresh["data"].get(key), f"data.{key}")
    for key in COMPARED_DESIGN:
        out += differences(record["design"].get(key), fresh["design"].get(key), f"design.{key}")
    recorded_mcmc, fresh_mcmc = record.get("mcmc"), fresh.get("mcmc")
    out += differences(recorded_mcmc, fresh_mcmc, "mcmc")
    return out
