"""Weights laid out for fast CPU decoding: fp32, bf16 or weight-only int8, each with the fastest kernel for this CPU.

Generating one token at batch 1 multiplies a single vector by every weight matrix, so the time
goes into *reading the weights from memory* (498 MB per token for GPT-2 small in fp32), not into
arithmetic. Two things therefore speed decoding up: reading the weights with a kernel that keeps
the memory bus busy, and storing them in fewer bytes.

Which kernel keeps the bus busiest depends on the CPU, the threads and the rows decoded at once, so
for each mode the candidates are timed once on the model's own shapes and the winner remembered
(:mod:`fromzero.tuning`; ``FROMZERO_LINEAR_KERNEL``, ``FROMZERO_BF16_KERNEL`` and
``FROMZERO_INT8_KERNEL`` force one; ``fromzero doctor`` shows what was chosen and the timings):

- ``fp32``: the same numbers in one of four layouts. ``gemv`` is fromzero's own matrix-vector
  kernel (:mod:`fromzero.kernels.gemv`, C compiled for this CPU at first use), which streams the
  weight rows in memory order; ``packed`` reorders each weight once ("prepacks" it) into the blocked
  layout of oneDNN, the CPU kernel library inside PyTorch, which wins with a batch of rows;
  ``transposed`` keeps the weight as (in, out) for torch's plain matrix product; ``plain`` is
  ``nn.Linear`` as it is. The results agree up to float rounding (another summation order). A head
  tied to the token embedding gets its own copy in the packed and transposed layouts (154 MB more for
  GPT-2). For a model on a GPU, Linear layers stay as they are.
- ``bf16``: Linear weights in bfloat16 (2 bytes; same exponent range as fp32, 8 bits of mantissa):
  half the bytes to read. With ``gemv`` only the weights are bf16 and activations stay fp32; with
  ``packed`` every parameter is cast to bf16 and the weights packed for oneDNN as in fp32.
- ``int8``: each Linear weight row ``w`` becomes ``round(w / s)`` in int8 (1 byte) with one scale
  ``s = max|w| / 127`` per output row ("weight-only, per-channel, symmetric"). ``gemv`` multiplies
  the int8 weights with fp32 activations; ``torch`` uses ``torch._weight_int8pack_mm`` (the CPU kernel
  gpt-fast and torchao use) with bf16 activations. Embeddings, LayerNorms and attention stay as they were.

Where gemv is chosen, ``generate`` also runs each decoding step of a GPT in one call to C
(:mod:`fromzero.generation.fused_step`): the same products, without eager PyTorch between them.

bf16 and int8 lose a little accuracy; ``benchmarks/generation_quantized.py`` measures how much
(perplexity) and how much faster decoding gets. Training needs the plain model: convert a copy for
inference (a converted model cannot be trained).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fromzero.errors import InputError
from fromzero.kernels.gemv import gemv

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


class GemvLinear(InferenceLinear):
    """A Linear layer multiplied by fromzero's matrix-vector kernel, its weight kept as fp32, bf16 or int8
    (with one fp32 scale per output row); activations and sums stay fp32.

    Past :data:`GEMV_MAX_ROWS` rows at once (a prompt being read) torch's fp32 and bf16 matrix-multiply
    kernels are faster, so those go to torch on the same weights; int8 weights stay with this kernel up
    to :data:`GEMV_MAX_INT8_ROWS` rows (torch's int8 kernel is no faster), past that a long prompt goes
    through torch's bf16 matmul on the weights widened to bf16 (exactly: int8 values fit in bf16).
    """

    compute_dtype = torch.float32  # what its inputs, outputs and a LoRA beside it are in

    def __init__(self, linear: nn.Linear, dtype: torch.dtype = torch.float32):
        super().__init__(linear)
        weight = linear.weight.detach()
        self.max_rows = GEMV_MAX_INT8_ROWS if dtype == torch.int8 else GEMV_MAX_ROWS
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
        if self.weight.dtype == torch.float32:
            y = F.linear(rows, self.weight)
        else:
            y = F.linear(rows.to(torch.bfloat16), self.weight.to(torch.bfloat16)).float()
            if self.scale is not None:
                y = y * self.scale
        return y if self.bias is None else y + self.bias


def quantize(model: nn.Module, mode: str, rows: int = 1) -> nn.Module:
    """Convert ``model`` in place for inference in ``mode`` ("fp32", "bf16" or "int8"); returns it.

    Every ``nn.Linear`` (attention, feed-forward and the output head) becomes the layer of the kernel
    :func:`linear_kernel` measures fastest for ``mode`` and ``rows`` rows at a time (1: one sequence
    decoding; a server passes its batch). bf16 with oneDNN's packed kernel first casts every parameter.
    Pass the rows you will decode: the kernel that wins for one sequence can lose for eight (on an AMD
    EPYC, GPT-2 converted for 1 row decoded 8 sequences at 86 tokens/s, converted for 8 at 228).
    """
    if mode not in MODES:
        raise InputError(f"unknown weight mode {mode!r}: choose one of {', '.join(MODES)}")
    model.requires_grad_(False)  # for inference: no autograd graph behind the logits
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())  # GPUs have their own fast kernels
    if not on_cpu:
        if mode == "int8":
            raise InputError("int8 weights are a CPU decoding mode: move the model to the CPU (--device cpu), "
                             "or use bf16 weights (--weights bf16) on a GPU")
        return model.to(torch.bfloat16 if mode == "bf16" else torch.float32).eval()
    model.float()
    kernel = linear_kernel(model, mode, rows)
    if (mode, kernel) in (("bf16", "packed"), ("bf16", "plain")):
        model.to(torch.bfloat16)
    layer = KERNELS[mode][kernel]
    if layer is not None:
        _replace_linears(model, layer)
    return model.eval()


KERNELS: dict[str, dict[str, Callable[[nn.Linear], nn.Module] | None]] = {
    "fp32": {"gemv": GemvLinear, "packed": PackedLinear, "transposed": TransposedLinear, "plain": None},
    "bf16": {"gemv": functools.partial(GemvLinear, dtype=torch.bfloat16), "packed": PackedLinear, "plain": None},
    "int8": {"gemv": functools.partial(GemvLinear, dtype=torch.int8), "torch": Int8Linear},
}
FP32_KERNELS = KERNELS["fp32"]
CHOICES = {"fp32": "linear_kernel", "bf16": "bf16_kernel", "int8": "int8_kernel"}  # names in tuning.json
GEMV_MAX_ROWS = 4  # more rows than this at once go to torch's matmul (benchmarks/matmul_kernels.py)
GEMV_MAX_INT8_ROWS = 16  # int8: past this widening to bf16 for torch's matmul pays (256 rows: 233 vs 664 ms)
_SAMPLE_BYTES = 96 * 2**20  # weights timed per candidate: past the caches, so memory is read as in decoding


def why_not(mode: str, name: str, widths: set[int] = frozenset()) -> str | None:
    """Why kernel ``name`` cannot run ``mode`` here on Linear layers with these input ``widths``, or None."""
    if name == "gemv":
        from fromzero.kernels.gemv import unavailable_reason

        return unavailable_reason()
    if name == "packed" and not onednn_packing_works(torch.bfloat16 if mode == "bf16" else torch.float32):
        return "this torch build cannot pack weights for oneDNN"
    if name == "plain" and mode == "bf16" and onednn_packing_works(torch.bfloat16):
        return "bf16 Linear layers are packed for oneDNN wherever it can"
    if name == "torch":
        if not hasattr(torch, "_weight_int8pack_mm"):
            return f"torch {torch.__version__} has no _weight_int8pack_mm (torch >= 2.4 has)"
        if any(width % 16 for width in widths):  # torch 2.13's kernel crashes on such widths
            return f"torch's int8 kernel needs layer widths that are multiples of 16 (these are {sorted(widths)})"
    return None


def kernel_names(mode: str, widths: set[int] = frozenset()) -> list[str]:
    """The kernels for ``mode`` that this machine can run on Linear layers with these input ``widths``."""
    names = [name for name in KERNELS[mode] if why_not(mode, name, widths) is None]
    if not names:
        raise InputError(f"no {mode} kernel works here: " + "; ".join(f"{name}: {why_not(mode, name, widths)}"
                                                                     for name in KERNELS[mode]))
    return names


def linear_kernel(model: nn.Module, mode: str = "fp32", rows: int = 1) -> str:
    """The kernel that multiplies ``rows`` rows fastest through this fp32 model's layers in ``mode``, here.

    Measured once per machine, mode, shapes, rows and thread count (:func:`fromzero.tuning.choose`) on
    the model's own weights converted each way, in the order a forward pass reads them, up to ~96 MB of
    them (more than any CPU cache, so the weights come from memory as they do in decoding), at the
    thread count decoding will start with (the free cores).
    """
    from fromzero.machine import threads
    from fromzero.tuning import choose, forced

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    widths = {m.in_features for m in linears}
    if (name := forced(CHOICES[mode], list(KERNELS[mode]))) is not None:  # only the forced kernel is probed
        if (reason := why_not(mode, name, widths)) is not None:
            raise InputError(f"FROMZERO_{CHOICES[mode].upper()}={name} asks for a kernel this machine cannot run: "
                             f"{reason}")
        return name
    names = kernel_names(mode, widths)
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

        def candidate(name: str):
            layers: list[nn.Module] = []
            bf16_model = mode == "bf16" and name in ("packed", "plain")  # these run the whole model in bf16

            def run() -> None:  # the layout is only built if it is measured (its first, warm-up call)
                if not layers:
                    layers.extend(convert_linear(m, KERNELS[mode][name], torch.bfloat16 if bf16_model else None) for m in sample)
                for module in layers:
                    x = inputs[module.in_features]
                    module(x.to(torch.bfloat16) if bf16_model else x)
            return run

        return choose(CHOICES[mode], key, {name: candidate(name) for name in names})


def convert_linear(linear: nn.Linear, layer: Callable[[nn.Linear], nn.Module] | None, dtype: torch.dtype | None) -> nn.Module:
    """``linear`` as ``layer`` would make it, leaving ``linear`` as it is (a copy when cast to ``dtype``)."""
    if dtype is not None:
        copy = nn.Linear(linear.in_features, linear.out_features, linear.bias is not None, dtype=dtype)
        copy.load_state_dict(linear.state_dict())
        linear = copy.requires_grad_(False)
    return linear if layer is None else layer(linear)


def _replace_linears(module: nn.Module, layer: type[nn.Module]) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, layer(child))
        else:
            _replace_linears(child, layer)
