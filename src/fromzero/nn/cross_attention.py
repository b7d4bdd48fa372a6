"""Cross-attention: the decoder's positions look at the encoder's, how a translation finds its source words.

Self-attention takes its queries, keys and values from one sequence. In an encoder–decoder
("Attention Is All You Need", 2017) the decoder also *asks the source*: its queries come from the
target written so far, the keys and values from the encoder's output (the "memory"). The weights
of one query over the source positions are an *alignment*: which source words the model reads to
write this target word; a heatmap of them is the classic picture of attention.

The memory does not change while the decoder writes, so its keys and values are computed once per
sentence (:meth:`CrossAttention.memory_kv`) and reused at every decoding step. No causal mask here:
every target position may see the whole source; only source padding is masked
(boolean, True = may attend, as everywhere in :mod:`fromzero.nn`).
"""

from __future__ import annotations

import torch
from torch import nn

from fromzero.nn.attention import scaled_dot_product_attention
from fromzero.nn.attention_kernel import attend


class CrossAttention(nn.Module):
    """Multi-head attention from ``x`` (queries) to a memory (keys and values): the decoder's middle layer."""

    def __init__(self, n_embd: int, n_head: int, *, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.head_dim = n_embd // n_head
        self.attn_dropout = dropout
        self.c_q = nn.Linear(n_embd, n_embd, bias=bias)
        self.c_kv = nn.Linear(n_embd, 2 * n_embd, bias=bias)  # keys and values in one matmul
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values of ``memory`` (batch, S, n_embd), each (batch, n_head, S, head_dim)."""
        batch, length, _ = memory.shape
        k, v = self.c_kv(memory).view(batch, length, 2, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(
        self,
        x: torch.Tensor,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        *,
        mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``x`` (batch, T, n_embd) over the memory's keys/values; returns ``(output, weights or None)``.

        ``mask``: boolean, broadcastable to (batch, 1, T, S), True where the source position is real.
        ``need_weights`` returns the (batch, n_head, T, S) weights (the alignment).
        """
        batch, steps, n_embd = x.shape
        q = self.c_q(x).view(batch, steps, self.n_head, self.head_dim).transpose(1, 2)
        k, v = memory_kv
        dropout_p = self.attn_dropout if self.training else 0.0
        if need_weights:
            y, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)
        else:
            y, weights = attend(q, k, v, mask, dropout_p), None
        y = y.transpose(1, 2).reshape(batch, steps, n_embd)
        return self.resid_dropout(self.c_proj(y)), weights
