"""A decoding step of a converted GPT in one call to C, when the model is one the C step knows.

After :func:`~fromzero.generation.quantize.quantize` picks fromzero's gemv kernel (the fastest for a
few rows on most CPUs), a batch-1 token of GPT-2 is ~4.4 ms of matrix-vector products and ~2.3 ms of
eager PyTorch between them. :class:`FusedStep` hands the whole step to
:class:`fromzero.kernels.decode_step.DecodeStep` instead: the same gemv products, and the LayerNorms,
attention over the cache, GELU and residual additions as loops in C. The tokens are the same; the
logits agree with the eager step to float rounding (tests/test_fused_step.py).

It applies only where it computes exactly what the model would: a :class:`~fromzero.models.GPT` in eval
mode whose every Linear layer is a :class:`~fromzero.generation.inference_layers.GemvLinear` (LoRA
adapters beside them included: the active one's update is added in C), in fp32 on the CPU, with no
hooks, decoding unpadded or left-padded rows, at most as many rows as the gemv layers take. Anything
else (other padding, packed or plain layers, a GPU) keeps the eager step, as does
``FROMZERO_FUSED_STEP=0``. :func:`why_not` says which condition failed.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from fromzero.generation.inference_layers import GemvLinear
from fromzero.kernels import decode_step
from fromzero.models import GPT, KVCache
from fromzero.nn import (
    Block,
    FeedForward,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
)


def unavailable_reason() -> str | None:
    """Why no model's steps can be fused here (switched off, or no native kernel), or None."""
    return _switched_off() or decode_step.unavailable_reason()


def _switched_off() -> str | None:
    if os.environ.get("FROMZERO_FUSED_STEP", "1").strip().lower() in ("0", "no", "off", "false"):
        return "FROMZERO_FUSED_STEP=0 turns the fused step off"
    return None


def why_not(model: nn.Module, linear: type[nn.Module] = GemvLinear) -> str | None:
    """Why ``model``'s decoding steps cannot be fused, or None if they can.

    ``linear=nn.Linear`` asks of a model not converted yet: could its steps be fused once its Linear
    layers are gemv layers? The C library is asked last: a model that could never be fused (plain Linear
    layers, in a lesson) does not compile it."""
    if (reason := _switched_off()) is not None:
        return reason
    if type(model) is not GPT:
        return f"the fused step knows fromzero's GPT, not {type(model).__name__}"
    blocks = list(model.transformer.h)
    for block in blocks:
        if (type(block), type(block.attn), type(block.mlp)) != (Block, MultiHeadAttention, FeedForward):
            return "a block was changed (custom layers): the eager step runs it"
    positions = [model.lm_head, *(m for b in blocks for m in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj))]
    if any(_parts(m, linear) is None for m in positions):
        return "its Linear layers are not all gemv layers (quantize chose another kernel, or did not run)"
    linears = [part for m in positions for part in _parts(m, linear)]
    norms = [model.transformer.ln_f, *(m for b in blocks for m in (b.ln_1, b.ln_2))]
    if not all(type(m) is nn.LayerNorm and m.weight is not None for m in norms):
        return "its LayerNorms are not the standard ones"
    tensors = [model.transformer.wte.weight, *(n.weight for n in norms), *(n.bias for n in norms),
               *(m.bias for m in linears), *(getattr(m, "scale", None) for m in linears),
               *(m.weight for m in linears if type(m) is nn.Linear)]
    if any(t is not None and (t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous())
           for t in tensors):
        return "its embeddings, norms, biases or adapters are not fp32 on the CPU"
    if any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        return "a forward hook is registered: the eager step calls it"
    return decode_step.unavailable_reason()


class NotFusable(ValueError):
    """This model's decoding step cannot be fused; the message says why (:func:`why_not`)."""


