"""One shared rich console and progress bar, so every command looks and behaves the same.

Output goes to stderr for status and progress, leaving stdout clean for results that other
programs may read (JSON ids, generated text).
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, highlight=False)
stdout = Console(highlight=False, soft_wrap=True)


def progress(transient: bool = False, disable: bool = False) -> Progress:
    """A progress bar with count, elapsed time and ETA; use as ``with progress() as p: ...``."""
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=disable,
    )
