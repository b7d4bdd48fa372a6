"""The course: its levels, their steps, and what a step is given to teach with.

The lessons are package data, so ``fromzero learn`` works after ``pip install`` with no clone::

    lessons/level1_prediction/
        lesson.md               the primer a learner reads first (``fromzero learn 1 --open``)
        exercises.md            things to try, each checked by ``fromzero learn check``
        step1_bigrams.py        one step: TITLE, optional NEEDS, and run(step)
        step2_sampling.py
        exercises.py            CHECKS: the exercise hooks of the level

A step module is short and reads top to bottom: it explains what it is about to do and why
(``step.say``), shows the library code it calls (``step.show``), calls it, prints the figures
that matter (``step.figure``, recorded so tests can check them) and writes its pictures into
its own folder (``step.picture``). It never re-implements the library: the lesson *is* the
library's code, shown and run. ``NEEDS`` names earlier steps whose output it reads (``"4.2"``);
the runner runs them first when they have not been run yet.

``--quick`` runs a small version of every step (fewer training steps, smaller models) so the
whole course is checked in minutes; the numbers differ, the ideas do not.
"""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from rich.markdown import Markdown
from rich.panel import Panel
from rich.syntax import Syntax

from fromzero.console import stdout
from fromzero.errors import InputError

LESSONS = Path(__file__).resolve().parent
LEVEL_FOLDER = re.compile(r"level(\d+)_(\w+)$")
STEP_FILE = re.compile(r"step(\d+)_(\w+)\.py$")


@dataclass(frozen=True)
class StepInfo:
    level: int
    number: int
    name: str
    module: str  # e.g. fromzero.lessons.level1_prediction.step1_bigrams

    @property
    def key(self) -> str:
        return f"{self.level}.{self.number}"

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


@dataclass(frozen=True)
class Level:
    number: int
    name: str
    folder: Path
    steps: tuple[StepInfo, ...]

    @property
    def title(self) -> str:
        return self.name.replace("_", " ").capitalize()

    @property
    def lesson(self) -> Path:
        return self.folder / "lesson.md"


def levels() -> list[Level]:
    """Every level of the course, in order, with its steps in order."""
    found = []
    for folder in sorted(LESSONS.iterdir()):
        match = LEVEL_FOLDER.match(folder.name)
        if not (folder.is_dir() and match):
            continue
        steps = []
        for path in folder.iterdir():
            step = STEP_FILE.match(path.name)
            if step:
                module = f"fromzero.lessons.{folder.name}.{path.stem}"
                steps.append(StepInfo(int(match[1]), int(step[1]), step[2], module))
        found.append(Level(int(match[1]), match[2], folder, tuple(sorted(steps, key=lambda s: s.number))))
    return sorted(found, key=lambda level: level.number)


def find_level(number: str | int) -> Level:
    for level in levels():
        if str(level.number) == str(number):
            return level
    raise InputError(f"there is no level {number}; levels: {', '.join(str(level.number) for level in levels())}")


def find_step(key: str) -> StepInfo:
    """A step by ``LEVEL.STEP`` (``"3.2"``)."""
    level_number, _, step_number = key.partition(".")
    level = find_level(level_number)
    for step in level.steps:
        if str(step.number) == step_number:
            return step
    valid = ", ".join(step.key for step in level.steps)
    raise InputError(f"level {level.number} has no step {key}; its steps: {valid}")


# ---------------------------------------------------------------- what a step is given
@dataclass
class Step:
    """What a running step teaches with; ``figures`` collects every number it reports."""

    info: StepInfo
    quick: bool
    out: Path  # the course's output folder; this step's pictures go to out/levelN
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """Where this step writes pictures and files (made on first use)."""
        folder = self.out / f"level{self.info.level}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def output(self, key: str) -> Path:
        """The folder of what step ``key`` (e.g. ``"4.2"``) left behind: a model, a tokenizer."""
        return self.out / f"level{key.split('.')[0]}" / f"step{key.replace('.', '_')}"

    def say(self, text: str) -> None:
        """Explain: Markdown, so **bold**, `code` and lists read well in a terminal."""
        stdout.print(Markdown(inspect.cleandoc(text)), soft_wrap=False)

    def show(self, code: Callable | type | ModuleType, title: str | None = None) -> None:
        """Print the source of the library function, class or module the step is about to use."""
        source = textwrap.dedent(inspect.getsource(code))
        where = f"{code.__module__}.{code.__qualname__}" if hasattr(code, "__qualname__") else code.__name__
        stdout.print(Panel(Syntax(source, "python", line_numbers=False, theme="ansi_dark", word_wrap=True),
                           title=title or where, title_align="left", border_style="blue"), soft_wrap=False)

    def figure(self, label: str, value: Any, unit: str = "") -> Any:
        """Report a number (or short text) the lesson is about; tests read ``figures``."""
        self.figures[label] = value
        shown = f"{value:,.4g}" if isinstance(value, float) else (f"{value:,}" if isinstance(value, int) else str(value))
        stdout.print(f"  [bold]{label}[/]: [cyan]{shown}[/]{(' ' + unit) if unit else ''}")
        return value

    def picture(self, name: str) -> Path:
        """The path a picture should be written to; the step prints it once written (``saved``)."""
        return self.folder / name

    def saved(self, path: Path) -> None:
        stdout.print(f"  [green]wrote[/] {path}")

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` in --quick mode, else ``full``: the one place a step's size is chosen."""
        return quick if self.quick else full
