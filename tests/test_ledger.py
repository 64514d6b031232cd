"""The trial ledger: a hash chain of decision records that shows every edit, removal, reordering
and cut (mutation tests), its atomic appends, and the trial's history as tables and a plot."""

from __future__ import annotations

import json
import os
import threading
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from typer.testing import CliRunner

from theradose.cli import app
from theradose.decision_record import (
    RecordError,
    decision_record,
    read_inputs,
    record_hash,
    run_inputs,
)
from theradose.ledger import (
    GENESIS,
    LedgerError,
    append_record,
    check_bytes,
    check_ledger,
    ledger_line,
)

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
EXAMPLES = ROOT / "examples" / "psma_interim"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def small_record(outcomes: str, note: str | None = None) -> dict:
    inputs = read_inputs(DESIGNS / "three_plus_three.toml", outcomes)
    return decision_record(run_inputs(inputs), inputs, note=note, argv=["test"])


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [small_record(o) for o in ("1NNN", "1NNN 2NNN", "1NNN 2NNN 3NTN")]


def ledger_bytes(records) -> bytes:
    data, prev = b"", GENESIS
    for number, record in enumerate(records, start=1):
        line = ledger_line(number, prev, record)
        data += line
        prev = json.loads(line)["hash"]
    return data


def line_of(data: bytes, position: int) -> int:
    """The 1-based line that holds byte ``position``."""
    return data.count(b"\n", 0, position) + 1


def first_line(check) -> int:
    return int(check.problems[0].split(":")[0].removeprefix("line "))


# ---------------------------------------------------------------------------------------------
# Mutations: every one is caught, at its line


def test_an_intact_ledger_passes(records):
    check = check_bytes(ledger_bytes(records))
    assert check.ok and len(check.entries) == 3
    assert [e.entry for e in check.entries] == [1, 2, 3]
    assert check.entries[0].prev == GENESIS and check.head == check.entries[-1].hash


def test_every_single_byte_change_is_caught_at_its_line(records):
    data = ledger_bytes(records[:2])
    caught = 0
    for position in range(len(data)):
        # every byte's low bit; every 7th byte also another bit (the case of a letter)
        for flip in (0x01, 0x20) if position % 7 == 0 else (0x01,):
            mutated = bytearray(data)
            mutated[position] ^= flip
            check = check_bytes(bytes(mutated))
            assert not check.ok, (position, flip)
            assert first_line(check) == line_of(data, position), check.problems[0]
            caught += 1
    assert caught == len(data) + len(range(0, len(data), 7)) > 10_000


def test_every_single_byte_deletion_and_cuts_are_caught(records):
    data = ledger_bytes(records[:2])
    boundary = data.index(b"\n") + 1
    for position in range(len(data)):
        deleted = data[:position] + data[position + 1 :]
        assert not check_bytes(deleted).ok, position
        if position % 5 and position != boundary:
            continue  # cuts: every 5th byte and the line boundary
        cut = data[:position]
        if position in (0, boundary):
            assert check_bytes(cut).ok  # whole lines: a shorter ledger, see the head below
        else:
            check = check_bytes(cut)
            assert not check.ok, position
            assert check.problems[-1].startswith(f"line {line_of(data, position)}:")


def test_every_inserted_byte_is_caught(records):
    data = ledger_bytes(records[:2])
    for position in range(0, len(data) + 1, 13):
        for byte in (b" ", b"\n", b"x"):
            assert not check_bytes(data[:position] + byte + data[position:]).ok, position


def test_removed_swapped_and_repeated_lines_are_caught(records):
    lines = ledger_bytes(records).splitlines(keepends=True)
    for removed in range(2):  # the first or the middle line
        rest = lines[:removed] + lines[removed + 1 :]
        check = check_bytes(b"".join(rest))
        assert not check.ok and first_line(check) == removed + 1
    for i in range(2):
        swapped = list(lines)
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        check = check_bytes(b"".join(swapped))
        assert not check.ok and first_line(check) == i + 1
        assert "holds entry" in check.problems[0] or "does not chain" in check.problems[0]
    repeated = lines[:2] + [lines[1]] + lines[2:]
    check = check_bytes(b"".join(repeated))
    assert not check.ok and first_line(check) == 3


def test_removing_the_last_lines_is_caught_against_the_noted_head(tmp_path, records):
    path = tmp_path / "trial.jsonl"
    data = ledger_bytes(records)
    path.write_bytes(data)
    full = check_ledger(path)
    path.write_bytes(b"".join(data.splitlines(keepends=True)[:2]))
    assert check_ledger(path).ok  # on its own a valid, shorter ledger
    check = check_ledger(path, head=full.head, n_entries=3)
    assert not check.ok
    assert "3 expected: the last 1 were removed" in " ".join(check.problems)
    assert "no entry has the hash" in " ".join(check.problems)


def test_a_record_edited_and_rehashed_inside_a_line_is_caught(records):
    lines = ledger_bytes(records).splitlines(keepends=True)
    line = json.loads(lines[1])
    line["record"]["decision"]["next_level"] = 4
    line["record"]["record_sha256"] = record_hash(line["record"])
    text = json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    lines[1] = text.encode("utf-8") + b"\n"
    check = check_bytes(b"".join(lines))
    assert check.problems == ("line 2: its content does not match its hash: the line was edited",)


def test_a_reformatted_line_is_caught(records):
    lines = ledger_bytes(records).splitlines(keepends=True)
    lines[0] = json.dumps(json.loads(lines[0]), sort_keys=True).encode() + b"\n"
    check = check_bytes(b"".join(lines))
    assert not check.ok and check.problems[0].startswith("line 1: not in canonical form")


