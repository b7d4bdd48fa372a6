"""A feed-forward layer's activation, and its slope for the backward, in C (``activations.c``).

torch's exact GELU on a CPU computes erf and exp with vector code at about a nanosecond a float, and
its tanh GELU at about two; a training step of nanoGPT's CPU model spends a tenth of its time there
on an AMD EPYC Zen 3 (benchmarks/RESULTS.md). ``activations.c`` computes Phi and its density from one
shared e^(-u^2/2) with a polynomial in place of erf, in one pass that the compiler vectorises, and its
numbers are as exact as torch's: a few float ulps of the float64 truth (tests/test_activation_kernel.py).
In training the same pass also writes the activation's slope, so the backward is one multiplication.

Whether that is faster than torch here is measured, not assumed: :mod:`fromzero.nn.activation_kernel`
times both at a layer's size and uses this only where it wins.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from fromzero.kernels.native import NativeUnavailable, attempt, reason, usable

KINDS = {"gelu_new": 0, "gelu": 1, "relu": 2}  # as in activations.c
_pointer, _size = ctypes.c_void_p, ctypes.c_int64


def library() -> ctypes.CDLL:
    """The compiled kernel (raises :class:`NativeUnavailable` with the reason it cannot be used)."""
    return usable(_outcome())


@functools.cache
def _outcome() -> ctypes.CDLL | str:
    return attempt("activations", bind)


def bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the C signatures of a loaded library and check it against torch once."""
    lib.fromzero_activation_forward.argtypes = [ctypes.c_int, _pointer, _pointer, _pointer, _size, ctypes.c_int]
    x = torch.linspace(-6, 6, 4099)  # a tail after the vector loop
    for kind in KINDS:
        if not torch.allclose(_call(lib, x, kind)[0], torch_activation(x, kind), rtol=1e-5, atol=1e-6):
            raise NativeUnavailable(f"the compiled activation kernel gave a wrong {kind} here; "
                                    f"set FROMZERO_NATIVE=0 and report this CPU")
    return lib


def unavailable_reason() -> str | None:
    """Why the kernel cannot be used here, or None if it can."""
    return reason(_outcome())


def forward(x: torch.Tensor, kind: str) -> torch.Tensor:
    """``activation(x)`` for an fp32 CPU tensor."""
    return _call(library(), x, kind)[0]


def forward_with_slope(x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``activation(x)`` and ``activation'(x)``, the slope a backward multiplies the incoming gradient by.

    Both come from the same exponential, so the pair costs little more than the activation alone, and the
    backward is then one multiplication: cheaper than torch's, which computes erf and exp again."""
    return _call(library(), x, kind, slope=True)


def _call(lib: ctypes.CDLL, x: torch.Tensor, kind: str, slope: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = x.contiguous()
    y = torch.empty_like(x)
    d = torch.empty_like(x) if slope else None
    lib.fromzero_activation_forward(KINDS[kind], x.data_ptr(), y.data_ptr(), None if d is None else d.data_ptr(),
                                    x.numel(), torch.get_num_threads())
    return y, d


def torch_activation(x: torch.Tensor, kind: str) -> torch.Tensor:
    """torch's own ``kind``: what this kernel is checked against, and the other candidate where it is measured."""
    if kind == "relu":
        return torch.nn.functional.relu(x)
    return torch.nn.functional.gelu(x, approximate="tanh" if kind == "gelu_new" else "none")
