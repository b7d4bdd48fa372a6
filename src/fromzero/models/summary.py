"""Where a GPT's parameters live and how much memory it needs: the numbers behind ``fromzero model info``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fromzero.models.config import GPTConfig
from fromzero.models.gpt import GPT

# Bytes per parameter for weight storage formats, and for AdamW training in fp32
# (weights + gradients + two moment estimates = 4 copies of 4 bytes).
BYTES_PER_PARAM = {"fp32": 4, "bf16": 2, "int8": 1}
TRAINING_BYTES_PER_PARAM = 16

_COMPONENTS = (  # (name prefix, label), most specific first
    ("transformer.wte.", "token embedding"),
    ("transformer.wpe.", "position embedding"),
    ("transformer.ln_f.", "final layer norm"),
    ("lm_head.", "output layer (untied)"),
)
_BLOCK_PARTS = (("attn.", "attention"), ("mlp.", "feed-forward"), ("ln_", "layer norms"))


@dataclass
class ModelSummary:
    config: GPTConfig
    components: list[tuple[str, int]]  # (label, parameters), in model order
    total: int
    non_embedding: int

    def weight_bytes(self, fmt: str) -> int:
        return self.total * BYTES_PER_PARAM[fmt]

    def kv_cache_bytes_per_token(self, fmt: str = "fp32") -> int:
        """A key and a value vector of n_embd numbers per layer for every cached token (per sequence)."""
        return 2 * self.config.n_layer * self.config.n_embd * BYTES_PER_PARAM[fmt]


def summarize(config: GPTConfig) -> ModelSummary:
    """Count parameters per component on a shape-only ("meta") model: instant even for GPT-2 XL."""
    with torch.device("meta"):
        model = GPT(config)
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():  # a tied lm_head is listed once, as wte
        label = _label(name, config.n_layer)
        counts[label] = counts.get(label, 0) + param.numel()
    return ModelSummary(config, list(counts.items()), model.num_params(), model.num_params(embeddings=False))


def _label(name: str, n_layer: int) -> str:
    for prefix, label in _COMPONENTS:
        if name.startswith(prefix):
            return label
    part = name.split(".", 3)[3]  # "transformer.h.7.attn.c_attn.weight" -> "attn.c_attn.weight"
    for prefix, label in _BLOCK_PARTS:
        if part.startswith(prefix):
            return f"{label} ({n_layer} blocks)"
    raise ValueError(f"unexpected parameter {name}")
