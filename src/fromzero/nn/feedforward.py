"""The position-wise feed-forward network: the part of a Transformer block that "thinks" per token.

Attention mixes information *between* positions; the feed-forward network then transforms each
position on its own: widen to ``n_inner`` (4 x n_embd in GPT-2), apply a non-linearity, project
back. Most of a GPT's parameters live here.

GELU comes in two flavours that give slightly different numbers, so a model must be run with
the one it was trained with:

* ``"gelu"``: exact, ``x * Phi(x)`` with Phi the standard normal CDF;
* ``"gelu_new"``: GPT-2's tanh approximation, ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
  (Hugging Face calls it ``gelu_new``; PyTorch ``gelu(approximate="tanh")``).

``"relu"``, ``max(0, x)``, is the original Transformer's ("Attention Is All You Need", 2017).
"""

from __future__ import annotations

import torch
from torch import nn

from fromzero.nn.activation_kernel import activation

ACTIVATIONS = ("gelu_new", "gelu", "relu")


def activate(x: torch.Tensor, kind: str = "gelu_new") -> torch.Tensor:
    """Apply ``kind``: ``"gelu_new"`` (tanh approximation, GPT-2), ``"gelu"`` (exact) or ``"relu"``.

    In a CPU training step the kernel is the one measured faster here (:mod:`fromzero.nn.activation_kernel`).
    """
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown activation {kind!r}; choose one of {', '.join(ACTIVATIONS)}")
    return activation(x, kind)


class FeedForward(nn.Module):
    """``x -> c_proj(activation(c_fc(x)))`` with dropout on the output (GPT-2's ``mlp``)."""

    def __init__(
        self, n_embd: int, n_inner: int, *, activation: str = "gelu_new", bias: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self.c_fc = nn.Linear(n_embd, n_inner, bias=bias)
        self.c_proj = nn.Linear(n_inner, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(activate(self.c_fc(x), self.activation)))
