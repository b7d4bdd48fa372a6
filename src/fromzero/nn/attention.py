"""Self-attention: every position looks at the others and takes a weighted average of what it finds.

For each position the layer makes a *query* ("what am I looking for?"), a *key* ("what do I
contain?") and a *value* ("what do I pass on?"). The score between query ``i`` and key ``j`` is
their dot product divided by ``sqrt(head_dim)`` (so the scores do not grow with the vector size
and saturate the softmax); a softmax over ``j`` turns the scores into weights that sum to 1, and
the output at ``i`` is the weighted sum of the values:

    softmax(Q K^T / sqrt(d) + mask) V

A GPT predicts the next token, so position ``i`` must not see positions after it: the **causal
mask** removes those scores before the softmax. Padding is removed the same way.

**Masks in this package are boolean, True = "may attend"**, the convention of
``torch.nn.functional.scaled_dot_product_attention`` (SDPA). Shapes broadcast to
``(batch, heads, queries, keys)``.

Multi-head attention runs ``n_head`` smaller attentions side by side, each on its own
``head_dim = n_embd / n_head`` slice, so different heads can track different relations. Q, K and
V of all heads come from one fused matrix multiply (``c_attn``), as in GPT-2.

Two code paths compute the same thing:

* the fast path calls SDPA (:func:`fromzero.nn.attention_kernel.attend`), which picks a fused
  kernel and never materialises the ``(queries, keys)`` weight matrix;
* the explicit path below (:func:`scaled_dot_product_attention`) spells the formula out and
  returns the weights, for heatmaps and for learning. Tests check that they agree.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from fromzero.nn.attention_kernel import attend


def causal_mask(q_len: int, k_len: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean ``(q_len, k_len)`` mask, True where a query may attend to a key.

    The queries are the *last* ``q_len`` of ``k_len`` positions (with a KV cache, the earlier keys
    come from previous steps), so query ``i`` sits at position ``k_len - q_len + i`` and sees keys
    ``0 .. k_len - q_len + i``. With ``k_len == q_len`` this is the usual lower triangle.
    """
    k_len = q_len if k_len is None else k_len
    query_positions = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    return torch.arange(k_len, device=device)[None, :] <= query_positions


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out step by step; returns ``(output, weights)``.

    ``q``: (..., queries, d); ``k``, ``v``: (..., keys, d); ``mask``: boolean, broadcastable to
    (..., queries, keys), True = may attend. ``weights`` (..., queries, keys) are the softmax
    probabilities (after dropout, which is only non-zero in training). A query row whose keys are
    all masked would divide 0 by 0; callers keep at least one key visible per row.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights


class KeyValueStore(Protocol):
    """What attention needs from a KV cache (see :class:`fromzero.models.KVCache`)."""

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values for ``layer``; return all keys/values so far."""
        ...


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with fused QKV projection (GPT-2's ``attn``).

    ``layer_idx`` tells a KV cache which layer's buffers to use.
    """

    def __init__(
        self, n_embd: int, n_head: int, *, bias: bool = True, dropout: float = 0.0, layer_idx: int = 0
    ) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.head_dim = n_embd // n_head
        self.layer_idx = layer_idx
        self.attn_dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KeyValueStore | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over ``x`` (batch, T, n_embd); returns ``(output, weights or None)``.

        ``mask``: boolean (batch or 1, 1, T, keys), True = may attend; ``is_causal``: apply the
        causal mask implicitly (only valid without a mask and when queries and keys are the same
        positions). With ``cache``, this step's keys/values are appended and attention runs over
        all cached positions. ``need_weights`` takes the explicit path and returns
        (batch, n_head, T, keys) weights.
        """
        batch, steps, n_embd = x.shape
        # (batch, T, 3 * n_embd) -> three (batch, n_head, T, head_dim) views, one per Q, K, V.
        q, k, v = self.c_attn(x).view(batch, steps, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        dropout_p = self.attn_dropout if self.training else 0.0
        if need_weights:
            if is_causal:
                mask = causal_mask(steps, k.size(-2), device=x.device)
            y, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)
        else:
            y = attend(q, k, v, mask, dropout_p, is_causal)
            weights = None
        # Put the heads side by side again: (batch, n_head, T, head_dim) -> (batch, T, n_embd).
        y = y.transpose(1, 2).reshape(batch, steps, n_embd)
        return self.resid_dropout(self.c_proj(y)), weights
