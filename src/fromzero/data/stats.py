"""Describing a corpus in numbers, the first thing to do before training on it.

Characters and unique characters tell the size of a character-level vocabulary; words and the
most frequent words show what the text is about (and that a few words make up much of any
text); for JSONL records, the fields and per-subject counts show whether the data is balanced.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import regex

from fromzero.data.loading import split_documents

# Letters (any script), digits and marks, with inner apostrophes: "don't" is one word.
_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+(?:['’][\p{L}\p{M}]+)*")


@dataclass
class TextStats:
    characters: int
    words: int
    lines: int
    documents: int
    unique_characters: int
    top_words: list[tuple[str, int]]  # most frequent lower-cased words with their counts


@dataclass
class JsonlStats:
    records: int
    fields: dict[str, int]  # field -> number of records that have it
    mean_chars: dict[str, float]  # string field -> mean length in characters
    by_subject: dict[str, int]  # empty when records have no "subject"
    by_grade: dict[str, int]  # empty when records have no "grade"


def text_stats(text: str, top: int = 10) -> TextStats:
    """Counts for a text corpus; documents are separated by two blank lines."""
    words = [word.casefold() for word in _WORD.findall(text)]
    return TextStats(
        characters=len(text),
        words=len(words),
        lines=len(text.splitlines()),
        documents=len(split_documents(text)),
        unique_characters=len(set(text)),
        top_words=Counter(words).most_common(top),
    )


def jsonl_stats(records: list[dict]) -> JsonlStats:
    """Counts for JSONL records: fields present, mean text length, subjects and grades."""
    fields: Counter[str] = Counter()
    lengths: dict[str, list[int]] = {}
    for record in records:
        fields.update(record.keys())
        for key, value in record.items():
            if isinstance(value, str):
                lengths.setdefault(key, []).append(len(value))

    def tally(key: str) -> dict[str, int]:
        counts = Counter(str(r[key]) for r in records if key in r)
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    return JsonlStats(
        records=len(records),
        fields=dict(fields.most_common()),
        mean_chars={key: sum(values) / len(values) for key, values in lengths.items()},
        by_subject=tally("subject"),
        by_grade=tally("grade"),
    )
