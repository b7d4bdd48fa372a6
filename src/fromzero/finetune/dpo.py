"""Preference tuning with DPO (or IPO): prefer the better of two answers, without a reward model.

Each pair (:func:`~fromzero.finetune.instructions.load_preferences`) is a prompt with a chosen and
a rejected answer, both written with the template as an SFT example would be (the loss is on the
answers). A batch holds the chosen rows, then the rejected rows, so one forward pass scores both;
the summed answer log-probs of the model being tuned and of the reference go into
:func:`~fromzero.finetune.losses.dpo_loss`, whose docstring has the maths.

**The reference** is the model as it was before DPO, frozen. With LoRA it needs no second copy:

* from a plain model, a fresh adapter is trained and the reference is the same weights with the
  adapter switched off (:func:`~fromzero.finetune.lora.disabled_adapters`);
* from an SFT adapter (``--adapter``), that adapter is loaded twice, as ``default`` (trained on)
  and as ``reference`` (frozen), and the reference pass runs with ``reference`` active: two small
  adapters on one base, as ``trl`` does with its ``ref_adapter_name``. The result is one adapter on
  the base model, like the SFT result it started from.

The reference pass runs without dropout (eval mode), so its log-probs are exact; the model being
tuned keeps its dropout. Full-model DPO (``--lora-r 0``) would need that second copy and is not
offered. Every evaluation logs, on the held-out pairs, the mean reward margin (how far the chosen
answer's implicit reward is above the rejected one's) and the preference accuracy (the share of
pairs where it is above at all); before any step both rewards are 0, so the accuracy starts at 0.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Iterator, NamedTuple

import torch

from fromzero.console import console, stdout
from fromzero.data.split import train_val_split
from fromzero.devices import resolve_device
from fromzero.errors import FromzeroError, InputError
from fromzero.files import read_json, write_json
from fromzero.finetune.batches import TokenizedExample, collate, encode_example, label
from fromzero.finetune.instructions import Example, Message, PreferencePair, load_preferences
from fromzero.finetune.lora import disabled_adapters, lora_layers, set_adapter
from fromzero.finetune.losses import LOSS_TYPES, DPOOutput, answer_lengths, dpo_loss, sequence_logprobs
from fromzero.finetune.peft_format import load_adapter
from fromzero.finetune.run import (
    FINETUNE_JSON,
    TuneConfig,
    announce,
    describe,
    finished_record,
    load_model,
    load_tokenizer_for,
    max_length_of,
    open_out_dir,
    removing_fresh_out,
    run,
    save_result,
    template_of,
    train_config,
)
from fromzero.finetune.templates import Template
from fromzero.models import GPT
from fromzero.tokenizers import Tokenizer
from fromzero.training.example_batches import EpochBatches, FixedBatches
from fromzero.training.trainer import Objective, Trainer, TrainResult

REFERENCE = "reference"


@dataclass
class DPOConfig(TuneConfig):
    data: str = "preferences"
    lr: float = 5e-5
    adapter: str | None = None  # an SFT adapter folder to start from
    beta: float = 0.1
    loss: str = "sigmoid"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta > 0:
            raise InputError(f"--beta must be positive, got {self.beta}")
        if self.loss not in LOSS_TYPES:
            raise InputError(f"unknown --loss {self.loss!r}; choose {' or '.join(LOSS_TYPES)}")
        if not self.lora_r:
            raise InputError("full-model DPO (--lora-r 0) would hold a second copy of the model as its reference; "
                             "tune with LoRA (--lora-r 8), or on top of an SFT adapter with --adapter")


class Pair(NamedTuple):
    chosen: TokenizedExample
    rejected: TokenizedExample


def encode_pairs(pairs: list[PreferencePair], template: Template, tokenizer: Tokenizer, max_length: int) -> list[Pair]:
    """Each pair's two answers as labelled rows cut to ``max_length``; a pair that loses an answer entirely is dropped."""
    encoded = []
    for pair in pairs:
        rows = []
        for answer in (pair.chosen, pair.rejected):
            example = Example((Message("user", pair.prompt), Message("assistant", answer)), source=pair.source)
            ids, is_answer = encode_example(tokenizer, template, example)
            if any(is_answer[1:max_length]):
                rows.append(TokenizedExample(ids[:max_length], label(ids[:max_length], is_answer[:max_length])))
        if len(rows) == 2:
            encoded.append(Pair(*rows))
    return encoded


def pair_batch(pairs: list[Pair]) -> dict:
    """The chosen rows, then the rejected rows, padded together; ``count`` is the number of pairs."""
    batch = collate([p.chosen for p in pairs] + [p.rejected for p in pairs])
    batch["count"] = len(pairs)
    return batch


@contextlib.contextmanager
def reference_model(model: torch.nn.Module, reference_adapter: str | None) -> Iterator[torch.nn.Module]:
    """``model`` computing the reference (module docstring): dropout off, the tuned adapter out of the way."""
    was_training = model.training
    model.eval()
    try:
        if reference_adapter is None:
            with disabled_adapters(model):
                yield model
        else:
            layers = lora_layers(model).values()
            active = [layer.active for layer in layers]
            for layer in layers:  # not set_adapter: that would move requires_grad to the reference
                layer.active = reference_adapter
            try:
                yield model
            finally:
                for layer, name in zip(layers, active):
                    layer.active = name
    finally:
        model.train(was_training)


