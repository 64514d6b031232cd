"""A trial's ledger: its decision records (:mod:`theradose.decision_record`) in order, each line
chained to the one before by its hash, so that any later edit, removal or reordering shows.

File contract (JSON Lines, UTF-8): one line per decision record, in the order appended. Each
line is the canonical JSON (:func:`theradose.decision_record.canonical_json`: keys sorted, no
whitespace) of an object with exactly these keys, then ``\\n``:

- ``entry``: the line's number, 1, 2, …;
- ``prev``: the previous line's ``hash`` (64 zeros on the first line);
- ``record``: the decision record, as it was appended;
- ``hash``: SHA-256 (hex) of the canonical JSON of ``{"entry", "prev", "record"}``.

:func:`check_ledger` reads every line back and requires each to be exactly the canonical form of
what it holds, its hash to match its content, its ``entry`` to be its line number and its ``prev``
the hash of the line before; the record's own ``record_sha256`` must match too. Hence any change
of any single byte, any removed, inserted or reordered line, and any cut within a line (the last
line then has no ``\\n``) is detected, and the first line concerned is named. Removing whole lines
from the end leaves a shorter valid ledger: compare the head hash and the number of entries with
those noted at the last meeting (``append`` prints them; ``check --head HASH --entries N``).

Appends are atomic: the current file is read under an exclusive lock (``fcntl.flock`` where the
platform has it; concurrent appends then queue), checked, and copied byte for byte with the new
line added into a temporary file beside it, which is flushed to disk and renamed over the
ledger (``os.replace``). A reader sees the old ledger or the new one, never half a line; a
crash leaves the old ledger whole. Lines once written are never rewritten: the copy keeps their
bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from theradose.decision_record import (
    HASH_KEY,
    RecordError,
    as_record,
    canonical_json,
    canonical_text,
    record_hash,
    sha256_hex,
)

GENESIS = "0" * 64
LINE_KEYS = frozenset({"entry", "prev", "record", "hash"})


class LedgerError(ValueError):
    """A ledger that cannot be read or appended to; ``messages`` holds one line per problem."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


@dataclass(frozen=True)
class LedgerEntry:
    """One line of a ledger: its entry number (= line number), the previous line's hash, its
    own hash and the decision record it holds."""

    entry: int
    prev: str
    hash: str
    record: dict[str, Any]


@dataclass(frozen=True)
class LedgerCheck:
    """The outcome of :func:`check_ledger`: the entries read (every line that could be
    parsed) and the problems, each naming its line."""

    path: str
    entries: tuple[LedgerEntry, ...]
    problems: tuple[str, ...]
    n_lines: int

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def head(self) -> str:
        """The last entry's hash (64 zeros for an empty ledger): what the next line chains to."""
        return self.entries[-1].hash if self.entries else GENESIS


def entry_hash(entry: int, prev: str, record: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``{"entry", "prev", "record"}``."""
    return sha256_hex(canonical_json({"entry": entry, "prev": prev, "record": record}))


def ledger_line(entry: int, prev: str, record: Mapping[str, Any]) -> bytes:
    """The bytes of one ledger line, ``\\n`` included."""
    digest = entry_hash(entry, prev, record)
    line = {"entry": entry, "prev": prev, "record": record, "hash": digest}
    return canonical_json(line) + b"\n"


def _parsed_hashes(line: Mapping[str, Any]) -> tuple[str, str]:
    """A parsed line's canonical text and the hash its content should have: the record is
    serialised once (parsed JSON needs no conversion; keys in sorted order)."""
    record = canonical_text(line["record"])
    entry, prev, digest = (canonical_text(line[k]) for k in ("entry", "prev", "hash"))
    content = f'{{"entry":{entry},"prev":{prev},"record":{record}}}'
    text = f'{{"entry":{entry},"hash":{digest},"prev":{prev},"record":{record}}}'
    return text, sha256_hex(content)


def check_bytes(data: bytes, name: str = "<ledger>") -> LedgerCheck:
    """Check a ledger's bytes (see the module's description)."""
    problems: list[str] = []
    entries: list[LedgerEntry] = []
    lines = data.split(b"\n")
    tail = lines.pop()  # the text after the last newline: empty in a whole ledger
    if tail:
        lines.append(tail)
    prev: str | None = GENESIS
    for number, raw in enumerate(lines, start=1):
        where = f"line {number}"
        if number == len(lines) and tail:
            problems.append(
                f"{where}: no newline at the end of the file: the ledger was cut (truncated) "
                "or its last line edited"
            )
        line, problem = _parse_line(raw)
        if line is None:
            problems.append(f"{where}: {problem}")
            prev = None  # the next line's chain cannot be checked against this one
            continue
        if problem:
            problems.append(f"{where}: {problem}")
        if line["entry"] != number:
            problems.append(
                f"{where}: holds entry {line['entry']}: lines were removed, inserted or "
                "reordered before it"
            )
        if prev is not None and line["prev"] != prev:
            problems.append(
                f"{where}: does not chain to "
                + ("the start of the ledger" if number == 1 else f"line {number - 1}")
                + ": a line was removed, inserted or reordered here, or the one before edited"
            )
        if line.pop("_content_hash") != line["hash"]:
            problems.append(f"{where}: its content does not match its hash: the line was edited")
        else:
            problems += [f"{where}: {p}" for p in _record_problems(line["record"])]
        entries.append(LedgerEntry(line["entry"], line["prev"], line["hash"], line["record"]))
        prev = line["hash"]
    return LedgerCheck(name, tuple(entries), tuple(problems), len(lines))


def _parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """The line's object (or None) and what is wrong with it ('' when nothing)."""
    if not raw.strip():
        return None, "empty line: ledger lines are never blank"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"not UTF-8 text ({error.reason} at byte {error.start}): the line was edited"
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as error:
        return None, f"not JSON ({error}): the line was edited or cut"
    if not isinstance(value, dict) or set(value) != LINE_KEYS:
        keys = sorted(value) if isinstance(value, dict) else type(value).__name__
        return None, f"not a ledger line (keys {keys}; expected {sorted(LINE_KEYS)})"
    if not (
        isinstance(value["entry"], int)
        and not isinstance(value["entry"], bool)
        and isinstance(value["prev"], str)
        and isinstance(value["hash"], str)
        and isinstance(value["record"], dict)
    ):
        return None, "not a ledger line (entry, prev, hash or record of the wrong type)"
    text, digest = _parsed_hashes(value)
    value["_content_hash"] = digest
    if text.encode("utf-8") != raw:
        return value, (
            "not in canonical form (spacing, escapes, number format or key order differ): "
            "the line was edited"
        )
    return value, ""


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _record_problems(record: Mapping[str, Any]) -> list[str]:
    try:
        as_record(record)
    except RecordError as error:
        return error.messages
    if record.get(HASH_KEY) != record_hash(record, parsed=True):
        return ["the record's content does not match its record_sha256"]
    return []


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """A ledger file's bytes.

    Raises
    ------
    LedgerError
        When the file is missing or cannot be read.
    """
    name = os.fspath(path)
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise LedgerError([f"{name}: file not found"]) from None
    except IsADirectoryError:
        raise LedgerError([f"{name}: is a directory, not a file"]) from None
    except OSError as error:
        raise LedgerError([f"{name}: cannot read: {error.strerror or error}"]) from None


