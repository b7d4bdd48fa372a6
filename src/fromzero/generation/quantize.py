"""Lighter weights for faster CPU decoding: bf16 weights, or weight-only int8.

Generating one token at batch 1 multiplies a single vector by every weight matrix, so the time
goes into *reading the weights from memory* (498 MB per token for GPT-2 small in fp32), not into
arithmetic. Storing the weights in fewer bytes therefore speeds decoding up almost in proportion:

- ``bf16``: every parameter in bfloat16 (2 bytes). Same exponent range as fp32, 8 bits of mantissa.
- ``int8``: each Linear weight row ``w`` becomes ``round(w / s)`` in int8 (1 byte) with one scale
  ``s = max|w| / 127`` per output row ("weight-only, per-channel, symmetric"). The matmul runs on
  those int8 weights directly (``torch._weight_int8pack_mm``, the CPU kernel gpt-fast and torchao
  use) with bf16 activations; everything else (embeddings, LayerNorms, attention) stays as it was.

Both lose a little accuracy; ``benchmarks/generation_quantized.py`` measures how much (perplexity)
and how much faster decoding gets. Training needs fp32 weights: quantize a copy for inference.
"""

from __future__ import annotations

import torch
from torch import nn

from fromzero.errors import InputError

MODES = ("fp32", "bf16", "int8")


class Int8Linear(nn.Module):
    """A Linear layer whose weight is stored as int8 rows times one bf16 scale per row."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)
        self.register_buffer("qweight", torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)
        self.in_features = linear.in_features
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch._weight_int8pack_mm(rows, self.qweight, self.scale).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize(model: nn.Module, mode: str) -> nn.Module:
    """Convert ``model`` in place for inference in ``mode`` ("fp32", "bf16" or "int8"); returns it.

    int8 replaces every ``nn.Linear`` (attention, feed-forward and the output head) by an
    :class:`Int8Linear`; a head tied to the token embedding gets its own int8 copy, while the
    embedding lookup keeps the original table.
    """
    if mode not in MODES:
        raise InputError(f"unknown weight mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "bf16":
        return model.to(torch.bfloat16)
    if mode == "int8":
        if not hasattr(torch, "_weight_int8pack_mm"):
            raise InputError(f"int8 weights need torch's _weight_int8pack_mm (torch >= 2.4); "
                             f"this is torch {torch.__version__}")
        for name, child in list(model.named_children()):
            if isinstance(child, nn.Linear):
                setattr(model, name, Int8Linear(child))
            else:
                quantize(child, mode)
    return model.eval()
