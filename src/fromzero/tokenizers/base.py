"""The small interface every tokenizer shares, and how a tokenizer is saved and found again.

A tokenizer turns text into a list of integer ids (``encode``) and back (``decode``). Models only
ever see the ids, so everything else about a tokenizer (how it splits text, which special tokens it
knows) must travel with it: ``save(dir)`` writes ``fromzero_tokenizer.json``, which names the
tokenizer's kind, plus whatever vocabulary files that kind needs. The file names never clash with
a model's own files (``config.json``, ``model.safetensors``), so a trained model directory can
hold both and ``load_tokenizer(dir)`` finds the right class from the saved kind.
"""

from __future__ import annotations

import operator
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

from fromzero.errors import CorruptFileError, InputError
from fromzero.files import read_json, write_json

CONFIG_FILE = "fromzero_tokenizer.json"
EOT = "<|endoftext|>"

# kind name -> class; filled in by ``Tokenizer.__init_subclass__`` so loading needs no if/else chain.
KINDS: dict[str, type["Tokenizer"]] = {}


class Tokenizer(ABC):
    """Text <-> ids. Subclasses set ``kind`` and implement the abstract methods."""

    kind: ClassVar[str]
    name: str
    special_tokens: dict[str, int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        KINDS[cls.kind] = cls

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Turn text into token ids."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Turn token ids back into text."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids: every id is in ``range(vocab_size)``."""

    @abstractmethod
    def _settings(self) -> dict[str, Any]:
        """Everything ``_from_settings`` needs to rebuild this tokenizer (JSON-serialisable)."""

    @classmethod
    @abstractmethod
    def _from_settings(cls, settings: dict[str, Any], directory: Path) -> "Tokenizer":
        """Rebuild a tokenizer from what ``_settings`` returned (and files ``save`` wrote)."""

    def _save_files(self, directory: Path) -> None:
        """Write vocabulary files beside the config; most kinds keep everything in the config."""

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"

    @property
    def eot_id(self) -> int | None:
        """Id of ``<|endoftext|>`` (the document separator GPT-2 uses), or None if there is none."""
        return self.special_tokens.get(EOT)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write this tokenizer into ``directory`` (created if needed); returns the config path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_files(directory)
        config = {"kind": self.kind, "name": self.name, "vocab_size": self.vocab_size}
        config.update(self._settings())
        write_json(directory / CONFIG_FILE, config)
        return directory / CONFIG_FILE

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer":
        """Read a tokenizer saved with ``save``; called on a subclass, the kind must match."""
        directory = Path(directory)
        config = read_config(directory)
        kind = config.get("kind")
        if kind not in KINDS:
            raise CorruptFileError(
                f"{directory / CONFIG_FILE} names an unknown tokenizer kind {kind!r}; "
                f"known kinds: {', '.join(sorted(KINDS))}"
            )
        target = KINDS[kind]
        if cls is not Tokenizer and not issubclass(target, cls):
            raise InputError(f"{directory} holds a {kind!r} tokenizer, not a {cls.kind!r} one")
        try:
            return target._from_settings(config, directory)
        except (KeyError, TypeError) as err:
            raise CorruptFileError(f"{directory / CONFIG_FILE} is incomplete or malformed: {err!r}")


def read_config(directory: Path) -> dict[str, Any]:
    """Read and parse ``fromzero_tokenizer.json`` with errors that say which file is wrong."""
    path = directory / CONFIG_FILE
    config = read_json(path, hint="`fromzero tokenizer train` or Tokenizer.save writes it")
    if not isinstance(config, dict):
        raise CorruptFileError(f"{path} should hold a JSON object")
    return config


def check_ids(ids: Sequence[int], vocab_size: int) -> list[int]:
    """Return ``ids`` as plain ints, with a clear error for anything outside the vocabulary.

    Accepts any integer type (NumPy, ``tensor.tolist()``) so callers need not convert first.
    """
    checked = []
    for i in ids:
        try:
            i = operator.index(i)
        except TypeError:
            raise InputError(f"token ids must be integers, got {i!r}") from None
        if not 0 <= i < vocab_size:
            raise InputError(f"token id {i} is not in this vocabulary (ids are 0..{vocab_size - 1})")
        checked.append(i)
    return checked
