"""Removing exact and near-duplicate documents.

Duplicates make a model memorise instead of generalise, and they leak test answers into
training. Exact duplicates are easy: hash a normalised copy of each document. *Near*
duplicates (the same story with a changed name, a page scraped twice with a different footer)
need a similarity measure:

- a document becomes its set of **shingles**, every run of ``k`` characters of its normalised text;
- two documents are near duplicates when the **Jaccard similarity** of their shingle sets,
  ``|A & B| / |A | B|``, is at least ``threshold`` (default 0.8 on 5-character shingles:
  a lightly edited copy scores above 0.8, two different texts on the same topic far below);
- comparing every pair is quadratic, so **MinHash** summarises each set by ``num_perm``
  minimum hash values (the chance that two signatures agree in one position equals the
  Jaccard similarity), and **locality-sensitive hashing** groups signatures into bands so that
  only documents sharing a whole band are compared. Every candidate is then checked with the
  exact Jaccard similarity, so the result matches a brute-force comparison of all pairs
  (except, with probability below one in a million at the default settings, a missed pair).

Everything is deterministic: hashes are seeded, and the first occurrence of a document is kept.
"""

from __future__ import annotations

import hashlib
import unicodedata
import zlib
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from fromzero.errors import InputError

def normalise_for_dedup(text: str) -> str:
    """Lower-case, NFKC-normalised text with all whitespace runs collapsed to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def exact_key(text: str) -> str:
    """A hash that is equal for documents differing only in case and spacing."""
    return hashlib.sha256(normalise_for_dedup(text).encode("utf-8")).hexdigest()


def shingles(text: str, k: int = 5) -> set[str]:
    """The set of ``k``-character substrings of the normalised text (the text itself if shorter)."""
    text = normalise_for_dedup(text)
    if len(text) <= k:
        return {text}
    return {text[i : i + k] for i in range(len(text) - k + 1)}


def jaccard(a: set, b: set) -> float:
    """Size of the intersection over size of the union (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class MinHasher:
    """MinHash signatures: ``num_perm`` random hash functions, keeping the minimum of each.

    Each shingle is first hashed to 32 bits with CRC-32 (fast, in the standard library, and
    unlike Python's ``hash()`` the same in every run). Function ``i`` is *multiply-shift*
    hashing, ``((a_i * x + b_i) mod 2**64) >> 32`` with random 64-bit ``a_i`` (odd) and ``b_i``:
    cheap in NumPy, whose ``uint64`` arithmetic wraps modulo ``2**64``, and it scrambles the
    order of the inputs well. (The textbook ``(a*x + b) mod p`` needs ``a`` as large as ``p``
    to do so, which overflows 64 bits.)
    """

    def __init__(self, num_perm: int = 128, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(0, 1 << 64, size=num_perm, dtype=np.uint64, endpoint=False) | np.uint64(1)
        self.b = rng.integers(0, 1 << 64, size=num_perm, dtype=np.uint64, endpoint=False)

    def signature(self, shingle_set: set[str]) -> np.ndarray:
        encoded = (shingle.encode("utf-8") for shingle in shingle_set)
        hashes = np.fromiter(map(zlib.crc32, encoded), dtype=np.uint64, count=len(shingle_set))
        mixed = (self.a[:, None] * hashes[None, :] + self.b[:, None]) >> np.uint64(32)
        return mixed.min(axis=1)


@dataclass
class DedupResult:
    """Documents kept (in their original order) and what was removed, by original index."""

    documents: list[str] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    exact_duplicates: list[tuple[int, int]] = field(default_factory=list)  # (removed, first identical)
    near_duplicates: list[tuple[int, int, float]] = field(default_factory=list)  # (removed, kept, Jaccard)


def deduplicate(
    documents: list[str],
    *,
    near: bool = True,
    threshold: float = 0.8,
    k: int = 5,
    num_perm: int = 128,
    bands: int = 32,
    seed: int = 0,
) -> DedupResult:
    """Drop exact duplicates and, if ``near``, documents whose Jaccard similarity to an earlier
    kept document is at least ``threshold``.

    With ``num_perm / bands`` rows per band, a pair becomes a candidate with probability
    ``1 - (1 - J**rows)**bands``: at the defaults (4 rows, 32 bands) that is 0.99999995 for
    J = 0.8, so near duplicates are practically never missed.
    """
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm % bands:
        raise InputError(f"num_perm ({num_perm}) must be a multiple of bands ({bands})")
    rows = num_perm // bands
    hasher = MinHasher(num_perm, seed)
    result = DedupResult()
    first_with_key: dict[str, int] = {}
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    kept_shingles: dict[int, set[str]] = {}

    for index, doc in enumerate(documents):
        key = exact_key(doc)
        if key in first_with_key:
            result.exact_duplicates.append((index, first_with_key[key]))
            continue
        first_with_key[key] = index
        if near:
            doc_shingles = shingles(doc, k)
            signature = hasher.signature(doc_shingles)
            band_keys = [(band, signature[band * rows : (band + 1) * rows].tobytes()) for band in range(bands)]
            candidates = sorted({other for band_key in band_keys for other in buckets[band_key]})
            similarities = ((other, jaccard(doc_shingles, kept_shingles[other])) for other in candidates)
            match = next(((other, sim) for other, sim in similarities if sim >= threshold), None)
            if match is not None:
                result.near_duplicates.append((index, *match))
                continue
            kept_shingles[index] = doc_shingles
            for band_key in band_keys:
                buckets[band_key].append(index)
        result.kept.append(index)
        result.documents.append(doc)
    return result
