"""A decoding step of a converted GPT in one call to C, when the model is one the C step knows.

After :func:`~fromzero.generation.quantize.quantize` picks fromzero's gemv kernel (the fastest for a
few rows on most CPUs), a batch-1 token of GPT-2 is ~4.4 ms of matrix-vector products and ~2.3 ms of
eager PyTorch between them. :class:`FusedStep` hands the whole step to
:class:`fromzero.kernels.decode_step.DecodeStep` instead: the same gemv products, and the LayerNorms,
attention over the cache, GELU and residual additions as loops in C. The tokens are the same; the
logits agree with the eager step to float rounding (tests/test_fused_step.py).

It applies only where it computes exactly what the model would: a :class:`~fromzero.models.GPT` whose
every Linear layer is a :class:`~fromzero.generation.inference_layers.GemvLinear`, in fp32 on the CPU, with no
hooks, decoding unpadded or left-padded rows, at most as many rows as the gemv layers take. Anything
else (other padding, LoRA adapters, packed or plain layers, a GPU) keeps the eager step, as does
``FROMZERO_FUSED_STEP=0``. :func:`why_not` says which condition failed.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from fromzero.generation.inference_layers import GemvLinear
from fromzero.kernels import decode_step
from fromzero.models import GPT, KVCache
from fromzero.nn import Block, FeedForward, LearnedPositionalEmbedding, MultiHeadAttention


def unavailable_reason() -> str | None:
    """Why no model's steps can be fused here (switched off, or no native kernel), or None."""
    if os.environ.get("FROMZERO_FUSED_STEP", "1").strip().lower() in ("0", "no", "off", "false"):
        return "FROMZERO_FUSED_STEP=0 turns the fused step off"
    return decode_step.unavailable_reason()


def why_not(model: nn.Module, linear: type[nn.Module] = GemvLinear) -> str | None:
    """Why ``model``'s decoding steps cannot be fused, or None if they can.

    ``linear=nn.Linear`` asks of a model not converted yet: could its steps be fused once its Linear
    layers are gemv layers?"""
    if (reason := unavailable_reason()) is not None:
        return reason
    if type(model) is not GPT:
        return f"the fused step knows fromzero's GPT, not {type(model).__name__}"
    blocks = list(model.transformer.h)
    for block in blocks:
        if (type(block), type(block.attn), type(block.mlp)) != (Block, MultiHeadAttention, FeedForward):
            return "a block was changed (adapters or custom layers): the eager step runs it"
    linears = [model.lm_head, *(m for b in blocks for m in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj))]
    if not all(type(m) is linear for m in linears):
        return "its Linear layers are not all gemv layers (quantize chose another kernel or did not run, or adapters wrap them)"
    norms = [model.transformer.ln_f, *(m for b in blocks for m in (b.ln_1, b.ln_2))]
    if not all(type(m) is nn.LayerNorm and m.weight is not None for m in norms):
        return "its LayerNorms are not the standard ones"
    tensors = [model.transformer.wte.weight, *(n.weight for n in norms), *(n.bias for n in norms),
               *(m.bias for m in linears), *(getattr(m, "scale", None) for m in linears)]
    if any(t is not None and (t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous())
           for t in tensors):
        return "its embeddings, norms or biases are not fp32 on the CPU"
    if any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        return "a forward hook is registered: the eager step calls it"
    return None


class FusedStep:
    """Runs one new token per row of a GPT through :class:`~fromzero.kernels.decode_step.DecodeStep`.

    Build it when decoding starts (it holds pointers to the weights: do not change the model while it
    lives); :attr:`max_rows` is how many rows it may take at once.
    """

    def __init__(self, model: GPT):
        if (reason := why_not(model)) is not None:
            raise ValueError(f"this model's decoding step cannot be fused: {reason}")
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
    """A :class:`FusedStep` for ``model``, or None where its steps must stay eager (:func:`why_not`)."""
    return None if why_not(model) is not None else FusedStep(model)


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


def _linear(layer: GemvLinear) -> decode_step.Linear:
    return decode_step.Linear(layer.weight, layer.bias, layer.scale)


def _norm(norm: nn.LayerNorm) -> decode_step.Norm:
    return decode_step.Norm(norm.weight, norm.bias, norm.eps)
