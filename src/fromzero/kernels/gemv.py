"""``gemv``: a few rows of fp32 activations times a weight matrix stored in fp32, bf16 or int8.

A decoding step at batch 1 multiplies one vector by every weight matrix, and its time is the time it
takes to read those weights from memory. torch sends such products to MKL or oneDNN, whose kernels
are built for big matrix products: on an AMD EPYC they read GPT-2's weights at 19-24 GB/s where the
memory gives 28-32, and their bf16 and int8 paths also round the activations (benchmarks/RESULTS.md).
``gemv.c`` does only this one thing: each thread streams its share of the weight rows in memory order
and multiplies each row with every row of ``x`` while it sits in the L1 cache, summing in fp32.

Use it through :class:`fromzero.generation.inference_layers.GemvLinear`, which falls back to torch for many
rows (a long prompt), where a real matrix-multiply kernel wins.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from fromzero.kernels.native import NativeUnavailable, attempt, reason, usable

WEIGHT_KINDS = {torch.float32: 0, torch.bfloat16: 1, torch.int8: 2}  # as in gemv.c


def library() -> ctypes.CDLL:
    """The compiled kernel (raises :class:`NativeUnavailable` with the reason it cannot be used)."""
    return usable(_outcome())


@functools.cache
def _outcome() -> ctypes.CDLL | str:
    """Built, loaded and checked once against torch on awkward shapes, or why not."""
    return attempt("gemv", _prepare)


def _prepare(lib: ctypes.CDLL) -> ctypes.CDLL:
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    lib.fromzero_gemv.argtypes = [ctypes.c_int, pointer, pointer, pointer, pointer, pointer, size, size, size,
                                  ctypes.c_int]
    lib.fromzero_gemv.restype = ctypes.c_int
    lib.fromzero_gemv_isa.restype = ctypes.c_char_p
    _check(lib)
    return lib


def available() -> bool:
    return unavailable_reason() is None


def unavailable_reason() -> str | None:
    """Why the kernel cannot be used here, or None if it can."""
    return reason(_outcome())


def isa() -> str:
    """The vector instructions the kernel was compiled with: "avx512", "avx2" or "portable"."""
    return library().fromzero_gemv_isa().decode()


def gemv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
         scale: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T``, each output column times ``scale`` (int8 weights), plus ``bias``: all fp32 but ``weight``.

    ``x`` is (rows, in) fp32, ``weight`` (out, in) fp32, bf16 or int8, contiguous, on the CPU. Checks
    are the caller's (a layer checks its weight once): this runs at every decoding step.
    """
    out_features, in_features = weight.shape
    x = x.contiguous()
    y = torch.empty(x.shape[0], out_features)
    failed = library().fromzero_gemv(WEIGHT_KINDS[weight.dtype], weight.data_ptr(),
                                     None if scale is None else scale.data_ptr(), x.data_ptr(),
                                     None if bias is None else bias.data_ptr(), y.data_ptr(),
                                     out_features, in_features, x.shape[0], torch.get_num_threads())
    if failed:
        raise MemoryError(f"the gemv kernel could not allocate {x.numel() * 4} bytes for x")
    return y


def _check(lib: ctypes.CDLL) -> None:
    """Compare the kernel with torch for every weight kind, on sizes that exercise every loop tail."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 77, generator=generator)
    weight, bias, scale = torch.randn(13, 77, generator=generator), torch.randn(13, generator=generator), torch.rand(13) + 0.5
    quantized = torch.randint(-127, 128, (13, 77), generator=generator, dtype=torch.int8)
    for w, s in ((weight, None), (weight.to(torch.bfloat16), None), (quantized, scale)):
        expected = x @ (w.float() * (1 if s is None else s[:, None])).t() + bias
        y = torch.empty(3, 13)
        lib.fromzero_gemv(WEIGHT_KINDS[w.dtype], w.data_ptr(), None if s is None else s.data_ptr(), x.data_ptr(),
                          bias.data_ptr(), y.data_ptr(), 13, 77, 3, 2)
        if not torch.allclose(y, expected, rtol=1e-4, atol=1e-3):
            raise NativeUnavailable(f"the compiled gemv kernel gave wrong {w.dtype} products here; "
                                    f"set FROMZERO_NATIVE=0 and report this CPU")
