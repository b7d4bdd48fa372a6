"""Rich renderings shared by the classic commands: readable tokens and colour bars."""

from __future__ import annotations

from typing import Callable, Hashable

from rich.text import Text

_VISIBLE = {"\n": "⏎", " ": "␣", "\t": "⇥"}


def show_token(token: Hashable, decode: Callable[[list], str] | None = None) -> str:
    """A token as a person should see it: visible whitespace, decoded ids."""
    text = decode([token]) if decode is not None else token
    if not isinstance(text, str):
        return repr(text)
    return "".join(_VISIBLE.get(ch, ch) for ch in text) or "∅"


def bar(fraction: float, width: int = 30) -> Text:
    """A horizontal bar whose length and colour grow with ``fraction`` (0..1)."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    colour = "green" if fraction >= 0.5 else "yellow" if fraction >= 0.15 else "cyan"
    return Text("█" * full + ("▏▎▍▌▋▊▉"[rest - 1] if rest else ""), style=colour)


def heat(value: float) -> str:
    """A background colour from dark (0) to bright (1) for probability-matrix cells."""
    level = min(int(value ** 0.5 * 5.999), 5)  # square root: small probabilities stay visible
    return ["grey11", "grey30", "dark_green", "green4", "green3", "bright_green"][level]
