"""The two blocks of the original Transformer: an encoder block that reads the source, a decoder block that writes.

Encoder block: self-attention where every source position sees every other (no causal mask; only
padding is hidden), then the feed-forward network. Decoder block: *causal* self-attention over the
target written so far (as in a GPT), then cross-attention over the encoder's output
(:mod:`~fromzero.nn.cross_attention`), then the feed-forward network.

Where the LayerNorms go is a choice:

* post-LN, the paper's: ``x = norm(x + sublayer(x))``; the residual stream is normalised after every
  sub-layer, which is why the paper needed a learning-rate warm-up to train it;
* pre-LN (``norm_first=True``, the default, as GPT-2 and :class:`~fromzero.nn.Block`):
  ``x = x + sublayer(norm(x))``; stable without tricks, and a final LayerNorm follows the stack.

The layers are named as in :class:`~fromzero.nn.Block` (``attn``, ``mlp``, ``ln_1``...), and their
numbers equal PyTorch's ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer`` with the same
weights (tested), in both placements.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fromzero.nn.attention import KeyValueStore, MultiHeadAttention
from fromzero.nn.cross_attention import CrossAttention
from fromzero.nn.feedforward import FeedForward


def residual(x: torch.Tensor, norm: nn.LayerNorm, layer: Callable[[torch.Tensor], tuple], norm_first: bool) -> tuple:
    """``x + layer(norm(x))`` (pre-LN) or ``norm(x + layer(x))`` (post-LN); ``layer`` returns (output, weights)."""
    if norm_first:
        out, weights = layer(norm(x))
        return x + out, weights
    out, weights = layer(x)
    return norm(x + out), weights


class EncoderBlock(nn.Module):
    """Bidirectional self-attention, then the feed-forward network."""

    def __init__(self, n_embd: int, n_head: int, *, n_inner: int | None = None, activation: str = "relu",
                 bias: bool = True, dropout: float = 0.0, norm_first: bool = True, layer_norm_epsilon: float = 1e-5):
        super().__init__()
        self.norm_first = norm_first
        self.ln_1, self.ln_2 = (nn.LayerNorm(n_embd, eps=layer_norm_epsilon, bias=bias) for _ in range(2))
        self.attn = MultiHeadAttention(n_embd, n_head, bias=bias, dropout=dropout)
        self.mlp = FeedForward(n_embd, n_inner or 4 * n_embd, activation=activation, bias=bias, dropout=dropout)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (batch, S, n_embd); ``mask`` boolean (batch, 1, 1, S), True at real source tokens.
        Returns the new stream and the self-attention weights (None unless ``need_weights``)."""
        x, weights = residual(x, self.ln_1, lambda h: self.attn(h, mask=mask, need_weights=need_weights),
                              self.norm_first)
        x, _ = residual(x, self.ln_2, lambda h: (self.mlp(h), None), self.norm_first)
        return x, weights


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention over the encoder's output, then the feed-forward network.

    ``layer_idx`` tells a KV cache which layer's buffers hold this block's self-attention keys/values.
    """

    def __init__(self, n_embd: int, n_head: int, *, n_inner: int | None = None, activation: str = "relu",
                 bias: bool = True, dropout: float = 0.0, norm_first: bool = True, layer_norm_epsilon: float = 1e-5,
                 layer_idx: int = 0):
        super().__init__()
        self.norm_first = norm_first
        self.ln_1, self.ln_2, self.ln_3 = (nn.LayerNorm(n_embd, eps=layer_norm_epsilon, bias=bias) for _ in range(3))
        self.attn = MultiHeadAttention(n_embd, n_head, bias=bias, dropout=dropout, layer_idx=layer_idx)
        self.cross = CrossAttention(n_embd, n_head, bias=bias, dropout=dropout)
        self.mlp = FeedForward(n_embd, n_inner or 4 * n_embd, activation=activation, bias=bias, dropout=dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        memory_mask: torch.Tensor | None = None,
        cache: KeyValueStore | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``x`` (batch, T, n_embd): the target so far (or its newest positions, with ``cache``).

        ``memory_kv``: this block's :meth:`CrossAttention.memory_kv` of the encoder output, computed
        once per source. ``mask`` / ``is_causal``: the self-attention's causal (and target padding)
        mask, as :class:`~fromzero.nn.MultiHeadAttention` takes them; ``memory_mask`` (batch, 1, 1, S)
        hides source padding. Returns the new stream, the self-attention and the cross-attention
        weights (None unless ``need_weights``).
        """
        x, self_weights = residual(x, self.ln_1, lambda h: self.attn(
            h, mask=mask, is_causal=is_causal, cache=cache, need_weights=need_weights), self.norm_first)
        x, cross_weights = residual(x, self.ln_2, lambda h: self.cross(
            h, memory_kv, mask=memory_mask, need_weights=need_weights), self.norm_first)
        x, _ = residual(x, self.ln_3, lambda h: (self.mlp(h), None), self.norm_first)
        return x, self_weights, cross_weights
