"""What the benchmark scripts share: median wall time over repeated calls, the CPU, where results go."""

from __future__ import annotations

import contextlib
import os
import platform
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


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """(result of the last call, median seconds over ``repeats`` calls)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def quick_path(results: Path) -> Path:
    """Where a ``--quick`` smoke run writes, so it never overwrites the recorded results."""
    return results.with_name(results.stem + "_quick.json")


def cpu_name() -> str:
    """The CPU model as the kernel reports it (e.g. ``AMD EPYC``), and the cores this process may use."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores"


@contextlib.contextmanager
def background_load(kind: str) -> Iterator[None]:
    """Run one of :data:`BACKGROUND_LOADS` in another process for the duration (killed at the end)."""
    code = BACKGROUND_LOADS[kind]
    if code is None:
        yield
        return
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(1.0)  # let it start and take its core
        yield
    finally:
        process.kill()
        process.wait()
