"""Run directories: a simulation that keeps every finished chunk, so that an interrupted run
continues where it stopped (``simulate --run-dir``).

A run directory holds

- ``manifest.json``: what the run is — the theradose version, the chunk size
  (:data:`theradose.simulation.CHUNK_TRIALS`), the seed, the trials per design × scenario, the
  engine, every design (name, method, file, SHA-256 of the file, its parsed settings) and the
  scenarios (file, SHA-256, parsed settings, names, DLT probabilities);
- ``chunk-NNNNNN.npz``: chunk ``NNNNNN``'s sufficient statistics for every design × scenario
  (the :class:`~theradose.results.Simulations` of that chunk alone) and, when the run writes
  ``--trials-csv``, its per-trial outcomes (:class:`~theradose.results.ChunkResult`); plain numpy
  arrays, read with ``allow_pickle=False``;
- ``.lock``: held (``flock``) by the run using the directory, so two runs never share one.

Every file is written to a temporary name, flushed to disk, then renamed into place, so a chunk
is either complete or absent: a run killed at any moment (Ctrl-C, SIGKILL, power loss) leaves at
worst a temporary file, removed by the next run. A chunk that cannot be read in full is simulated
again. Each chunk's patients come from its own seed stream
(:func:`theradose.virtual_patients.chunk_patients`) and the chunks' statistics are merged in chunk
order whether they were read or simulated, so a continued run gives bit-identical results to an
uninterrupted one. A directory made by another run (version, chunk size, seed, trials, engine,
designs or scenarios differ) is refused with what differs; a design or scenario file whose text
changed but whose parsed settings did not (a comment, spacing) is the same run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from theradose import __version__
from theradose.design import Design
from theradose.results import ChunkResult, Simulations
from theradose.scenario import Scenario
from theradose.validation import ConfigError

MANIFEST = "manifest.json"
LOCK = ".lock"
FORMAT = 3  # of the chunk files; a change makes older run directories "another version"
_CHUNK = re.compile(r"chunk-(\d{6,})\.npz")
# Simulations fields that say what was simulated (rebuilt from the run's inputs on reading);
# every other field is a statistic stored in the chunk file.
_IDENTITY = (
    "design",
    "scenario",
    "target",
    "dlt_prob",
    "true_mtd",
    "optimum",
    "organs",
    "organ_limits",
    "max_patients",
    "eff_prob",
    "both_prob",
    "utility",
    "obd",
    "utility_weights",
    "optimal_level",
)
# What must agree for a directory to continue a run (the rest of the manifest is provenance).
_SETTINGS = ("format", "version", "chunk_trials", "seed", "n_trials", "engine", "mcmc_options")


class RunDirError(ConfigError):
    """A run directory that cannot be used: made by another run, in use, or not a run
    directory. One line per problem, each naming the directory (the CLI's exit code 2)."""


def _sha256(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists, TOML dates strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def run_manifest(
    designs: Sequence[Design],
    scenarios: Sequence[Scenario],
    *,
    seed: int,
    n_trials: int,
    chunk_trials: int,
    scenario_path: str | None = None,
    engine: str = "grid",
    mcmc_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a run: what must agree for a run directory to continue it, and provenance.

    A design built in Python rather than read from a file (no parsed settings) is described by
    its ``repr``; so are scenarios given as objects.
    """
    scenario_source: Any = None
    if scenario_path is not None:
        from theradose.validation import read_toml

        scenario_source = read_toml(scenario_path)
    return _plain(
        {
            "format": FORMAT,
            "version": __version__,
            "chunk_trials": chunk_trials,
            "seed": seed,
            "n_trials": n_trials,
            "engine": engine,
            "mcmc_options": mcmc_options or {},
            "designs": [
                {
                    "name": d.name,
                    "method": d.method_key,
                    "path": d.path,
                    "sha256": _sha256(d.path),
                    "source": d.source if d.source else repr(d),
                }
                for d in designs
            ],
            "scenarios": {
                "path": scenario_path,
                "sha256": _sha256(scenario_path),
                "source": scenario_source if scenario_source is not None else repr(scenarios),
                "names": [s.name for s in scenarios],
                "dlt_prob": [list(s.dlt_prob) for s in scenarios],
            },
        }
    )


def _first_difference(there: Any, here: Any, key: str = "") -> str:
    """Where two parsed settings first differ, e.g. "boin.target: 0.3 there, 0.25 here"."""
    if isinstance(there, dict) and isinstance(here, dict):
        for name in sorted(set(there) | set(here)):
            inner = f"{key}.{name}" if key else name
            if name not in here:
                return f"{inner}: set there, absent here"
            if name not in there:
                return f"{inner}: absent there, set here"
            if there[name] != here[name]:
                return _first_difference(there[name], here[name], inner)
    if isinstance(there, list) and isinstance(here, list) and len(there) == len(here):
        for i, (a, b) in enumerate(zip(there, here, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{key}[{i}]")
    shown = lambda v: json.dumps(v)[:60]  # noqa: E731
    return f"{key or 'settings'}: {shown(there)} there, {shown(here)} here"


def manifest_differences(there: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """What differs between a run directory's manifest and this run's, one line each."""
    out = []
    for key in _SETTINGS:
        if there.get(key) != here.get(key):
            out.append(f"{key} {json.dumps(there.get(key))} there, {json.dumps(here[key])} here")
    d_there, d_here = there.get("designs") or [], here["designs"]
    names = lambda designs: [d.get("name") for d in designs]  # noqa: E731
    if names(d_there) != names(d_here):
        out.append(f"designs {names(d_there)} there, {names(d_here)} here")
    else:
        for a, b in zip(d_there, d_here, strict=True):
            if (a.get("method"), a.get("source")) != (b["method"], b["source"]):
                what = _first_difference(
                    {"method": a.get("method"), **_as_dict(a.get("source"))},
                    {"method": b["method"], **_as_dict(b["source"])},
                )
                out.append(f"design {b['name']!r} ({b['path']}) differs: {what}")
    s_there, s_here = there.get("scenarios") or {}, here["scenarios"]
    for key in ("source", "names", "dlt_prob"):
        if s_there.get(key) != s_here[key]:
            what = _first_difference(s_there.get(key), s_here[key], key)
            out.append(f"scenarios ({s_here['path']}) differ: {what}")
            break
    return out


def _as_dict(source: Any) -> dict:
    return source if isinstance(source, dict) else {"repr": source}


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run directory opened by :func:`open_run_dir` (picklable: workers write chunks to it).

    Attributes
    ----------
    path : the directory
    fingerprint : SHA-256 of the run's settings, stored in every chunk file and checked on reading
    """

    path: Path
    fingerprint: str

    def chunk_path(self, chunk: int) -> Path:
        return self.path / f"chunk-{chunk:06d}.npz"

    def has(self, chunk: int, n_trials: int, records: bool) -> bool:
        """Whether chunk ``chunk`` is stored, of ``n_trials`` trials, with its per-trial
        outcomes when ``records``; reads only the file's index and small fields."""
        try:
            with np.load(self.chunk_path(chunk), allow_pickle=False) as data:
                return (
                    str(data["fingerprint"]) == self.fingerprint
                    and int(data["chunk"]) == chunk
                    and int(data["n_trials"]) == n_trials
                    and (bool(data["records"]) or not records)
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return False

    def save(
        self,
        chunk: int,
        n_trials: int,
        sims: Sequence[Sequence[Simulations]],
        records: Sequence[Sequence[ChunkResult]] | None,
    ) -> None:
        """Store a finished chunk atomically: ``sims`` ``[design][scenario]`` (that chunk's
        statistics alone) and, if given, its per-trial outcomes."""
        arrays: dict[str, np.ndarray] = {
            "fingerprint": np.array(self.fingerprint),
            "chunk": np.array(chunk),
            "n_trials": np.array(n_trials),
            "records": np.array(records is not None),
        }
        for i, row in enumerate(sims):
            for j, sim in enumerate(row):
                arrays.update(_statistics(sim, f"sim/{i}/{j}/"))
        for i, row in enumerate(records or ()):
            for j, result in enumerate(row):
                for field in dataclasses.fields(result):
                    value = getattr(result, field.name)
                    if value is not None:
                        arrays[f"chunk/{i}/{j}/{field.name}"] = value
        target = self.chunk_path(chunk)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with open(fd, "wb") as handle:
                np.savez_compressed(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(error, OSError):  # name the chunk, not the temporary file
                raise OSError(error.errno, error.strerror, str(target)) from None
            raise
        _fsync_dir(self.path)

    def load(
        self, chunk: int, templates: Sequence[Sequence[Simulations]], records: bool
    ) -> tuple[list[list[Simulations]], list[list[ChunkResult]] | None] | None:
        """A stored chunk as the engine's workers return it: ``[design][scenario]``
        :class:`Simulations` (``templates``: the run's empty ones) and, when ``records``, its
        :class:`ChunkResult`; None when the file is missing or cannot be read in full."""
        try:
            with np.load(self.chunk_path(chunk), allow_pickle=False) as data:
                if str(data["fingerprint"]) != self.fingerprint or int(data["chunk"]) != chunk:
                    return None
                arrays = {name: data[name] for name in data.files}  # reads (and CRC-checks) all
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        sims = [
            [_from_statistics(t, arrays, f"sim/{i}/{j}/") for j, t in enumerate(row)]
            for i, row in enumerate(templates)
        ]
        chunks = None
        if records:
            if not bool(arrays["records"]):
                return None
            fields = [f.name for f in dataclasses.fields(ChunkResult)]
            chunks = [
                [
                    ChunkResult(**{f: arrays.get(f"chunk/{i}/{j}/{f}") for f in fields})
                    for j in range(len(row))
                ]
                for i, row in enumerate(templates)
            ]
        return sims, chunks

    def remove_temporary(self) -> None:
        """Remove the temporary files of chunks whose writing was cut short."""
        for p in self.path.glob(".chunk-*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _statistics(sim: Simulations, prefix: str) -> dict[str, np.ndarray]:
    out = {}
    for field in dataclasses.fields(sim):
        if field.name in _IDENTITY:
            continue
        value = getattr(sim, field.name)
        key = prefix + field.name
        if isinstance(value, list):  # durations: one array per chunk
            out[key] = np.array(len(value))
            out.update({f"{key}/{k}": v for k, v in enumerate(value)})
        elif isinstance(value, dict):  # dosimetry: name → array
            out[key] = np.array(len(value))
            out.update({f"{key}/{name}": np.asarray(v) for name, v in value.items()})
        elif isinstance(value, np.ndarray | int | float):
            out[key] = np.asarray(value)
        else:
            raise TypeError(f"Simulations.{field.name}: cannot store a {type(value).__name__}")
    return out


def _from_statistics(template: Simulations, arrays: dict, prefix: str) -> Simulations:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(template):
        if field.name in _IDENTITY:
            continue
        key = prefix + field.name
        default = getattr(template, field.name)
        if isinstance(default, list):
            values[field.name] = [arrays[f"{key}/{k}"] for k in range(int(arrays[key]))]
        elif isinstance(default, dict):
            start = len(key) + 1
            names = [n[start:] for n in arrays if n.startswith(f"{key}/")]
            values[field.name] = {n: arrays[f"{key}/{n}"] for n in names}
        elif isinstance(default, np.ndarray):
            values[field.name] = arrays[key]
        else:  # plain int or float: the same Python type as a simulated chunk's
            values[field.name] = arrays[key].item()
    return dataclasses.replace(template, **values)


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (a power cut must not lose a chunk reported as kept)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fingerprint(manifest: dict[str, Any]) -> str:
    settings = _plain({key: manifest[key] for key in (*_SETTINGS, "designs", "scenarios")})
    for design in settings["designs"]:
        design.pop("path", None), design.pop("sha256", None)
    settings["scenarios"] = {
        k: v for k, v in settings["scenarios"].items() if k not in ("path", "sha256")
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def run_dir_problems(path: str | os.PathLike[str]) -> list[str]:
    """Why ``path`` cannot be a run directory, before anything runs (one line each, naming the
    flag and the path; empty when it can): it is a file, its folder does not exist, it is not
    writable, or it is a folder with other files and no manifest. Whether a manifest there
    matches the run is checked by :func:`open_run_dir`."""
    where = f"--run-dir {path}"
    path = Path(path)
    if path.exists() and not path.is_dir():
        return [f"{where}: is a file, not a folder"]
    if not path.exists():
        if not path.parent.is_dir():
            return [f"{where}: folder {str(path.parent)!r} does not exist"]
        path = path.parent
        if not os.access(path, os.W_OK | os.X_OK):
            return [f"{where}: folder {str(path)!r} is not writable"]
        return []
    if not os.access(path, os.W_OK | os.X_OK):
        return [f"{where}: is not writable"]
    if not (path / MANIFEST).exists() and any(p.name != LOCK for p in path.iterdir()):
        return [
            f"{where}: holds other files and no {MANIFEST}: not a run directory (give a new "
            "or empty folder)"
        ]
    return []


@contextlib.contextmanager
def open_run_dir(path: str | os.PathLike[str], manifest: dict[str, Any]) -> Iterator[RunDir]:
    """Open (or create) the run directory ``path`` for the run that ``manifest``
    (:func:`run_manifest`) describes, holding its lock until the block ends.

    Raises
    ------
    RunDirError
        Naming ``path``: it is a file, its folder does not exist, it is not writable, it is a
        folder with other files and no manifest, its manifest cannot be read, it was made by
        another run (one line per difference), or another run is using it.
    """
    where = f"--run-dir {path}"
    problems = run_dir_problems(path)
    if problems:
        raise RunDirError(problems)
    path = Path(path)
    manifest_path = path / MANIFEST
    try:
        path.mkdir(exist_ok=True)
    except OSError as error:
        raise RunDirError([f"{where}: cannot create it: {error.strerror or error}"]) from None
    with open(path / LOCK, "a+b") as lock:
        _lock(lock, where)
        if manifest_path.exists():
            try:
                there = json.loads(manifest_path.read_text(encoding="utf-8"))
                if not isinstance(there, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as error:
                raise RunDirError([f"{where}: cannot read its {MANIFEST}: {error}"]) from None
            differences = manifest_differences(there, manifest)
            if differences:
                raise RunDirError(
                    [f"{where}: made by another run: {d}" for d in differences]
                    + [f"{where}: continue it with its own settings, or give a new folder"]
                )
        else:
            from theradose.report import write_atomic

            write_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            _fsync_dir(path)
        run_dir = RunDir(path, _fingerprint(manifest))
        run_dir.remove_temporary()
        try:
            yield run_dir
        finally:
            run_dir.remove_temporary()


def _lock(handle, where: str) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (two runs on one directory are the user's care)
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunDirError([f"{where}: in use by another theradose run"]) from None


def chunks_kept(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(chunks stored, chunks of the run) of the run directory ``path``; None when it holds no
    manifest (the CLI's message after an interruption)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
        total = -(-int(manifest["n_trials"]) // int(manifest["chunk_trials"]))
        stored = sum(1 for p in Path(path).iterdir() if _CHUNK.fullmatch(p.name))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stored, total
