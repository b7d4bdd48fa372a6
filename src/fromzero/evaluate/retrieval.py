"""Scoring a search: how often the right document is among the first k results (recall@k).

A retrieval test set pairs each query with the one document that answers it (here: each
held-out question with its own reference answer). A search ranks the documents for each query;
**recall@k** is the share of queries whose right document is among the first ``k``. It is the
number that matters for retrieval-augmented answers, which put the top ``k`` chunks in front of
the question: a right document ranked ``k + 1`` never reaches the model.
"""

from __future__ import annotations

from typing import Hashable, Sequence

from fromzero.errors import InputError


def recall_at_k(ranked: Sequence[Sequence[Hashable]], relevant: Sequence[Hashable], k: int) -> float:
    """Share of queries ``i`` whose ``relevant[i]`` is among the first ``k`` of ``ranked[i]`` (best first)."""
    if len(ranked) != len(relevant):
        raise InputError(f"one ranking per query: {len(ranked)} rankings for {len(relevant)} queries")
    if not relevant:
        raise InputError("recall needs at least one query")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    return sum(answer in list(ranking)[:k] for ranking, answer in zip(ranked, relevant)) / len(relevant)
