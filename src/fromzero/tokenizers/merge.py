"""The merge step of rank-based BPE, in one place for the encoder and the Hugging Face export.

A vocabulary of ranks (``{token bytes: id}``, lower id = learned earlier) encodes a chunk of bytes
by starting from single bytes and joining, again and again, the adjacent pair whose joined bytes
have the lowest rank. This is the loop tiktoken runs in Rust; ``naive.py`` shows the same idea
with pairs of ids instead of ranks of bytes.
"""

from __future__ import annotations


def bpe_merge(piece: bytes, ranks: dict[bytes, int], max_rank: int | None = None) -> list[bytes]:
    """Split ``piece`` into tokens by repeatedly merging the lowest-ranked adjacent pair.

    ``max_rank`` stops before merges of that rank or higher: asked for a token's own bytes with
    its own rank, this returns the two parts the token is made from (used by the HF export).
    """
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):  # "<": leftmost wins ties
                best, best_rank = i, rank
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts
