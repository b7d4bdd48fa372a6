"""Checking a learner's exercise against the library: ``fromzero learn check 4.top_p mine.py``.

Each level's ``exercises.py`` holds ``CHECKS``: one :class:`Check` per exercise, naming the
function the learner writes, the library function it must agree with, the inputs to try, and
hints. The checker imports the learner's file, calls both functions on every input and compares
the results. A learner's function that raises shows the learner's own traceback (their bug, in
their file), not ours; the solution is printed only when asked for (``--solution``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.markup import escape
from rich.syntax import Syntax
from rich.traceback import Traceback

from fromzero.console import stdout
from fromzero.errors import InputError, MissingFileError
from fromzero.lessons.course import find_level


@dataclass(frozen=True)
class Check:
    """One exercise: ``function`` in the learner's file must agree with ``reference`` on every case."""

    function: str  # the name the learner's function must have
    task: str  # one line: what to write
    reference: Callable[..., Any]  # the library's answer (also the solution shown by --solution)
    cases: Callable[[], Sequence[tuple]]  # argument tuples to call both with
    same: Callable[[Any, Any], bool]  # whether the learner's result equals the reference's
    hints: tuple[str, ...] = field(default_factory=tuple)


class LearnerError(Exception):
    """The learner's code raised: shown as their traceback, exit status 1."""


def find_check(key: str) -> Check:
    """``LEVEL.NAME`` (``"4.top_p"``) to its check; unknown ones list the valid names."""
    level_number, _, name = key.partition(".")
    level = find_level(level_number)
    module = importlib.import_module(f"fromzero.lessons.{level.folder.name}.exercises")
    checks: dict[str, Check] = module.CHECKS
    if name not in checks:
        valid = ", ".join(f"{level.number}.{n}" for n in checks) or "none"
        raise InputError(f"level {level.number} has no exercise {name!r}; its exercises: {valid}")
    return checks[name]


def load_learner_function(path: str | Path, name: str) -> Callable[..., Any]:
    """Import the learner's file and return its function ``name``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist: give the .py file that holds your {name}()")
    spec = importlib.util.spec_from_file_location(f"learner_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # their file does not even import
        raise LearnerError(err) from err
    function = getattr(module, name, None)
    if not callable(function):
        defined = [n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__]
        raise InputError(f"{path} defines no function {name}() (it defines: {', '.join(defined) or 'no functions'})")
    return function


def check(key: str, path: str | Path, solution: bool = False) -> bool:
    """Run the exercise ``key`` on the learner's file; print what passed, hints when not; True if all passed."""
    exercise = find_check(key)
    if solution:
        stdout.print(f"[bold]One solution[/] (the library's {exercise.reference.__qualname__}):")
        stdout.print(Syntax(inspect.getsource(exercise.reference), "python", theme="ansi_dark"))
    learner = load_learner_function(path, exercise.function)
    cases = list(exercise.cases())
    failures = 0
    for number, args in enumerate(cases, 1):
        expected = exercise.reference(*args)
        try:
            got = learner(*args)
        except Exception as err:
            raise LearnerError(err) from err
        if exercise.same(got, expected):
            stdout.print(f"  [green]✓[/] case {number}")
        else:
            failures += 1
            stdout.print(f"  [red]✗[/] case {number}: expected {_short(expected)}, got {_short(got)}")
    if failures:
        stdout.print(f"[red]{failures} of {len(cases)} cases differ.[/] Hints:")
        for hint in exercise.hints:
            stdout.print(f"  • {hint}")
        stdout.print(f"(fromzero learn check {key} {path} --solution shows one solution)")
        return False
    stdout.print(f"[green]All {len(cases)} cases agree with the library. Well done![/]")
    return True


def print_learner_error(error: LearnerError, path: str | Path) -> None:
    """The learner's traceback, trimmed to the frames in their own file."""
    cause = error.__cause__ or error
    frames = [frame for frame in traceback.extract_tb(cause.__traceback__) if Path(frame.filename).resolve() == Path(path).resolve()]
    where = f" (line {frames[-1].lineno} of {path})" if frames else ""
    stdout.print(f"[red]your code raised {type(cause).__name__}: {escape(str(cause))}[/]{escape(where)}")
    trace = Traceback.from_exception(type(cause), cause, cause.__traceback__, show_locals=False,
                                     suppress=[sys.modules[__name__]])
    stdout.print(trace)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
