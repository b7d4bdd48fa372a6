"""What the benchmark scripts share: median wall time over repeated calls, and where results go."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable


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
