"""Level 6 exercises, checked by ``fromzero learn check 6.NAME FILE``."""

from __future__ import annotations

import random

from fromzero.lessons.exercises import Check


def _cosine_matrix(vectors):
    """The library's cosine similarity of every pair of rows."""
    from fromzero.embeddings.plots import cosine_matrix

    return cosine_matrix(vectors)


def _cosine_cases() -> list[tuple]:
    import numpy as np

    rng = np.random.default_rng(6)
    return [(np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]),)] + [
        (rng.normal(size=(rows, dim)),) for rows, dim in ((2, 3), (5, 8), (10, 50))
    ]


def _same_matrix(got, expected) -> bool:
    import numpy as np

    got = np.asarray(got, dtype=float)
    return got.shape == expected.shape and bool(np.allclose(got, expected, atol=1e-6))


def _chunk_words(text: str, size: int, overlap: int) -> list[str]:
    """The library's chunks of ``size`` words, each sharing ``overlap`` words with the one before."""
    from fromzero.embeddings.index import chunk_document

    return [chunk.text for chunk in chunk_document(text, size, overlap)]


def _chunk_cases() -> list[tuple]:
    rng = random.Random(6)
    words = "the sun warms the sea and water rises as vapour then falls again as rain on hills".split()
    cases = [("one two three four five six seven", 3, 1), ("short text", 5, 2), ("a b c d e f", 2, 0)]
    for _ in range(4):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))
        size = rng.randint(2, 10)
        cases.append((text, size, rng.randint(0, size - 1)))
    return cases


CHECKS = {
    "cosine": Check(
        function="cosine_matrix",
        task="write cosine_matrix(vectors): the cosine similarity of every pair of rows of a (n, dim) array",
        reference=_cosine_matrix,
        cases=_cosine_cases,
        same=_same_matrix,
        hints=("the cosine of a and b is a·b / (|a| |b|)", "divide each row by its length first; then one "
               "matrix product, unit @ unit.T, gives every pair at once"),
    ),
    "chunks": Check(
        function="chunk_words",
        task="write chunk_words(text, size, overlap): the text as chunks of `size` words (joined by single "
             "spaces), each starting `size - overlap` words after the one before, the last one ending the text",
        reference=_chunk_words,
        cases=_chunk_cases,
        same=lambda got, expected: list(got) == expected,
        hints=("split the text into words with text.split()", "chunks start at word 0, size - overlap, "
               "2 * (size - overlap), ...", "stop after the first chunk that reaches the last word: no chunk "
               "should lie inside the one before"),
    ),
}
