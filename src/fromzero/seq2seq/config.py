"""Every setting of a ``fromzero seq2seq train`` run, in one dataclass (light: no torch, so ``--help`` is quick)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fromzero.errors import InputError

ARCHS = ("transformer", "gru", "gru-attention")
SYNTHETIC = ("copy", "reverse", "numbers")


@dataclass
class Seq2SeqTrainConfig:
    task: str = "copy"  # translate-en-hi, copy, reverse, numbers, or a pairs file
    targets: str | None = None  # with a plain-text --task file: the line-aligned translations
    arch: str = "transformer"  # transformer, gru, gru-attention
    tokenizer: str | None = None  # char or bpe:N; default: char for the synthetic tasks, bpe:1000 for text
    max_len: int = 64  # the longest source or target, in tokens (the model's block_size)
    # the Transformer
    n_layer: int = 3  # encoder layers, and as many decoder layers
    n_head: int = 4
    n_embd: int = 128
    norm_first: bool = True  # pre-LN; False: the paper's post-LN
    pos_encoding: str = "sinusoidal"
    # the GRU
    n_hidden: int = 256
    # both
    dropout: float = 0.1
    label_smoothing: float = 0.1
    # the synthetic tasks
    train_size: int = 20_000
    test_size: int = 500
    max_chars: int = 16  # the longest copy/reverse string
    # optimisation
    val_fraction: float = 0.05
    batch_size: int = 64
    max_steps: int = 2000
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_interval: int = 250
    seed: int = 1337
    device: str = "auto"
    dtype: str = "float32"
    threads: int | None = None
    out: str = "out/seq2seq"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise InputError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.max_len < 2:
            raise InputError(f"--max-len must be at least 2, got {self.max_len}")

    @property
    def tokenizer_spec(self) -> str:
        return self.tokenizer or ("char" if self.task in SYNTHETIC else "bpe:1000")

    def shape(self, vocab_size: int, pad_id: int) -> dict[str, Any]:
        """The model config's fields for ``arch`` (one vocabulary, shared by encoder, decoder and output)."""
        common = dict(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size, block_size=self.max_len,
                      dropout=self.dropout, share_embeddings=True, pad_id=pad_id,
                      label_smoothing=self.label_smoothing)
        if self.arch == "transformer":
            return {**common, "n_encoder_layer": self.n_layer, "n_decoder_layer": self.n_layer, "n_head": self.n_head,
                    "n_embd": self.n_embd, "norm_first": self.norm_first, "pos_encoding": self.pos_encoding}
        return {**common, "n_embd": self.n_embd, "n_hidden": self.n_hidden}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
