"""Which device runs the model: ``--device auto|cpu|cuda|cuda:N|mps`` for training and generation."""

from __future__ import annotations

import torch

from fromzero.errors import InputError


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when PyTorch sees a GPU, else ``cpu``; a device that is asked for
    but absent is a one-line error, not a crash halfway through loading a model."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device} was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps was asked for but PyTorch sees no Apple GPU; use --device cpu")
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise InputError(f"unknown --device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return device
