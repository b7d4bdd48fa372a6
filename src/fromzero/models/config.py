"""The shape and settings of a GPT, as one plain dataclass, plus named presets.

Every size from the 0.1M-parameter ``tiny`` toy to GPT-2 XL (1.5B) is the same architecture with
different numbers here. ``GPTConfig.preset("gpt2", dropout=0.0)`` gives a preset with overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fromzero.errors import InputError
from fromzero.nn import ACTIVATIONS

POS_ENCODINGS = ("learned", "sinusoidal")

GPT2_VOCAB_SIZE = 50257
GPT2_EOT_ID = 50256

_GPT2_FAMILY = dict(
    vocab_size=GPT2_VOCAB_SIZE, block_size=1024, dropout=0.1, bos_token_id=GPT2_EOT_ID, eos_token_id=GPT2_EOT_ID
)

PRESETS: dict[str, dict[str, Any]] = {
    # A 0.1M-parameter toy that trains in seconds on a laptop CPU.
    "tiny": dict(vocab_size=256, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0),
    # The course's ~1M-parameter character model (set vocab_size to your tokenizer's); no dropout,
    # which trains it better at this size (fromzero.training.config).
    "mini": dict(vocab_size=256, block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
    # OpenAI's GPT-2 family and Hugging Face's distilled GPT-2, with their released shapes.
    "gpt2": dict(_GPT2_FAMILY, n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(_GPT2_FAMILY, n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(_GPT2_FAMILY, n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(_GPT2_FAMILY, n_layer=48, n_head=25, n_embd=1600),
    "distilgpt2": dict(_GPT2_FAMILY, n_layer=6, n_head=12, n_embd=768),
}


@dataclass
class GPTConfig:
    """Hyper-parameters of a decoder-only Transformer; the defaults are GPT-2 small (124M).

    ``block_size`` is the context length (most tokens the model sees at once). ``n_inner`` is the
    feed-forward width (None = 4 x n_embd). ``bias=False`` drops the biases of linear layers and
    LayerNorms (slightly faster, not loadable by transformers). ``tie_weights`` shares the token
    embedding with the output layer. ``pos_encoding`` is ``"learned"`` (GPT-2) or
    ``"sinusoidal"``; ``activation`` is ``"gelu_new"`` (GPT-2's tanh GELU), ``"gelu"`` (exact) or ``"relu"``.
    ``dropout`` applies to embeddings, attention weights and residual branches while training.
    ``bos_token_id``/``eos_token_id`` are recorded for generation and for transformers.
    """

    vocab_size: int = GPT2_VOCAB_SIZE
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_inner: int | None = None
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    pos_encoding: str = "learned"
    activation: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise InputError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_inner is not None and (not isinstance(self.n_inner, int) or self.n_inner < 1):
            raise InputError(f"n_inner must be a positive integer or None, got {self.n_inner!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.pos_encoding not in POS_ENCODINGS:
            raise InputError(f"pos_encoding must be one of {', '.join(POS_ENCODINGS)}, got {self.pos_encoding!r}")
        if self.pos_encoding == "sinusoidal" and self.n_embd % 2:
            raise InputError(f"sinusoidal positions need an even n_embd, got {self.n_embd}")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.layer_norm_epsilon <= 0:
            raise InputError(f"layer_norm_epsilon must be positive, got {self.layer_norm_epsilon}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """The named preset (``tiny``, ``mini``, ``gpt2``, ``gpt2-medium``, ``gpt2-large``,
        ``gpt2-xl``, ``distilgpt2``) with ``overrides`` applied, e.g. ``preset("mini", vocab_size=65)``."""
        if name not in PRESETS:
            raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GPTConfig:
        """Build from a dict of field values, rejecting unknown names with a clear error."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown GPTConfig field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hf_compatible(self) -> bool:
        """Whether transformers' GPT2LMHeadModel can hold this model (learned positions, biases)."""
        return self.pos_encoding == "learned" and self.bias
