"""Mixed precision: the dtype the matrix multiplications run in, and fp16's loss scaling.

Under ``torch.autocast`` the weights stay fp32 while matrix products run in bf16 or fp16, which
halves the memory traffic and uses the hardware's fast low-precision units. bf16 keeps fp32's
exponent range, so it needs nothing else; fp16 does not, so small gradients would underflow to
zero: a ``GradScaler`` multiplies the loss before ``backward()`` and divides the gradients again
before the update (skipping steps whose gradients overflowed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from fromzero.machine import cpu_has_fast_bf16

DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast_dtype(dtype: str, device: str) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32.

    ``auto`` picks bf16 on CUDA GPUs that have it (fp16 with loss scaling otherwise) and on CPUs
    with native bf16 matrix instructions; other CPUs stay in fp32. Whether bf16 pays on such a CPU
    depends on the CPU and the model's width (1.3x faster per step on an AMD EPYC, slower than fp32
    for nanoGPT's small CPU model on an Intel Xeon): the trainer settles that by measuring
    (:func:`measured_cpu_dtype`) and passes the answer here.
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


TRAIN_DTYPE = "train_dtype"  # the choice measured_cpu_dtype makes (fromzero.tuning)
CPU_DTYPES = ("bfloat16", "float32")


def measured_cpu_dtype(loss: Callable[[], torch.Tensor], model: torch.nn.Module, key: str) -> str:
    """"bfloat16" or "float32": whichever runs ``loss()`` and its backward faster on this CPU.

    For ``--dtype auto`` on a CPU with native bf16. Timed once per machine and ``key`` (the model's
    shape and the batch's) by :func:`fromzero.tuning.choose` (``FROMZERO_TRAIN_DTYPE`` forces one),
    on the run's own first batch, with the random streams put back and the gradients dropped
    afterwards: the run trains exactly as if nothing had been measured. The bf16 step attends in the
    precision measured fastest for attention alone (:mod:`fromzero.nn.attention_kernel`): torch's bf16
    attention backward is slow on CPUs, and for nanoGPT's CPU model it alone made bf16 no faster than fp32.
    """
    from fromzero.tuning import choose

    candidates = {name: lambda dtype=DTYPES[name]: untouched_cpu_step(loss, model, dtype) for name in CPU_DTYPES}
    return choose(TRAIN_DTYPE, key, candidates, rounds=3)


def forced_cpu_dtype() -> str | None:
    """The precision ``FROMZERO_TRAIN_DTYPE`` forces on :func:`measured_cpu_dtype`, or None."""
    from fromzero.tuning import forced

    return forced(TRAIN_DTYPE, list(CPU_DTYPES))


def untouched_cpu_step(loss: Callable[[], torch.Tensor], model: torch.nn.Module, dtype: torch.dtype | None) -> None:
    """``loss()`` and its backward under CPU autocast in ``dtype`` (None: fp32), leaving the run as it was:
    the random streams are forked and the gradients dropped. What measuring needs: the eager model makes
    its own timed choices on the way (the precision of attention), and the run trains as if nothing ran."""
    with torch.random.fork_rng(devices=[]):
        context = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
        with context:
            value = loss()
        value.backward()
    model.zero_grad(set_to_none=True)
