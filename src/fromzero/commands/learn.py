"""``fromzero learn``: the course, level by level, step by step, in the terminal."""

from __future__ import annotations

import argparse

from fromzero.commands.parsing import HelpFormatter
from fromzero.errors import InputError

DEFAULT_OUT = "out/learn"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "learn",
        help="the course: levels 1-6, from counting letters to a chatbot (start here)",
        description="Learn how language models work by building one. `fromzero learn` lists the levels and "
        "steps and what you have done; `fromzero learn 1 --open` shows a level's lesson; `fromzero learn 1.1` "
        "runs a step (it explains itself, shows the library code it calls, and says what to run next); "
        "`fromzero learn 1` runs a whole level; `fromzero learn check 1.trigram mine.py` checks your "
        "answer to an exercise against the library.\n\n"
        "examples:\n"
        "  fromzero learn\n"
        "  fromzero learn 1 --open\n"
        "  fromzero learn 1.1\n"
        "  fromzero learn 4 --quick\n"
        "  fromzero learn check 4.top_p my_top_p.py",
        formatter_class=HelpFormatter,
    )
    p.add_argument("target", nargs="*", metavar="WHAT",
                   help="nothing (list the course), a level (3), a step (3.2), or: check LEVEL.EXERCISE FILE")
    p.add_argument("--open", action="store_true", help="show the level's lesson text instead of running it")
    p.add_argument("--quick", action="store_true",
                   help="a small, fast version of each step (smaller models, fewer steps): same ideas, other numbers")
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for the pictures and models the steps make "
                   "(default: %(default)s; --quick uses its quick/ subfolder)")
    p.add_argument("--solution", action="store_true", help="with check: also print one solution")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = args.target
    if not target:
        _list()
        return 0
    if target[0] == "check":
        if len(target) != 3:
            raise InputError("usage: fromzero learn check LEVEL.EXERCISE FILE (e.g. check 4.top_p mine.py)")
        return _check(target[1], target[2], args.solution)
    if len(target) > 1:
        raise InputError(f"give one level or step, not {' '.join(target)}")
    from fromzero.lessons.runner import run_level, run_step

    what = target[0]
    if args.open:
        _open(what.partition(".")[0])
    elif "." in what:
        run_step(what, args.quick, args.out)
    else:
        run_level(what, args.quick, args.out)
    return 0


def _list() -> None:
    from rich.table import Table

    from fromzero.console import stdout
    from fromzero.lessons.course import levels
    from fromzero.lessons.runner import read_progress

    progress = read_progress()
    table = Table(title="fromzero: the course", show_lines=False)
    for column in ("step", "what", "done"):
        table.add_column(column)
    first_open = None
    for level in levels():
        table.add_row(f"[bold]{level.number}[/]", f"[bold]{level.title}[/]", "")
        for step in level.steps:
            record = progress.get(step.key)
            done = ("[green]done[/]" + (" (quick)" if record.get("quick") else "")) if record else "[dim]not yet[/]"
            if not record and first_open is None:
                first_open = step.key
            table.add_row(f"  {step.key}", step.load().TITLE, done)
    stdout.print(table)
    stdout.print(f"next step: fromzero learn {first_open}" if first_open else "[green]You have done every step.[/]")


def _open(level_number: str) -> None:
    from rich.markdown import Markdown

    from fromzero.console import stdout
    from fromzero.lessons.course import find_level

    level = find_level(level_number)
    stdout.print(Markdown(level.lesson.read_text(encoding="utf-8")))
    stdout.print(f"next step: fromzero learn {level.steps[0].key}" if level.steps else "")


def _check(key: str, path: str, solution: bool) -> int:
    from fromzero.lessons.exercises import LearnerError, check, print_learner_error

    try:
        return 0 if check(key, path, solution) else 1
    except LearnerError as error:
        print_learner_error(error, path)
        return 1
