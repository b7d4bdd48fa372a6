"""Running steps of the course, and remembering which ones a learner has done.

Progress lives in ``$FROMZERO_HOME/learn/progress.json`` (written atomically), so ``fromzero
learn`` can show done / not yet on any later day. A step that needs an earlier one's output
(its ``NEEDS``) runs that step first when it has not been run in the same mode: a quick run's
small models are not what a full step expects, so the two modes keep separate outputs.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.rule import Rule

from fromzero.console import stdout
from fromzero.files import read_json, write_json
from fromzero.lessons.course import Step, StepInfo, find_step, levels
from fromzero.paths import fromzero_home


def progress_file() -> Path:
    return fromzero_home() / "learn" / "progress.json"


def read_progress() -> dict[str, Any]:
    path = progress_file()
    return read_json(path) if path.is_file() else {}


def is_done(key: str, quick: bool, progress: dict[str, Any] | None = None) -> bool:
    record = (progress if progress is not None else read_progress()).get(key)
    return bool(record) and (record.get("quick") == quick or not record.get("quick"))


def course_out(out: str | Path, quick: bool) -> Path:
    """Quick runs write beside full ones, never over them."""
    return Path(out) / "quick" if quick else Path(out)


def run_step(key: str, quick: bool, out: str | Path, _chain: tuple[str, ...] = ()) -> Step:
    """Run step ``key`` (and, first, any step it needs that has not been run); returns what it reported."""
    info = find_step(key)
    module = info.load()
    for needed in getattr(module, "NEEDS", ()):
        if needed not in _chain and not is_done(needed, quick):
            stdout.print(f"[yellow]step {key} needs what step {needed} makes: running {needed} first[/]")
            run_step(needed, quick, out, (*_chain, key))
    step = Step(info, quick, course_out(out, quick))
    stdout.print(Rule(f"[bold]Level {info.level} · step {info.number}: {escape(module.TITLE)}"
                      + (" (quick)" if quick else ""), align="left"))
    started = time.perf_counter()
    module.run(step)
    seconds = time.perf_counter() - started
    _record(key, quick, seconds)
    stdout.print(f"[dim]step {key} took {seconds:.1f} s[/]")
    following = next_step(info)
    stdout.print(f"next step: fromzero learn {following.key}" if following else
                 "[green]That was the last step of the course. Well done![/]")
    return step


def run_level(number: int | str, quick: bool, out: str | Path) -> list[Step]:
    from fromzero.lessons.course import find_level

    return [run_step(step.key, quick, out) for step in find_level(number).steps]


def next_step(info: StepInfo) -> StepInfo | None:
    steps = [step for level in levels() for step in level.steps]
    position = next(i for i, step in enumerate(steps) if step.key == info.key)
    return steps[position + 1] if position + 1 < len(steps) else None


def _record(key: str, quick: bool, seconds: float) -> None:
    progress = read_progress()
    previous = progress.get(key, {})
    if previous and not previous.get("quick") and quick:
        return  # a full run stays recorded as full
    progress[key] = {"quick": quick, "seconds": round(seconds, 1),
                     "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(progress_file(), progress)
