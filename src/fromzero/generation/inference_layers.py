"""The Linear layers a model converted for CPU decoding is made of (:mod:`fromzero.generation.quantize`
chooses among them, by measurement): each keeps an ``nn.Linear``'s sizes and bias, holds its weight in
the layout or precision of one kernel, and refuses to be trained.

- :class:`GemvLinear`: fromzero's own matrix-vector kernel (:mod:`fromzero.kernels.gemv`), weights in
  fp32, bf16 or int8, activations fp32;
- :class:`PackedLinear`: the weight prepacked for oneDNN, the CPU kernel library inside PyTorch;
- :class:`TransposedLinear`: the weight kept as (in, out) for torch's plain matrix product;
- :class:`Int8Linear`: int8 weights for torch's ``_weight_int8pack_mm``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from fromzero.errors import InputError
from fromzero.kernels.gemv import gemv
from fromzero.machine import cpu_has_fast_bf16

GEMV_MAX_ROWS = 4  # more rows than this at once go to torch's matmul (benchmarks/matmul_kernels.py)
# weights that torch's matmul must widen first (int8; bf16 on a CPU without bf16 instructions) stay with gemv up
# to this many rows: past it the widening pays (int8, 256 rows: 233 vs 664 ms). bf16 on Zen 3, 768 x 3072: quiet,
# 2 threads, 16 rows 1.08 vs 1.28 ms; the other core busy, 1 thread, 8 rows 1.02 vs 1.30, 16 rows 2.25 vs 2.02
GEMV_MAX_WIDENED_ROWS = 16
WIDENED_SLICE_BYTES = 4 * 2**20  # a widened slice of a bf16 or int8 weight: in cache, unlike a whole copy


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
def onednn_packing_works(dtype: torch.dtype = torch.float32, packed: bool = True) -> bool:
    """Whether this torch build can pack and multiply ``dtype`` weights with oneDNN (x86 builds can);
    ``packed=False``: multiply them as they are, unpacked."""
    weight = torch.linspace(-1, 1, 32, dtype=dtype).reshape(4, 8)  # not random: leave the RNG alone
    x = torch.linspace(0, 1, 24, dtype=dtype).reshape(3, 8)
    try:
        layout = torch.ops.mkldnn._reorder_linear_weight(weight) if packed else weight
        y = torch.ops.mkldnn._linear_pointwise(x, layout, None, "none", [], "")
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


class GemvLinear(InferenceLinear):
    """A Linear layer multiplied by fromzero's matrix-vector kernel, its weight kept as fp32, bf16 or int8
    (with one fp32 scale per output row); activations and sums stay fp32.

    Past :data:`GEMV_MAX_ROWS` rows at once (a prompt being read) torch's fp32 and bf16 matrix-multiply
    kernels are faster, so those go to torch on the same weights (oneDNN's where this torch has it: it
    multiplies an unpacked fp32 weight 1.2-1.7x faster than MKL for 5 to 32 rows); int8 weights stay with
    this kernel up to :data:`GEMV_MAX_WIDENED_ROWS` rows (torch's int8 kernel is no faster), past that a long
    prompt goes through torch's bf16 matmul on the weights widened to bf16 (exactly: int8 values fit in bf16),
    a slice of the weight at a time. A CPU without bf16 instructions multiplies bf16 at a few GFLOP/s, so
    there bf16 and int8 weights are widened to fp32 instead, with the activations left in fp32 (a 128-token
    prompt through a 768 x 3072 layer: 5 against 34 ms on an AMD Zen 3), and bf16 weights too stay with this
    kernel up to :data:`GEMV_MAX_WIDENED_ROWS` rows.

    ``packed_batches=True`` (fp32 and bf16 weights) also keeps a copy of the weight packed for oneDNN and
    multiplies more rows with it, as :class:`PackedLinear` does: twice the memory, for a server whose
    batch goes from one row (gemv) to many (packed).
    """

    compute_dtype = torch.float32  # what its inputs, outputs and a LoRA beside it are in

    def __init__(self, linear: nn.Linear, dtype: torch.dtype = torch.float32, packed_batches: bool = False):
        super().__init__(linear)
        weight = linear.weight.detach()
        widened = dtype == torch.int8 or (dtype == torch.bfloat16 and not cpu_has_fast_bf16())
        self.max_rows = GEMV_MAX_WIDENED_ROWS if widened else GEMV_MAX_ROWS
        if packed_batches and (dtype == torch.int8 or not onednn_packing_works(dtype)):
            raise InputError(f"{dtype} weights cannot be packed for oneDNN by this torch")
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.to(dtype).contiguous()) if packed_batches else None
        self.register_buffer("packed_weight", packed)
        if dtype == torch.int8:
            scale = (weight.float().abs().amax(dim=1) / 127).clamp(min=1e-12)
            self.register_buffer("weight", torch.round(weight.float() / scale[:, None]).clamp(-127, 127).to(torch.int8))
            self.register_buffer("scale", scale)
        else:  # fp32 keeps the very tensor (a tied head shares the token table): nothing is copied
            self.register_buffer("weight", weight.to(dtype).contiguous())
            self.register_buffer("scale", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # every decoding step runs it 49 times for GPT-2: kept lean
        if x.requires_grad and torch.is_grad_enabled():
            raise InputError("a model converted for decoding is for inference only; train the unconverted model")
        rows = x.reshape(-1, self.in_features)
        if rows.dtype != torch.float32:
            rows = rows.float()
        if rows.shape[0] > self.max_rows:
            y = self._torch_matmul(rows)
        else:
            y = gemv(rows, self.weight, self.bias, self.scale)
        return y.view(*x.shape[:-1], self.out_features)

    def _torch_matmul(self, rows: torch.Tensor) -> torch.Tensor:
        if self.packed_weight is not None:
            x = rows if self.weight.dtype == torch.float32 else rows.to(torch.bfloat16)
            y = torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, None, "none", [], "").float()
            return y if self.bias is None else y + self.bias
        if self.weight.dtype == torch.float32:
            if onednn_packing_works(torch.float32, packed=False):  # 1.2-1.7x MKL's speed for 5 to 32 rows
                return torch.ops.mkldnn._linear_pointwise(rows, self.weight, self.bias, "none", [], "")
            y = F.linear(rows, self.weight)
        else:
            y = self._widened_matmul(rows)
        if self.scale is not None:
            y = y * self.scale
        return y if self.bias is None else y + self.bias

    def _widened_matmul(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows @ weight.T`` for bf16 or int8 weights, widened (exactly) for torch's matmul a slice at a time.

        In bf16 on a CPU with bf16 instructions, else in fp32: without them torch's bf16 products crawl. A
        slice of :data:`WIDENED_SLICE_BYTES` stays in cache, where a widened copy of the whole weight would
        not (GPT-2's head in fp32: 154 MB, and 32 rows took 110 ms that way against 30 by slices, Zen 3)."""
        dtype = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
        x = rows.to(dtype)
        y = torch.empty(rows.shape[0], self.out_features)
        step = max(1, WIDENED_SLICE_BYTES // (self.in_features * dtype.itemsize))
        for start in range(0, self.out_features, step):
            y[:, start:start + step] = F.linear(x, self.weight[start:start + step].to(dtype))
        return y
