"""Every setting of a training run in one dataclass, loadable from a TOML or YAML recipe.

The defaults are the course's recipe: the ``mini`` GPT (4 layers, 4 heads, 128 wide, 128
characters of context, about 0.8M weights) trained on the bundled stories with a character
tokenizer, sized to finish in a few minutes on a 2-core laptop CPU: 2000 steps of 16 x 128
characters (4M characters, about 13 passes over the stories) at a peak learning rate of 3e-3.
At this size many small steps beat few big ones: after the same 2M characters, 16-row batches
at lr 3e-3 without dropout reached a validation loss of 1.68, 32-row batches at lr 2e-3 with
dropout 0.1 only 2.00 (measured on the stories).

A recipe file (read by :mod:`fromzero.training.recipe`) holds any subset of the fields, with the
same names as the dataclass (the CLI flag ``--batch-size`` is the field ``batch_size``)::

    # shakespeare.toml
    data = "input.txt"
    block_size = 256
    max_steps = 3000
    lr = 2e-3

The model fields (``n_layer`` ... ``dropout``) left as None take the preset's values; ``fromzero
train`` writes those values back into the config (:meth:`TrainConfig.with_model`) before anything
reads it, so the trainer, the checkpoints and ``train_config.json`` all see the model's real
context length and shape.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fromzero.data.settings import DEFAULT_TEXT_FIELD
from fromzero.errors import InputError
from fromzero.training.schedule import SCHEDULES

# Fields that override the preset when set (None: the preset's value).
MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")


@dataclass
class TrainConfig:
    # data and tokenizer
    data: str | list[str] = "stories"  # bundled corpus name, file, folder, or shard dir; or a list of sources
    tokenizer: str = "char"  # "char", "gpt2", "bpe:DIR" (a saved tokenizer directory) or "bpe:N" (train one)
    text_field: str = DEFAULT_TEXT_FIELD  # the field of .jsonl records (column of hf: data) holding the text
    val_fraction: float = 0.1
    batch_mode: str = "random"  # "random" windows, or "sequential" epochs over shuffled windows
    # model: a preset, optionally overridden field by field
    preset: str = "mini"
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    dropout: float | None = None
    # optimisation
    batch_size: int = 16  # rows per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 2000
    lr: float = 3e-3
    min_lr: float | None = None  # floor of the cosine; default lr / 10
    warmup_steps: int = 100
    schedule: str = "cosine"  # "cosine" (GPT-2, nanoGPT) or "noam" (the original Transformer's)
    decay_steps: int | None = None  # where the cosine reaches min_lr; default max_steps
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    # evaluation, logging, checkpoints
    eval_interval: int = 250
    eval_batches: int = 20  # batches averaged for each train/val loss estimate
    log_interval: int = 10
    sample_tokens: int = 200  # length of the sample printed at each evaluation (0: none)
    sample_prompt: str = ""
    checkpoint_interval: int | None = None  # default: every evaluation
    keep_checkpoints: int = 1
    # system
    seed: int = 1337
    device: str = "auto"  # "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:1", "mps"
    dtype: str = "auto"  # "auto" (see precision.autocast_dtype), "float32", "bfloat16", "float16"
    compile: bool = False
    threads: int | None = None  # CPU threads, fixed; default: follow the free cores (Trainer.following_free_cores)
    tensorboard: bool = False
    out: str = "out/mini-stories"

    def __post_init__(self) -> None:
        if isinstance(self.data, (list, tuple)):
            if not self.data:
                raise InputError("--data needs at least one source")
            self.data = self.data[0] if len(self.data) == 1 else list(self.data)
        positive = ("batch_size", "grad_accum", "max_steps", "eval_interval", "eval_batches", "log_interval")
        for name in positive:
            if getattr(self, name) < 1:
                raise InputError(f"{flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise InputError(f"--lr must be positive, got {self.lr}")
        if self.warmup_steps < 0:
            raise InputError(f"--warmup-steps must be 0 or more, got {self.warmup_steps}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"--schedule must be {' or '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.batch_mode not in ("random", "sequential"):
            raise InputError(f"--batch-mode must be random or sequential, got {self.batch_mode!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise InputError(f"--dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")

    @property
    def floor_lr(self) -> float:
        return self.min_lr if self.min_lr is not None else self.lr / 10

    @property
    def cosine_end(self) -> int:
        return self.decay_steps if self.decay_steps is not None else self.max_steps

    @property
    def save_every(self) -> int:
        return self.checkpoint_interval or self.eval_interval

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def with_model(self, model_config: Any) -> TrainConfig:
        """This config with the model fields as ``model_config`` (a GPTConfig) has them."""
        return self.replace(**{name: getattr(model_config, name) for name in MODEL_FIELDS})


def flag(name: str) -> str:
    """The CLI flag of a field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")

