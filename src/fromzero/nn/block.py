"""One Transformer block, GPT-2 style ("pre-LN"): normalise, attend, add; normalise, think, add.

    x = x + attention(layer_norm_1(x))
    x = x + feed_forward(layer_norm_2(x))

The additions are *residual connections*: each sub-layer only adds a correction to a running
"residual stream", so gradients flow straight from the loss to the first layer and deep stacks
train. Normalising *before* each sub-layer (pre-LN, GPT-2) instead of after (post-LN, the original
Transformer) keeps that stream un-normalised and makes training stable without warm-up tricks;
the price is one extra LayerNorm at the very end of the model (``ln_f``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fromzero.nn.attention import MultiHeadAttention
from fromzero.nn.feedforward import FeedForward


class Block(nn.Module):
    """Pre-LN Transformer block: ``ln_1 -> attn -> +``, ``ln_2 -> mlp -> +`` (GPT-2's ``h.N``)."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        *,
        n_inner: int | None = None,
        activation: str = "gelu_new",
        bias: bool = True,
        dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        layer_idx: int = 0,
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=layer_norm_epsilon, bias=bias)
        self.attn = MultiHeadAttention(n_embd, n_head, bias=bias, dropout=dropout, layer_idx=layer_idx)
        self.ln_2 = nn.LayerNorm(n_embd, eps=layer_norm_epsilon, bias=bias)
        self.mlp = FeedForward(n_embd, n_inner or 4 * n_embd, activation=activation, bias=bias, dropout=dropout)

    def forward(self, x: torch.Tensor, **attention: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the new residual stream and the attention weights (None unless ``need_weights``).

        ``attention`` holds the keywords of :meth:`MultiHeadAttention.forward`: ``mask``,
        ``is_causal``, ``cache``, ``need_weights``.
        """
        attended, weights = self.attn(self.ln_1(x), **attention)
        x = x + attended
        x = x + self.mlp(self.ln_2(x))
        return x, weights
