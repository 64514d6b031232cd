"""Patient files: one real trial's patients as a CSV file, one row per patient in enrolment order.

The first line names the columns, in any order:

- ``level`` (required): the dose level given, 1-based;
- ``dlt`` (required): 1 if the patient has had a dose-limiting toxicity (DLT), else 0;
- ``followup_days`` (required): days since the patient's treatment, as of today;
- ``dlt_day`` (optional): the day after treatment on which the DLT occurred (at most
  ``followup_days`` and, when the DLT window is known, at most its length); empty, or the
  column absent, when unknown or for patients without a DLT;
- ``backfill`` (optional): 1 (or ``true``) for a patient treated by backfilling (a design with
  ``[backfill]``, :mod:`theradose.backfill`), 0 (``false``, or empty) for an escalation patient;
- ``response`` (required by a design that decides on responses, BOIN12 and TITE-BOIN12; else
  optional and unused): 1 if the patient has responded so far, else 0;
- ``response_day`` (optional): the day after treatment on which the response was seen (at most
  ``followup_days`` and, when the efficacy window is known, at most its length); empty, or the
  column absent, when unknown or for patients without a response;
- ``<organ>_gy_per_gbq`` (optional, one per organ of the design's ``[dosimetry]``): the
  patient's measured absorbed dose per unit activity in that organ (> 0), empty when not measured.

>>> import io
>>> text = "level,dlt,followup_days,dlt_day\\n1,0,95,\\n2,1,40,21\\n"
>>> records = read_patients(io.StringIO(text), n_levels=6, name="trial.csv")
>>> records.level.tolist(), records.dlt.tolist(), records.dlt_day.tolist()
([0, 1], [False, True], [nan, 21.0])

Every problem of a file is reported, one line each, naming the file, the row (as a spreadsheet
numbers it: the header is row 1) and the column. A column the reader does not know is an error,
with a suggestion for a misspelt name. Columns are declared in :data:`COLUMNS`, so new kinds
(per-organ measured Gy/GBq, ``<organ>_gy_per_gbq``) are added there, each with its parser.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from theradose.limits import MAX_PATIENT_FILE_BYTES, MAX_TRIAL_PATIENTS, shown_text


class PatientFileError(ValueError):
    """A patient file that cannot be used; ``messages`` holds one line per problem."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


@dataclass(frozen=True)
class Column:
    """A column a patient file may have: its name, whether it is required, what it holds, and a
    parser from the field's text to a value (``None`` for an empty optional field) that raises
    ``ValueError`` with the problem in words."""

    name: str
    required: bool
    meaning: str
    parse: Callable[[str, int], Any]  # (text, number of levels) → value

    def matches(self, header: str) -> bool:
        return header == self.name


def _level(text: str, n_levels: int) -> int:
    try:
        value = int(text) if len(text) < 10 else None
    except ValueError:
        value = None
    if value is None:
        raise ValueError(f"{shown_text(text)} is not a whole number (levels are 1..{n_levels})")
    if not 1 <= value <= n_levels:
        raise ValueError(f"{value} is not a level of the design (1..{n_levels})")
    return value - 1


def _dlt(text: str, n_levels: int) -> bool:
    if text not in ("0", "1"):
        raise ValueError(f"{shown_text(text)} must be 0 (no DLT) or 1 (DLT)")
    return text == "1"


def _days(text: str, n_levels: int) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{shown_text(text)} must be a number of days ≥ 0")
    return value


def _backfill(text: str, n_levels: int) -> bool | None:
    if text == "":
        return None
    flag = text.lower()
    if flag not in ("0", "1", "true", "false"):
        raise ValueError(
            f"{shown_text(text)} must be 1 or true (backfill), 0 or false (escalation)"
        )
    return flag in ("1", "true")


def _optional_days(text: str, n_levels: int) -> float | None:
    return None if text == "" else _days(text, n_levels)


def _response(text: str, n_levels: int) -> bool | None:
    if text == "":
        return None
    if text not in ("0", "1"):
        raise ValueError(f"{shown_text(text)} must be 0 (no response so far) or 1 (response)")
    return text == "1"


def _gy_per_gbq(text: str, n_levels: int) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{shown_text(text)} is not a number (measured Gy/GBq, > 0)") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{shown_text(text)} must be a measured Gy/GBq > 0")
    return value


def organ_column(organ: str) -> Column:
    """The column of one organ's measured Gy/GBq."""
    return Column(f"{organ}_gy_per_gbq", False, f"measured {organ} Gy/GBq (optional)", _gy_per_gbq)


COLUMNS: tuple[Column, ...] = (
    Column("level", True, "the dose level given, 1-based", _level),
    Column("dlt", True, "1 if the patient has had a DLT, else 0", _dlt),
    Column("followup_days", True, "days since the patient's treatment, as of today", _days),
    Column("dlt_day", False, "day of the DLT after treatment (optional)", _optional_days),
    Column("backfill", False, "1 for a backfill patient, else 0 (optional)", _backfill),
    Column("response", False, "1 if the patient has responded so far, else 0", _response),
    Column(
        "response_day", False, "day of the response after treatment (optional)", _optional_days
    ),
)


