"""Training a byte-level BPE vocabulary: start from the 256 bytes, merge the most frequent pair.

Read ``naive.py`` first: the textbook loop ("count every adjacent pair in the corpus, merge the most
frequent one, repeat") in a few lines. It re-reads the whole corpus for every merge. This module
learns exactly the same merges (the tests compare them), and two observations make it fast enough
for real corpora:

1. **Work on unique chunks with counts.** Text is split into chunks (``patterns.py``) and merges
   never cross chunks, so ``" the"`` appearing 20,000 times is stored once with count 20,000.
2. **Update pair counts incrementally.** A merge only changes the chunks that contain the pair.
   We keep ``pair -> total count`` and ``pair -> chunks that contain it``; after merging we subtract
   the old pairs of each changed chunk and add its new pairs. A heap hands out the most frequent
   pair; entries made stale by later updates are skipped when they come out ("lazy deletion").

Ties are broken deterministically: among pairs with the same count, the one with the smallest
``(left id, right id)`` wins, so the same corpus always gives the same vocabulary.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from typing import Iterable, Sequence

import regex

from fromzero.console import console, progress
from fromzero.errors import InputError

Pair = tuple[int, int]


def count_chunks(texts: str | Iterable[str], pattern: str, special_tokens: Sequence[str]) -> Counter[str]:
    """How often each regex chunk occurs; special tokens are cut out first and never learned."""
    split = regex.compile(pattern)
    specials = regex.compile("|".join(map(regex.escape, sorted(special_tokens, key=len, reverse=True))))
    counts: Counter[str] = Counter()
    for text in [texts] if isinstance(texts, str) else texts:
        for piece in specials.split(text) if special_tokens else [text]:
            counts.update(split.findall(piece))
    return counts


def train_bpe(
    texts: str | Iterable[str], vocab_size: int, pattern: str, special_tokens: Sequence[str], verbose: bool = False,
) -> tuple[dict[bytes, int], dict[str, int]]:
    """Learn ``(ranks, special_tokens)``: ids 0..255 are the bytes, then merges, then specials."""
    special_tokens = list(dict.fromkeys(special_tokens))
    n_tokens = vocab_size - len(special_tokens)
    if n_tokens < 256:
        raise InputError(
            f"a BPE vocabulary needs at least 256 tokens (the bytes) + {len(special_tokens)} special tokens = "
            f"{256 + len(special_tokens)}; the vocabulary size asked for is {vocab_size}"
        )
    chunks = count_chunks(texts, pattern, special_tokens)
    if not chunks:
        raise InputError("the training corpus is empty (no text besides special tokens)")
    if verbose:
        console.print(f"{sum(chunks.values()):,} chunks, {len(chunks):,} of them distinct; learning merges")
    words = [list(chunk.encode("utf-8")) for chunk in chunks]
    vocab = [bytes([b]) for b in range(256)]
    vocab = learn_merges(words, list(chunks.values()), vocab, n_tokens, verbose)
    if len(vocab) < n_tokens:
        console.print(
            f"[yellow]the corpus ran out of pairs after {len(vocab) - 256} merges; "
            f"vocabulary has {len(vocab) + len(special_tokens)} tokens, not {vocab_size}"
        )
    ranks = {token: i for i, token in enumerate(vocab)}
    return ranks, {token: len(vocab) + i for i, token in enumerate(special_tokens)}


def learn_merges(
    words: list[list[int]], counts: list[int], vocab: list[bytes], n_tokens: int, verbose: bool
) -> list[bytes]:
    """Merge the most frequent pair until ``vocab`` holds ``n_tokens`` tokens (or no pair is left).

    ``words`` are the unique chunks as lists of token ids (changed in place), ``counts`` how often
    each occurs, ``vocab`` the bytes of each token id. Returns the grown ``vocab``.
    """
    pair_counts: defaultdict[Pair, int] = defaultdict(int)
    where: defaultdict[Pair, set[int]] = defaultdict(set)  # pair -> indices of words holding it
    for index, (word, count) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += count
            where[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    id_of = {token: i for i, token in enumerate(vocab)}

    with progress(transient=True, disable=not verbose) as bar:
        task = bar.add_task("learning merges", total=n_tokens - len(vocab))
        while len(vocab) < n_tokens and heap:
            neg_count, pair = heapq.heappop(heap)
            if pair_counts.get(pair) != -neg_count:  # stale entry: the count changed since the push
                continue
            merged = vocab[pair[0]] + vocab[pair[1]]
            new_id = id_of.get(merged)
            if new_id is None:  # almost always; rarely two different pairs spell the same bytes
                new_id = id_of[merged] = len(vocab)
                vocab.append(merged)
                bar.advance(task)
            changed = _apply_merge(words, counts, where.pop(pair), pair, new_id, where)
            for changed_pair, delta in changed.items():
                if delta:
                    count = pair_counts[changed_pair] + delta
                    if count:
                        pair_counts[changed_pair] = count
                        heapq.heappush(heap, (-count, changed_pair))
                    else:
                        del pair_counts[changed_pair]
    return vocab


def _apply_merge(
    words: list[list[int]], counts: list[int], indices: set[int], pair: Pair, new_id: int,
    where: defaultdict[Pair, set[int]],
) -> dict[Pair, int]:
    """Replace ``pair`` by ``new_id`` in the given words; return how each pair's count changed."""
    first, second = pair
    delta: defaultdict[Pair, int] = defaultdict(int)
    for index in indices:
        word = words[index]
        merged: list[int] = []
        i, n = 0, len(word)
        while i < n:
            if word[i] == first and i + 1 < n and word[i + 1] == second:
                merged.append(new_id)
                i += 2
            else:
                merged.append(word[i])
                i += 1
        if len(merged) == len(word):  # stale index entry: an earlier merge took the pair away
            continue
        count = counts[index]
        for old_pair in zip(word, word[1:]):
            delta[old_pair] -= count
        for new_pair in zip(merged, merged[1:]):
            delta[new_pair] += count
            if new_id in new_pair:  # pairs without the new token were in the word already
                where[new_pair].add(index)
        words[index] = merged
    return delta
