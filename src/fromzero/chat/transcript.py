"""A chat session's transcript, saved twice: JSON for programs, Markdown for people.

Every entry records what was said and the settings it was said with (temperature, top-k, top-p,
tokens, seed, adapter), so an answer worth keeping can be reproduced later. Both files are written
atomically (:mod:`fromzero.files`): a session cut short never leaves half a transcript behind.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fromzero.files import write_json, write_text

SUFFIXES = (".json", ".md")


@dataclass
class Entry:
    """One thing said: ``role`` is user, assistant, refusal or compare."""

    role: str
    content: str
    speaker: str = ""  # who answered: the adapter's name, "base", or the model
    settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # e.g. "stopped", a confidence note
    base: str = ""  # compare only: the base model's answer (content holds the tuned one)


@dataclass
class Transcript:
    model: str
    template: str  # the template's name, or "none" for plain continuation
    adapters: list[str]
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    entries: list[Entry] = field(default_factory=list)

    def add(self, role: str, content: str, **details: Any) -> Entry:
        entry = Entry(role, content, **details)
        self.entries.append(entry)
        return entry


def transcript_paths(path: str | Path) -> tuple[Path, Path]:
    """``chat``, ``chat.json`` and ``chat.md`` all mean the pair ``chat.json`` + ``chat.md``."""
    path = Path(path).expanduser()
    stem = path.with_suffix("") if path.suffix.lower() in SUFFIXES else path
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")


def save_transcript(transcript: Transcript, path: str | Path) -> tuple[Path, Path]:
    """Write the JSON and the Markdown file of ``path`` (see :func:`transcript_paths`); return them."""
    json_path, md_path = transcript_paths(path)
    write_json(json_path, asdict(transcript))
    write_text(md_path, to_markdown(transcript))
    return json_path, md_path


def to_markdown(transcript: Transcript) -> str:
    adapters = ", ".join(transcript.adapters) or "none"
    lines = [f"# Chat with {transcript.model}", "",
             f"Started {transcript.started} · template {transcript.template} · adapters {adapters}", ""]
    for entry in transcript.entries:
        if entry.role == "user":
            lines += [f"**You:** {entry.content}", ""]
        elif entry.role == "compare":
            lines += [f"**Compare** ({_settings(entry)})", "", "*base (adapters off):*", "", _quote(entry.base), "",
                      f"*{entry.speaker}:*", "", _quote(entry.content), ""]
        else:
            who = "Guard" if entry.role == "refusal" else entry.speaker or "Model"
            details = ", ".join(part for part in (entry.note, _settings(entry)) if part)
            lines += [f"**{who}:**" + (f" <sub>{details}</sub>" if details else ""), "", _quote(entry.content), ""]
    return "\n".join(lines)


def _quote(text: str) -> str:
    """Model text as a Markdown block quote: its line breaks survive, and it stands apart from the labels."""
    return "\n".join(f"> {line}" if line else ">" for line in (text or "(nothing)").split("\n"))


def _settings(entry: Entry) -> str:
    return ", ".join(f"{key} {value}" for key, value in entry.settings.items())