def preference_output(model: torch.nn.Module, batch: dict, config: DPOConfig, reference_adapter: str | None) -> DPOOutput:
    """The DPO loss and rewards of a batch of pairs."""
    ids, labels = batch["input_ids"], batch["labels"]
    n = batch["count"]
    logps = sequence_logprobs(model(ids).logits, labels)
    with torch.no_grad(), reference_model(model, reference_adapter):
        ref_logps = sequence_logprobs(model(ids).logits, labels)
    lengths = answer_lengths(labels)
    return dpo_loss(logps[:n], logps[n:], ref_logps[:n], ref_logps[n:], config.beta, config.loss,
                    lengths[:n], lengths[n:])


@torch.no_grad()
def preference_metrics(model: torch.nn.Module, batches: FixedBatches, config: DPOConfig,
                       reference_adapter: str | None) -> dict[str, float]:
    """Mean reward margin and preference accuracy over every pair of ``batches`` (dropout off)."""
    was_training = model.training
    model.eval()
    margins = []
    for k in range(batches.count):
        margins.append(preference_output(model, batches.get(k), config, reference_adapter).margins)
    model.train(was_training)
    margin = torch.cat(margins)
    return {"val_reward_margin": float(margin.mean()), "val_preference_accuracy": float((margin > 0).float().mean())}


def _start(config: DPOConfig, tokenizer: Tokenizer, device: str) -> tuple[GPT, str | None]:
    """The model to tune and the name of its reference adapter (None: the adapters switched off)."""
    if config.adapter is None:
        return load_model(config, tokenizer, device), None
    model = GPT.from_pretrained(config.model, device=device)
    load_adapter(model, config.adapter, REFERENCE)
    load_adapter(model, config.adapter, "default")  # made active: the one that trains
    set_adapter(model, "default")
    return model, REFERENCE


def _template_of(config: DPOConfig) -> Template:
    """The template asked for, else the one the SFT adapter was taught with."""
    if config.template is None and config.template_file is None and config.adapter is not None:
        saved = Path(config.adapter) / FINETUNE_JSON
        if saved.is_file():
            return template_of(DPOConfig(**{**config.to_dict(), "template": read_json(saved).get("template")}))
    return template_of(config)


def dpo(config: DPOConfig, *, given: set[str] | None = None, resume: bool = False, overwrite: bool = False,
        quiet: bool = False) -> TrainResult:
    """Run ``config`` (``given``: the settings chosen explicitly, checked against a resumed run's)."""
    out = Path(config.out)
    cleanup = removing_fresh_out(out, resume)
    try:
        config = open_out_dir(config, given or set(), resume, overwrite)
        device = resolve_device(config.device)
        template = _template_of(config)
        tokenizer = load_tokenizer_for(config, template)
        train_pairs, val_pairs = train_val_split(load_preferences(config.data, config.skip_bad),
                                                 config.val_fraction, config.seed)
        torch.manual_seed(config.seed)
        model, reference_adapter = _start(config, tokenizer, device)
        max_length = max_length_of(config, model)
        train, val = (encode_pairs(part, template, tokenizer, max_length) for part in (train_pairs, val_pairs))
        if not train or not val:
            raise InputError(f"--max-length {max_length} leaves no {'training' if not train else 'validation'} pair "
                             f"with both answers: raise --max-length")
        batches = EpochBatches(train, config.batch_size, config.grad_accum, config.seed, pair_batch, device)
        evals = {"val": FixedBatches(val, config.batch_size, pair_batch, device),
                 "train": FixedBatches(train[:len(val)], config.batch_size, pair_batch, device)}
        loop = train_config(config, batches.steps(config.epochs), batches.steps(1), evals["val"].count, max_length,
                            quiet)
        objective = Objective(loss=lambda m, batch: preference_output(m, batch, config, reference_adapter).loss,
                              count=lambda batch: batch["count"])
        record = describe(config, template, "dpo")
        tokens = round(loop.batch_size * loop.grad_accum * mean(len(p.chosen) + len(p.rejected) for p in train))
        trainer = Trainer(
            model, loop, out_dir=out, device=device, quiet=quiet, batches=batches, eval_batches=evals,
            objective=objective, tokens_per_step=tokens,
            on_eval=lambda m: preference_metrics(m, evals["val"], config, reference_adapter),
            on_best=lambda m: save_result(m, tokenizer, out / "best", finished_record(record, trainer)),
        )
        if not resume:
            write_json(out / FINETUNE_JSON, record)
    except (FromzeroError, KeyboardInterrupt):
        cleanup()
        raise
    if not quiet and not resume:
        announce(model, len(train), len(val), "pairs", loop)
    result = run(trainer, config, "dpo", resume, quiet)
    final = finished_record(record, trainer)
    final["result"].update(preference_metrics(trainer.raw_model, evals["val"], config, reference_adapter))
    save_result(trainer.raw_model, tokenizer, out, final)
    if not quiet:
        console.print(f"[green]done[/]: {result.step} steps; held-out pairs: DPO loss {result.val_loss:.4f}, "
                      f"reward margin {final['result']['val_reward_margin']:.4f}, preference accuracy "
                      f"{final['result']['val_preference_accuracy']:.0%}")
        stdout.print(str(out))
    return result
