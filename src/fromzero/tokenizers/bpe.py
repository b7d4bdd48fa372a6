"""Byte-level BPE (byte-pair encoding), the tokenizer of GPT-2 and its successors.

Encoding has three steps, all in ``encode``:

1. Special tokens such as ``<|endoftext|>`` are cut out of the text first; they are single ids.
2. The rest is split into chunks with a regex (``patterns.py``): words with their leading space,
   numbers, punctuation, runs of spaces. Tokens never cross chunk boundaries.
3. Each chunk becomes UTF-8 bytes, one token per byte to start with, and then the adjacent pair
   whose concatenation has the *lowest rank* in the vocabulary is merged, again and again, until
   no adjacent pair is in the vocabulary. The rank is the token id: tokens learned earlier in
   training merge first. Ties (the same pair several times) merge leftmost first.

Every byte is a token, so any text can be encoded and ``decode(encode(text)) == text`` always.
Given GPT-2's vocabulary this gives exactly GPT-2's (and tiktoken's) ids. The readable encoder
below is ours; when ``tiktoken`` is installed the same ranks are handed to its Rust core
(``fast.py``), which gives identical ids much faster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import AbstractSet, Any, Collection, Iterable, Literal, Sequence

import regex

from fromzero.errors import InputError
from fromzero.tokenizers.base import Tokenizer, check_ids
from fromzero.tokenizers.fast import make_fast_encoding
from fromzero.tokenizers.gpt2 import load_gpt2_vocab
from fromzero.tokenizers.patterns import GPT2_PATTERN, resolve_pattern
from fromzero.tokenizers.vocab_files import (
    read_gpt2_files,
    read_hf_tokenizer_json,
    read_tiktoken_ranks,
    write_tiktoken_ranks,
)

RANKS_FILE = "fromzero_bpe_ranks.tiktoken"
_CACHE_LIMIT = 200_000  # chunk encodings remembered before the cache is emptied


def bpe_merge(piece: bytes, ranks: dict[bytes, int], max_rank: int | None = None) -> list[bytes]:
    """Split ``piece`` into tokens by repeatedly merging the lowest-ranked adjacent pair.

    ``max_rank`` stops before merges of that rank or higher: asked for a token's own bytes with
    its own rank, this returns the two parts the token is made from (used by the HF export).
    """
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):  # "<": leftmost wins ties
                best, best_rank = i, rank
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


class BPETokenizer(Tokenizer):
    """Byte-level BPE defined by merge ranks, a split pattern and special tokens.

    Args:
        ranks: ``{token bytes: id}``; must contain all 256 single bytes. Lower id = merged earlier.
        pattern: ``"gpt2"``, ``"gpt4"`` or a regex that splits text into chunks.
        special_tokens: ``{text: id}`` for tokens such as ``<|endoftext|>``, ids not used by ``ranks``.
        name: a label saved with the tokenizer ("gpt2", "my-stories-4k"...).
        fast: use tiktoken's core for ``encode``; ``None`` means "when tiktoken is installed".
    """

    kind = "bpe"

    def __init__(
        self,
        ranks: dict[bytes, int],
        pattern: str = GPT2_PATTERN,
        special_tokens: dict[str, int] | None = None,
        name: str = "bpe",
        fast: bool | None = None,
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
        self._fast = make_fast_encoding(self) if fast or fast is None else None
        if fast and self._fast is None:
            raise InputError("fast=True needs the tiktoken package: pip install tiktoken")

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
    def gpt2(cls, fast: bool | None = None, download: bool = True) -> "BPETokenizer":
        """GPT-2's tokenizer (50,257 tokens) from ``$FROMZERO_HOME/gpt2/``, downloaded if absent."""
        ranks, specials = load_gpt2_vocab(download=download)
        return cls(ranks, GPT2_PATTERN, specials, name="gpt2", fast=fast)

    @classmethod
    def from_files(
        cls, encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike, pattern: str = "gpt2",
        name: str = "gpt2", fast: bool | None = None,
    ) -> "BPETokenizer":
        """Read GPT-2-format files: ``encoder.json`` + ``vocab.bpe`` (HF: ``vocab.json`` + ``merges.txt``)."""
        ranks, specials = read_gpt2_files(encoder_json, vocab_bpe)
        return cls(ranks, pattern, specials, name=name, fast=fast)

    @classmethod
    def from_hf(cls, tokenizer_json: str | os.PathLike, name: str = "bpe", fast: bool | None = None) -> "BPETokenizer":
        """Read a Hugging Face byte-level BPE ``tokenizer.json`` (GPT-2's, or one from ``export_hf``)."""
        ranks, specials, pattern = read_hf_tokenizer_json(tokenizer_json)
        return cls(ranks, pattern, specials, name=name, fast=fast)

    @classmethod
    def from_tiktoken(
        cls, path: str | os.PathLike, pattern: str = "gpt2", special_tokens: dict[str, int] | None = None,
        name: str = "bpe", fast: bool | None = None,
    ) -> "BPETokenizer":
        """Read a tiktoken ranks file (``base64-token rank`` lines), e.g. ``gpt2.tiktoken``."""
        return cls(read_tiktoken_ranks(path), pattern, special_tokens, name=name, fast=fast)

    @classmethod
    def train(
        cls, texts: str | Iterable[str], vocab_size: int, pattern: str = "gpt2",
        special_tokens: Sequence[str] = ("<|endoftext|>",), name: str = "bpe", verbose: bool = False,
    ) -> "BPETokenizer":
        """Learn a vocabulary of ``vocab_size`` tokens (256 bytes + merges + specials) from text.

        See ``train.py`` for the algorithm. Deterministic: the same texts give the same vocabulary.
        """
        from fromzero.tokenizers.train import train_bpe

        pattern = resolve_pattern(pattern)
        ranks, specials = train_bpe(texts, vocab_size, pattern, special_tokens, verbose=verbose)
        return cls(ranks, pattern, specials, name=name)

    # ----- the interface ------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.ranks) + len(self.special_tokens)

    @property
    def fast(self) -> bool:
        """True when ``encode`` runs on tiktoken's core."""
        return self._fast is not None

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
                raise InputError(
                    f"the text contains the special token {found.group()!r}; pass "
                    f"allowed_special={{{found.group()!r}}} to encode it as one token, or "
                    f"disallowed_special=() to encode it as plain text"
                )
        if self._fast is not None:
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

    def export_tiktoken(self, path: str | os.PathLike) -> None:
        """Write the ranks as a tiktoken file: ``tiktoken.load.load_tiktoken_bpe(path)`` reads it."""
        write_tiktoken_ranks(path, self.ranks)

    def export_hf(self, path: str | os.PathLike) -> None:
        """Write a Hugging Face ``tokenizer.json`` that gives the same ids as ``encode``.

        Given a directory (e.g. a model folder), also writes ``tokenizer_config.json`` so that
        ``transformers.AutoTokenizer.from_pretrained(dir)`` loads it.
        """
        from fromzero.tokenizers.export import write_hf_tokenizer_json

        write_hf_tokenizer_json(self, path)


def _replace_lone_surrogates(text: str) -> str:
    """Lone surrogates (possible in Python strings) cannot be UTF-8; tiktoken turns them into U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
