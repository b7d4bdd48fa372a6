"""Weights laid out for fast CPU decoding: fp32 in the fastest layout for this CPU, bf16, or weight-only int8.

Generating one token at batch 1 multiplies a single vector by every weight matrix, so the time
goes into *reading the weights from memory* (498 MB per token for GPT-2 small in fp32), not into
arithmetic. Two things therefore speed decoding up: reading the weights with a kernel that keeps
the memory bus busy, and storing them in fewer bytes:

- ``fp32``: the same numbers in one of three layouts, whichever multiplies fastest *on this machine*
  (measured once on the model's own shapes and remembered: :mod:`fromzero.tuning`, choice
  ``linear_kernel``; ``FROMZERO_LINEAR_KERNEL=packed|transposed|plain`` forces one):
  ``packed`` reorders each weight once ("prepacks" it) into the blocked layout of oneDNN, the CPU
  kernel library inside PyTorch, which uses every core: on an AMD EPYC it read the weights at about
  60 GB/s against MKL's 20-24 on the matmuls of a batch-1 step, 2.6x faster, and 3.7x at batch 8
  (``benchmarks/matmul_kernels.py``); ``transposed`` keeps the weight as (in, out) and calls a
  plain matrix product, which on one thread read 19 GB/s there against packed's 14.5; ``plain`` is
  ``nn.Linear`` as it is, which an Intel Xeon preferred at batch 1. The results agree up to float
  rounding (another summation order). A head tied to the token embedding gets its own copy (more
  memory: 154 MB for GPT-2). For a model on a GPU, Linear layers stay as they are.
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


class TransposedLinear(InferenceLinear):
    """A Linear layer whose weight is kept transposed, (in, out), and multiplied by ``addmm``: torch's
    plain kernel then streams the weight row by row, which on some CPUs reads memory fastest."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear)
        self.register_buffer("weight_t", linear.weight.detach().t().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        y = rows @ self.weight_t if self.bias is None else torch.addmm(self.bias, rows, self.weight_t)
        return y.view(*x.shape[:-1], self.out_features)


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


def quantize(model: nn.Module, mode: str, rows: int = 1) -> nn.Module:
    """Convert ``model`` in place for inference in ``mode`` ("fp32", "bf16" or "int8"); returns it.

    bf16 first casts every parameter. Then every ``nn.Linear`` (attention, feed-forward and the
    output head) becomes an :class:`Int8Linear` (int8), a :class:`PackedLinear` (bf16), or in fp32
    the layout :func:`fp32_kernel` measures fastest for ``rows`` rows at a time (1: one sequence
    decoding; a server passes its batch); a head tied to the token embedding gets its own copy,
    while the embedding lookup keeps the table.
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
    if not on_cpu:
        return model.eval()
    if dtype == torch.float32:
        kernel = fp32_kernel(model, rows)
        if kernel != "plain":
            _replace_linears(model, FP32_KERNELS[kernel])
    elif onednn_packing_works(dtype):
        _replace_linears(model, PackedLinear)
    return model.eval()


FP32_KERNELS: dict[str, type[nn.Module] | None] = {"packed": PackedLinear, "transposed": TransposedLinear, "plain": None}
_SAMPLE_BYTES = 96 * 2**20  # weights timed per candidate: past the caches, so memory is read as in decoding


def fp32_kernel(model: nn.Module, rows: int = 1) -> str:
    """The fp32 Linear layout that multiplies ``rows`` rows fastest through this model's layers, here.

    Measured once per machine, shapes, rows and thread count (:func:`fromzero.tuning.choose`) on the
    model's own weights, in the order a forward pass reads them, up to ~96 MB of them (more than
    any CPU cache, so the weights come from memory as they do in decoding), at the thread count
    decoding will start with (the free cores).
    """
    from fromzero.machine import threads
    from fromzero.tuning import choose

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    names = [name for name in FP32_KERNELS if name != "packed" or onednn_packing_works(torch.float32)]
    if not linears or len(names) == 1:
        return names[0]
    sample, total = [], 0
    for linear in linears:
        sample.append(linear)
        total += linear.weight.numel() * 4
        if total >= _SAMPLE_BYTES:
            break
    shapes = sorted({(m.in_features, m.out_features) for m in linears})
    with threads.following() as count, torch.inference_mode():
        key = f"rows={rows} threads={count} layers={len(linears)} shapes={shapes}"
        inputs = {m.in_features: torch.randn(rows, m.in_features, generator=torch.Generator().manual_seed(0))
                  for m in sample}

        def candidate(layer: type[nn.Module] | None):
            layers: list[nn.Module] = []

            def run() -> None:  # the layout is only built if it is measured (its first, warm-up call)
                if not layers:
                    layers.extend(sample if layer is None else [layer(m) for m in sample])
                for module in layers:
                    module(inputs[module.in_features])
            return run

        return choose("linear_kernel", key, {name: candidate(FP32_KERNELS[name]) for name in names})


def _replace_linears(module: nn.Module, layer: type[nn.Module]) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, layer(child))
        else:
            _replace_linears(child, layer)
