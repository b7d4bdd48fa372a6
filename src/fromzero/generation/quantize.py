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
(:mod:`fromzero.generation.fused_step`): the same products, without eager PyTorch between them. The
layers themselves live in :mod:`fromzero.generation.inference_layers`; this module chooses and converts.

bf16 and int8 lose a little accuracy; ``benchmarks/generation_quantized.py`` measures how much
(perplexity) and how much faster decoding gets. Training needs the plain model: convert a copy for
inference (a converted model cannot be trained).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import torch
from torch import nn

import fromzero.generation.fused_step as fused_step
from fromzero.errors import InputError
from fromzero.generation.inference_layers import (
    GEMV_MAX_ROWS,
    GemvLinear,
    Int8Linear,
    PackedLinear,
    TransposedLinear,
    onednn_packing_works,
)
from fromzero.models import KVCache

MODES = ("fp32", "bf16", "int8")


def quantize(model: nn.Module, mode: str, rows: int = 1, *, rows_vary: bool = False) -> nn.Module:
    """Convert ``model`` in place for inference in ``mode`` ("fp32", "bf16" or "int8"); returns it.

    Every ``nn.Linear`` (attention, feed-forward and the output head) becomes the layer of the kernel
    :func:`linear_kernel` measures fastest for ``mode`` and ``rows`` rows at a time (1: one sequence
    decoding; a server passes its batch). bf16 with oneDNN's packed kernel first casts every parameter.
    Pass the rows you will decode: the kernel that wins for one sequence can lose for eight (on an AMD
    EPYC, GPT-2 converted for 1 row decoded 8 sequences at 192 tokens/s, converted for 8 at 256).

    ``rows_vary=True``: anywhere from 1 to ``rows`` rows will be decoded at once (a server's batch). Where
    oneDNN's packed layout wins for ``rows`` and fromzero's gemv for one, each layer keeps both (gemv up
    to 4 rows, with the fused step; a packed copy past that): twice the weight memory, so that one
    client alone decodes as fast as ``generate`` and a full batch as fast as the packed layout. Only
    where the copy fits in half the memory still available; otherwise the packed layout alone.
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
    if (rows_vary and rows > GEMV_MAX_ROWS and kernel == "packed" and linear_kernel(model, mode, 1) == "gemv"
            and _room_for_a_copy(model, mode)):
        _replace_linears(model, functools.partial(GemvLinear, dtype=torch.bfloat16 if mode == "bf16" else torch.float32,
                                                  packed_batches=True))
        return model.eval()
    if (mode, kernel) in (("bf16", "packed"), ("bf16", "plain")):
        model.to(torch.bfloat16)
    layer = KERNELS[mode][kernel]
    if layer is not None:
        _replace_linears(model, layer)
    return model.eval()


def _room_for_a_copy(model: nn.Module, mode: str) -> bool:
    """Whether a second copy of the Linear weights fits in half the memory still available (unknown: no)."""
    from fromzero.machine import available_memory

    copy_bytes = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)) * (2 if mode == "bf16" else 4)
    free = available_memory()
    return free is not None and copy_bytes <= free // 2


KERNELS: dict[str, dict[str, Callable[[nn.Linear], nn.Module] | None]] = {
    "fp32": {"gemv": GemvLinear, "packed": PackedLinear, "transposed": TransposedLinear, "plain": None},
    "bf16": {"gemv": functools.partial(GemvLinear, dtype=torch.bfloat16), "packed": PackedLinear, "plain": None},
    "int8": {"gemv": functools.partial(GemvLinear, dtype=torch.int8), "torch": Int8Linear},
}
FP32_KERNELS = KERNELS["fp32"]
CHOICES = {"fp32": "linear_kernel", "bf16": "bf16_kernel", "int8": "int8_kernel"}  # names in tuning.json
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
    """The kernel that decodes ``rows`` rows fastest through this fp32 model's layers in ``mode``, here.

    Measured once per machine, mode, shapes, rows and thread count (:func:`fromzero.tuning.choose`) on
    the model's own weights converted each way, in the order a forward pass reads them, up to ~96 MB of
    them (more than any CPU cache, so the weights come from memory as they do in decoding), at the
    thread count decoding will start with (the free cores). A GPT whose steps can be fused is timed as it
    will decode: whole blocks, one new token per row over a cache, the gemv kernel through the fused step
    (:mod:`fromzero.generation.fused_step`: no eager PyTorch between its products) and the others eager;
    any other model, layer by layer.
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
    with threads.following() as count, torch.inference_mode():
        if fused_step.why_not(model, nn.Linear) is None:
            key, candidates = _step_candidates(model, mode, names, rows)
        else:
            key, candidates = _layer_candidates(linears, mode, names, rows)
        return choose(CHOICES[mode], f"rows={rows} threads={count} {key}", candidates)