class FusedStep:
    """Runs one new token per row of a GPT through :class:`~fromzero.kernels.decode_step.DecodeStep`.

    Build it when decoding starts (it holds pointers to the weights: do not change the model while it
    lives); :attr:`max_rows` is how many rows it may take at once.
    """

    def __init__(self, model: GPT):
        if (reason := why_not(model)) is not None:
            raise NotFusable(f"this model's decoding step cannot be fused: {reason}")
        transformer, blocks = model.transformer, list(model.transformer.h)
        self.token_table = transformer.wte.weight
        self.positions = transformer.wpe
        self.max_rows = min(m.max_rows for m in model.modules() if isinstance(m, GemvLinear))
        self.step = blocks_step(blocks, transformer.ln_f, model.config.n_head, _linear(model.lm_head))

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, cache: KVCache, positions: torch.Tensor | None = None,
                 starts: torch.Tensor | None = None) -> torch.Tensor:
        """Append ``tokens`` (rows,) at cache column ``cache.seq_len``; return logits (rows, V) fp32.

        Unpadded rows need nothing more: their position is the column. Left-padded rows give their
        ``positions`` (rows,) and the column each one's real tokens ``starts`` at (rows,).
        """
        column = cache.seq_len
        learned = isinstance(self.positions, LearnedPositionalEmbedding)
        if positions is None:
            where = self.positions.weight[column] if learned else self.positions(torch.tensor([column]))
        else:
            where = self.positions.weight.index_select(0, positions) if learned else self.positions(positions)
        x = self.token_table.index_select(0, tokens) + where
        logits = self.step(x, cache.keys, cache.values, column, starts)
        cache.advance(1)
        return logits


def fused_step_for(model: nn.Module) -> FusedStep | None:
    """A :class:`FusedStep` for ``model``, or None where its steps must stay eager (:func:`why_not`, or the
    model is training: its dropout would have to run)."""
    if model.training:
        return None
    try:
        return FusedStep(model)  # checks why_not once
    except NotFusable:
        return None


def _parts(layer: nn.Module, linear: type[nn.Module] = GemvLinear) -> list[nn.Module] | None:
    """The Linear layers at one place of the model: the layer itself, or a layer carrying an adapter (a
    LoRA layer: ``base`` and its ``active_update()``) with the adapter's two; None if it is neither."""
    if type(layer) is linear:
        return [layer]
    update = getattr(layer, "active_update", None)
    if update is None or type(getattr(layer, "base", None)) is not linear:
        return None
    adapter = update()
    if adapter is None:
        return [layer.base]
    lora_a, lora_b, _ = adapter
    if not all(type(m) in (linear, nn.Linear) and m.bias is None for m in (lora_a, lora_b)):
        return None
    return [layer.base, lora_a, lora_b]


def blocks_step(blocks: list[nn.Module], ln_f: nn.LayerNorm, n_head: int,
                lm_head: decode_step.Linear | None = None) -> decode_step.DecodeStep:
    """The C step over these GPT blocks (their Linear layers gemv layers), ``ln_f`` and ``lm_head``.

    Without ``lm_head`` the head is a single row of zeros: :func:`fromzero.generation.quantize.linear_kernel`
    times a few blocks this way, as decoding will run them."""
    if lm_head is None:
        lm_head = decode_step.Linear(torch.zeros(1, ln_f.weight.numel()))
    layers = [decode_step.Layer(_norm(b.ln_1), _linear(b.attn.c_attn), _linear(b.attn.c_proj), _norm(b.ln_2),
                                _linear(b.mlp.c_fc), _linear(b.mlp.c_proj)) for b in blocks]
    return decode_step.DecodeStep(layers, _norm(ln_f), lm_head, n_head, blocks[0].mlp.activation)


def _linear(layer: nn.Module) -> decode_step.Linear:
    """A gemv layer, or one carrying an adapter (see :func:`_parts`), as the C step reads it."""
    base = getattr(layer, "base", layer)
    adapter = layer.active_update() if base is not layer else None
    if adapter is not None:
        lora_a, lora_b, scaling = adapter
        adapter = (_linear(lora_a), _linear(lora_b), scaling)
    return decode_step.Linear(base.weight, base.bias, getattr(base, "scale", None), adapter)


def _norm(norm: nn.LayerNorm) -> decode_step.Norm:
    return decode_step.Norm(norm.weight, norm.bias, norm.eps)
