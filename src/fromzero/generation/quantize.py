"""Weights laid out for fast CPU decoding: fp32 in the (in, out) layout, bf16, or weight-only int8.

Generating one token at batch 1 multiplies a single vector by every weight matrix, so the time
goes into *reading the weights from memory* (498 MB per token for GPT-2 small in fp32), not into
arithmetic. Two things therefore speed decoding up: reading the weights in the order the CPU's
matrix kernels like best, and storing them in fewer bytes:

- ``fp32``: the same numbers, each Linear weight stored transposed, as (in, out) (GPT-2's own
  Conv1D layout), and multiplied with ``addmm``. MKL walks this layout faster when only a few rows
  multiply it: about 1.25x on the matmuls of a batch-1 step (``benchmarks/matmul_layout.py``).
  A head tied to the token embedding gets its own transposed copy (more memory: 154 MB for GPT-2).
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


class TransposedLinear(nn.Module):
    """A Linear layer whose weight is stored as (in, out) and applied with ``addmm``: same result."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.register_buffer("weight_t", linear.weight.detach().t().contiguous())
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)
        self.in_features = linear.in_features
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        y = rows @ self.weight_t if self.bias is None else torch.addmm(self.bias, rows, self.weight_t)
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


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

    fp32 and int8 replace every ``nn.Linear`` (attention, feed-forward and the output head) by a
    :class:`TransposedLinear` or an :class:`Int8Linear`; a head tied to the token embedding gets
    its own copy, while the embedding lookup keeps the original table. bf16 casts every parameter.
    """
    if mode not in MODES:
        raise InputError(f"unknown weight mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "bf16":
        return model.to(torch.bfloat16).eval()
    if mode == "int8" and not hasattr(torch, "_weight_int8pack_mm"):
        raise InputError(f"int8 weights need torch's _weight_int8pack_mm (torch >= 2.4); "
                         f"this is torch {torch.__version__}")
    _replace_linears(model, Int8Linear if mode == "int8" else TransposedLinear)
    return model.eval()


def _replace_linears(module: nn.Module, layer: type[nn.Module]) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, layer(child))
        else:
            _replace_linears(child, layer)
