"""Which kernel computes GELU in a CPU training step: torch's, or fromzero's C kernel, whichever is faster here.

A feed-forward layer's activation is one pass over the widest tensor of the block, forward and
backward. torch computes GELU's erf (or tanh) with vector code of its own, twice (the backward computes
them again); ``activations.c`` computes the same function to the same few float ulps and its slope in one
pass, so the backward is one multiplication (:mod:`fromzero.kernels.activations`).
Which is faster depends on the CPU and the size, so the first training step at a size times both,
forward and backward, on random tensors (a few milliseconds, once per machine, by
:func:`fromzero.tuning.choose`) and keeps the faster. ``FROMZERO_ACTIVATION_KERNEL=torch|native`` forces a
choice; ``fromzero doctor`` shows what was measured.

Only fp32 training steps on the CPU are concerned: inference keeps torch's kernel (or the C decoding
step's, which is the same code), low precision keeps torch's, and a compiled step (``torch.compile``)
fuses the activation itself. Where torch's kernel saves the layer's input for the backward, the C kernel saves
the activation's slope there (the same memory), which makes the backward one multiplication but leaves no
second derivative: set ``FROMZERO_ACTIVATION_KERNEL=torch`` to differentiate a backward again.
"""

from __future__ import annotations

import os

import torch

from fromzero.kernels import activations as native
from fromzero.kernels.activations import torch_activation
from fromzero.tuning import choose, decisions_path, size_class

CHOICE = "activation_kernel"
KINDS = ("gelu", "gelu_new")  # relu is one comparison: torch's kernel is as fast as any
_chosen: dict[tuple, str] = {}  # (forced value, decisions file, key) -> choice: asked at every forward


def activation(x: torch.Tensor, kind: str) -> torch.Tensor:
    """``kind`` applied to ``x`` by the kernel measured faster for a training step of this size."""
    if _concerned(x, kind) and activation_kernel(x.numel(), kind) == "native":
        return NativeActivation.apply(x, kind)
    return torch_activation(x, kind)


def _concerned(x: torch.Tensor, kind: str) -> bool:
    """An fp32 CPU tensor on its way through a training step's backward, outside torch.compile."""
    return (
        kind in KINDS
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.requires_grad
        and torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and native.unavailable_reason() is None
    )


def activation_kernel(elements: int, kind: str) -> str:
    """``"torch"`` or ``"native"``: which computes ``kind`` forward and backward faster on this many floats here.

    An activation treats every float alike, so only the count matters, and counts are taken in classes of
    powers of two: fine-tuning batches padded to their longest row would otherwise measure at every new
    length. Each class is measured once, on as many floats as its top."""
    size = size_class(elements)
    key = f"{kind} elements<={size} threads={torch.get_num_threads()}"
    memo = (os.environ.get("FROMZERO_" + CHOICE.upper()), str(decisions_path()), key)
    if memo not in _chosen:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(size, generator=generator).requires_grad_()
        grad = torch.randn(size, generator=generator)
        candidates = {"torch": lambda: torch_activation(x, kind).backward(grad),
                      "native": lambda: NativeActivation.apply(x, kind).backward(grad)}
        _chosen[memo] = choose(CHOICE, key, candidates)
    return _chosen[memo]


class NativeActivation(torch.autograd.Function):
    """``activations.c``'s activation as one autograd operation.

    The forward keeps the activation's slope at x in place of x (the same memory), so the backward is
    one multiplication. A second derivative would need x itself: differentiating the backward again
    (``create_graph=True``: Hessian-vector products, gradient penalties) asks for torch's kernel.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kind: str) -> torch.Tensor:
        y, slope = native.forward_with_slope(x, kind)
        ctx.save_for_backward(slope)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        if torch.is_grad_enabled():
            raise RuntimeError(f"fromzero's C activation kernel keeps only the first derivative; set "
                               f"FROMZERO_{CHOICE.upper()}=torch to differentiate a backward again")
        (slope,) = ctx.saved_tensors
        return grad * slope, None
