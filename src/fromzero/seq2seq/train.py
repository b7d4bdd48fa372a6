"""Training a translation model: ``fromzero seq2seq train``.

The recipe, as :func:`train_seq2seq` runs it:

1. the task's pairs (:mod:`~fromzero.seq2seq.tasks`); ``val_fraction`` of the training pairs is held
   out to watch the loss (a task's test split is never seen until the end);
2. one tokenizer learned from the training pairs, both sides, and ``pad``/``bos``/``eos`` after it
   (:mod:`~fromzero.seq2seq.data`); pairs longer than ``max_len`` tokens are left out and counted;
3. the model (:mod:`~fromzero.seq2seq.model_files`): the Transformer, or the GRU baseline with or
   without attention, all three with one embedding table for both sides and the output layer;
4. :class:`~fromzero.training.trainer.Trainer`, the loop that pretrains the GPTs, with batches of
   padded pairs and the label-smoothed loss per target token; the schedule is cosine or the paper's
   Noam (``--schedule noam``); checkpoints, ``metrics.jsonl``, ``loss.png`` and Ctrl-C as for ``fromzero train``;
5. the model, its tokenizer and ``seq2seq.json`` in ``out``, with its scores on the test pairs
   (greedy decoding): exact match, and BLEU/chrF when ``sacrebleu`` is installed.

With a file task, which has no test split, the scores are those of the validation pairs.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape

from fromzero.console import console, stdout
from fromzero.data.split import train_val_split
from fromzero.devices import resolve_device
from fromzero.errors import InputError
from fromzero.evaluate.translation_metrics import have_sacrebleu
from fromzero.files import prepare_output_dir, read_json, write_json
from fromzero.seq2seq.config import Seq2SeqTrainConfig
from fromzero.seq2seq.data import EncodedPair, PairVocab, build_tokenizer, collate, encode_pairs
from fromzero.seq2seq.model_files import SEQ2SEQ_JSON, build_model, save_seq2seq
from fromzero.seq2seq.tasks import Pair, load_task
from fromzero.seq2seq.translate import Translator
from fromzero.training.checkpoint import latest_checkpoint
from fromzero.training.config import TrainConfig
from fromzero.training.example_batches import EpochBatches, FixedBatches
from fromzero.training.trainer import Objective, Trainer, TrainingInterrupted

SETTINGS_JSON = "train_settings.json"  # written first: what --resume rebuilds the run from
SEQ2SEQ_OBJECTIVE = Objective(
    loss=lambda model, batch: model(batch["src"], batch["tgt_in"], batch["targets"]).loss,
    count=lambda batch: batch["count"],
)


@dataclass
class Seq2SeqResult:
    out: Path
    steps: int
    train_seconds: float  # training steps only, over every session of the run
    wall_seconds: float  # this session, evaluations included
    val_loss: float | None
    scores: dict[str, float]  # on the test pairs (or the validation pairs, for a file without a test split)
    parameters: int


def train_seq2seq(config: Seq2SeqTrainConfig, *, resume: bool = False, overwrite: bool = False,
                  quiet: bool = False) -> Seq2SeqResult:
    """Train ``config`` into ``config.out`` (see the module docstring); ``resume`` continues its last checkpoint."""
    out = Path(config.out)
    checkpoint = None
    if resume:
        checkpoint = latest_checkpoint(out / "checkpoints")
        if checkpoint is None:
            raise InputError(f"no checkpoint in {out / 'checkpoints'} to resume: start the run without --resume")
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} already holds files; pass --resume to continue its run, --overwrite to replace it, "
                         "or choose another --out")
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    data = prepare_data(config, quiet)
    vocab, train, val = data.vocab, data.train, data.val

    torch.manual_seed(config.seed)
    model = build_model(config.arch, config.shape(vocab.size, vocab.pad)).to(device)
    pad = partial(collate, vocab=vocab)
    batches = EpochBatches(train, config.batch_size, 1, config.seed, pad, device)
    evals = {"val": FixedBatches(val, config.batch_size, pad, device),
             "train": FixedBatches(train[:len(val)], config.batch_size, pad, device)}
    loop = TrainConfig(
        data=config.task, batch_size=config.batch_size, max_steps=config.max_steps, lr=config.lr,
        schedule=config.schedule, warmup_steps=min(config.warmup_steps, config.max_steps // 2),
        weight_decay=config.weight_decay, beta2=0.98,  # the paper's Adam betas (0.9, 0.98)
        grad_clip=config.grad_clip, eval_interval=min(config.eval_interval, config.max_steps),
        eval_batches=evals["val"].count, log_interval=min(10, config.max_steps), sample_tokens=0, seed=config.seed,
        device=device, dtype=config.dtype, block_size=config.max_len, out=str(out),
        threads=config.threads,  # fixed by --threads; else the Trainer follows the free cores
    )
    if not resume:
        prepare_output_dir(out, ("checkpoints", "metrics.jsonl", "loss.png", SEQ2SEQ_JSON) if overwrite else ())
        write_json(out / SETTINGS_JSON, config.to_dict())
    mean_target = sum(len(t) + 1 for _, t in train) / len(train)
    trainer = Trainer(model, loop, out_dir=out, device=device, quiet=quiet, batches=batches, eval_batches=evals,
                      objective=SEQ2SEQ_OBJECTIVE, tokens_per_step=round(config.batch_size * mean_target))
    parameters = sum(p.numel() for p in model.parameters())
    if checkpoint is not None:
        trainer.resume(checkpoint)
        if not quiet:
            console.print(f"resuming {escape(str(out))} at step {trainer.step} of {config.max_steps}")
    elif not quiet:
        console.print(f"{config.arch}: {parameters:,} parameters; {len(train):,} training pairs, {len(val):,} "
                      f"validation; vocabulary {vocab.size:,} ({config.tokenizer_spec}); {config.max_steps} steps")
    started = time.perf_counter()
    try:
        result = trainer.fit()
    except TrainingInterrupted as stop:
        console.print(f"stopped at step {stop.step} of {config.max_steps}; checkpoint saved. Continue with: "
                      f"fromzero seq2seq train --resume --out {escape(shlex.quote(str(out)))}", soft_wrap=True)
        raise
    wall = time.perf_counter() - started

    # BLEU and chrF when sacrebleu is installed; exact match says enough on the synthetic tasks
    scores = Translator(model, vocab).evaluate(data.test, bleu=have_sacrebleu())
    record = {"arch": config.arch, "task": data.name, "settings": config.to_dict(),
              "result": {"steps": result.step, "train_seconds": round(result.elapsed_s, 1),
                         "wall_seconds": round(wall, 1), "val_loss": result.val_loss, "test_pairs": len(data.test),
                         "scores": scores, "parameters": parameters}}
    save_seq2seq(model, vocab, out, record)
    if not quiet:
        shown = ", ".join(f"{name} {value:.1f}" for name, value in scores.items())
        console.print(f"[green]done[/] in {wall:.0f} s: val loss {result.val_loss:.4f}; on {len(data.test)} "
                      f"held-out pairs: {shown}")
        stdout.print(str(out))
    return Seq2SeqResult(out, result.step, result.elapsed_s, wall, result.val_loss, scores, parameters)


@dataclass
class PairData:
    name: str
    vocab: PairVocab
    train: list[EncodedPair]
    val: list[EncodedPair]
    test: list[Pair]  # scored at the end, as text


def prepare_data(config: Seq2SeqTrainConfig, quiet: bool) -> PairData:
    """Steps 1 and 2 of the recipe: the pairs, split, a vocabulary learned from the training ones, ids."""
    task = load_task(config.task, targets=config.targets, train_size=config.train_size, test_size=config.test_size,
                     max_len=config.max_chars, seed=config.seed)
    train_pairs, val_pairs = train_val_split(task.train, config.val_fraction, config.seed)
    # deterministic: a resumed run learns the very same vocabulary again
    vocab = PairVocab(build_tokenizer(config.tokenizer_spec, train_pairs))
    train, dropped = encode_pairs(vocab, train_pairs, config.max_len)
    val, _ = encode_pairs(vocab, val_pairs, config.max_len)
    if dropped and not quiet:
        console.print(f"[yellow]warning:[/] {dropped} training pair(s) are longer than --max-len {config.max_len} "
                      "tokens and were left out")
    if not train or not val:
        raise InputError(f"no {'training' if not train else 'validation'} pair fits --max-len {config.max_len}: raise it")
    return PairData(task.name, vocab, train, val, task.test or val_pairs)


def saved_config(out: str | Path, **changes: Any) -> Seq2SeqTrainConfig:
    """The settings of the run in ``out`` (to resume it), with ``changes`` (a longer ``max_steps``)."""
    path = Path(out) / SETTINGS_JSON
    if not path.is_file():
        raise InputError(f"{out} holds no seq2seq run to resume (no {SETTINGS_JSON})")
    settings = read_json(path)
    return Seq2SeqTrainConfig(**{**settings, **changes})
