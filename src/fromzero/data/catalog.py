"""A summary of the bundled corpora: what each holds and how big it is."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fromzero.data.bundled import CORPORA, card_path, corpus_path
from fromzero.data.loading import load_documents, load_jsonl


@dataclass
class CorpusInfo:
    """One row of :func:`list_corpora`."""

    name: str
    kind: str  # "text" or "jsonl"
    size_bytes: int
    counts: dict[str, int]  # e.g. {"documents": 260} or {"train": 420, "test": 64}
    description: str  # the first line of the data card
    version: str  # "2 (2026-12-04)": the card's "Version:" line, so results can name the data they used


def card_description(name: str) -> str:
    """The first non-empty line of a corpus's data card, without Markdown heading marks."""
    for line in card_path(name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            return line.lstrip("#").strip()
    return ""


def card_version(name: str) -> str:
    """The ``Version: N (date)`` line of a corpus's data card ("" if it has none)."""
    found = re.search(r"^Version:\s*(.+)$", card_path(name).read_text(encoding="utf-8"), re.M)
    return found.group(1).strip() if found else ""


def list_corpora() -> list[CorpusInfo]:
    """Every bundled corpus with its kind, size on disk, item counts and description."""
    infos = []
    for corpus in CORPORA.values():
        paths = {part: corpus_path(corpus.name, part) for part in corpus.parts}
        if corpus.kind == "text":
            counts = {part: len(load_documents(path)) for part, path in paths.items()}
        else:
            counts = {part: len(load_jsonl(path)) for part, path in paths.items()}
        size = sum(path.stat().st_size for path in paths.values())
        infos.append(CorpusInfo(corpus.name, corpus.kind, size, counts, card_description(corpus.name),
                                card_version(corpus.name)))
    return infos
