"""Per-trial records of a simulation run: one CSV row per simulated trial, streamed chunk by chunk.

The operating characteristics (:mod:`theradose.results`) reduce each chunk of trials to sums;
this module keeps the trials themselves, for analyses the summary does not foresee (the
distribution of the sample size, which trials passed an organ limit, …). The engine hands every
chunk's :class:`~theradose.results.ChunkResult` to :class:`TrialRecordWriter` in chunk order
(``on_chunk`` of :func:`theradose.simulation.simulate`), which writes its rows and lets it go, so
memory does not grow with the number of trials; :func:`trial_records_file` streams them into a
temporary file beside the destination and renames it into place only when the run has finished.

File contract (columns may be added, never removed or renamed):

- first, ``#`` lines of provenance, ``# key: value`` with the value in JSON: ``version``,
  ``seed``, ``n_trials`` (per design × scenario), ``engine``, ``designs``, ``design_paths``,
  ``scenarios``, ``scenario_path``;
- then a header and one row per design × scenario × trial (text quoted, numbers not; an empty
  field is ``""``), in chunk order, within a chunk design by design and scenario by scenario
  (so the rows of one design × scenario are interleaved with the others' every
  :data:`theradose.simulation.CHUNK_TRIALS` trials);
- columns (:func:`trial_columns`): ``design``, ``scenario``, ``trial`` (0-based over the run:
  the same trial index means the same virtual patients in every design and scenario),
  ``selected_level`` (1-based; empty for none), ``stop_reason`` (a
  :class:`~theradose.state.StopReason` name in lower case, as the JSON's ``stop_reason_pct``
  keys), ``n_patients``, ``n_dlt``, ``n_1`` … ``n_K`` and ``dlt_1`` … ``dlt_K`` (patients and
  DLTs per level; K the most levels of any design, empty beyond a design's own),
  ``duration_months`` (from the first arrival to the end of the last patient's DLT window; empty
  for a design without [timing]); and, when a design has organ limits, ``exceed_<organ>`` per
  organ of any design (patients whose TRUE cumulative absorbed dose or BED passed the limit;
  empty for a design without that organ) and ``ruled_out_n_1`` … ``ruled_out_n_K`` (patients
  enrolled when the organ-dose constraint first ruled the level out; empty if it never did);
  and, when a design has ``[optimisation]`` (the randomised stage after escalation),
  ``optimised_level`` (1-based: the level the stage selected; empty for none), per arm
  ``stage_arm1_*`` (the selected level's arm) and ``stage_arm2_*`` (the other candidate):
  ``level`` (1-based), ``n``, ``dlt``, ``response`` and ``both`` (patients with a DLT and a
  response), empty where the trial had no such arm (no level selected after escalation; one
  candidate), and ``stage_duration_months`` (empty without [timing] or without the stage);
  when the run also has organ limits, per arm ``stage_arm1_exceed_<organ>`` … (the arm's
  patients whose TRUE cumulative absorbed dose or BED passed the organ's limit; empty for an
  organ the design has no limit on) and ``stage_arm1_ruled_out`` (1 when the organ-dose
  constraint, updated with the stage patients' measured dosimetry, ruled the arm's level out,
  so that it could not be selected; else 0), then the same for arm 2.
  Stage patients within an arm are exchangeable (fixed arm sizes, no decision within the
  stage), so these counts of the four outcomes are each arm's complete record; and, when a
  scenario simulates efficacy, the escalation's ``response_1`` … ``response_K`` (patients who
  responded at each level) and ``both_1`` … ``both_K`` (patients with a DLT and a response;
  empty for a scenario without efficacy).

Averages of these columns over a design × scenario reproduce the summary: e.g. the share of rows
with ``selected_level`` = k is ``selection_pct`` of level k, the mean of ``n_k`` is
``patients_mean`` of level k, the share with ``optimised_level`` = k is
``optimised_selection_pct`` of level k.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from theradose import __version__
from theradose.design import Design
from theradose.report import atomic_path, check_output_path
from theradose.results import ChunkResult
from theradose.scenario import Scenario
from theradose.state import NO_LEVEL, StopReason

_STOP_NAMES = {reason.value: reason.name.lower() for reason in StopReason}


def _organs(designs: Sequence[Design]) -> tuple[str, ...]:
    """Every organ with a limit in any design, in order of first appearance."""
    names: dict[str, None] = {}
    for design in designs:
        if design.dosimetry is not None:
            names.update(dict.fromkeys(design.dosimetry.names))
    return tuple(names)


STAGE_ARM_FIELDS = ("level", "n", "dlt", "response", "both")


def _stage_columns(organs: Sequence[str] = ()) -> list[str]:
    """The stage's columns; with ``organs`` (the run's organs with limits), each arm's
    patients past each organ's limit and whether the constraint ruled the arm's level out."""
    arms = [f"stage_arm{arm}_{name}" for arm in (1, 2) for name in STAGE_ARM_FIELDS]
    columns = ["optimised_level", *arms, "stage_duration_months"]
    for arm in (1, 2) if organs else ():
        columns += [f"stage_arm{arm}_exceed_{organ}" for organ in organs]
        columns.append(f"stage_arm{arm}_ruled_out")
    return columns


def trial_columns(designs: Sequence[Design], efficacy: bool = False) -> tuple[str, ...]:
    """The CSV columns for a run of ``designs`` (see the module's file contract); ``efficacy``:
    a scenario of the run simulates responses (the escalation's responses per level)."""
    n_levels = max(design.n_levels for design in designs)
    levels = range(1, n_levels + 1)
    columns = ["design", "scenario", "trial", "selected_level", "stop_reason"]
    columns += ["n_patients", "n_dlt", *(f"n_{k}" for k in levels), *(f"dlt_{k}" for k in levels)]
    columns.append("duration_months")
    organs = _organs(designs)
    if organs:
        columns += [f"exceed_{organ}" for organ in organs]
        columns += [f"ruled_out_n_{k}" for k in levels]
    if any(design.optimisation is not None for design in designs):
        columns += _stage_columns(organs)
    if efficacy:
        columns += [*(f"response_{k}" for k in levels), *(f"both_{k}" for k in levels)]
    return tuple(columns)


def trial_rows(
    design: Design,
    scenario: str,
    chunk: ChunkResult,
    first_trial: int,
    n_levels: int,
    organs: Sequence[str] = (),
    stage: bool = False,
    efficacy: bool = False,
) -> Iterator[tuple]:
    """The rows of one chunk of one design × scenario, in :func:`trial_columns` order.

    Parameters
    ----------
    design : the design simulated
    scenario : the scenario's name
    chunk : the chunk's per-trial outcomes
    first_trial : the run's index of the chunk's first trial
    n_levels, organs : the run's levels and organs (the columns); a design with fewer levels,
        or without an organ, leaves those fields empty (None)
    stage : the run has a design with ``[optimisation]`` (the stage's columns; empty for a
        design without one)
    efficacy : the run has a scenario with efficacy (the responses' columns; empty for a
        scenario without)
    """
    n_trials, k = chunk.n.shape
    empty = [None] * n_trials
    n = chunk.n.astype(np.int64)
    y = chunk.y.astype(np.int64)
    columns = [
        [design.name] * n_trials,
        [scenario] * n_trials,
        range(first_trial, first_trial + n_trials),
        [None if m == NO_LEVEL else m + 1 for m in chunk.mtd.tolist()],
        [_STOP_NAMES[r] for r in chunk.stop_reason.tolist()],
        n.sum(axis=1).tolist(),
        y.sum(axis=1).tolist(),
    ]
    for counts in (n, y):
        columns += [counts[:, j].tolist() for j in range(k)] + [empty] * (n_levels - k)
    columns.append(empty if chunk.duration is None else chunk.duration.tolist())
    if organs:
        own = () if design.dosimetry is None else design.dosimetry.names
        exceeds = chunk.exceed_n  # [trial, organ]
        for organ in organs:
            if organ in own and exceeds is not None:
                columns.append(exceeds[:, own.index(organ)].tolist())
            else:
                columns.append(empty)
        ruled = chunk.ruled_out_at
        for j in range(n_levels):
            if ruled is None or j >= k:
                columns.append(empty)
            else:
                columns.append([None if v < 0 else v for v in ruled[:, j].tolist()])
    if stage:
        if chunk.optimised is None:
            columns += [empty] * len(_stage_columns(organs))
        else:
            columns += _stage_fields(chunk, design, organs)
    if efficacy:
        for counts in (chunk.r, chunk.b):
            if counts is None:
                columns += [empty] * n_levels
            else:
                counts = counts.astype(np.int64)
                columns += [counts[:, j].tolist() for j in range(k)] + [empty] * (n_levels - k)
    return zip(*columns, strict=True)


def _stage_fields(chunk: ChunkResult, design: Design, organs: Sequence[str] = ()) -> list[list]:
    """The stage's columns of a chunk (:func:`_stage_columns` order): the selected level's arm,
    then the other candidate's, read from the per-level stage counts; with ``organs``, each
    arm's patients past each organ's limit (empty for an organ the design has no limit on)
    and whether the organ-dose constraint at the end of the stage ruled its level out."""
    n_trials = chunk.n.shape[0]
    rows = np.arange(n_trials)
    entered = chunk.mtd >= 0
    other = chunk.stage_n > 0
    other[rows, np.maximum(chunk.mtd, 0)] = False
    arms = [
        np.where(entered, chunk.mtd, NO_LEVEL),
        np.where(entered & other.any(axis=1), np.argmax(other, axis=1), NO_LEVEL),
    ]
    out = [[None if m == NO_LEVEL else m + 1 for m in chunk.optimised.tolist()]]
    for level in arms:
        has, at = level >= 0, np.maximum(level, 0)
        out.append([None if v == NO_LEVEL else v + 1 for v in level.tolist()])
        for counts in (chunk.stage_n, chunk.stage_y, chunk.stage_r, chunk.stage_b):
            if counts is None:  # a run folder's chunk kept before stage_b existed
                out.append([None] * n_trials)
                continue
            values = counts[rows, at].astype(np.int64)
            kept = zip(values.tolist(), has.tolist(), strict=True)
            out.append([v if ok else None for v, ok in kept])
    if chunk.stage_duration is None:
        out.append([None] * n_trials)
    else:
        months = chunk.stage_duration.tolist()
        out.append([m if ok else None for m, ok in zip(months, entered.tolist(), strict=True)])
    own = () if design.dosimetry is None else design.dosimetry.names
    for level in arms if organs else ():
        has, at = level >= 0, np.maximum(level, 0)
        for organ in organs:
            if organ not in own or chunk.stage_exceed is None:
                out.append([None] * n_trials)
                continue
            values = chunk.stage_exceed[rows, at, own.index(organ)].astype(np.int64)
            kept = zip(values.tolist(), has.tolist(), strict=True)
            out.append([v if ok else None for v, ok in kept])
        if chunk.stage_admissible is None:
            out.append([None] * n_trials)
        else:
            ruled = (~chunk.stage_admissible[rows, at]).astype(np.int64)
            kept = zip(ruled.tolist(), has.tolist(), strict=True)
            out.append([v if ok else None for v, ok in kept])
    return out


class TrialRecordWriter:
    """Writes each chunk's trials as CSV rows to a text handle, as the run produces them.

    Call it as ``on_chunk`` of :func:`theradose.simulation.simulate`: chunks must come in order
    (the engine guarantees it for any number of workers), and the run's trial index of each
    chunk's first trial is the number of trials written before it.

    Parameters
    ----------
    handle : a text file opened with ``newline=""``
    designs, scenarios : the run's, in the order the engine gives their results
    """

    def __init__(self, handle: IO[str], designs: Sequence[Design], scenarios: Sequence[Scenario]):
        self.designs = tuple(designs)
        self.scenarios = tuple(scenarios)
        self.efficacy = any(scenario.efficacy for scenario in self.scenarios)
        self.columns = trial_columns(self.designs, self.efficacy)
        self.n_levels = max(design.n_levels for design in self.designs)
        self.organs = _organs(self.designs)
        self.stage = any(design.optimisation is not None for design in self.designs)
        # Every text field quoted (empty ones too), so that a '#' in a design's or scenario's
        # name is not read as the start of a comment.
        self._csv = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        self._handle = handle
        self.chunks_written = 0
        self.trials_written = 0  # per design × scenario

    def write_header(self, provenance: dict | None = None) -> None:
        """``# key: value`` lines (values in JSON), then the column names."""
        for key, value in (provenance or {}).items():
            text = json.dumps(value, ensure_ascii=False).replace("\n", " ")
            self._handle.write(f"# {key}: {text}\n")
        self._csv.writerow(self.columns)

    def __call__(self, chunk: int, results: Sequence[Sequence[ChunkResult]]) -> None:
        if chunk != self.chunks_written:
            raise ValueError(f"chunk {chunk} arrived when chunk {self.chunks_written} was due")
        size = 0
        for design, row in zip(self.designs, results, strict=True):
            for scenario, result in zip(self.scenarios, row, strict=True):
                size = result.n.shape[0]
                self._csv.writerows(
                    trial_rows(
                        design,
                        scenario.name,
                        result,
                        self.trials_written,
                        self.n_levels,
                        self.organs,
                        self.stage,
                        self.efficacy,
                    )
                )
        self.chunks_written += 1
        self.trials_written += size


@contextlib.contextmanager
def trial_records_file(
    path: str | os.PathLike[str],
    designs: Sequence[Design],
    scenarios: Sequence[Scenario],
    *,
    seed: int,
    n_trials: int,
    scenario_path: str | None = None,
    engine: str = "grid",
) -> Iterator[TrialRecordWriter]:
    """A :class:`TrialRecordWriter` streaming into a temporary file beside ``path``, which
    replaces ``path`` only when the block ends without error after all ``n_trials`` trials.

    An error or an interruption (Ctrl-C) removes the temporary file and leaves an existing
    ``path`` untouched.

    Raises
    ------
    OSError
        Naming ``path``, before anything runs, when no file can be written there
        (:func:`theradose.report.check_output_path`).
    RuntimeError
        When the block ends before every trial was written.
    """
    check_output_path(path)
    provenance = {
        "version": __version__,
        "seed": seed,
        "n_trials": n_trials,
        "engine": engine,
        "designs": [design.name for design in designs],
        "design_paths": [design.path for design in designs],
        "scenarios": [scenario.name for scenario in scenarios],
        "scenario_path": scenario_path,
    }
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = TrialRecordWriter(handle, designs, scenarios)
        writer.write_header(provenance)
        yield writer
        if writer.trials_written != n_trials:
            raise RuntimeError(
                f"{Path(path)}: {writer.trials_written} of {n_trials} trials were written"
            )
        handle.flush()
        os.fsync(handle.fileno())
