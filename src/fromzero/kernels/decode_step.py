"""A whole decoding step of a GPT-2-style model in one call to C (``decode_step.c``).

Once the matrix-vector products are fast (:mod:`fromzero.kernels.gemv`), what is left of a batch-1
step in eager PyTorch is the ~150 small operations between them, each a few microseconds of
dispatch: on an AMD EPYC about 2.3 of the 6.7 ms an int8 GPT-2 token took. ``decode_step.c`` runs
the LayerNorms, the attention over the KV cache, GELU and the residual additions as plain loops
between the same gemv products the model's layers call, without coming back to Python.

This module only describes weights to C: :class:`DecodeStep` is built from the tensors of each layer
(a model maps itself onto it in :mod:`fromzero.generation.fused_step`) and keeps pointers to them, so
the tensors must live, unchanged, as long as it does.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

import torch

from fromzero.kernels.activations import KINDS as ACTIVATIONS
from fromzero.kernels.gemv import WEIGHT_KINDS
from fromzero.kernels.native import attempt, reason, usable

_pointer, _size = ctypes.c_void_p, ctypes.c_int64


class _Linear(ctypes.Structure):
    pass


_Linear._fields_ = [("kind", ctypes.c_int), ("weight", _pointer), ("scale", _pointer), ("bias", _pointer),
                    ("out", _size), ("in_", _size), ("lora_a", ctypes.POINTER(_Linear)),
                    ("lora_b", ctypes.POINTER(_Linear)), ("lora_scale", ctypes.c_float)]


class _Norm(ctypes.Structure):
    _fields_ = [("weight", _pointer), ("bias", _pointer), ("eps", ctypes.c_float)]


class _Layer(ctypes.Structure):
    _fields_ = [("ln_1", _Norm), ("c_attn", _Linear), ("attn_proj", _Linear), ("ln_2", _Norm), ("c_fc", _Linear),
                ("mlp_proj", _Linear)]


class _Model(ctypes.Structure):
    _fields_ = [("n_layer", _size), ("n_embd", _size), ("n_head", _size), ("n_inner", _size),
                ("activation", ctypes.c_int), ("layers", ctypes.POINTER(_Layer)), ("ln_f", _Norm), ("lm_head", _Linear)]


@dataclass(frozen=True)
class Linear:
    """``y = x weight^T (* scale) + bias``: weight (out, in) fp32, bf16 or int8 (with an fp32 ``scale`` per row).

    ``adapter``: a LoRA update beside it, ``(A, B, scaling)``: ``y += scaling * B(A(x))``."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    adapter: tuple[Linear, Linear, float] | None = None


@dataclass(frozen=True)
class Norm:
    """A LayerNorm's fp32 weight, bias (or None) and epsilon."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    eps: float


@dataclass(frozen=True)
class Layer:
    """One pre-LN block: ``x + attn_proj(attention(c_attn(ln_1(x))))``, then ``+ mlp_proj(act(c_fc(ln_2(x))))``."""

    ln_1: Norm
    c_attn: Linear
    attn_proj: Linear
    ln_2: Norm
    c_fc: Linear
    mlp_proj: Linear


def library() -> ctypes.CDLL:
    """The compiled step (raises :class:`NativeUnavailable` with the reason it cannot be used)."""
    return usable(_outcome())


@functools.cache
def _outcome() -> ctypes.CDLL | str:
    return attempt("decode_step", bind)


def bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the step's C signatures on a loaded library (tests load each vector code path this way)."""
    lib.fromzero_decode_step.argtypes = [ctypes.POINTER(_Model), _pointer, _size, _pointer, _pointer, _size, _size,
                                         _pointer, _pointer, _pointer, ctypes.c_int]
    lib.fromzero_decode_step.restype = ctypes.c_int
    lib.fromzero_activate.argtypes = [_pointer, _size, ctypes.c_int]
    return lib


def unavailable_reason() -> str | None:
    """Why the fused step cannot be used here, or None if it can."""
    return reason(_outcome())


