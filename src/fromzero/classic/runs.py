"""The folders ``fromzero ngram train`` and ``fromzero numpy-net train`` write, read back.

An n-gram run holds ``ngram.json`` (the counts), ``run.json`` (which data and split it was trained
on) and, for a token model, the tokenizer's files; a char-MLP run holds the network
(``config.json`` + ``model.safetensors``), its characters (``vocab.json``) and ``run.json``.
The commands and :mod:`fromzero.evaluate` both load them from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fromzero.errors import InputError, MissingFileError

if TYPE_CHECKING:
    from fromzero.classic.char_mlp import CharMLP
    from fromzero.classic.ngram import NGramModel

NGRAM_FILE, RUN_FILE, VOCAB_FILE = "ngram.json", "run.json", "vocab.json"


class TokenCodec:
    """Text <-> n-gram tokens: characters by default, or a fromzero tokenizer's ids."""

    def __init__(self, tokenizer=None):
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list:
        return list(text) if self.tokenizer is None else self.tokenizer.encode(text)

    def decode(self, tokens: list) -> str:
        return "".join(tokens) if self.tokenizer is None else self.tokenizer.decode(list(tokens))

    @property
    def unit(self) -> str:
        return "characters" if self.tokenizer is None else "tokens"


def is_ngram_run(directory: str | Path) -> bool:
    return (Path(directory) / NGRAM_FILE).is_file()


def is_char_mlp_run(directory: str | Path) -> bool:
    return (Path(directory) / VOCAB_FILE).is_file() and (Path(directory) / "model.safetensors").is_file()


def load_ngram_run(directory: str | Path) -> tuple[NGramModel, dict[str, Any], TokenCodec]:
    """The model, its ``run.json`` and the codec it counts tokens with."""
    from fromzero.classic.ngram import NGramModel

    directory = Path(directory)
    run_path = directory / RUN_FILE
    if not run_path.is_file():
        raise MissingFileError(f"no n-gram run in {directory}; train one with `fromzero ngram train --out {directory}`")
    run = json.loads(run_path.read_text(encoding="utf-8"))
    model = NGramModel.load(directory / NGRAM_FILE)
    tokenizer = None
    if run.get("tokenizer"):
        from fromzero.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(str(directory))
    return model, run, TokenCodec(tokenizer)


def load_char_mlp_run(directory: str | Path) -> tuple[CharMLP, list[str]]:
    """The network and its characters (id i is ``vocab[i]``)."""
    from fromzero.classic.char_mlp import CharMLP

    directory = Path(directory)
    if not (directory / VOCAB_FILE).is_file():
        raise MissingFileError(f"no char-MLP run in {directory}; train one with `fromzero numpy-net train --out {directory}`")
    return CharMLP.load(directory), json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8"))


def encode_chars(text: str, vocab: list[str]) -> list[int]:
    """The ids of ``text``'s characters; a character outside ``vocab`` is an error that shows one."""
    index = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted(set(text) - index.keys())
    if unknown:
        raise InputError(f"the model's vocabulary lacks {len(unknown)} characters of the text, e.g. {unknown[0]!r}")
    return [index[ch] for ch in text]
