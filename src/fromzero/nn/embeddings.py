"""Turning token ids into vectors, and telling the model where each token sits.

A Transformer sees a set of vectors, not a sequence: attention by itself does not know which
token came first. So every input vector is the sum of two embeddings:

* a **token embedding** (what the token is): row ``id`` of a learned ``(vocab_size, n_embd)`` table;
* a **positional encoding** (where it is): either a second learned table, one row per position
  (GPT-2), or the fixed sine/cosine waves of "Attention Is All You Need", which need no training
  and give every position a unique, smoothly varying pattern.

Both positional modules take explicit position ids, so a left-padded prompt can start counting at
its first real token, and a cached decoding step can ask for position 57 alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TokenEmbedding(nn.Embedding):
    """A learned lookup table: token id ``i`` becomes row ``i`` of ``weight`` (vocab_size, n_embd).

    GPT-2 reuses this same matrix as its output layer ("weight tying"): the score of token ``i``
    is the dot product of the final hidden state with the vector that represents ``i`` at input.
    """

    def __init__(self, vocab_size: int, n_embd: int) -> None:
        super().__init__(vocab_size, n_embd)


class LearnedPositionalEmbedding(nn.Embedding):
    """One learned vector per position 0 .. max_positions-1 (GPT-2's ``wpe``).

    It cannot represent positions it was never given a row for, which is why a GPT has a fixed
    context length (``block_size``).
    """

    def __init__(self, max_positions: int, n_embd: int) -> None:
        super().__init__(max_positions, n_embd)


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sine/cosine position vectors (Vaswani et al., 2017, section 3.5); nothing to learn.

    ``PE[pos, 2i] = sin(pos / 10000^(2i/d))`` and ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d))``.
    Each pair of dimensions is a clock hand turning at its own speed, from one turn every 2*pi
    positions down to one every 10000*2*pi; together they give each position a unique pattern, and
    the encoding of ``pos + k`` is a fixed rotation of the encoding of ``pos``, which makes
    relative offsets easy for attention to pick up. Computed on the fly, so it has no state.
    """

    def __init__(self, n_embd: int, base: float = 10000.0) -> None:
        super().__init__()
        if n_embd % 2:
            raise ValueError(f"sinusoidal positions need an even n_embd, got {n_embd}")
        self.n_embd = n_embd
        self.base = base

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        """Encodings for ``position_ids`` (any shape of ints) -> ``(*position_ids.shape, n_embd)`` float32."""
        half = torch.arange(0, self.n_embd, 2, device=position_ids.device, dtype=torch.float32)
        inv_freq = torch.exp(half * (-math.log(self.base) / self.n_embd))
        angles = position_ids.to(torch.float32)[..., None] * inv_freq
        return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)
