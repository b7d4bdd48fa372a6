"""What this machine is, and how much of it is free right now.

Two CPUs that both "have AVX-512" can still want different kernels, precisions and thread counts
(benchmarks/RESULTS.md has an AMD EPYC and an Intel Xeon side by side), so choices made for speed
are measured per machine (:mod:`fromzero.tuning`) and remembered under a *fingerprint*: the CPU
model, its generation (family, model and stepping numbers), its vector extensions, the cores this
process may use and the torch version. A new CPU or a torch upgrade gives a new fingerprint, hence
fresh measurements. The generation matters in virtual machines, which often name every CPU of a
vendor alike: two hosts both called "AMD EPYC" were a Zen 4 and a Zen 5, with bf16 peaks of 437 and
906 GFLOP/s.

Free cores: PyTorch starts one thread per core and its threads wait for each other at the end of
every parallel operation. When another program keeps one core busy, the thread that shares that
core runs only part of the time and every operation waits for it: two threads on a machine with one
free core decode several times *slower* than one thread alone. :func:`free_cores` measures, over a
short window, how many of this process's cores the *other* programs leave idle (Linux's
``/proc/stat`` minus this process's own CPU time), so the thread count can follow the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import torch

from fromzero.errors import InputError

CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under ``taskset`` or a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# /proc/cpuinfo fields naming a CPU's generation: x86 (family, model, stepping), then ARM (implementer, part, variant)
GENERATION_FIELDS = (("cpu family", "family"), ("model", "model"), ("stepping", "stepping"),
                     ("CPU implementer", "implementer"), ("CPU part", "part"), ("CPU variant", "variant"))


@lru_cache(maxsize=1)
def _cpuinfo_fields() -> dict[str, str]:
    """The first CPU's ``/proc/cpuinfo`` fields (Linux), e.g. ``{"model name": "AMD EPYC", ...}``; {} elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in lines:
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _cpuinfo(*keys: str) -> str | None:
    """The value of the first of ``keys`` that ``/proc/cpuinfo`` has, else None."""
    fields = _cpuinfo_fields()
    return next((fields[key] for key in keys if key in fields), None)


def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC", "Intel(R) Xeon(R) Platinum 8480+"), or the platform's guess."""
    return _cpuinfo("model name", "Model") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_generation() -> str:
    """Which generation of its vendor's CPUs this is, e.g. ``family 26 model 2 stepping 1`` (x86) or
    ``implementer 0x41 part 0xd0c variant 0x3`` (ARM); "" where the system does not say."""
    fields = _cpuinfo_fields()
    return " ".join(f"{name} {fields[key]}" for key, name in GENERATION_FIELDS if key in fields)


def cpu_flags() -> tuple[str, ...]:
    """The instruction-set extensions among :data:`CPU_FLAGS` that this CPU reports (Linux)."""
    present = set((_cpuinfo("flags", "Features") or "").split())
    return tuple(flag for flag in CPU_FLAGS if flag in present)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX instructions). Without them torch
    widens every bf16 product to fp32 at a few GFLOP/s (3 on an AMD Zen 3, against 171 in fp32)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def fingerprint() -> str:
    """A short id of (CPU model, generation, vector extensions, usable cores, torch version): decisions
    measured under one id hold for it."""
    text = f"{cpu_model()}|{cpu_generation()}|{','.join(cpu_flags())}|{usable_cores()}|{torch.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def available_memory() -> int | None:
    """Bytes of memory the system can still give without swapping (Linux's MemAvailable), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def describe() -> dict:
    """The machine in words and numbers, as recorded with every decision and benchmark."""
    return dict(cpu=cpu_model(), generation=cpu_generation(), flags=list(cpu_flags()), cores=usable_cores(),
                torch=torch.__version__, fingerprint=fingerprint())


def read_bandwidth(threads: int | None = None, size_mb: int = 256, repeats: int = 5) -> float:
    """Memory read bandwidth in GB/s: the best of ``repeats`` sums over a buffer larger than the caches,
    on ``threads`` threads (default: torch's current count). Decoding at batch 1 reads every weight
    once per token, so bandwidth / weight bytes is its speed limit."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        buffer = torch.ones(size_mb * 2**20 // 4)
        buffer.sum()  # touch every page once before timing
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            buffer.sum()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return buffer.numel() * 4 / best / 1e9


def _busy_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) clock ticks of ``cpus`` since boot, from /proc/stat; None where there is none."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(field) for field in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def _own_ticks() -> int:
    """This process's user + system CPU time, in the same clock ticks as /proc/stat."""
    times = os.times()
    return round((times.user + times.system) * os.sysconf("SC_CLK_TCK"))


