"""AdamW with two parameter groups: weights that decay and parameters that do not.

Weight decay pulls weights toward zero, a gentle brake against over-fitting. It makes sense for
the big matrices (linear layers, embeddings) but not for biases and LayerNorm gains, which only
shift and scale activations: decaying a LayerNorm gain toward zero would fight the very
normalisation it exists for. The rule used by GPT-2, nanoGPT and most trainers is simply:
parameters with two or more dimensions decay, the rest do not.

PyTorch's AdamW has three implementations of the same maths: a Python loop over parameters,
``foreach`` (one batched kernel call per operation over all parameters) and ``fused`` (one kernel
for the whole update). ``fused`` is used on CUDA and CPU when available and ``foreach`` otherwise.
"""

from __future__ import annotations

import torch


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed group (matrices) and a non-decayed group."""
    decay, no_decay = [], []
    for param in model.parameters():  # shared (tied) parameters appear once
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def fused_supported(device: torch.device) -> bool:
    """Fused AdamW exists for CUDA in every torch we support and for CPU since torch 2.4."""
    return device.type in ("cuda", "cpu")


def build_adamw(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    device: torch.device | str = "cpu",
) -> torch.optim.AdamW:
    groups = parameter_groups(model, weight_decay)
    device = torch.device(device)
    if fused_supported(device):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)
