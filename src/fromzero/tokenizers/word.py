"""A word-level tokenizer: one token per word or punctuation mark.

Words are easy to read as tokens, but the vocabulary explodes (every spelling, every name) and
anything outside it becomes ``[UNK]``: the problem BPE solves. ``min_freq`` and ``max_size`` keep
the vocabulary small; frequent words get small ids (ties in alphabetical order), so the same
corpus always gives the same vocabulary. Decoding joins tokens with single spaces, so it does not
restore the original spacing: this tokenizer is lossy by design.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import regex

from fromzero.errors import InputError
from fromzero.tokenizers.base import Tokenizer, check_ids

PAD, UNK = "[PAD]", "[UNK]"
WORD_PATTERN = regex.compile(r"\w+|[^\w\s]")  # a run of word characters, or one punctuation mark


class WordTokenizer(Tokenizer):
    """Words <-> ids: ``[PAD]`` = 0, ``[UNK]`` = 1, then the vocabulary in the given order."""

    kind = "word"

    def __init__(self, words: Sequence[str], lowercase: bool = False, name: str = "word") -> None:
        words = list(words)
        if len(set(words)) != len(words) or PAD in words or UNK in words:
            raise InputError("words must be distinct and must not include [PAD] or [UNK]")
        self.name = name
        self.lowercase = lowercase
        self.words = words
        self.special_tokens = {PAD: 0, UNK: 1}
        self._token_of = [PAD, UNK, *words]
        self._id_of = {w: i for i, w in enumerate(self._token_of)}

    @classmethod
    def train(
        cls, texts: str | Iterable[str], lowercase: bool = False, min_freq: int = 1, max_size: int | None = None,
        name: str = "word",
    ) -> "WordTokenizer":
        """Keep words seen at least ``min_freq`` times; ``max_size`` caps the vocabulary, specials included."""
        if min_freq < 1 or (max_size is not None and max_size < 2):
            raise InputError(
                f"the minimum word frequency must be >= 1 (got {min_freq}) and the vocabulary size >= 2, "
                f"room for [PAD] and [UNK] (got {max_size})"
            )
        counts: Counter[str] = Counter()
        for text in [texts] if isinstance(texts, str) else texts:
            counts.update(split_words(text, lowercase))
        if not counts:
            raise InputError("the corpus is empty: a word vocabulary needs some text")
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max_size - 2]
        return cls(words, lowercase=lowercase, name=name)

    from_text = train

    @property
    def vocab_size(self) -> int:
        return len(self._token_of)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def tokenize(self, text: str) -> list[str]:
        """The word strings ``encode`` will look up (lower-cased when the tokenizer is)."""
        return split_words(text, self.lowercase)

    def encode(self, text: str) -> list[int]:
        return [self._id_of.get(w, 1) for w in self.tokenize(text)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = check_ids(ids, self.vocab_size)
        return " ".join(self._token_of[i] for i in ids if not (skip_special_tokens and i < 2))

    def _settings(self) -> dict[str, Any]:
        return {"words": self.words, "lowercase": self.lowercase}

    @classmethod
    def _from_settings(cls, settings: dict[str, Any], directory: Path) -> "WordTokenizer":
        return cls(settings["words"], lowercase=settings["lowercase"], name=settings["name"])


def split_words(text: str, lowercase: bool = False) -> list[str]:
    """Words and single punctuation marks, in order: "Don't!" -> ["Don", "'", "t", "!"]."""
    return WORD_PATTERN.findall(text.lower() if lowercase else text)
