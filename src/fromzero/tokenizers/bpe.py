"""Byte-level BPE (byte-pair encoding), the tokenizer of GPT-2 and its successors.

Start reading with ``naive.py``: the textbook algorithm in about 60 lines (count pairs, merge the
most frequent, repeat), which learns the same vocabulary and gives the same ids as this class.
This module is the same BPE made practical: special tokens, saved and published vocabularies, speed.

Encoding has three steps, all in ``encode``:

1. Special tokens such as ``<|endoftext|>`` are cut out of the text first; they are single ids.
2. The rest is split into chunks with a regex (``patterns.py``): words with their leading space,
   numbers, punctuation, runs of spaces. Tokens never cross chunk boundaries.
3. Each chunk becomes UTF-8 bytes, one token per byte to start with, and then the adjacent pair
   whose concatenation has the *lowest rank* in the vocabulary is merged, again and again, until
   no adjacent pair is in the vocabulary (``merge.py``). The rank is the token id: tokens learned
   earlier in training merge first. Ties (the same pair several times) merge leftmost first.

Every byte is a token, so any text can be encoded and ``decode(encode(text)) == text`` always.
Given GPT-2's vocabulary this gives exactly GPT-2's (and tiktoken's) ids.

Two encoders give identical ids (the tests compare them on megabytes of text):

* ``fast=True`` (the default): the ranks are handed to tiktoken's Rust core (``fast.py``), many
  times faster; what practitioners want.
* ``fast=False``: ``_encode_python`` below, readable Python you can step through. Choose it when
  building (``BPETokenizer.gpt2(fast=False)``) or switch any loaded tokenizer with
  ``tok.fast = False``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import AbstractSet, Any, Collection, Iterable, Literal, Sequence

import regex

from fromzero.errors import InputError
from fromzero.tokenizers.base import Tokenizer, check_ids
from fromzero.tokenizers.export import write_hf_tokenizer_json
from fromzero.tokenizers.fast import make_fast_encoding
from fromzero.tokenizers.gpt2 import load_gpt2_vocab
from fromzero.tokenizers.merge import bpe_merge
from fromzero.tokenizers.patterns import GPT2_PATTERN, resolve_pattern
from fromzero.tokenizers.train import train_bpe
from fromzero.tokenizers.vocab_files import (
    read_gpt2_files,
    read_hf_tokenizer_json,
    read_tiktoken_ranks,
    write_tiktoken_ranks,
)

RANKS_FILE = "fromzero_bpe_ranks.tiktoken"
_CACHE_LIMIT = 200_000  # chunk encodings remembered before the cache is emptied


class SpecialTokenError(InputError):
    """The text holds a special token that ``encode`` may not turn into its id (``token`` names it)."""

    def __init__(self, token: str) -> None:
        super().__init__(
            f"the text contains the special token {token!r}; pass allowed_special={{{token!r}}} to encode it "
            f"as one token, or disallowed_special=() to encode it as plain text"
        )
        self.token = token


class BPETokenizer(Tokenizer):
    """Byte-level BPE defined by merge ranks, a split pattern and special tokens.

    Args:
        ranks: ``{token bytes: id}``; must contain all 256 single bytes. Lower id = merged earlier.
        pattern: ``"gpt2"``, ``"gpt4"`` or a regex that splits text into chunks.
        special_tokens: ``{text: id}`` for tokens such as ``<|endoftext|>``, ids not used by ``ranks``.
        name: a label saved with the tokenizer ("gpt2", "my-stories-4k"...).
        fast: ``encode`` on tiktoken's Rust core (True) or on the readable Python encoder (False);
            both give the same ids. ``tok.fast = False`` switches later.
    """

    kind = "bpe"

    def __init__(
        self,
        ranks: dict[bytes, int],
        pattern: str = GPT2_PATTERN,
        special_tokens: dict[str, int] | None = None,
        name: str = "bpe",
        fast: bool = True,
    ) -> None:
        self.ranks = dict(ranks)
        self.pattern = resolve_pattern(pattern)
        self.special_tokens = dict(special_tokens or {})
        self.name = name
        self._check_vocab()
        self._decoder = {rank: token for token, rank in self.ranks.items()}
        self._decoder.update({i: text.encode("utf-8") for text, i in self.special_tokens.items()})
        self._split = regex.compile(self.pattern)
        self._cache: dict[bytes, list[int]] = {}
        self.fast = fast

    def _check_vocab(self) -> None:
        missing = [b for b in range(256) if bytes([b]) not in self.ranks]
        if missing:
            raise InputError(
                f"a byte-level vocabulary needs all 256 single bytes; {len(missing)} missing, e.g. byte {missing[0]}"
            )
        ids = [*self.ranks.values(), *self.special_tokens.values()]
        if len(set(ids)) != len(ids):
            raise InputError("token ids must be unique (a special token reuses an id of the vocabulary?)")
        if sorted(ids) != list(range(len(ids))):
            raise InputError(f"token ids must be exactly 0..{len(ids) - 1} with no gaps")

    # ----- constructors -------------------------------------------------------------------
    @classmethod
    def gpt2(cls, fast: bool = True, download: bool = True) -> "BPETokenizer":
        """GPT-2's tokenizer (50,257 tokens) from ``$FROMZERO_HOME/gpt2/``, downloaded if absent."""
        ranks, specials = load_gpt2_vocab(download=download)
        return cls(ranks, GPT2_PATTERN, specials, name="gpt2", fast=fast)

    @classmethod
    def from_files(
        cls, encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike, pattern: str = "gpt2",
        name: str = "gpt2", fast: bool = True,
    ) -> "BPETokenizer":
        """Read GPT-2-format files: ``encoder.json`` + ``vocab.bpe`` (HF: ``vocab.json`` + ``merges.txt``)."""
        ranks, specials = read_gpt2_files(encoder_json, vocab_bpe)
        return cls(ranks, pattern, specials, name=name, fast=fast)

    @classmethod
    def from_hf(cls, tokenizer_json: str | os.PathLike, name: str = "bpe", fast: bool = True) -> "BPETokenizer":
        """Read a Hugging Face byte-level BPE ``tokenizer.json`` (GPT-2's, or one from ``export_hf``)."""
        ranks, specials, pattern = read_hf_tokenizer_json(tokenizer_json)
        return cls(ranks, pattern, specials, name=name, fast=fast)

    @classmethod
    def from_tiktoken(
        cls, path: str | os.PathLike, pattern: str = "gpt2", special_tokens: dict[str, int] | None = None,
        name: str = "bpe", fast: bool = True,
    ) -> "BPETokenizer":
        """Read a tiktoken ranks file (``base64-token rank`` lines), e.g. ``gpt2.tiktoken``."""
        return cls(read_tiktoken_ranks(path), pattern, special_tokens, name=name, fast=fast)

    @classmethod
    def train(
        cls, texts: str | Iterable[str], vocab_size: int, pattern: str = "gpt2",
        special_tokens: Sequence[str] = ("<|endoftext|>",), name: str = "bpe", verbose: bool = False,
    ) -> "BPETokenizer":
        """Learn a vocabulary of ``vocab_size`` tokens (256 bytes + merges + specials) from text.

        See ``naive.py`` for the algorithm and ``train.py`` for how it is made fast; both learn the
        same vocabulary. Deterministic: the same texts give the same vocabulary.
        """
        pattern = resolve_pattern(pattern)
        ranks, specials = train_bpe(texts, vocab_size, pattern, special_tokens, verbose=verbose)
        return cls(ranks, pattern, specials, name=name)

    # ----- the interface ------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.ranks) + len(self.special_tokens)

    @property
    def fast(self) -> bool:
        """True when ``encode`` runs on tiktoken's core, False on the readable ``_encode_python``."""
        return self._fast is not None

    @fast.setter
    def fast(self, on: bool) -> None:
        self._fast = make_fast_encoding(self.name, self.pattern, self.ranks, self.special_tokens) if on else None

    def encode(
        self,
        text: str,
        allowed_special: AbstractSet[str] | Literal["all"] = frozenset(),
        disallowed_special: Collection[str] | Literal["all"] = "all",
    ) -> list[int]:
        """Text -> ids. Special tokens follow tiktoken's rules.

        ``allowed_special`` lists special tokens to encode as their single id when they appear
        in the text. Any *other* special token found in the text raises an error unless it is
        removed from ``disallowed_special`` (pass ``()`` to encode it as ordinary text): text
        from users should not be able to inject an end-of-document marker by accident.
        """
        allowed = self._allowed(allowed_special)
        disallowed = set(self.special_tokens) - allowed if disallowed_special == "all" else set(disallowed_special)
        if disallowed:
            found = regex.search("|".join(map(regex.escape, sorted(disallowed, key=len, reverse=True))), text)
            if found:
                raise SpecialTokenError(found.group())
        if self._fast is not None:  # tiktoken's core: the same ids as the Python below, faster
            return self._fast.encode(text, allowed_special=allowed, disallowed_special=())
        return self._encode_python(_replace_lone_surrogates(text), allowed)

    def _allowed(self, allowed_special: AbstractSet[str] | Literal["all"]) -> set[str]:
        if allowed_special == "all":
            return set(self.special_tokens)
        unknown = set(allowed_special) - set(self.special_tokens)
        if unknown:
            raise InputError(
                f"unknown special token(s) {sorted(unknown)}; "
                f"this tokenizer has {sorted(self.special_tokens) or 'none'}"
            )
        return set(allowed_special)

    def _encode_python(self, text: str, allowed: set[str]) -> list[int]:
        """The readable encoder: special tokens, then regex chunks, then BPE on each chunk."""
        ids: list[int] = []
        if allowed:
            specials = regex.compile("(" + "|".join(map(regex.escape, sorted(allowed, key=len, reverse=True))) + ")")
            pieces = specials.split(text)  # odd positions hold the special tokens themselves
        else:
            pieces = [text]
        for position, piece in enumerate(pieces):
            if position % 2:
                ids.append(self.special_tokens[piece])
                continue
            for chunk in self._split.findall(piece):
                ids.extend(self._encode_chunk(chunk.encode("utf-8")))
        return ids

    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """BPE of one chunk, remembered: real text repeats its words, so most chunks are cache hits."""
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        if chunk in self.ranks:  # a whole chunk that is a token is that token (as tiktoken does)
            ids = [self.ranks[chunk]]
        else:
            ids = [self.ranks[part] for part in bpe_merge(chunk, self.ranks)]
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[chunk] = ids
        return ids

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """Ids -> the raw bytes they stand for (a token may hold part of a UTF-8 character)."""
        return b"".join(self._decoder[i] for i in check_ids(ids, self.vocab_size))

    def decode(self, ids: Sequence[int], errors: str = "replace") -> str:
        """Ids -> text. Bytes that are not valid UTF-8 become "\\ufffd" (as GPT-2 does).

        Pass ``errors="strict"`` to get an error instead, e.g. when a generated sequence was cut
        in the middle of a character.
        """
        data = self.decode_bytes(ids)
        try:
            return data.decode("utf-8", errors=errors)
        except UnicodeDecodeError as err:
            raise InputError(
                f"ids decode to invalid UTF-8 ({err.reason} at byte {err.start}); use errors='replace' to keep going"
            ) from None

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (handy to look inside a vocabulary)."""
        return self._decoder[check_ids([token_id], self.vocab_size)[0]]

    # ----- saving and exporting -----------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "special_tokens": self.special_tokens, "ranks_file": RANKS_FILE}

    def _save_files(self, directory: Path) -> None:
        write_tiktoken_ranks(directory / RANKS_FILE, self.ranks)

    @classmethod
    def _from_settings(cls, settings: dict[str, Any], directory: Path) -> "BPETokenizer":
        ranks = read_tiktoken_ranks(directory / settings["ranks_file"])
        return cls(ranks, settings["pattern"], settings["special_tokens"], name=settings["name"])

    def export_tiktoken(self, path: str | os.PathLike) -> Path:
        """Write the ranks as a tiktoken file: ``tiktoken.load.load_tiktoken_bpe(path)`` reads it.

        Given an existing folder, writes ``<name>.tiktoken`` inside it. Returns the file written.
        """
        path = Path(path)
        if path.is_dir():
            path = path / f"{self.name}.tiktoken"
        write_tiktoken_ranks(path, self.ranks)
        return path

    def export_hf(self, path: str | os.PathLike) -> Path:
        """Write a Hugging Face ``tokenizer.json`` that gives the same ids as ``encode``.

        A new path ending in ``.json`` is that file; an existing folder or any other path is a
        folder (created if needed, e.g. a model folder) that also gets ``tokenizer_config.json``,
        so that ``transformers.AutoTokenizer.from_pretrained(folder)`` loads it. Returns the
        ``tokenizer.json`` written.
        """
        return write_hf_tokenizer_json(path, self.ranks, self.pattern, self.special_tokens)


def _replace_lone_surrogates(text: str) -> str:
    """Lone surrogates (possible in Python strings) cannot be UTF-8; tiktoken turns them into U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
