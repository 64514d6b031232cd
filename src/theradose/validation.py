"""Reading TOML tables and reporting their problems: every problem of a file collected, one line
each, naming the file, the key, the value given and what is allowed.

The readers of :class:`TomlTable` return the value, the default when the key is absent, or None
when the value is invalid (the problem is recorded, never raised), so that a file's problems are
all reported at once as one :class:`ConfigError`. Design and scenario files
(:mod:`theradose.config`) and the methods' own sections (:mod:`theradose.methods`) read through
them.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from theradose.limits import MAX_INTEGER, MAX_TOML_BYTES, MAX_TOML_NESTING

MISSING: Any = object()
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
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"{str(value)[:12]}... ({len(str(abs(value)))} digits)"
    if isinstance(value, str) and len(value) > 200:
        return json.dumps(value[:60], ensure_ascii=False)[:-1] + f'..." ({len(value):,} characters)'
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


def toml_kind(value: Any) -> str:
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


def is_number(value: Any) -> bool:
    # bool is an int in Python, but `true` is never a number in a design file.
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def suggest(word: str, choices: Iterable[str]) -> str | None:
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


class FileReport:
    """The problems found in one file so far."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        self.messages.append(f"{self.path}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            raise ConfigError(self.messages)


class TomlTable:
    """One TOML table being read, where it sits in the file, and the report its problems go to.

    Each reader returns the value, the default when the key is absent, or None when the value is
    invalid or absent without a default; problems are recorded, never raised, so that every
    problem of a file is reported at once.
    """

    def __init__(self, report: FileReport, data: Mapping[str, Any], where: str = "") -> None:
        self.report = report
        self.data = data
        self.where = where  # "", "[boin] ", 'scenario[2] ("S2") '

    def error(self, text: str) -> None:
        self.report.add(f"{self.where}{text}")

    def value_error(self, key: str, value: Any, problem: str) -> None:
        self.error(f"{key} = {show_value(value)}: {problem}")

    def type_error(self, key: str, value: Any, expected: str) -> None:
        self.value_error(key, value, f"must be {expected}, got {toml_kind(value)}")

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in self.data:
            if key in allowed:
                continue
            guess = suggest(key, allowed)
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
        value = self._get(key, MISSING, required)
        if value is MISSING:
            return default
        if not is_number(value):
            self.type_error(key, value, f"a number {interval}")
            return None
        if value not in interval:
            self.value_error(key, value, f"must be a number {interval}")
            return None
        return float(value)

    def integer(
        self,
        key: str,
        minimum: int,
        *,
        default: Any = None,
        required: str = "",
        maximum: int = MAX_INTEGER,
        why: str = "",
    ) -> int | None:
        """An integer in ``minimum``..``maximum`` (``why``: the reason for the maximum, for the
        message)."""
        value = self._get(key, MISSING, required)
        if value is MISSING:
            return default
        if not is_integer(value):
            self.type_error(key, value, f"an integer >= {minimum}")
            return None
        if value < minimum:
            self.value_error(key, value, f"must be an integer >= {minimum}")
            return None
        if value > maximum:
            because = f" ({why})" if why else ""
            self.value_error(
                key, value, f"must be an integer from {minimum} to {maximum:,}{because}"
            )
            return None
        return value

    def boolean(self, key: str, *, default: Any = None) -> bool | None:
        value = self._get(key, MISSING, "")
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            self.type_error(key, value, "true or false")
            return None
        return value

    def string(self, key: str, *, default: Any = None, required: str = "") -> str | None:
        value = self._get(key, MISSING, required)
        if value is MISSING:
            return default
        if not isinstance(value, str):
            self.type_error(key, value, "a string")
            return None
        return value

    def choice(self, key: str, choices: Iterable[str], *, required: str = "") -> str | None:
        choices = list(choices)
        value = self._get(key, MISSING, required)
        if value is MISSING:
            return None
        allowed = ", ".join(show_value(c) for c in choices)
        if not isinstance(value, str):
            self.type_error(key, value, f"one of {allowed}")
            return None
        if value not in choices:
            guess = suggest(value, choices)
            hint = f" (did you mean {show_value(guess)}?)" if guess else ""
            self.value_error(key, value, f"must be one of {allowed}{hint}")
            return None
        return value

    def numbers(
        self, key: str, interval: Interval, order: str, *, required: str = ""
    ) -> tuple[float, ...] | None:
        """A non-empty array of numbers in ``interval``, ``order`` "increasing" (strictly) or
        "non-decreasing"."""
        value = self._get(key, MISSING, required)
        if value is MISSING:
            return None
        if not isinstance(value, list):
            self.type_error(key, value, f"an array of numbers {interval}")
            return None
        shown = show_value(value)
        if not value:
            self.error(f"{key}: must hold at least one value, got []")
            return None
        for level, item in enumerate(value, start=1):
            if not is_number(item):
                self.error(
                    f"{key}: must be an array of numbers, got {shown} "
                    f"(level {level} is {toml_kind(item)})"
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

    def section(self, name: str) -> TomlTable:
        """The sub-table ``[name]`` (empty when absent or not a table)."""
        value = self.data.get(name, {})
        if not isinstance(value, Mapping):
            self.type_error(name, value, f"a table ([{name}])")
            value = {}
        return TomlTable(self.report, value, f"{self.where}[{name}] ")


def read_toml(path: str) -> dict[str, Any]:
    """Parse a TOML file of at most :data:`~theradose.limits.MAX_TOML_BYTES` (see
    :func:`parse_toml`).

    Raises
    ------
    ConfigError
        With one line naming the file and why it cannot be used (missing, too large, not
        UTF-8, not TOML, an integer too long to read, values nested too deeply).
    """
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_TOML_BYTES + 1)
    except FileNotFoundError:
        message = "file not found"
    except IsADirectoryError:
        message = "is a directory, not a file"
    except OSError as err:
        message = f"cannot read: {err.strerror or err}"
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            message = f"invalid TOML: not UTF-8 text ({err.reason} at byte {err.start})"
        else:
            return parse_toml(text, path)
    raise ConfigError([f"{path}: {message}"])


