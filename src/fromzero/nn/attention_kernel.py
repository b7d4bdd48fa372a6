"""The fused attention call, and the precision it runs in while training under CPU autocast.

Every attention layer in this package calls :func:`attend` for its fast path: torch's
``scaled_dot_product_attention`` (SDPA), which never materialises the (queries, keys) weights.

Under ``torch.autocast`` SDPA runs in the low precision (bf16) like the matrix products. On a GPU
that is what makes it fast. On a CPU it can be the opposite: torch's bf16 flash-attention
*backward* is slow for short heads. For nanoGPT's CPU model (12 rows x 4 heads x 64 positions x 32
dims) a forward and backward took 4.1 ms in bf16 against 1.05 ms in fp32 (AMD EPYC, 2 threads).
That one kernel made bf16 training no faster than fp32, although bf16 ran the matrix products 1.8x
faster. Long sequences go the other way (1024 positions x 64 dims: bf16 184 ms, fp32 223 ms).

So no rule is written down: the first time a training step attends at a given shape under CPU
autocast (lengths in classes of powers of two), both precisions are timed on random tensors of that
shape (a few milliseconds, once per machine, by :func:`fromzero.tuning.choose`) and the faster is kept.
``float32`` casts q, k and v up, attends with autocast off, and casts the result back: the layers
around it see the same dtypes. It is also the more precise of the two.
``FROMZERO_ATTENTION_PRECISION=autocast|float32`` forces a choice; ``fromzero doctor`` shows what was measured.

A compiled training step (``torch.compile``) cannot time anything while it is being traced, so it
uses the choice an eager step made at the same shape (``Trainer`` runs one before compiling), and
autocast where none was made.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from fromzero.tuning import choose, decisions_path, size_class

CHOICE = "attention_precision"
_chosen: dict[tuple, str] = {}  # (forced value, decisions file, key) -> choice: asked at every forward
# (q shape, causal) -> the choice last made eagerly: what a compiled training step reads (it cannot time)
_for_compiled: dict[tuple, str] = {}


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + mask) v`` by SDPA, in the precision measured fastest (see the module)."""
    dtype = q.dtype
    if _training_under_cpu_autocast(q):
        if torch.compiler.is_compiling():  # nothing can be timed while tracing: what an eager step decided
            choice = _for_compiled.get((tuple(q.shape), is_causal), "autocast")
        else:
            choice = attention_precision(q, k, v, mask, is_causal)
        if choice == "float32":
            dtype = torch.float32
    return _sdpa(q, k, v, mask, dropout_p, is_causal, dtype)


def _sdpa(q, k, v, mask, dropout_p: float, is_causal: bool, dtype: torch.dtype) -> torch.Tensor:
    if dtype == q.dtype:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
    with torch.autocast(q.device.type, enabled=False):  # autocast would cast the fp32 tensors back down
        y = F.scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), attn_mask=mask,
                                           dropout_p=dropout_p, is_causal=is_causal)
    return y.to(q.dtype)


def _training_under_cpu_autocast(q: torch.Tensor) -> bool:
    """A CPU training step inside autocast."""
    return (
        q.device.type == "cpu"
        and q.dtype in (torch.bfloat16, torch.float16)
        and q.requires_grad
        and torch.is_grad_enabled()
        and torch.is_autocast_enabled("cpu")
    )


def attention_precision(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                        is_causal: bool) -> str:
    """``"autocast"`` or ``"float32"``: which runs this attention's forward and backward faster here.

    Query and key lengths are taken in classes of powers of two, and each class is measured once at its
    top: fine-tuning batches padded to their longest row would otherwise measure at every new length."""
    shapes = {name: _length_class(t.shape) for name, t in (("q", q), ("k", k), ("v", v))}
    mask_shape = None if mask is None else (*mask.shape[:-2], *map(size_class, mask.shape[-2:]))  # 1s stay
    key = (f"q={shapes['q']} k={shapes['k']} v={shapes['v']} {str(q.dtype).removeprefix('torch.')} "
           f"causal={is_causal} mask={mask_shape} threads={torch.get_num_threads()}")
    memo = (os.environ.get("FROMZERO_" + CHOICE.upper()), str(decisions_path()), key)
    if memo not in _chosen:
        timing_mask = None if mask is None else (torch.ones(mask_shape, dtype=torch.bool) if mask.dtype == torch.bool
                                                 else torch.zeros(mask_shape, dtype=mask.dtype))  # nothing masked
        candidates = {name: _timed_step(shapes, q.dtype, timing_mask, is_causal, dtype)
                      for name, dtype in (("autocast", q.dtype), ("float32", torch.float32))}
        _chosen[memo] = choose(CHOICE, key, candidates)
    _for_compiled[(tuple(q.shape), is_causal)] = _chosen[memo]
    return _chosen[memo]


def _length_class(shape: torch.Size) -> tuple[int, ...]:
    """``shape`` with its length (the second last size) rounded up to a power of two."""
    return (*shape[:-2], size_class(shape[-2]), shape[-1])


def _timed_step(shapes: dict[str, tuple[int, ...]], q_dtype: torch.dtype, mask, is_causal: bool, dtype: torch.dtype):
    """One forward and backward at these shapes, on random tensors (the run's random streams are not touched)."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(shapes[name], generator=generator).to(q_dtype).requires_grad_() for name in "qkv")

    def run() -> None:
        with torch.autocast("cpu", enabled=False):
            _sdpa(q, k, v, mask, 0.0, is_causal, dtype).sum().backward()
    return run
