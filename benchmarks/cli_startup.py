"""How long ``fromzero --help`` takes, against a bare Python start, in whole processes.

A command line that answers ``--help`` in a blink invites exploring; one that first imports torch
(about 1.5 s) does not. The goal is ``fromzero --help`` <= 0.15 s wall. Every row is a fresh
process run with this interpreter (no shell or pyenv shim in between), median of ``--repeats``:

- ``python -c pass``: the floor, the interpreter starting and stopping;
- ``python -m fromzero --help`` and ``python -m fromzero train --help``: what a user waits for;
- ``python -c "import torch"``: what the help would cost if building the parser imported torch.

Run: python benchmarks/cli_startup.py [--repeats 15] [--quick]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

from rich.table import Table

from fromzero.console import stdout
from fromzero.files import write_json
from timing import cpu_name, quick_path, timed  # benchmarks/timing.py

RESULTS = Path(__file__).resolve().parent / "results" / "cli_startup.json"
GOAL_S = 0.15
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "fromzero --help": ["-m", "fromzero", "--help"],
    "fromzero train --help": ["-m", "fromzero", "train", "--help"],
    "python -c 'import torch'": ["-c", "import torch"],
}


def run(args: list[str]) -> None:
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="runs per command (median)")
    parser.add_argument("--quick", action="store_true", help="3 runs each, written beside the recorded results")
    options = parser.parse_args()
    repeats = 3 if options.quick else options.repeats

    rows = {}
    for label, args in COMMANDS.items():
        run(args)  # warm the file cache
        _, seconds = timed(lambda: run(args), repeats)
        rows[label] = seconds
    table = Table(title=f"whole-process wall time, median of {repeats} ({cpu_name()})")
    for column in ("command", "median s", "goal"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for label, seconds in rows.items():
        goal = "" if "help" not in label else ("met" if seconds <= GOAL_S else f"MISSED (> {GOAL_S} s)")
        table.add_row(label, f"{seconds:.3f}", goal)
    stdout.print(table)
    write_json(quick_path(RESULTS) if options.quick else RESULTS, {
        "machine": {"cpu": cpu_name(), "python": platform.python_version()},
        "repeats": repeats,
        "goal_s": GOAL_S,
        "median_s": rows,
    })


if __name__ == "__main__":
    main()