class CoreWatch:
    """How many of this process's cores other programs leave free, read without waiting: each
    :meth:`free` covers the time since the previous one (or since the watch started).

    A core counts as taken when others keep it more than half busy (their busy time is the cores'
    busy time minus this process's own). At least 1; all usable cores where the kernel gives no
    per-core accounting (not Linux).
    """

    def __init__(self) -> None:
        try:
            self.cpus: set[int] | None = os.sched_getaffinity(0)
        except AttributeError:
            self.cpus = None
        self._start = self._sample()

    def _sample(self) -> tuple[int, int, int] | None:
        ticks = None if self.cpus is None else _busy_ticks(self.cpus)
        return None if ticks is None else (*ticks, _own_ticks())

    def free(self) -> int:
        now = self._sample()
        if now is None or self._start is None:
            return usable_cores()
        (busy, total, own), (busy0, total0, own0) = now, self._start
        if total - total0 <= 0:
            return len(self.cpus)  # no tick yet: nothing measured, assume the machine is free
        self._start = now
        others = max(0, (busy - busy0) - (own - own0))
        taken = others * len(self.cpus) / (total - total0)  # in cores
        return max(1, len(self.cpus) - int(taken + 0.5))


def free_cores(window: float = 0.1) -> int:
    """How many of this process's cores other programs leave free, measured over ``window`` seconds."""
    watch = CoreWatch()
    time.sleep(window)
    return watch.free()


class ThreadFollower:
    """Runs decoding and training on as many threads as there are free cores, re-measured at most every
    ``every`` seconds.

    ``with threads.following():`` around a decoding or training loop sets the count for this thread and puts
    the old one back at the end (a training run that samples text keeps its own); :meth:`follow` between
    steps re-measures when ``every`` seconds have passed (a clock read otherwise). A count chosen by
    the user is left alone: ``FROMZERO_THREADS=N`` or ``OMP_NUM_THREADS``, or a count set with
    ``torch.set_num_threads`` (or ``--threads``) different from torch's starting one. Matrix products
    give bit-identical results at any thread count (tested), so this changes the speed, not the tokens.
    A training step's backward does not (its sums are split between threads): there a new count changes
    the last bits, and ``FROMZERO_THREADS=N`` (or ``fromzero train --threads N``) keeps runs bit-identical.
    """

    def __init__(self, every: float = 1.0, first_window: float = 0.05) -> None:
        self.every, self.first_window = every, first_window
        self.initial = torch.get_num_threads()  # torch's own choice (one per physical core)
        self._watch: CoreWatch | None = None
        self._free = self.initial
        self._last = 0.0
        self._lock = threading.Lock()
        self._local = threading.local()  # per thread: following or not (torch's count is per thread)

    @contextlib.contextmanager
    def following(self, device: torch.device | str = "cpu") -> Iterator[int]:
        """Follow the free cores in this thread for the duration (a no-op for a model on a GPU); yields
        the thread count to start with."""
        before = torch.get_num_threads()
        forced = os.environ.get("FROMZERO_THREADS")
        if torch.device(device).type != "cpu":
            count = None
        elif forced:
            count = _forced_threads(forced)
            torch.set_num_threads(count)
        elif self.fixed_by() or getattr(self._local, "active", False):
            count = None  # the user's count, or an outer `following` already in charge
        else:
            self._local.active = True
            count = self._apply(self._measure())
        try:
            yield count or torch.get_num_threads()
        finally:
            if count is not None:
                self._local.active = False
                if torch.get_num_threads() != before:
                    torch.set_num_threads(before)

    def fixed_by(self) -> str | None:
        """What fixes this thread's count instead of the free cores (``FROMZERO_THREADS=2``,
        ``OMP_NUM_THREADS=1``, or a count set with ``torch.set_num_threads``); None when it follows them."""
        for variable in ("FROMZERO_THREADS", "OMP_NUM_THREADS"):
            if os.environ.get(variable):
                return f"{variable}={os.environ[variable]}"
        count = torch.get_num_threads()
        return None if count == self.initial else f"torch.set_num_threads({count})"

    def follow(self) -> None:
        """Between two steps: re-measure if it is time, and adapt this thread's count (inside :meth:`following`)."""
        if getattr(self._local, "active", False):
            self._apply(self._measure())

    def _measure(self) -> int:
        with self._lock:
            now = time.monotonic()
            if self._watch is None:
                self._watch = CoreWatch()
                time.sleep(self.first_window)  # once per process: the first reading needs a window
            elif now - self._last < self.every:
                return self._free
            self._last = now
            self._free = min(self._watch.free(), self.initial)
            return self._free

    @staticmethod
    def _apply(count: int) -> int:
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
        return count


def _forced_threads(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"FROMZERO_THREADS must be a whole number of threads >= 1, got {value!r}")
    return int(value)


threads = ThreadFollower()  # the process's one follower
