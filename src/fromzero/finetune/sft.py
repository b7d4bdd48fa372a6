"""Supervised fine-tuning (SFT): teach a pretrained model to answer, from question/answer examples.

The recipe, as :func:`sft` runs it:

1. read the examples (:mod:`~fromzero.finetune.instructions`) and hold ``--val-fraction`` of them out;
2. write each with the template and tokenize it, the loss on the answer and the end-of-text token
   only (:mod:`~fromzero.finetune.batches`; cut and dropped examples are counted and reported);
3. load the base model (a folder or a hub name), grow its embedding for any special tokens the
   template adds, and add a LoRA adapter (``--lora-r 0``: train every weight instead);
4. train with :class:`~fromzero.training.trainer.Trainer`, batches of whole examples padded to the
   longest in the batch, evaluating once per epoch (the course's train/val curves: where they part,
   the model starts to memorise);
5. write the adapter (or the model), the tokenizer and ``finetune.json`` (:mod:`~fromzero.finetune.run`).

With gradient accumulation each micro-batch's mean loss is weighted by its share of the step's
answer tokens, so that 4 micro-batches of 2 examples train exactly like one batch of 8: every
answer token of the step counts the same, however the examples fall into micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import torch

from fromzero.console import console, stdout
from fromzero.data.split import train_val_split
from fromzero.devices import resolve_device
from fromzero.errors import FromzeroError, InputError
from fromzero.files import write_json
from fromzero.finetune.batches import SFTData, TokenizedExample, build_sft_data, collate, pack
from fromzero.finetune.instructions import load_instructions
from fromzero.finetune.losses import answer_lengths, sft_model_loss
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
from fromzero.training.example_batches import EpochBatches, FixedBatches
from fromzero.training.trainer import Objective, Trainer, TrainResult


@dataclass
class SFTConfig(TuneConfig):
    data: str = "education_qa"
    train_on_prompt: bool = False
    pack: bool = False  # join training examples into rows of max_length (validation stays one per row)


def sft_batch(examples: list[TokenizedExample]) -> dict:
    """A padded batch and ``count``, its answer tokens (what the loss averages over)."""
    batch = collate(examples)
    batch["count"] = int(answer_lengths(batch["labels"]).sum())
    return batch


def _sft_batch_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return sft_model_loss(model, batch["input_ids"], batch["labels"])


SFT_OBJECTIVE = Objective(loss=_sft_batch_loss, count=lambda batch: batch["count"])


def _report(name: str, data: SFTData) -> None:
    if data.truncated:
        console.print(f"[yellow]warning:[/] {data.truncated} {name} example(s) are longer than --max-length "
                      f"{data.max_length} and lose the end of their answer")
    if data.dropped:
        console.print(f"[yellow]warning:[/] {data.dropped} {name} example(s) dropped: their prompt fills "
                      f"--max-length {data.max_length}, leaving no answer to learn")


def sft(config: SFTConfig, *, given: set[str] | None = None, resume: bool = False, overwrite: bool = False,
        quiet: bool = False) -> TrainResult:
    """Run ``config`` (``given``: the settings chosen explicitly, checked against a resumed run's)."""
    out = Path(config.out)
    cleanup = removing_fresh_out(out, resume)
    try:
        config = open_out_dir(config, given or set(), resume, overwrite)
        device = resolve_device(config.device)
        template = template_of(config)
        tokenizer = load_tokenizer_for(config, template)
        train_examples, val_examples = train_val_split(load_instructions(config.data, config.skip_bad),
                                                       config.val_fraction, config.seed)
        torch.manual_seed(config.seed)  # the adapter's A matrices, then dropout
        model = load_model(config, tokenizer, device)
        max_length = max_length_of(config, model)
        train, val = (build_sft_data(part, template, tokenizer, max_length, config.train_on_prompt)
                      for part in (train_examples, val_examples))
        if not quiet:
            _report("train", train)
            _report("validation", val)
        if not val.examples:
            raise InputError("every validation example was dropped (--max-length): raise --max-length")
        rows = pack(train.examples, max_length) if config.pack else train.examples
        if config.pack and not quiet:
            console.print(f"packed {len(train.examples):,} training examples into {len(rows):,} rows of at most "
                          f"{max_length} tokens")
        batches = EpochBatches(rows, config.batch_size, config.grad_accum, config.seed, sft_batch, device)
        evals = {"val": FixedBatches(val.examples, config.batch_size, sft_batch, device),
                 "train": FixedBatches(train.examples[:len(val.examples)], config.batch_size, sft_batch, device)}
        loop = train_config(config, batches.steps(config.epochs), batches.steps(1), evals["val"].count, max_length,
                            quiet)
        record = describe(config, template, "sft")
        tokens_per_step = round(loop.batch_size * loop.grad_accum * mean(map(len, rows)))
        trainer = Trainer(
            model, loop, out_dir=out, device=device, quiet=quiet, batches=batches, eval_batches=evals,
            objective=SFT_OBJECTIVE, tokens_per_step=tokens_per_step,
            on_best=lambda m: save_result(m, tokenizer, out / "best", finished_record(record, trainer)),
        )
        if not resume:
            write_json(out / FINETUNE_JSON, record)
    except (FromzeroError, KeyboardInterrupt):
        cleanup()
        raise
    if not quiet and not resume:
        announce(model, len(rows), len(val.examples), "rows" if config.pack else "examples", loop)
        console.print(f"validation loss before fine-tuning: {trainer.estimate_loss('val'):.4f}")
    result = run(trainer, config, "sft", resume, quiet)
    save_result(trainer.raw_model, tokenizer, out, finished_record(record, trainer))
    if not quiet:
        console.print(f"[green]done[/]: {result.step} steps, val loss {result.val_loss:.4f} "
                      f"(best {result.best_val_loss:.4f}, kept in {out / 'best'})")
        stdout.print(str(out))
    return result