@dataclass(frozen=True)
class PatientRecords:
    """The patients of one real trial in enrolment order, [patient] arrays."""

    level: np.ndarray  # [patient] 0-based
    dlt: np.ndarray  # [patient] bool
    followup_days: np.ndarray  # [patient] days since treatment, as of today
    dlt_day: np.ndarray  # [patient] day of the DLT after treatment; NaN where not given
    path: str | None = None
    gy_per_gbq: np.ndarray | None = None  # [patient, organ] measured; NaN where not given
    backfill: np.ndarray | None = None  # [patient] bool; None when the file has no such column
    response: np.ndarray | None = None  # [patient] bool; None when the file has no such column
    response_day: np.ndarray | None = None  # [patient] day of the response; NaN where not given

    @property
    def n_patients(self) -> int:
        return int(self.level.size)


def read_patients(
    source: str | os.PathLike[str] | io.TextIOBase,
    n_levels: int,
    name: str | None = None,
    organs: tuple[str, ...] = (),
    needs_response: str | None = None,
    efficacy_window_days: float | None = None,
    dlt_window_days: float | None = None,
) -> PatientRecords:
    """Read a patient file (see the module's description).

    Parameters
    ----------
    source : path or text stream
        The CSV file (UTF-8, a byte-order mark allowed).
    n_levels : int
        The design's number of levels; a level outside 1..n_levels is an error.
    name : str, optional
        How messages name the file (default: the path).
    organs : the design's organs: each may have a ``<organ>_gy_per_gbq`` column.
    needs_response : str, optional
        Why the ``response`` column is required, in words (e.g. "method 'tite-boin12' decides
        on responses"); None: the column is optional.
    efficacy_window_days : float, optional
        The efficacy window: a ``response_day`` beyond it is an error (None: not checked).
    dlt_window_days : float, optional
        The DLT window: a ``dlt_day`` beyond it is an error (None: not checked).

    Returns
    -------
    PatientRecords

    Raises
    ------
    PatientFileError
        With every problem of the file, one line each.
    """
    rules = _Rules(needs_response, efficacy_window_days, dlt_window_days)
    if isinstance(source, io.TextIOBase):
        name = name or "<patients>"
        return _read(source, n_levels, name, organs, rules)
    name = name or str(source)
    try:
        if os.path.getsize(source) > MAX_PATIENT_FILE_BYTES:
            raise PatientFileError(
                [f"{name}: larger than {MAX_PATIENT_FILE_BYTES:,} bytes; a patient file has one "
                 f"short row per patient (at most {MAX_TRIAL_PATIENTS:,})"]
            )
        with open(source, encoding="utf-8-sig", newline="") as handle:
            return _read(handle, n_levels, name, organs, rules)
    except FileNotFoundError:
        problem = "file not found"
    except IsADirectoryError:
        problem = "is a directory, not a file"
    except UnicodeDecodeError as err:
        problem = f"not UTF-8 text ({err.reason} at byte {err.start})"
    except OSError as err:
        problem = f"cannot read: {err.strerror or err}"
    raise PatientFileError([f"{name}: {problem}"])


@dataclass(frozen=True)
class _Rules:
    """What the design asks of the response and DLT-day columns (:func:`read_patients`)."""

    needed_by: str | None = None  # why ``response`` is required; None: optional
    window_days: float | None = None  # the efficacy window; None: not checked
    dlt_window_days: float | None = None  # the DLT window; None: not checked


