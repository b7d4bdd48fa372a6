"""Mixed precision: the dtype the matrix multiplications run in, and fp16's loss scaling.

Under ``torch.autocast`` the weights stay fp32 while matrix products run in bf16 or fp16, which
halves the memory traffic and uses the hardware's fast low-precision units. bf16 keeps fp32's
exponent range, so it needs nothing else; fp16 does not, so small gradients would underflow to
zero: a ``GradScaler`` multiplies the loss before ``backward()`` and divides the gradients again
before the update (skipping steps whose gradients overflowed).
"""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX instructions)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast_dtype(dtype: str, device: str) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32.

    ``auto`` picks bf16 on CUDA GPUs that have it (fp16 with loss scaling otherwise) and on CPUs
    with native bf16 matrix instructions, where it measured about 1.3x faster per step than fp32
    with the same loss curve (benchmarks/RESULTS.md); other CPUs stay in fp32.
    """
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device == "cpu" and cpu_has_fast_bf16() else None
    return DTYPES[dtype]


class Precision:
    """``with precision.autocast:`` around forward passes; ``precision.scaler`` around the update."""

    def __init__(self, dtype: str, device: str):
        self.dtype = autocast_dtype(dtype, device)  # None: fp32
        device_type = torch.device(device).type
        self.autocast = (
            torch.autocast(device_type=device_type, dtype=self.dtype)
            if self.dtype is not None
            else contextlib.nullcontext()
        )
        self.scaler = torch.amp.GradScaler(device_type, enabled=self.dtype is torch.float16)
