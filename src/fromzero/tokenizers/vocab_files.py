"""The two file formats byte-level BPE vocabularies come in, read and written exactly.

* **tiktoken ranks** (``gpt2.tiktoken``): one line per token, ``base64(token bytes) rank``. The rank
  is both the token id and its merge priority (lower merges first). This is our own save format.
* **GPT-2 / Hugging Face** (``encoder.json`` + ``vocab.bpe``, called ``vocab.json`` + ``merges.txt``
  by Hugging Face): tokens are bytes written as printable characters (see ``bytes_to_unicode``);
  the JSON maps each to its id and the merges file lists merges in priority order.
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
    lines = [f"{base64.b64encode(token).decode('ascii')} {rank}\n" for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])]
    write_text(path, "".join(lines))


def read_gpt2_files(encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike) -> tuple[dict[bytes, int], dict[str, int]]:
    """Read GPT-2-format vocabulary files into ``(ranks, special_tokens)``.

    Mergeable tokens are the 256 single bytes plus the result of every merge; any other entry of
    the JSON (GPT-2 has exactly one, ``<|endoftext|>``) is a special token. Because our encoder
    merges by the rank of the *merged* token (as tiktoken does), merge ``i`` must produce a token
    whose id grows with ``i``; GPT-2's files satisfy this (merge ``i`` gives id ``256 + i``).
    """
    encoder_path, merges_path = _existing(encoder_json), _existing(vocab_bpe)
    try:
        encoder = json.loads(encoder_path.read_text(encoding="utf-8"))
        merge_lines = merges_path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"cannot read {encoder_path} / {merges_path}: {err}") from None
    if not isinstance(encoder, dict) or not encoder:
        raise CorruptFileError(f"{encoder_path} should map token strings to ids")

    byte_of = {char: b for b, char in bytes_to_unicode().items()}

    def to_bytes(token: str, where: Path) -> bytes:
        try:
            return bytes(byte_of[char] for char in token)
        except KeyError:
            raise CorruptFileError(f"{where}: {token!r} is not a byte-level token") from None

    ranks: dict[bytes, int] = {}
    for b, char in bytes_to_unicode().items():
        if char not in encoder:
            raise CorruptFileError(f"{encoder_path} lacks the single-byte token {char!r} (byte {b})")
        ranks[bytes([b])] = encoder[char]
    last_rank = max(ranks.values())
    for number, line in enumerate(merge_lines, start=1):
        if line.startswith("#version") or not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise CorruptFileError(f"{merges_path}, line {number}: expected two tokens separated by one space")
        merged = "".join(parts)
        if merged not in encoder:
            raise CorruptFileError(f"{merges_path}, line {number}: merge result {merged!r} is not in {encoder_path.name}")
        rank = encoder[merged]
        if rank <= last_rank:
            raise CorruptFileError(
                f"{merges_path}, line {number}: ids must grow with merge order (rank-based BPE), "
                f"but {merged!r} has id {rank} after id {last_rank}"
            )
        ranks[to_bytes(merged, merges_path)] = last_rank = rank
    mergeable_ids = set(ranks.values())
    specials = {token: i for token, i in encoder.items() if i not in mergeable_ids}
    return ranks, specials


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist")
    return path
