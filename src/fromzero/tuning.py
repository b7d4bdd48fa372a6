"""Choices made for speed by measuring them on this machine once, and remembering the answer.

Which CPU kernel multiplies a Linear layer fastest depends on the CPU, the shapes, the number of rows
and the threads: on an AMD EPYC (Zen 5) oneDNN's packed fp32 kernel decodes GPT-2 2.6x faster than
torch's default on two threads, but on one thread a plain matrix product over the transposed weight
reads memory faster still, and an Intel Xeon preferred the default at batch 1 (benchmarks/RESULTS.md).
No rule written down on one machine holds on the next, so fromzero times the candidates on the
actual shapes at first use (a fraction of a second), keeps the winner in
``$FROMZERO_HOME/tuning.json`` under the machine's fingerprint (:func:`fromzero.machine.fingerprint`:
CPU model and generation, vector extensions, cores, torch version, so a new CPU or torch measures
again) and reuses it from then on.

``FROMZERO_<CHOICE>=NAME`` (e.g. ``FROMZERO_LINEAR_KERNEL=plain``) forces a choice without measuring;
``fromzero doctor`` prints every decision with its timings and ``fromzero doctor --forget`` drops them.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fromzero.errors import InputError
from fromzero.files import write_json
from fromzero.machine import describe, fingerprint
from fromzero.paths import fromzero_home

DECISIONS_FILE = "tuning.json"
_lock = threading.Lock()


def decisions_path() -> Path:
    return fromzero_home() / DECISIONS_FILE


def read_decisions() -> dict:
    """Every recorded decision, by fingerprint; an unreadable file counts as none (it is only a cache)."""
    try:
        data = json.loads(decisions_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def forget() -> bool:
    """Drop every recorded decision (the next use measures again); True if there were any."""
    try:
        decisions_path().unlink()
    except FileNotFoundError:
        return False
    return True


def size_class(n: int) -> int:
    """The smallest power of two >= ``n`` (1 stays 1). A choice keyed by a size in such classes is measured once
    per class, not at every size a run meets (fine-tuning batches padded to their longest row)."""
    return 1 << max(n - 1, 0).bit_length()


def forced(choice: str, names: list[str]) -> str | None:
    """The candidate ``FROMZERO_<CHOICE>`` asks for, or None; an unknown one is an :class:`InputError`."""
    variable = "FROMZERO_" + choice.upper()
    value = os.environ.get(variable)
    if not value:
        return None
    if value not in names:
        raise InputError(f"{variable}={value!r} is not one of {', '.join(names)}")
    return value


def choose(choice: str, key: str, candidates: dict[str, Callable[[], object]], rounds: int = 5) -> str:
    """The fastest of ``candidates`` (name -> one timed unit of work) for ``choice`` at ``key``.

    Forced by ``FROMZERO_<CHOICE>``, else taken from the decisions of this machine (if they measured these
    same candidates: a fromzero with a new kernel, or a machine that lost one, measures again), else measured:
    each candidate runs once to warm up, then ``rounds`` times in turn (so a slow moment of the
    machine hits all of them alike), and the lowest median wins. The timings are recorded with it.
    """
    names = list(candidates)
    if (name := forced(choice, names)) is not None:
        return name
    if len(names) == 1:
        return names[0]
    machine = fingerprint()
    recorded = read_decisions().get(machine, {}).get(choice, {}).get(key)
    if recorded and set(recorded.get("median_seconds", ())) == set(names):  # a new candidate is measured too
        return recorded["chosen"]
    for run in candidates.values():
        run()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    chosen = min(medians, key=medians.get)
    _record(machine, choice, key, dict(chosen=chosen, median_seconds=medians,
                                       measured=datetime.datetime.now().isoformat(timespec="seconds")))
    return chosen


def _record(machine: str, choice: str, key: str, decision: dict) -> None:
    """Add one decision to the file (atomically: a crash leaves the old file or the new one)."""
    with _lock:
        data = read_decisions()
        entry = data.setdefault(machine, {"machine": describe()})
        entry.setdefault(choice, {})[key] = decision
        try:
            write_json(decisions_path(), data)
        except OSError:
            pass  # a read-only home only costs measuring again next time
