"""The simplest tokenizer: one token per character.

The vocabulary is the sorted set of characters seen in a corpus, so the same corpus always gives
the same ids. It is tiny (about 65 tokens for Shakespeare) and needs no training, which is why
small character-level models start here; the price is long sequences, and characters the corpus
never showed cannot be encoded at all, unless an ``[UNK]`` token stands in for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from fromzero.errors import InputError
from fromzero.tokenizers.base import Tokenizer, check_ids

PAD, UNK = "[PAD]", "[UNK]"


class CharTokenizer(Tokenizer):
    """Characters <-> ids, with optional ``[PAD]`` (id 0) and ``[UNK]`` tokens before them.

    Args:
        chars: the characters of the vocabulary, in id order (no duplicates).
        pad: add ``[PAD]``, the filler for batching sequences of different lengths.
        unk: add ``[UNK]`` and encode unseen characters as it; without it they raise an error.
    """

    kind = "char"

    def __init__(self, chars: Sequence[str], pad: bool = False, unk: bool = False, name: str = "char") -> None:
        chars = list(chars)
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise InputError("chars must be distinct single characters")
        if not chars:
            raise InputError("a character vocabulary needs at least one character (is the corpus empty?)")
        self.name = name
        self.pad, self.unk = pad, unk
        specials = [token for token, wanted in ((PAD, pad), (UNK, unk)) if wanted]
        self.special_tokens = {token: i for i, token in enumerate(specials)}
        self.chars = chars
        self._id_of = {c: i + len(specials) for i, c in enumerate(chars)}
        self._token_of = [*specials, *chars]

    @classmethod
    def train(
        cls, texts: str | Iterable[str], pad: bool = False, unk: bool = False, name: str = "char"
    ) -> "CharTokenizer":
        """Vocabulary = every character of ``texts``, sorted by code point (deterministic)."""
        seen: set[str] = set()
        for text in [texts] if isinstance(texts, str) else texts:
            seen.update(text)
        if not seen:
            raise InputError("the corpus is empty: a character vocabulary needs some text")
        return cls(sorted(seen), pad=pad, unk=unk, name=name)

    from_text = train

    @property
    def vocab_size(self) -> int:
        return len(self._token_of)

    @property
    def pad_id(self) -> int | None:
        return self.special_tokens.get(PAD)

    @property
    def unk_id(self) -> int | None:
        return self.special_tokens.get(UNK)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._id_of[c] for c in text]
        except KeyError:
            if self.unk:
                return [self._id_of.get(c, self.special_tokens[UNK]) for c in text]
            unseen = next(c for c in text if c not in self._id_of)
            raise InputError(
                f"character {unseen!r} (U+{ord(unseen):04X}) is not in the vocabulary; leave it out, or train "
                f"the tokenizer with `fromzero tokenizer train --kind char --unk` to map unseen characters to {UNK}"
            ) from None

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Ids -> text; ``[PAD]``/``[UNK]`` appear as written unless ``skip_special_tokens``."""
        n_special = len(self.special_tokens)
        return "".join(
            self._token_of[i] for i in check_ids(ids, self.vocab_size) if not (skip_special_tokens and i < n_special)
        )

    def _settings(self) -> dict[str, Any]:
        return {"chars": self.chars, "pad": self.pad, "unk": self.unk}

    @classmethod
    def _from_settings(cls, settings: dict[str, Any], directory: Path) -> "CharTokenizer":
        return cls(settings["chars"], pad=settings["pad"], unk=settings["unk"], name=settings["name"])
