"""fromzero.data.dedup: exact and near-duplicate removal, checked against brute force."""

from __future__ import annotations

import random

import numpy as np
import pytest

from fromzero.data.dedup import MinHasher, deduplicate, exact_key, jaccard, shingles
from fromzero.errors import InputError

WORDS = (
    "river village monsoon teacher mango school bicycle market kite lamp festival farmer "
    "field star moon water rice bridge train grandmother library garden clever quiet"
).split()


def _corpus(seed: int, n: int, planted: int) -> list[str]:
    """Random 80-word documents plus ``planted`` lightly edited copies of earlier ones."""
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(WORDS) for _ in range(80)) for _ in range(n)]
    for _ in range(planted):
        words = rng.choice(docs).split()
        words[rng.randrange(len(words))] = "elephant"
        docs.insert(rng.randrange(len(docs) + 1), " ".join(words))
    return docs


def _brute_force(docs: list[str], threshold: float) -> list[int]:
    """Reference: keep a document unless it equals, or is similar enough to, an earlier kept one."""
    kept: list[int] = []
    for i, doc in enumerate(docs):
        if any(exact_key(doc) == exact_key(docs[j]) for j in kept):
            continue
        if any(jaccard(shingles(doc), shingles(docs[j])) >= threshold for j in kept):
            continue
        kept.append(i)
    return kept


def test_exact_duplicates_ignore_case_and_spacing():
    docs = ["The kite flew high.", "the  kite\nflew HIGH.", "A different sentence."]
    result = deduplicate(docs, near=False)
    assert result.documents == ["The kite flew high.", "A different sentence."]
    assert result.exact_duplicates == [(1, 0)]


def test_edited_copy_is_a_near_duplicate_but_a_different_text_is_not():
    story = (
        "Meena walked to the river every morning with her grandmother. They watched the fishermen "
        "pull in their nets and counted the boats. One day the river was brown after the rain."
    )
    edited = story.replace("Meena", "Radha")
    other = (
        "The train to Madurai left at six. Arjun bought a cup of tea at the station and read "
        "his science book about magnets while the fields went past the window."
    )
    result = deduplicate([story, edited, other])
    assert result.kept == [0, 2]
    removed, kept, similarity = result.near_duplicates[0]
    assert (removed, kept) == (1, 0) and similarity == pytest.approx(jaccard(shingles(story), shingles(edited)))
    assert deduplicate([story, edited, other], threshold=0.99).kept == [0, 1, 2]


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9])
def test_minhash_lsh_matches_brute_force_jaccard(threshold):
    docs = _corpus(seed=int(threshold * 10), n=60, planted=15)
    result = deduplicate(docs, threshold=threshold)
    assert result.kept == _brute_force(docs, threshold)
    assert len(result.near_duplicates) == 15


def test_minhash_agreement_estimates_jaccard():
    docs = _corpus(seed=3, n=30, planted=0)
    hasher = MinHasher(num_perm=256, seed=1)
    errors = []
    for i in range(10):
        for j in range(i):
            a, b = shingles(docs[i]), shingles(docs[j])
            errors.append(np.mean(hasher.signature(a) == hasher.signature(b)) - jaccard(a, b))
    # The estimate's standard error is sqrt(J(1-J)/256) < 0.032.
    assert abs(np.mean(errors)) < 0.03 and np.max(np.abs(errors)) < 0.15


def test_deduplication_is_deterministic_and_keeps_first_occurrence():
    docs = _corpus(seed=5, n=40, planted=10)
    first, second = deduplicate(docs), deduplicate(list(docs))
    assert first == second
    assert all(kept < removed for removed, kept, _ in first.near_duplicates)


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError):
        deduplicate(["a"], threshold=0.0)
    with pytest.raises(InputError):
        deduplicate(["a"], num_perm=100, bands=32)
