"""What the benchmark scripts share: median wall time over repeated calls, the CPU, where results go."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

# --background-load: what else keeps the machine busy while a benchmark runs, as on a laptop
BACKGROUND_LOADS = {
    "none": None,
    "busy": "while True: pass",  # a plain Python loop keeps one core busy
    "torch": "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\nwhile True: a @ a",  # a 2-thread job
}
# the load ends with the benchmark, also when the benchmark is killed before it can stop it
_ORPHAN_GUARD = ("import os, threading, time\n"
                 "def _guard(parent=os.getppid()):\n"
                 "    while os.getppid() == parent:\n"
                 "        time.sleep(0.5)\n"
                 "    os._exit(0)\n"
                 "threading.Thread(target=_guard, daemon=True).start()\n")


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """(result of the last call, median seconds over ``repeats`` calls)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def utc_now() -> str:
    """When a result was recorded, e.g. ``2026-12-07 18:31 UTC``: written into every results file."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def quick_path(results: Path) -> Path:
    """Where a ``--quick`` smoke run writes, so it never overwrites the recorded results."""
    return results.with_name(results.stem + "_quick.json")


def cpu_name(machine: dict | None = None) -> str:
    """The CPU model and generation as the kernel reports them, the cores this process may use and the
    CPU's vector extensions, e.g. ``AMD EPYC (family 26 model 2 stepping 1), 2 cores (avx2, fma, avx512f,
    avx512_bf16, avx512_vnni)``: what a result recorded with it was measured on. ``machine``: a recorded
    :func:`fromzero.machine.describe` (default: this machine's)."""
    from fromzero.machine import describe

    machine = machine or describe()
    generation = f" ({machine['generation']})" if machine.get("generation") else ""  # recorded since 2026-12-07
    flags = ", ".join(machine["flags"])
    return f"{machine['cpu']}{generation}, {machine['cores']} cores" + (f" ({flags})" if flags else "")


@contextlib.contextmanager
def background_load(kind: str) -> Iterator[None]:
    """Run one of :data:`BACKGROUND_LOADS` in another process for the duration (killed at the end)."""
    code = BACKGROUND_LOADS[kind]
    if code is None:
        yield
        return
    process = subprocess.Popen([sys.executable, "-c", _ORPHAN_GUARD + code])
    try:
        time.sleep(1.0)  # let it start and take its core
        yield
    finally:
        process.kill()
        process.wait()


def decoding_arguments(doc: str) -> argparse.ArgumentParser:
    """The flags every decoding benchmark takes: ``--quick``, ``--repeats``, ``--prompt-tokens``, ``--new-tokens``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 new tokens, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    return parser
