"""Byte-level BPE the textbook way, in the spirit of minbpe: start reading here.

Training starts with the 256 byte values as tokens, counts every pair of adjacent tokens in the
corpus, makes the most frequent pair a new token, and repeats until the vocabulary is big enough.
Encoding replays the merges on new text, the earliest learned first; decoding joins the bytes of
the tokens. Text is first cut into chunks by a regex (``patterns.py``), and pairs never cross a
chunk, so a token never glues a word to the punctuation after it.

This is slow on purpose: every merge re-counts the whole corpus, every encoding step re-scans the
chunk. ``train.py`` learns the same merges incrementally, and ``BPETokenizer`` (``bpe.py``) gives
the same ids with special tokens, saving, GPT-2's vocabulary and tiktoken's speed; the tests and
``benchmarks/tokenizers_bench.py`` check them against this module.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import regex

from fromzero.tokenizers.patterns import GPT2_PATTERN

Pair = tuple[int, int]


def pair_counts(chunks: list[list[int]]) -> Counter[Pair]:
    """How often each pair of adjacent token ids occurs, within chunks."""
    return Counter(pair for ids in chunks for pair in zip(ids, ids[1:]))


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, left to right."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train(text: str, vocab_size: int, pattern: str = GPT2_PATTERN) -> dict[Pair, int]:
    """Learn merges ``{(left id, right id): new id}`` until there are ``vocab_size`` tokens."""
    chunks = [list(chunk.encode("utf-8")) for chunk in regex.findall(pattern, text)]
    vocab = [bytes([b]) for b in range(256)]  # token id -> its bytes
    merges: dict[Pair, int] = {}
    while len(vocab) < vocab_size:
        counts = pair_counts(chunks)
        if not counts:
            break  # every chunk is a single token: nothing left to merge
        pair = min(counts, key=lambda p: (-counts[p], p))  # the most frequent; ties: smallest ids
        merged = vocab[pair[0]] + vocab[pair[1]]
        if merged not in vocab:  # rarely, two different pairs spell the same bytes: one token
            vocab.append(merged)
        merges[pair] = vocab.index(merged)
        chunks = [merge(ids, pair, merges[pair]) for ids in chunks]
    return merges


def encode(text: str, merges: dict[Pair, int], pattern: str = GPT2_PATTERN) -> list[int]:
    """Text -> ids: in each chunk, apply the earliest learned merge present, until none is."""
    out: list[int] = []
    for chunk in regex.findall(pattern, text):
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))
            if pair not in merges:
                break
            ids = merge(ids, pair, merges[pair])
        out.extend(ids)
    return out


def decode(ids: Sequence[int], merges: dict[Pair, int]) -> str:
    """Ids -> text: join the bytes of the tokens (bytes that are not UTF-8 become U+FFFD)."""
    vocab = {b: bytes([b]) for b in range(256)}
    for (left, right), new_id in merges.items():  # in the order learned: the parts come first
        vocab[new_id] = vocab[left] + vocab[right]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
