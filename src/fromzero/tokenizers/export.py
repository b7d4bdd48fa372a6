"""Export a BPE tokenizer as a Hugging Face ``tokenizer.json``.

Hugging Face's BPE differs from ours in one way: it stores *merges* (pairs, in priority order)
instead of ranks of tokens. We recover each token's pair by encoding the token's own bytes with
only the merges ranked before it: what remains is exactly the two parts our encoder joins to make
it (a token whose bytes do not end in two parts is never built by merging, only found whole).
With the same split regex, the byte-level alphabet, ``ignore_merges`` (a chunk that is itself a
token is taken whole, as tiktoken does) and the special tokens, ``tokenizers`` then gives our ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fromzero.errors import InputError
from fromzero.files import write_json
from fromzero.tokenizers.base import EOT
from fromzero.tokenizers.merge import bpe_merge
from fromzero.tokenizers.vocab_files import bytes_to_unicode

HF_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"


def hf_tokenizer_dict(ranks: dict[bytes, int], pattern: str, special_tokens: dict[str, int]) -> dict[str, Any]:
    """The content of a ``tokenizer.json`` equivalent to our BPE with these ranks, pattern and specials."""
    char_of = bytes_to_unicode()

    def show(token: bytes) -> str:
        return "".join(char_of[b] for b in token)

    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        parts = bpe_merge(token, ranks, max_rank=rank)
        if len(parts) == 2:
            merges.append([show(parts[0]), show(parts[1])])
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": text, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for text, i in sorted(special_tokens.items(), key=lambda item: item[1])
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
                byte_level,
            ],
        },
        "post_processor": None,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
            "vocab": {show(token): rank for token, rank in ranks.items()},
            "merges": merges,
        },
    }


def hf_tokenizer_config(special_tokens: dict[str, int]) -> dict[str, Any]:
    """``tokenizer_config.json``: lets ``AutoTokenizer.from_pretrained(dir)`` load ``tokenizer.json``
    as it is, and names the end-of-text token; no clean-up of spaces, so decoding is exact."""
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
    if EOT in special_tokens:
        config.update(bos_token=EOT, eos_token=EOT)
    return config


def write_hf_tokenizer_json(
    path: str | os.PathLike, ranks: dict[bytes, int], pattern: str, special_tokens: dict[str, int]
) -> Path:
    """Write the export at ``path`` and return the ``tokenizer.json`` written.

    A new path ending in ``.json`` is the ``tokenizer.json`` file; an existing folder or any other
    path is a folder (created if needed) that gets ``tokenizer.json`` + ``tokenizer_config.json``,
    which ``transformers.AutoTokenizer.from_pretrained(folder)`` loads directly.
    """
    path = Path(path)
    folder = path.is_dir() or path.suffix != ".json"
    if folder and path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file; give a folder for {HF_FILE} + {CONFIG_FILE}, or a .json file name")
    content = hf_tokenizer_dict(ranks, pattern, special_tokens)  # before writing: no half export on error
    if folder:
        write_json(path / CONFIG_FILE, hf_tokenizer_config(special_tokens))
        path = path / HF_FILE
    write_json(path, content, indent=None)
    return path