def parse_toml(text: str, path: str) -> dict[str, Any]:
    """Parse the TOML ``text`` of the file ``path``: at most
    :data:`~theradose.limits.MAX_TOML_BYTES`, values nested at most
    :data:`~theradose.limits.MAX_TOML_NESTING` deep.

    Raises
    ------
    ConfigError
        With one line naming ``path`` and why the text cannot be used.
    """
    if len(text) > MAX_TOML_BYTES or len(text.encode("utf-8", "replace")) > MAX_TOML_BYTES:
        raise ConfigError(
            [f"{path}: larger than {MAX_TOML_BYTES:,} bytes; a design or scenario file is a few "
             "kilobytes"]
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = f"invalid TOML: {err}"
    except RecursionError:
        message = (
            f"invalid TOML: arrays or inline tables nested too deeply (at most "
            f"{MAX_TOML_NESTING} levels)"
        )
    except ValueError:  # Python's limit on the digits of an integer it converts
        message = f"invalid TOML: {_long_integer(text)}"
    else:
        deep = _too_deep(data)
        if deep is None:
            return data
        message = (
            f"{deep}: arrays or tables nested more than {MAX_TOML_NESTING} levels deep "
            "(no key needs more than 2)"
        )
    raise ConfigError([f"{path}: {message}"])


def _long_integer(text: str) -> str:
    """Where an integer too long for Python to read sits in ``text``, in words."""
    match = re.search(r"[0-9_]{4000,}", text)
    where, size = "", "thousands of"
    if match:
        where = f"line {text.count(chr(10), 0, match.start()) + 1}: "
        size = f"{len(match.group().replace('_', '')):,}"
    return f"{where}an integer with {size} digits (no key takes more than {MAX_INTEGER:,})"


def _too_deep(data: Any) -> str | None:
    """The top-level key whose value nests deeper than MAX_TOML_NESTING, or None."""
    for key, value in data.items():
        stack = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            if depth > MAX_TOML_NESTING:
                return f"key '{key}'"
            if isinstance(item, Mapping):
                stack.extend((v, depth + 1) for v in item.values())
            elif isinstance(item, list):
                stack.extend((v, depth + 1) for v in item)
    return None


def number_pair(
    table: TomlTable, key: str, interval: Interval, *, default: Any = None, required: str = ""
) -> tuple[float, float] | None:
    """Two numbers in ``interval``, such as a prior's means (``[2.15, 0.52]``)."""
    if key not in table.data:
        if required:
            table.error(f"missing key '{key}' ({required})")
        return default
    value = table.data[key]
    if not (isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value)):
        table.error(f"{key}: must be an array of two numbers {interval}, got {show_value(value)}")
        return None
    if any(v not in interval for v in value):
        table.error(f"{key}: every value must be {interval}, got {show_value(value)}")
        return None
    return float(value[0]), float(value[1])
