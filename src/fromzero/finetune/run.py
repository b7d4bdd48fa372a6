"""What SFT and DPO runs share: settings, the output folder, the base model, batches, the saved result.

Both are jobs for :class:`fromzero.training.trainer.Trainer`, the loop that pretrains models: only
the batches (examples or preference pairs instead of token windows) and the loss differ. So a
fine-tuning run has what a ``fromzero train`` run has: warmup + cosine learning rate, gradient
accumulation and clipping, the precision settings, ``metrics.jsonl`` and ``loss.png``, the model
with the best validation loss in ``OUT/best``, Ctrl-C with a checkpoint and ``--resume`` that
continues exactly (batches are a pure function of the step, as in pretraining).

Output folder::

    OUT/adapter_config.json, adapter_model.safetensors   LoRA: the adapter, in PEFT's format
    OUT/config.json, model.safetensors                   full fine-tuning (--lora-r 0): the whole model
    OUT/fromzero_tokenizer.json ...                      the tokenizer (with any special tokens it gained)
    OUT/finetune.json                                    method, base model, template, settings, result
    OUT/best/                                            the same, for the lowest validation loss
    OUT/checkpoints/, metrics.jsonl, loss.png            as in ``fromzero train``

``finetune.json`` says how to use the result: which base model an adapter belongs to and which
template the model was taught with (its text too, for a ``--template-file``), so that a model is
later asked exactly the way it was taught.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.markup import escape

from fromzero.console import console
from fromzero.errors import InputError, MissingFileError
from fromzero.files import prepare_output_dir, read_json, write_json
from fromzero.finetune.lora import LoRAConfig, add_adapter, merge_and_unload, trainable_summary
from fromzero.finetune.peft_format import ADAPTER_CONFIG, load_adapter, save_adapter
from fromzero.finetune.templates import Template, TextTemplate, get_template
from fromzero.finetune.vocab import add_special_tokens, load_model_tokenizer, resize_token_embeddings
from fromzero.models import GPT
from fromzero.tokenizers import Tokenizer
from fromzero.training.checkpoint import latest_checkpoint
from fromzero.training.config import TrainConfig, flag
from fromzero.training.trainer import Trainer, TrainingInterrupted, TrainResult

FINETUNE_JSON = "finetune.json"
# What --overwrite deletes: only files a fine-tuning run writes.
RUN_OUTPUTS = ("checkpoints", "best", "metrics.jsonl", "loss.png", FINETUNE_JSON, ADAPTER_CONFIG,
               "adapter_model.safetensors", "model.safetensors", "config.json", "fromzero_tokenizer.json")
RESUMABLE_CHANGES = {"device", "out"}  # every other setting defines the run


@dataclass
class TuneConfig:
    """The settings SFT and DPO share; the flag of a field is its name with dashes (``--lora-r``)."""

    model: str = ""
    data: str = ""
    template: str | None = None  # qa when neither it nor template_file is given
    template_file: str | None = None
    lora_r: int = 8  # 0: full fine-tuning
    lora_alpha: float = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("c_attn",)
    epochs: int = 3
    lr: float = 2e-4
    warmup_steps: int = 50
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int | None = None  # default: the model's context length
    eval_interval: int | None = None  # default: once per epoch
    seed: int = 42
    val_fraction: float = 0.1
    skip_bad: bool = False
    device: str = "auto"
    dtype: str = "auto"
    out: str = ""

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise InputError(f"{flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.lora_r < 0:
            raise InputError(f"--lora-r must be 0 (full fine-tuning) or a positive rank, got {self.lora_r}")
        if self.lora:
            LoRAConfig(self.lora_r, self.lora_alpha, self.lora_dropout, self.lora_targets)  # checks them
        if self.eval_interval is not None and self.eval_interval < 1:
            raise InputError(f"--eval-interval must be at least 1, got {self.eval_interval}")
        if not self.out:
            raise InputError("--out is required: the folder the result is written to")

    @property
    def lora(self) -> LoRAConfig | None:
        return LoRAConfig(self.lora_r, self.lora_alpha, self.lora_dropout, self.lora_targets) if self.lora_r else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- the output folder
def open_out_dir(config: TuneConfig, given: set[str], resume: bool, overwrite: bool) -> TuneConfig:
    """Check ``--out`` (new, ``--resume`` or ``--overwrite``) before anything is written.

    With ``resume`` the run's saved settings come back; flags given now must agree with them.
    """
    out = Path(config.out)
    if not resume and not config.model:
        raise InputError("--model is required: a model folder or a hub name such as gpt2")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory")
    if resume:
        if latest_checkpoint(out / "checkpoints") is None:
            raise MissingFileError(f"{out} has no checkpoint to resume; start a new run without --resume")
        saved = type(config)(**read_json(out / FINETUNE_JSON)["settings"])
        for name in sorted(given - RESUMABLE_CHANGES):
            if getattr(config, name) != getattr(saved, name):
                raise InputError(f"{flag(name)} was {getattr(saved, name)!r} in the run being resumed; it cannot "
                                 f"change to {getattr(config, name)!r} (start a new run with --overwrite)")
        config = dataclasses.replace(saved, **{name: getattr(config, name) for name in given & RESUMABLE_CHANGES})
    elif out.is_dir() and any(out.iterdir()):
        if not overwrite:
            again = "--resume to continue that run, " if latest_checkpoint(out / "checkpoints") else ""
            raise InputError(f"{out} already holds files; pass {again}--overwrite to replace them, or choose another --out")
    prepare_output_dir(out, RUN_OUTPUTS if overwrite and not resume else ())
    return config


# ---------------------------------------------------------------- model, tokenizer, template
def template_of(config: TuneConfig) -> Template:
    return get_template(config.template, config.template_file)


def load_tokenizer_for(config: TuneConfig, template: Template) -> Tokenizer:
    """The model's tokenizer with the template's special tokens; refuses what LoRA could not learn."""
    base = load_model_tokenizer(config.model)
    tokenizer = add_special_tokens(base, template.special_tokens)
    if tokenizer is not base and config.lora:
        # New tokens need trained embedding rows, and a LoRA adapter holds none (PEFT would save the
        # whole embedding as modules_to_save); full fine-tuning trains them.
        gained = ", ".join(t for t in tokenizer.special_tokens if t not in base.special_tokens)
        raise InputError(f"--template {template.name} adds special tokens ({gained}) whose embeddings must be trained, "
                         f"which a LoRA adapter cannot hold: fine-tune the whole model with --lora-r 0 "
                         f"(or use --template qa with LoRA)")
    return tokenizer


def load_model(config: TuneConfig, tokenizer: Tokenizer, device: str) -> GPT:
    """The base model, grown to the tokenizer, with a fresh LoRA adapter unless ``lora_r`` is 0."""
    model = GPT.from_pretrained(config.model, device=device)
    resize_token_embeddings(model, tokenizer.vocab_size)
    if config.lora:
        add_adapter(model, "default", config.lora)
    return model


def max_length_of(config: TuneConfig, model: GPT) -> int:
    context = model.config.block_size
    if config.max_length is not None and config.max_length > context:
        raise InputError(f"--max-length {config.max_length} is longer than the model's context of {context} tokens")
    return config.max_length or context


# ---------------------------------------------------------------- the run
def train_config(config: TuneConfig, max_steps: int, steps_per_epoch: int, eval_batches: int, block_size: int,
                 quiet: bool) -> TrainConfig:
    """The loop's settings. The warmup is clamped when it would outlast the run (the course's recipe had
    50 warmup steps in a run of 42: its learning rate never reached its peak)."""
    warmup = config.warmup_steps
    if warmup >= max_steps:
        warmup = max_steps // 10
        if not quiet:
            console.print(f"[yellow]warning:[/] --warmup-steps {config.warmup_steps} is not shorter than the run "
                          f"({max_steps} steps); warming up for {warmup} steps (10% of the run) instead")
    return TrainConfig(
        data=config.data, batch_size=config.batch_size, grad_accum=config.grad_accum, max_steps=max_steps,
        lr=config.lr, warmup_steps=warmup, weight_decay=0.0, beta2=0.999,  # transformers' Trainer defaults
        eval_interval=config.eval_interval or steps_per_epoch, eval_batches=eval_batches,
        log_interval=min(10, max_steps), sample_tokens=0, seed=config.seed, device=config.device,
        dtype=config.dtype, block_size=block_size, out=config.out,
    )


def run(trainer: Trainer, config: TuneConfig, command: str, resume: bool, quiet: bool) -> TrainResult:
    """Fit (from the last checkpoint with ``resume``); Ctrl-C says how to continue."""
    out = Path(config.out)
    if resume:
        trainer.resume(latest_checkpoint(out / "checkpoints"))
        if not quiet:
            console.print(f"resuming {escape(str(out))} at step {trainer.step} of {trainer.config.max_steps}")
    try:
        return trainer.fit()
    except TrainingInterrupted as stop:
        console.print(f"stopped at step {stop.step} of {trainer.config.max_steps}; checkpoint saved in "
                      f"{escape(str(stop.checkpoint))}. Continue with: fromzero finetune {command} --resume --out "
                      f"{escape(shlex.quote(str(out)))}", soft_wrap=True)
        raise


def removing_fresh_out(out: Path, resume: bool) -> Callable[[], None]:
    """A cleanup that removes ``out`` if this run created it: a run that fails before training leaves nothing."""
    fresh = not resume and not (out.is_dir() and any(out.iterdir()))

    def cleanup() -> None:
        if fresh and out.is_dir():
            shutil.rmtree(out, ignore_errors=True)

    return cleanup


def describe(config: TuneConfig, template: Template, method: str) -> dict[str, Any]:
    """``finetune.json`` before the run has a result."""
    folder = Path(config.model).expanduser()
    record = {
        "method": method,
        "base_model": str(folder.resolve()) if folder.is_dir() else config.model,
        "adapter": "lora" if config.lora else None,
        "template": template.name,
        "settings": config.to_dict(),
    }
    if isinstance(template, TextTemplate) and config.template_file:
        record["template_text"] = Path(config.template_file).read_text(encoding="utf-8").removesuffix("\n")
    return record


def save_result(model: GPT, tokenizer: Tokenizer, directory: Path, record: dict[str, Any]) -> None:
    """The adapter (LoRA) or the whole model, the tokenizer and ``finetune.json`` (written last)."""
    if record["adapter"]:
        save_adapter(model, directory, base_model=record["base_model"])
    else:
        model.save_pretrained(directory)
    tokenizer.save(directory)
    write_json(directory / FINETUNE_JSON, record)


def announce(model: GPT, train_items: int, val_items: int, what: str, config: TrainConfig) -> None:
    console.print(f"{trainable_summary(model)}; {train_items:,} train / {val_items:,} val {what}; "
                  f"{config.max_steps} steps of {config.batch_size * config.grad_accum} {what}")


# ---------------------------------------------------------------- merging
def merge_adapter(model_spec: str, adapter_dir: str | Path, out: str | Path) -> Path:
    """Write ``model_spec`` with the adapter in ``adapter_dir`` merged in: a plain model folder at ``out``.

    Everything is loaded and checked first and the folder is written under a temporary name, then
    renamed, so a failure leaves no half-made ``out``. The adapter's tokenizer and ``finetune.json``
    (its template) come along.
    """
    out, adapter_dir = Path(out), Path(adapter_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out} already exists and is not an empty folder; choose a new one")
    model = GPT.from_pretrained(model_spec)
    load_adapter(model, adapter_dir)
    merge_and_unload(model)
    spec = str(adapter_dir) if (adapter_dir / "fromzero_tokenizer.json").is_file() else model_spec
    tokenizer = load_model_tokenizer(spec)
    record = read_json(adapter_dir / FINETUNE_JSON) if (adapter_dir / FINETUNE_JSON).is_file() else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save(tmp)
        write_json(tmp / FINETUNE_JSON, {**record, "adapter": None, "merged_adapter": str(adapter_dir.resolve())})
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def finished_record(record: dict, trainer: Trainer) -> dict:
    """``finetune.json``'s record with the result so far: the step and the best validation loss."""
    return {**record, "result": {"step": trainer.step, "best_val_loss": trainer.best_val_loss}}