def _whole_model_in_bf16(mode: str, name: str) -> bool:
    return mode == "bf16" and name in ("packed", "plain")  # these kernels run every parameter in bf16


def _layer_candidates(linears: list[nn.Linear], mode: str, names: list[str], rows: int
                      ) -> tuple[str, dict[str, Callable[[], None]]]:
    """Each kernel timed on the first ~96 MB of Linear layers, ``rows`` rows through each."""
    sample, total = [], 0
    for linear in linears:
        sample.append(linear)
        total += linear.weight.numel() * 4
        if total >= _SAMPLE_BYTES:
            break
    inputs = {m.in_features: torch.randn(rows, m.in_features, generator=torch.Generator().manual_seed(0))
              for m in sample}

    def candidate(name: str) -> Callable[[], None]:
        layers: list[nn.Module] = []
        bf16_model = _whole_model_in_bf16(mode, name)

        def run() -> None:  # the layout is only built if it is measured (its first, warm-up call)
            if not layers:
                layers.extend(convert_linear(m, KERNELS[mode][name], torch.bfloat16 if bf16_model else None)
                              for m in sample)
            for module in layers:
                x = inputs[module.in_features]
                module(x.to(torch.bfloat16) if bf16_model else x)
        return run

    shapes = sorted({(m.in_features, m.out_features) for m in linears})
    return f"layers={len(linears)} shapes={shapes}", {name: candidate(name) for name in names}


_PROBE_PAST = 64  # cached positions the attention of a timed step reads


def _step_candidates(model: nn.Module, mode: str, names: list[str], rows: int
                     ) -> tuple[str, dict[str, Callable[[], None]]]:
    """Each kernel timed as decoding runs it: one new token per row through the first ~96 MB of the GPT's
    blocks, over a cache of 64 positions; gemv through the fused step where it takes ``rows`` rows."""
    blocks, total = [], 0
    for block in model.transformer.h:
        blocks.append(block)
        total += sum(p.numel() for p in block.parameters()) * 4
        if total >= _SAMPLE_BYTES:
            break
    config = model.config
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, config.n_embd, generator=generator)
    past = [torch.randn(rows, config.n_head, _PROBE_PAST + 1, config.head_dim, generator=generator)
            for _ in range(2 * len(blocks))]

    def candidate(name: str) -> Callable[[], None]:
        built: list = []

        def build() -> None:  # only when measured (its first, warm-up call)
            dtype = torch.bfloat16 if _whole_model_in_bf16(mode, name) else torch.float32
            layers = [copy.deepcopy(block).to(dtype) for block in blocks]
            for layer in layers:
                if KERNELS[mode][name] is not None:
                    _replace_linears(layer, KERNELS[mode][name])
            cache = KVCache(len(layers), rows, config.n_head, config.head_dim, _PROBE_PAST + 1, dtype=dtype)
            cache.keys, cache.values = [t.to(dtype) for t in past[::2]], [t.to(dtype) for t in past[1::2]]
            cache.seq_len = _PROBE_PAST
            fused = name == "gemv" and rows <= min(m.max_rows for m in layers[0].modules() if isinstance(m, GemvLinear))
            step = fused_step.blocks_step(layers, model.transformer.ln_f, config.n_head) if fused else None
            built.extend([layers, cache, x.to(dtype), step])

        def run() -> None:
            if not built:
                build()
            layers, cache, h, step = built
            if step is not None:
                step(h.clone(), cache.keys, cache.values, _PROBE_PAST)
                return
            h = h.unsqueeze(1)
            for layer in layers:
                h, _ = layer(h, cache=cache)
        return run

    shapes = sorted({(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)})
    return f"step blocks={len(blocks)}/{len(model.transformer.h)} shapes={shapes}", {name: candidate(name) for name in names}


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
