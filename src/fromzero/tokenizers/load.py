"""``load_tokenizer(spec)``: one call that finds a tokenizer wherever it lives."""

from __future__ import annotations

import os
from pathlib import Path

from fromzero.errors import InputError, MissingFileError
from fromzero.tokenizers.base import CONFIG_FILE, Tokenizer
from fromzero.tokenizers.bpe import BPETokenizer


def load_tokenizer(spec: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer from ``spec``:

    * ``"gpt2"``: GPT-2's vocabulary (``BPETokenizer.gpt2()``);
    * a directory written by any tokenizer's ``save(dir)`` (``fromzero_tokenizer.json`` says which kind);
    * a Hugging Face GPT-2-style directory with ``vocab.json`` + ``merges.txt`` or a byte-level BPE
      ``tokenizer.json`` (what ``transformers`` 5 saves).
    """
    if str(spec) == "gpt2":
        return BPETokenizer.gpt2()
    directory = Path(spec)
    if not directory.is_dir():
        if str(spec) == "char":
            raise InputError(
                "'char' is not a ready-made tokenizer: train one with "
                "`fromzero tokenizer train --kind char --input CORPUS --out FOLDER`"
            )
        raise MissingFileError(
            f"no tokenizer at {spec!r}: give 'gpt2' or a folder saved by `fromzero tokenizer train` or `fromzero train`"
        )
    if (directory / CONFIG_FILE).is_file():
        return Tokenizer.load(directory)
    if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        return BPETokenizer.from_files(directory / "vocab.json", directory / "merges.txt", name=directory.name)
    if (directory / "tokenizer.json").is_file():
        return BPETokenizer.from_hf(directory / "tokenizer.json", name=directory.name)
    raise MissingFileError(
        f"{directory} holds no tokenizer: expected {CONFIG_FILE} (saved by fromzero), "
        f"vocab.json + merges.txt or tokenizer.json (Hugging Face)"
    )
