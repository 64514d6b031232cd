"""Start-up time of the ``theradose`` command as a whole process (targets: ``--help`` under
0.2 s, ``validate`` under 0.3 s, ``simulate`` of 1,000 BOIN trials under 0.6 s).

Each command runs ``--repeat`` times after one warm-up run (hyperfine-style); the minimum is the
figure to compare (the least disturbed by other work on the machine), the median shows the
spread. ``--imports`` also lists the slowest imports of each command (``python -X importtime``).

Python's bytecode cache is on, as for an installed package, but kept in a temporary folder
(``PYTHONPYCACHEPREFIX``) so that nothing is written in the working tree; the warm-up run fills
it. ``--no-bytecode-cache`` instead compiles every module on every run (what an environment with
``PYTHONDONTWRITEBYTECODE`` set pays: about 0.1 s more per command).

    python benchmarks/bench_startup.py [--repeat 10] [--imports] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
COMMANDS = {
    "--help": (["--help"], 0.2),
    "validate boin": (["validate", str(DESIGNS / "boin.toml")], 0.3),
    "simulate 1,000 BOIN trials": (
        [
            "simulate",
            str(DESIGNS / "boin.toml"),
            "--scenarios",
            str(DESIGNS / "scenarios.toml"),
            "--trials",
            "1000",
        ],
        0.6,
    ),
}
ENTRY = "from theradose.cli import app; app()"


def run_once(
    args: list[str], env: dict[str, str], extra: tuple[str, ...] = ()
) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *extra, "-c", ENTRY, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
    return elapsed, done.stderr


def slowest_imports(stderr: str, n: int = 8) -> list[tuple[int, str]]:
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        if not name.startswith(" "):  # top-level imports only: their time includes the rest
            rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--imports", action="store_true", help="show the slowest imports")
    parser.add_argument(
        "--no-bytecode-cache", action="store_true", help="compile every module on every run"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="theradose-pycache-") as cache:
        env = dict(os.environ)
        if options.no_bytecode_cache:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            env.pop("PYTHONPYCACHEPREFIX", None)
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = cache
        run(options, env)


def run(options: argparse.Namespace, env: dict[str, str]) -> None:
    cached = "off" if options.no_bytecode_cache else "on"
    print(
        f"python {sys.version.split()[0]}, typer {version('typer')}, bytecode cache {cached}; "
        f"{options.repeat} runs each after a warm-up"
    )
    print(f"{'command':<28} {'min s':>7} {'median s':>9} {'target s':>9}")
    for label, (args, target) in COMMANDS.items():
        run_once(args, env)
        times = [run_once(args, env)[0] for _ in range(options.repeat)]
        flag = "" if min(times) < target else "  (over)"
        print(
            f"{label:<28} {min(times):7.3f} {statistics.median(times):9.3f} {target:9.1f}{flag}"
        )
        if options.imports:
            _, stderr = run_once(args, env, ("-X", "importtime"))
            for micros, name in slowest_imports(stderr):
                print(f"    {micros / 1e6:6.3f} s  import {name}")


if __name__ == "__main__":
    main()