def activate(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The C step's activation on a copy of ``x`` (fp32): for comparing it with :func:`fromzero.nn.activate`."""
    y = x.detach().float().contiguous().clone()
    library().fromzero_activate(y.data_ptr(), y.numel(), ACTIVATIONS[kind])
    return y


class DecodeStep:
    """A model's weights described to ``decode_step.c``; calling it runs one token per row through them.

    ``layers``: the blocks in order; ``ln_f`` and ``lm_head``: the final LayerNorm and output layer;
    ``n_head``; ``activation``: a key of :data:`ACTIVATIONS`. Every tensor is fp32 (weights may be bf16
    or int8), contiguous, on the CPU.
    """

    def __init__(self, layers: list[Layer], ln_f: Norm, lm_head: Linear, n_head: int, activation: str):
        self._lib = library()
        n_embd = ln_f.weight.numel()
        self.n_embd, self.n_head, self.n_inner = n_embd, n_head, layers[0].c_fc.weight.shape[0]
        self.vocab_size = lm_head.weight.shape[0]
        self._adapters: list[_Linear] = []  # the structures the layers point to, kept alive here
        self._layers = (_Layer * len(layers))(*(
            _Layer(_norm(layer.ln_1), self._linear(layer.c_attn), self._linear(layer.attn_proj), _norm(layer.ln_2),
                   self._linear(layer.c_fc), self._linear(layer.mlp_proj)) for layer in layers))
        self._model = _Model(len(layers), n_embd, n_head, self.n_inner, ACTIVATIONS[activation], self._layers,
                             _norm(ln_f), self._linear(lm_head))
        linears = [lm_head, *(l for layer in layers for l in (layer.c_attn, layer.attn_proj, layer.c_fc, layer.mlp_proj))]
        self._spare = max((l.adapter[0].weight.shape[0] + l.weight.shape[0] for l in linears if l.adapter), default=0)
        self._scratch = torch.empty(0)
        self._tensors = (layers, ln_f, lm_head)  # the pointers above stay valid as long as this object lives

    def __call__(self, x: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor],
                 position: int, starts: torch.Tensor | None = None) -> torch.Tensor:
        """Run ``x`` (rows, n_embd), the new tokens' embeddings, through every layer; return logits (rows, V).

        ``keys[l]``/``values[l]``: layer l's cache, (rows, n_head, max_len, head_dim) fp32, contiguous,
        filled up to column ``position``; this step's keys and values are written at ``position``.
        ``starts`` (rows,) int64: the first column each row attends to (its left padding comes before);
        None: 0. ``x`` is overwritten (it becomes the residual stream).
        """
        rows, max_len = x.shape[0], keys[0].shape[2]
        expected = (rows, self.n_head, max_len, self.n_embd // self.n_head)
        if (x.dtype != torch.float32 or not x.is_contiguous() or x.shape[1] != self.n_embd
                or len(keys) != len(self._layers) or len(values) != len(keys) or tuple(keys[0].shape) != expected
                or keys[0].dtype != torch.float32 or not keys[0].is_contiguous() or not 0 <= position < max_len
                or starts is not None and (starts.dtype != torch.int64 or starts.shape != (rows,)
                                           or not starts.is_contiguous() or int(starts.max()) > position)):
            raise ValueError(f"the fused step needs x ({rows}, {self.n_embd}) fp32, {len(self._layers)} contiguous "
                             f"fp32 caches of {expected} with room at position {position}, and int64 starts "
                             f"({rows},) up to {position}, or None")
        needed = rows * (6 * self.n_embd + self.n_inner + self.n_head * max_len + self._spare)  # as decode_step.c lays it out
        if self._scratch.numel() < needed:
            self._scratch = torch.empty(needed)
        logits = torch.empty(rows, self.vocab_size)
        layers = len(keys)
        failed = self._lib.fromzero_decode_step(
            ctypes.byref(self._model), x.data_ptr(), rows,
            ctypes.cast((_pointer * layers)(*(k.data_ptr() for k in keys)), _pointer),
            ctypes.cast((_pointer * layers)(*(v.data_ptr() for v in values)), _pointer),
            max_len, position, None if starts is None else starts.data_ptr(), self._scratch.data_ptr(),
            logits.data_ptr(), torch.get_num_threads())
        if failed:
            raise MemoryError("the fused decoding step ran out of memory")
        return logits

    def _linear(self, linear: Linear) -> _Linear:
        weight = linear.weight
        described = _Linear(WEIGHT_KINDS[weight.dtype], weight.data_ptr(), _address(linear.scale),
                            _address(linear.bias), weight.shape[0], weight.shape[1])
        if linear.adapter is not None:
            lora_a, lora_b, scaling = linear.adapter
            self._adapters += [self._linear(lora_a), self._linear(lora_b)]
            described.lora_a, described.lora_b = ctypes.pointer(self._adapters[-2]), ctypes.pointer(self._adapters[-1])
            described.lora_scale = scaling
        return described


def _norm(norm: Norm) -> _Norm:
    return _Norm(norm.weight.data_ptr(), _address(norm.bias), norm.eps)


def _address(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()
