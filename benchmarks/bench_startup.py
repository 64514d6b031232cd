"""Start-up time of the ``theradose`` command as a whole process (the issue's targets: ``--help``
and ``validate`` under 0.3 s, ``simulate`` of 1,000 BOIN trials under 0.6 s).

Each command runs ``--repeat`` times after one warm-up run (hyperfine-style); the minimum is the
figure to compare (the least disturbed by other work on the machine), the median shows the
spread. ``--imports`` also lists the slowest imports of each command (``python -X importtime``).

    python benchmarks/bench_startup.py [--repeat 10] [--imports]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
COMMANDS = {
    "--help": (["--help"], 0.3),
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


def run_once(args: list[str], extra: tuple[str, ...] = ()) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *extra, "-c", ENTRY, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
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
    options = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {options.repeat} runs each after a warm-up")
    print(f"{'command':<28} {'min s':>7} {'median s':>9} {'target s':>9}")
    for label, (args, target) in COMMANDS.items():
        run_once(args)
        times = [run_once(args)[0] for _ in range(options.repeat)]
        flag = "" if min(times) < target else "  (over)"
        print(
            f"{label:<28} {min(times):7.3f} {statistics.median(times):9.3f} {target:9.1f}{flag}"
        )
        if options.imports:
            _, stderr = run_once(args, ("-X", "importtime"))
            for micros, name in slowest_imports(stderr):
                print(f"    {micros / 1e6:6.3f} s  import {name}")


if __name__ == "__main__":
    main()