def _read(
    handle,
    n_levels: int,
    name: str,
    organs: tuple[str, ...] = (),
    rules: _Rules = _Rules(),  # noqa: B008 - frozen, never changed
) -> PatientRecords:
    all_columns = COLUMNS + tuple(organ_column(o) for o in organs)
    reader = csv.reader(handle)
    header = next(reader, None)
    columns = ", ".join(c.name for c in all_columns)
    if header is None or not any(h.strip() for h in header):
        raise PatientFileError([f"{name}: empty file; the first row names the columns ({columns})"])
    errors: list[str] = []
    header = [h.strip() for h in header]
    known: dict[int, Column] = {}
    for index, title in enumerate(header):
        column = next((c for c in all_columns if c.matches(title)), None)
        if not title:
            errors.append(f"{name}: row 1, column {index + 1} has no name (columns: {columns})")
        elif column is None:
            guess = difflib.get_close_matches(title.lower(), [c.name for c in all_columns], n=1)
            hint = f"did you mean {guess[0]!r}?" if guess else f"allowed: {columns}"
            errors.append(f"{name}: row 1: unknown column {shown_text(title)} ({hint})")
        elif column in known.values():
            errors.append(f"{name}: row 1: column {title!r} appears more than once")
        else:
            known[index] = column
    for column in all_columns:
        if column.required and column not in known.values():
            errors.append(f"{name}: row 1: missing column {column.name!r} ({column.meaning})")
    has_response = any(column.name == "response" for column in known.values())
    if rules.needed_by and not has_response:
        errors.append(
            f"{name}: row 1: missing column 'response' (1 if the patient has responded so far, "
            f"else 0): {rules.needed_by}"
        )
    elif not has_response and any(c.name == "response_day" for c in known.values()):
        errors.append(
            f"{name}: row 1: column 'response_day' without a column 'response' (1 if the "
            "patient has responded so far, else 0)"
        )

    values: dict[str, list[Any]] = {c.name: [] for c in all_columns}
    patient = 0
    for fields in reader:
        if not any(f.strip() for f in fields):
            continue  # blank line
        patient += 1
        if patient > MAX_TRIAL_PATIENTS:
            errors.append(f"{name}: more than {MAX_TRIAL_PATIENTS:,} patients (too many)")
            break
        where = f"{name}: row {reader.line_num} (patient {patient})"
        if len(fields) != len(header):
            errors.append(f"{where}: {len(fields)} fields, but the header names {len(header)}")
            continue
        parsed = {c.name: None for c in all_columns}
        for index, column in known.items():
            text = fields[index].strip()
            if text == "" and column.required:
                errors.append(f"{where}, column {column.name!r}: empty ({column.meaning})")
                continue
            if text == "" and column.name == "response" and rules.needed_by:
                errors.append(
                    f"{where}, column 'response': empty (1 if the patient has responded so far, "
                    f"else 0): {rules.needed_by}"
                )
                continue
            try:
                parsed[column.name] = column.parse(text, n_levels)
            except ValueError as problem:
                errors.append(f"{where}, column {column.name!r}: {problem}")
        errors += _row_problems(parsed, where, rules.dlt_window_days)
        errors += _response_problems(parsed, where, rules.window_days)
        for key, value in parsed.items():
            values[key].append(value)
    if errors:
        raise PatientFileError(errors)
    has_backfill = any(column.name == "backfill" for column in known.values())
    return PatientRecords(
        level=np.array(values["level"], dtype=np.int32),
        dlt=np.array(values["dlt"], dtype=bool),
        followup_days=np.array(values["followup_days"], dtype=float),
        dlt_day=np.array([math.nan if v is None else v for v in values["dlt_day"]], dtype=float),
        path=name,
        gy_per_gbq=np.array(
            [[math.nan if v is None else v for v in values[f"{o}_gy_per_gbq"]] for o in organs],
            dtype=float,
        )
        .reshape(len(organs), -1)
        .T
        if organs
        else None,
        backfill=np.array([bool(v) for v in values["backfill"]], dtype=bool)
        if has_backfill
        else None,
        response=np.array([bool(v) for v in values["response"]], dtype=bool)
        if has_response
        else None,
        response_day=np.array(
            [math.nan if v is None else v for v in values["response_day"]], dtype=float
        )
        if has_response
        else None,
    )


def _row_problems(parsed: dict[str, Any], where: str, window_days: float | None) -> list[str]:
    """Problems of a row's ``dlt_day`` against its DLT, follow-up and the DLT window (each
    field on its own being valid; a ``dlt`` that could not be read is not questioned again)."""
    return _day_problems(
        parsed["dlt_day"],
        parsed["dlt"] is not False,
        parsed["followup_days"],
        f"{where}, column 'dlt_day'",
        "a patient without a DLT (dlt 0)",
        (window_days, "DLT window", "a DLT counts only within it: [timing] dlt_window_months, "
         "or --dlt-window-days"),
    )


def _response_problems(parsed: dict[str, Any], where: str, window_days: float | None) -> list[str]:
    """Problems of a row's ``response_day`` against its response, follow-up and the efficacy
    window (each field on its own being valid)."""
    return _day_problems(
        parsed["response_day"],
        bool(parsed["response"]),
        parsed["followup_days"],
        f"{where}, column 'response_day'",
        "a patient without a response (response 0 or empty)",
        (window_days, "efficacy window", "a response counts only within it: [timing] "
         "efficacy_window_months, else the DLT window"),
    )


def _day_problems(day, happened: bool, followup, here: str, without: str, window) -> list[str]:
    """Problems of the day an event (a DLT, a response) was seen: given for a patient without
    it, after the follow-up, or beyond its window (``window``: days or None, its name, why)."""
    if day is None:
        return []
    if not happened:
        return [f"{here}: {day:g} given for {without}"]
    problems = []
    if followup is not None and day > followup:
        problems.append(
            f"{here}: {day:g} is after the follow-up of {followup:g} days (must be ≤ "
            "followup_days)"
        )
    days, name, why = window
    # (a window given in months and shown in days may differ from the days it was by rounding)
    if days is not None and day > days * (1 + 1e-12):
        problems.append(f"{here}: {day:g} is beyond the {name} of {days:.4g} days ({why})")
    return problems
