"""The two file formats byte-level BPE vocabularies come in, read and written exactly.

* **tiktoken ranks** (``gpt2.tiktoken``): one line per token, ``base64(token bytes) rank``. The rank
  is both the token id and its merge priority (lower merges first). This is our own save format.
* **GPT-2 / Hugging Face** (``encoder.json`` + ``vocab.bpe``, called ``vocab.json`` + ``merges.txt``
  by Hugging Face): tokens are bytes written as printable characters (see ``bytes_to_unicode``);
  the JSON maps each to its id and the merges file lists merges in priority order. Hugging Face's
  ``tokenizer.json`` holds the same two tables, plus the split regex and the special tokens.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from functools import lru_cache
from pathlib import Path

from fromzero.errors import CorruptFileError, MissingFileError
from fromzero.files import write_text
from fromzero.tokenizers.patterns import GPT2_PATTERN


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each of the 256 bytes to a printable character.

    Printable bytes map to themselves; the others (space, control bytes...) are moved to
    characters from 256 upwards, so a space shows as "Ġ" and a newline as "Ċ". This lets a
    vocabulary of *bytes* be stored as readable JSON strings.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def read_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a tiktoken ranks file into ``{token bytes: rank}``."""
    path = _existing(path)
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise CorruptFileError(f"{path}, line {number}: expected 'base64-token rank'") from None
    if not ranks:
        raise CorruptFileError(f"{path} holds no tokens")
    return ranks


def write_tiktoken_ranks(path: str | os.PathLike, ranks: dict[bytes, int]) -> None:
    """Write ``{token bytes: rank}`` as a tiktoken ranks file (sorted by rank)."""
    by_rank = sorted(ranks.items(), key=lambda item: item[1])
    write_text(path, "".join(f"{base64.b64encode(token).decode('ascii')} {rank}\n" for token, rank in by_rank))


def read_gpt2_files(
    encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike
) -> tuple[dict[bytes, int], dict[str, int]]:
    """Read GPT-2-format vocabulary files into ``(ranks, special_tokens)``."""
    encoder_path, merges_path = _existing(encoder_json), _existing(vocab_bpe)
    try:
        encoder = json.loads(encoder_path.read_text(encoding="utf-8"))
        merge_lines = merges_path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"cannot read {encoder_path} / {merges_path}: {err}") from None
    merges = [line for line in merge_lines if line.strip() and not line.startswith("#version")]
    return ranks_from_merges(encoder, merges, f"{encoder_path} / {merges_path.name}")


def read_hf_tokenizer_json(path: str | os.PathLike) -> tuple[dict[bytes, int], dict[str, int], str]:
    """Read a Hugging Face byte-level BPE ``tokenizer.json`` into ``(ranks, special_tokens, pattern)``.

    Accepts GPT-2's layout (a ``ByteLevel`` pre-tokenizer with its built-in regex) and ours
    (a ``Split`` regex followed by ``ByteLevel``); other tokenizers are refused, not guessed at.
    """
    path = _existing(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        model, pre = config["model"], config.get("pre_tokenizer") or {}
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise CorruptFileError(f"{path} is not a Hugging Face tokenizer.json: {err!r}") from None
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if any(step.get("add_prefix_space") for step in steps):
        pattern = ""  # a space added in front of every text: not GPT-2's behaviour, not supported
    elif kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        pattern = GPT2_PATTERN
    elif kinds == ["Split", "ByteLevel"] and "Regex" in steps[0].get("pattern", {}) and not steps[1].get("use_regex"):
        pattern = steps[0]["pattern"]["Regex"]
    else:
        pattern = ""
    if model.get("type") != "BPE" or not pattern or config.get("normalizer") is not None:
        raise CorruptFileError(f"{path} is not a byte-level BPE tokenizer (GPT-2 style); it cannot be read as one")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    encoder = dict(model.get("vocab", {}))
    encoder.update({token["content"]: token["id"] for token in config.get("added_tokens", [])})
    ranks, specials = ranks_from_merges(encoder, merges, str(path))
    return ranks, specials, pattern


def ranks_from_merges(
    encoder: dict[str, int], merges: list[str], where: str
) -> tuple[dict[bytes, int], dict[str, int]]:
    """Turn ``{byte-level token string: id}`` and merges ``"a b"`` into ``(ranks, special_tokens)``.

    Mergeable tokens are the 256 single bytes plus the result of every merge; any other entry
    (GPT-2 has exactly one, ``<|endoftext|>``) is a special token. Because our encoder merges by
    the rank of the *merged* token (as tiktoken does), merge ``i`` must produce a token whose id
    grows with ``i``; GPT-2's files satisfy this (merge ``i`` gives id ``256 + i``).
    """
    if not isinstance(encoder, dict) or not encoder:
        raise CorruptFileError(f"{where}: the vocabulary should map token strings to ids")
    byte_of = {char: b for b, char in bytes_to_unicode().items()}
    ranks: dict[bytes, int] = {}
    for b, char in bytes_to_unicode().items():
        if char not in encoder:
            raise CorruptFileError(f"{where}: the vocabulary lacks the single-byte token {char!r} (byte {b})")
        ranks[bytes([b])] = encoder[char]
    last_rank = max(ranks.values())
    for number, merge in enumerate(merges, start=1):
        parts = merge.split(" ")
        merged = "".join(parts)
        if len(parts) != 2 or merged not in encoder:
            raise CorruptFileError(
                f"{where}, merge {number} {merge!r}: expected two tokens whose join is in the vocabulary"
            )
        rank = encoder[merged]
        if rank <= last_rank:
            raise CorruptFileError(
                f"{where}, merge {number}: ids must grow with merge order (rank-based BPE), "
                f"but {merged!r} has id {rank} after id {last_rank}"
            )
        try:
            ranks[bytes(byte_of[char] for char in merged)] = last_rank = rank
        except KeyError:
            raise CorruptFileError(f"{where}, merge {number}: {merged!r} is not a byte-level token") from None
    mergeable_ids = set(ranks.values())
    specials = {token: i for token, i in encoder.items() if i not in mergeable_ids}
    return ranks, specials


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist")
    return path