def check_ledger(
    path: str | os.PathLike[str], head: str | None = None, n_entries: int | None = None
) -> LedgerCheck:
    """Check a ledger file; ``head`` and ``n_entries``, when given, are the last hash and the
    number of entries noted earlier (a ledger cut after a whole line is otherwise valid).

    Raises
    ------
    LedgerError
        When the file cannot be read.
    """
    name = os.fspath(path)
    check = check_bytes(read_bytes(path), name)
    extra = []
    if n_entries is not None and len(check.entries) < n_entries:
        extra.append(
            f"{len(check.entries)} entries, {n_entries} expected: the last "
            f"{n_entries - len(check.entries)} were removed"
        )
    elif n_entries is not None and len(check.entries) != n_entries:
        extra.append(f"{len(check.entries)} entries, {n_entries} expected")
    if head is not None:
        position = next((e.entry for e in check.entries if e.hash == head.lower()), None)
        if position is None:
            extra.append(f"no entry has the hash {head}: the ledger is not the one noted")
        elif position != len(check.entries):
            extra.append(f"{head[:12]}… is entry {position}, not the last: entries were added")
    if extra:
        check = LedgerCheck(check.path, check.entries, check.problems + tuple(extra), check.n_lines)
    return check


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bytes]:
    """The ledger's bytes, read under an exclusive lock held until the block ends; an absent
    ledger is created empty first. The lock is taken on the file that is at ``path`` once it is
    held (a concurrent append may have replaced it meanwhile)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): appends are atomic, concurrent ones not queued
        fcntl = None
    while True:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_ino != os.stat(path).st_ino:
                    continue  # replaced while we waited: lock the new file
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read()
            yield data
            return
        finally:
            os.close(fd)


def append_record(path: str | os.PathLike[str], record: Mapping[str, Any]) -> LedgerEntry:
    """Append a decision record to a ledger (created when absent), atomically.

    Raises
    ------
    RecordError
        For a record that is not a decision record or whose content does not match its
        ``record_sha256``.
    LedgerError
        When the ledger fails :func:`check_bytes` (nothing is appended to a broken ledger), the
        record is already in it, or it cannot be written.
    """
    from theradose.report import atomic_path, check_output_path

    name = os.fspath(path)
    record = as_record(record)
    if record.get(HASH_KEY) != record_hash(record):
        raise RecordError(
            [
                "the record's content does not match its record_sha256: it was edited after it "
                "was written, and is not appended"
            ]
        )
    check_output_path(path)
    path = Path(path)
    with _locked(path) as data:
        check = check_bytes(data, name)
        if not check.ok:
            raise LedgerError(
                [f"{name}: not appended: the ledger fails its check", *check.problems]
            )
        same = [e.entry for e in check.entries if e.record.get(HASH_KEY) == record[HASH_KEY]]
        if same:
            raise LedgerError([f"{name}: not appended: the record is already entry {same[0]}"])
        entry = len(check.entries) + 1
        line = ledger_line(entry, check.head, record)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        _sync_folder(path.parent)
    return LedgerEntry(entry, check.head, entry_hash(entry, check.head, record), dict(record))


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