# ---------------------------------------------------------------------------------------------
# Appends


def test_append_chains_and_keeps_earlier_bytes(tmp_path, records):
    path = tmp_path / "trial.jsonl"
    before = b""
    for number, record in enumerate(records, start=1):
        entry = append_record(path, record)
        assert entry.entry == number
        data = path.read_bytes()
        assert data.startswith(before) and data.endswith(b"\n")
        before = data
    assert data == ledger_bytes(records)
    assert not [p for p in tmp_path.iterdir() if p.name != "trial.jsonl"]  # no temporary files


def test_append_refuses_a_broken_ledger_a_repeat_and_an_edited_record(tmp_path, records):
    path = tmp_path / "trial.jsonl"
    append_record(path, records[0])
    with pytest.raises(LedgerError, match="already entry 1"):
        append_record(path, records[0])
    edited = dict(records[1], note="changed")
    with pytest.raises(RecordError, match="does not match its record_sha256"):
        append_record(path, edited)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"entry":1', b'"entry":2'))
    with pytest.raises(LedgerError, match="fails its check"):
        append_record(path, records[1])


def test_a_failed_append_leaves_the_ledger_as_it_was(tmp_path, records, monkeypatch):
    path = tmp_path / "trial.jsonl"
    append_record(path, records[0])
    before = path.read_bytes()

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        append_record(path, records[1])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["trial.jsonl"]


def test_concurrent_appends_all_land(tmp_path):
    path = tmp_path / "trial.jsonl"
    many = [small_record("1NNN", note=f"copy {i}") for i in range(8)]
    errors = []

    def append(record):
        try:
            append_record(path, record)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=append, args=(record,)) for record in many]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    check = check_ledger(path)
    assert check.ok and len(check.entries) == 8
    assert {e.record["note"] for e in check.entries} == {f"copy {i}" for i in range(8)}


# ---------------------------------------------------------------------------------------------
# The command line and the history


@pytest.fixture(scope="module")
def psma_ledger(tmp_path_factory) -> Path:
    """Three meetings of the 177Lu-PSMA example, recorded and appended with the CLI."""
    folder = tmp_path_factory.mktemp("psma")
    path = folder / "trial.jsonl"
    for meeting in (1, 2, 3):
        record = folder / f"meeting_{meeting}.json"
        result = invoke(
            "recommend", DESIGNS / "boin_psma_dosimetry.toml",
            "--patients", EXAMPLES / f"meeting_{meeting}.csv", "--dlt-window-days", 56,
            "--record", record, "--by", "DEC", "--note", f"meeting {meeting}",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        result = invoke("ledger", "append", path, record)
        assert result.exit_code == 0, result.output
        assert f"entry {meeting}, hash " in result.output
    return path


def test_cli_check_and_show(psma_ledger, tmp_path):
    result = invoke("ledger", "check", psma_ledger)
    assert result.exit_code == 0 and "intact, 3 entries" in result.output
    shown = invoke("ledger", "show", psma_ledger)
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert "next level 2 (5.55)" in text and "next level 3 (7.4)" in text
    assert "wait (pending: patient 9)" in text
    assert "1NNN 2NNN 3NTN" in text and "meeting 3" in text
    assert "kidney: P(a new patient's cumulative dose > 23 Gy)" in text
    assert "0/0 ✗" in text  # levels the kidney limit rules out


def test_cli_check_names_the_line(psma_ledger, tmp_path):
    broken = tmp_path / "broken.jsonl"
    lines = psma_ledger.read_bytes().splitlines(keepends=True)
    broken.write_bytes(lines[0] + lines[2])
    result = invoke("ledger", "check", broken)
    assert result.exit_code == 1
    assert "line 2: holds entry 3" in result.output and "BROKEN" in result.output
    assert invoke("ledger", "show", broken).exit_code == 1
    record = tmp_path / "r.json"
    record.write_text(json.dumps(json.loads(lines[1])["record"]))
    appended = invoke("ledger", "append", broken, record)
    assert appended.exit_code == 1 and "fails its check" in appended.stderr
    assert invoke("ledger", "check", tmp_path / "none.jsonl").exit_code == 2


def test_cli_check_with_the_noted_head(psma_ledger, tmp_path):
    head = check_ledger(psma_ledger).head
    ok = invoke("ledger", "check", psma_ledger, "--head", head, "--entries", 3)
    assert ok.exit_code == 0
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(psma_ledger.read_bytes().splitlines(keepends=True)[:2]))
    result = invoke("ledger", "check", cut, "--head", head, "--entries", 3)
    assert result.exit_code == 1 and "were removed" in result.output


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_trial_plot_is_written_and_readable(psma_ledger, tmp_path, suffix):
    out = tmp_path / f"trial.{suffix}"
    result = invoke("ledger", "show", psma_ledger, "--plot", out)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    if suffix == "png":
        import matplotlib.image

        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
        image = matplotlib.image.imread(out)
        assert image.shape[0] > 400 and image.shape[1] > 600
    else:
        root = ElementTree.fromstring(data)
        assert root.tag.endswith("svg")
        text = data.decode("utf-8")
        assert "kidney" in text and "ruled out" in text


def test_trial_plot_of_an_outcome_ledger_without_organs(tmp_path, records):
    from theradose.history import plot_history

    path = tmp_path / "trial.jsonl"
    for record in records:
        append_record(path, record)
    figure = plot_history(check_ledger(path).entries)
    assert len(figure.axes) == 1
    with pytest.raises(ValueError, match="no organ 'liver'"):
        plot_history(check_ledger(path).entries, organ="liver")
