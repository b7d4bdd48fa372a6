"""Weights laid out for fast CPU decoding: fp32 packed for oneDNN, bf16, or weight-only int8.

Generating one token at batch 1 multiplies a single vector by every weight matrix, so the time
goes into *reading the weights from memory* (498 MB per token for GPT-2 small in fp32), not into
arithmetic. Two things therefore speed decoding up: reading the weights with a kernel that keeps
the memory bus busy, and storing them in fewer bytes:

- ``fp32``: the same numbers, each Linear weight reordered once ("prepacked") into the blocked
  layout of oneDNN, the CPU kernel library inside PyTorch, and multiplied by oneDNN. For a handful
  of rows torch's default kernel (MKL) reads the weights at about 20-24 GB/s on one core; oneDNN's
  packed kernel uses every core and reads at about 60 GB/s: 2.6x faster on the matmuls of a batch-1
  step here and 3.7x at batch 8 (``benchmarks/matmul_kernels.py``). The results are the same up
  to float rounding (another summation order). A head tied to the token embedding gets its own
  packed copy (more memory: 154 MB for GPT-2). Where torch has no oneDNN, and for a model on a
  GPU, Linear layers stay as they are.
- ``bf16``: every parameter in bfloat16 (2 bytes; same exponent range as fp32, 8 bits of mantissa),
  Linear weights packed for oneDNN as in fp32: half the bytes to read.
- ``int8``: each Linear weight row ``w`` becomes ``round(w / s)`` in int8 (1 byte) with one scale
  ``s = max|w| / 127`` per output row ("weight-only, per-channel, symmetric"). The matmul runs on
  those int8 weights directly (``torch._weight_int8pack_mm``, the CPU kernel gpt-fast and torchao
  use) with bf16 activations; everything else (embeddings, LayerNorms, attention) stays as it was.

bf16 and int8 lose a little accuracy; ``benchmarks/generation_quantized.py`` measures how much
(perplexity) and how much faster decoding gets. Training needs the plain model: convert a copy for
inference (a packed model cannot be copied or trained).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from fromzero.errors import InputError

MODES = ("fp32", "bf16", "int8")


class InferenceLinear(nn.Module):
    """What every converted Linear layer keeps of the original: its sizes and its bias (a buffer:
    nothing here is trained)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class PackedLinear(InferenceLinear):
    """A Linear layer whose weight (fp32 or bf16) is prepacked for oneDNN and multiplied by it."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear)
        weight = linear.weight.detach().contiguous()
        self.register_buffer("packed_weight", torch.ops.mkldnn._reorder_linear_weight(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():  # oneDNN's op has no backward: fail loudly
            raise InputError("a model with packed weights is for inference only; train the unpacked model")
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")


@functools.cache
def onednn_packing_works(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this torch build can pack and multiply ``dtype`` weights with oneDNN (x86 builds can)."""
    weight = torch.linspace(-1, 1, 32, dtype=dtype).reshape(4, 8)  # not random: leave the RNG alone
    x = torch.linspace(0, 1, 24, dtype=dtype).reshape(3, 8)
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight)
        y = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
    except (AttributeError, NotImplementedError, RuntimeError):  # no such op, or oneDNN disabled
        return False
    return bool(torch.allclose(y.float(), (x @ weight.t()).float(), atol=1e-2 if dtype == torch.bfloat16 else 1e-5))


class Int8Linear(InferenceLinear):
    """A Linear layer whose weight is stored as int8 rows times one bf16 scale per row."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear)
        weight = linear.weight.detach().float()
        scale = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)
        self.register_buffer("qweight", torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch._weight_int8pack_mm(rows, self.qweight, self.scale).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)


def quantize(model: nn.Module, mode: str) -> nn.Module:
    """Convert ``model`` in place for inference in ``mode`` ("fp32", "bf16" or "int8"); returns it.

    bf16 first casts every parameter. Then every ``nn.Linear`` (attention, feed-forward and the
    output head) becomes an :class:`Int8Linear` (int8) or a :class:`PackedLinear` (fp32, bf16); a
    head tied to the token embedding gets its own copy, while the embedding lookup keeps the table.
    """
    if mode not in MODES:
        raise InputError(f"unknown weight mode {mode!r}: choose one of {', '.join(MODES)}")
    model.requires_grad_(False)  # for inference: no autograd graph behind the logits
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())  # GPUs have their own fast kernels
    if mode == "int8":
        if not on_cpu:
            raise InputError("int8 weights are a CPU decoding mode: move the model to the CPU (--device cpu), "
                             "or use bf16 weights (--weights bf16) on a GPU")
        if not hasattr(torch, "_weight_int8pack_mm"):
            raise InputError(f"int8 weights need torch's _weight_int8pack_mm (torch >= 2.4); "
                             f"this is torch {torch.__version__}")
        _replace_linears(model, Int8Linear)
        return model.eval()
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    model.to(dtype)
    if on_cpu and onednn_packing_works(dtype):
        _replace_linears(model, PackedLinear)
    return model.eval()


def _replace_linears(module: nn.Module, layer: type[nn.Module]) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, layer(child))
        else:
            _replace_linears(child, layer)
