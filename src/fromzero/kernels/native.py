"""fromzero's C kernels, compiled for this CPU at first use and loaded with ctypes.

Why compile here and not ship a binary: the kernel is fastest when the compiler targets the CPU it
runs on (``-march=native``: AVX-512 on one machine, AVX2 on the next, NEON on an ARM laptop), and a
wheel built elsewhere cannot know that CPU. Compiling a C file takes under a second with the system's
``cc`` (``$CC`` picks another); the library is kept in ``$FROMZERO_HOME/kernels`` under a hash of the
source, the compiler command and the machine fingerprint, so a new CPU, torch or source compiles again.

Why ctypes and not a torch extension: the kernel needs no torch headers, so it builds in a second
instead of a minute. It is loaded *after* torch, so its OpenMP calls share torch's OpenMP runtime and
thread pool (the same ``libgomp.so.1``) instead of starting a second one that would fight it for the cores.

Without a compiler, or with ``FROMZERO_NATIVE=0``, everything runs on torch's kernels:
:func:`load` raises :class:`NativeUnavailable` with the reason, which ``fromzero doctor`` prints.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from fromzero.files import atomic_path
from fromzero.machine import fingerprint
from fromzero.paths import fromzero_home

SOURCES = Path(__file__).parent
# tried in order: the first that compiles wins (-mcpu=native: ARM compilers; no -fopenmp: one thread)
FLAG_SETS = (("-O3", "-march=native", "-fopenmp"), ("-O3", "-mcpu=native", "-fopenmp"),
             ("-O3", "-march=native"), ("-O3",))
# -fno-trapping-math: no kernel reads the floating-point exception flags, and without it gcc leaves every loop
# with a clamp inside (exp_vec's) in scalar code, in case a comparison raises one. -ffp-contract=fast: a * b + c
# as one fused multiply-add where the CPU has it (ISO C mode turns that off): polynomials in half the
# instructions, each rounded once instead of twice.
COMMON_FLAGS = ("-std=c11", "-shared", "-fPIC", "-fno-trapping-math", "-ffp-contract=fast")
LIBRARIES = ("-lm",)  # after the source: sqrtf, copysignf


class NativeUnavailable(RuntimeError):
    """fromzero's C kernels cannot be used here; the message says why."""


def compiler() -> list[str]:
    """The C compiler command: ``$CC`` or ``cc``."""
    command = shlex.split(os.environ.get("CC") or "cc")
    if not command or shutil.which(command[0]) is None:
        raise NativeUnavailable(f"no C compiler found ({' '.join(command) or '$CC is empty'}); install gcc or clang "
                                f"or point $CC at one")
    return command


def library_path(name: str, command: list[str], flags: tuple[str, ...]) -> Path:
    source = b"".join(path.read_bytes() for path in sorted(SOURCES.glob("*.c")))  # with what it includes
    text = "|".join([*command, *flags, *COMMON_FLAGS, *LIBRARIES, fingerprint()]).encode()
    digest = hashlib.sha256(source + b"\0" + text).hexdigest()[:16]
    return kernels_dir() / f"{name}-{digest}.so"


@functools.cache
def kernels_dir() -> Path:
    """``$FROMZERO_HOME/kernels``, or a folder for this process only if the home cannot be written."""
    folder = fromzero_home() / "kernels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder)
        probe.close()
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="fromzero-kernels-"))
    return folder


def build(name: str) -> Path:
    """Compile ``<name>.c`` for this CPU (or find it compiled before); the path of the shared library."""
    command = compiler()
    failures = []
    for flags in FLAG_SETS:
        path = library_path(name, command, flags)
        if path.exists():
            return path
        try:
            with atomic_path(path) as tmp:  # a crash or a concurrent build never leaves half a library
                done = subprocess.run([*command, *flags, *COMMON_FLAGS, str(SOURCES / f"{name}.c"), *LIBRARIES,
                                       "-o", str(tmp)],
                                      capture_output=True, text=True, timeout=120)
                if done.returncode:
                    raise _CompileFailed((done.stderr.strip().splitlines() or ["failed"])[-1])
        except _CompileFailed as failed:
            failures.append(f"{' '.join(flags)}: {failed}")
            continue
        except (OSError, subprocess.TimeoutExpired) as error:
            raise NativeUnavailable(f"the C compiler {command[0]} did not run: {error}") from None
        return path
    raise NativeUnavailable(f"{name}.c did not compile with {command[0]} (" + "; ".join(failures) + ")")


class _CompileFailed(Exception):
    pass


@functools.cache
def load(name: str) -> ctypes.CDLL:
    """The compiled library ``name`` (built at the first call of a process, then cached on disk)."""
    if os.environ.get("FROMZERO_NATIVE", "1").strip().lower() in ("0", "no", "off", "false"):
        raise NativeUnavailable("FROMZERO_NATIVE=0 turns fromzero's C kernels off")
    import torch  # noqa: F401  first: the library then binds to torch's OpenMP runtime, not a second one

    path = build(name)
    try:
        return ctypes.CDLL(str(path))
    except OSError:  # damaged on disk since it was built: build it once more
        path.unlink(missing_ok=True)
        path = build(name)
        try:
            return ctypes.CDLL(str(path))
        except OSError as error:
            raise NativeUnavailable(f"{path} did not load: {error}") from None


def attempt(name: str, prepare: Callable[[ctypes.CDLL], ctypes.CDLL]) -> ctypes.CDLL | str:
    """``prepare(load(name))`` (declare its C signatures, check it), or the reason it cannot be used: a
    module keeps either, so a machine whose compiler fails does not run it again at every call."""
    try:
        return prepare(load(name))
    except NativeUnavailable as error:
        return str(error)


def usable(outcome: ctypes.CDLL | str) -> ctypes.CDLL:
    """The library of an :func:`attempt`, or :class:`NativeUnavailable` with the reason it failed."""
    if isinstance(outcome, str):
        raise NativeUnavailable(outcome)
    return outcome


def reason(outcome: ctypes.CDLL | str) -> str | None:
    """Why the library of an :func:`attempt` cannot be used, or None if it can."""
    return outcome if isinstance(outcome, str) else None
