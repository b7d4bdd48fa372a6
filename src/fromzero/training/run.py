"""The whole job behind ``fromzero train``: data, tokenizer, model, training loop, model dir.

:func:`train` reads top to bottom like the recipe it runs:

1. join the process group if ``torchrun`` started us; pick the device; seed everything;
2. check the output directory (new, ``--resume`` or ``--overwrite``; writable);
3. make token shards under ``OUT/data`` (or open prepared ones) with the chosen tokenizer;
4. build the GPT from a preset plus overrides, its vocabulary sized to the tokenizer, and write
   the model's shape back into the config, the one every later step reads;
5. run :class:`~fromzero.training.trainer.Trainer` (resuming from the last checkpoint if asked;
   Ctrl-C stops it with a checkpoint that ``--resume`` continues);
6. write the final model dir: ``model.safetensors`` + ``config.json`` + tokenizer files, so
   ``GPT.from_pretrained(OUT)``, ``load_tokenizer(OUT)`` and ``fromzero generate --model OUT``
   work on it. The best model by validation loss is kept in ``OUT/best`` the same way.

Output directory layout::

    OUT/model.safetensors, config.json, fromzero_tokenizer.json ...   final model
    OUT/best/                  the model with the lowest validation loss
    OUT/checkpoints/           the last checkpoint (resumes exactly; see checkpoint.py)
    OUT/data/                  token shards and tokenizer made from --data
    OUT/metrics.jsonl, loss.png, train_config.json
"""

from __future__ import annotations

import random
import shlex
import shutil
import traceback
from pathlib import Path

import numpy as np
import torch
from rich.markup import escape

from fromzero.console import console, stdout
from fromzero.data.prepare import build_tokenizer, prepare
from fromzero.data.shards import TokenShards, check_length, check_tokenizer, is_shard_dir, load_shards
from fromzero.devices import resolve_device
from fromzero.errors import FromzeroError, InputError, MissingFileError
from fromzero.files import prepare_output_dir, write_json
from fromzero.generation import GenerationConfig, generate
from fromzero.machine import threads
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import Tokenizer, load_tokenizer
from fromzero.training import distributed
from fromzero.training.checkpoint import latest_checkpoint, saved_state
from fromzero.training.config import MODEL_FIELDS, TrainConfig, flag
from fromzero.machine import cpu_has_fast_bf16
from fromzero.training.precision import forced_cpu_dtype
from fromzero.training.trainer import Trainer, TrainingInterrupted, TrainResult

# Settings that may differ when resuming; the rest define the run and must stay as saved.
RESUMABLE_CHANGES = {
    "max_steps", "eval_interval", "eval_batches", "log_interval", "sample_tokens", "sample_prompt",
    "checkpoint_interval", "keep_checkpoints", "device", "dtype", "compile", "threads",
    "tensorboard", "out",
}
# What --overwrite deletes: only files a training run writes, never anything else in OUT.
RUN_OUTPUTS = ("checkpoints", "best", "data", "tensorboard", "metrics.jsonl", "loss.png", "train_config.json",
               "model.safetensors", "config.json", "fromzero_tokenizer.json")
SAMPLE_TEMPERATURE = 0.8


def train(
    config: TrainConfig,
    *,
    given: set[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
) -> TrainResult:
    """Run ``config``; ``given`` names the settings the user chose explicitly (for ``resume``)."""
    dist, device = distributed.setup(resolve_device(config.device))
    try:
        return _run(config, dist, device, given or set(), resume, overwrite, quiet)
    except BaseException as err:
        traceback.clear_frames(err.__traceback__)  # free the run's objects (its DDP model) before teardown
        raise
    finally:
        distributed.teardown(dist)  # the run's objects are gone by now, so the process group ends here


def _run(
    config: TrainConfig, dist: distributed.Distributed, device: str, given: set[str], resume: bool,
    overwrite: bool, quiet: bool,
) -> TrainResult:
    out = Path(config.out)
    # a new run into a new (or empty) directory that fails or is interrupted before training
    # starts removes it again, so re-running does not trip over a half-made run
    fresh = not resume and dist.is_main and not (out.is_dir() and any(out.iterdir()))
    try:
        if resume:
            config = _resumed_config(config, out, given)
        elif dist.is_main:
            _prepare_new_out_dir(out, overwrite)
        distributed.barrier(dist)
        if config.threads:
            torch.set_num_threads(config.threads)
        _seed_everything(config.seed)

        tokenizer, shards = _data(config, out, dist, resume, quiet)
        shape = gpt_config(config, tokenizer.vocab_size)
        config = config.with_model(shape)  # from here on the config holds the model's real shape
        model = GPT(shape)
        if dist.rank:  # every rank built the same weights; each now draws its own dropout masks
            torch.manual_seed(config.seed + dist.rank)
        check_length(shards, config.block_size)
        trainer = Trainer(
            model, config, shards.train, shards.val, out, dist=dist, device=device, quiet=quiet,
            sampler=_sampler(tokenizer, config, shards.separator),
            on_best=lambda m: _save_model_dir(m, tokenizer, out / "best"),
        )
    except (FromzeroError, KeyboardInterrupt):
        if fresh and out.is_dir():
            shutil.rmtree(out, ignore_errors=True)
        raise
    if resume:
        trainer.resume(latest_checkpoint(out / "checkpoints"))
        if not quiet and dist.is_main:
            console.print(f"resuming {out} at step {trainer.step} of {config.max_steps}")
    elif not quiet and dist.is_main:
        _announce(config, model, shards, device, dist, trainer)
    if dist.is_main:
        write_json(out / "train_config.json", trainer.config.to_dict())  # --dtype auto as measured
    try:
        result = trainer.fit()
    except TrainingInterrupted as stop:
        console.print(
            f"stopped at step {stop.step} of {config.max_steps}; checkpoint saved in "
            f"{escape(str(stop.checkpoint))}. Continue with: fromzero train --resume --out "
            f"{escape(shlex.quote(str(out)))}", soft_wrap=True,
        )
        raise
    if dist.is_main:
        _save_model_dir(trainer.raw_model, tokenizer, out)
        if not quiet:
            _summary(result, out, _hint_prompt(tokenizer, shards, config))
    distributed.barrier(dist)  # every rank waits for rank 0's files before any leaves
    return result


# ---------------------------------------------------------------- output directory
def _prepare_new_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            if latest_checkpoint(out / "checkpoints") is None:
                raise InputError(
                    f"{out} already holds files but no checkpoint, so there is no run to --resume; "
                    f"pass --overwrite to replace the files a run writes, or choose another --out"
                )
            raise InputError(
                f"{out} already holds files; pass --resume to continue that run, --overwrite to "
                f"replace it, or choose another --out"
            )
    prepare_output_dir(out, RUN_OUTPUTS if overwrite else ())


def _resumed_config(config: TrainConfig, out: Path, given: set[str]) -> TrainConfig:
    """The settings saved with the run, plus the explicitly given ones that may change.

    Everything is checked before anything is written: resuming a finished run changes nothing.
    """
    checkpoint = latest_checkpoint(out / "checkpoints")
    if checkpoint is None:
        if out.is_dir() and any(out.iterdir()):
            raise MissingFileError(
                f"{out} has no checkpoint to resume; start the run again with --overwrite (it "
                f"replaces only the files a run writes) or choose another --out"
            )
        raise MissingFileError(f"{out} has no checkpoint to resume; start a new run without --resume")
    state = saved_state(checkpoint)
    saved = TrainConfig(**state.settings)
    changes = {}
    for name in sorted(given):
        value = getattr(config, name)
        if value == getattr(saved, name):
            continue
        if name not in RESUMABLE_CHANGES:
            raise InputError(
                f"{flag(name)} was {getattr(saved, name)!r} in the run being resumed; "
                f"it cannot change to {value!r} (start a new run with --overwrite or another --out)"
            )
        changes[name] = value
    if "max_steps" in changes and saved.decay_steps is None:
        changes["decay_steps"] = saved.max_steps  # the cosine already run keeps its shape
    changes["out"] = str(out)  # the directory may have been moved since
    resumed = saved.replace(**changes)
    if state.step >= resumed.max_steps:
        raise InputError(
            f"the run in {out} is finished ({state.step} steps of --max-steps {resumed.max_steps}); "
            f"to train it longer pass --resume --max-steps N with N > {state.step}"
        )
    prepare_output_dir(out)
    return resumed


# ---------------------------------------------------------------- data and tokenizer
def _data(
    config: TrainConfig, out: Path, dist: distributed.Distributed, resume: bool, quiet: bool
) -> tuple[Tokenizer, TokenShards]:
    """Open shards (prepared ones, or made from --data under OUT/data) and their tokenizer."""
    if isinstance(config.data, str) and is_shard_dir(config.data):
        shards = load_shards(config.data)
        tokenizer = load_tokenizer(config.data)
        if config.tokenizer != "char":  # the default; any other choice must match the shards
            check_tokenizer(shards, build_tokenizer(config.tokenizer, []))
        return tokenizer, shards
    shard_dir = out / "data"
    if not (resume and is_shard_dir(shard_dir)) and dist.is_main:
        prepare(
            config.data, config.tokenizer, shard_dir, config.val_fraction, config.seed,
            quiet=quiet, text_field=config.text_field,
        )  # fmt: skip
    distributed.barrier(dist)
    return load_tokenizer(shard_dir), load_shards(shard_dir)


# ---------------------------------------------------------------- model
def gpt_config(config: TrainConfig, vocab_size: int) -> GPTConfig:
    """The preset, its vocabulary sized to the tokenizer, with the model fields the config sets."""
    overrides = {name: getattr(config, name) for name in MODEL_FIELDS if getattr(config, name) is not None}
    return GPTConfig.preset(config.preset, vocab_size=vocab_size, **overrides)


def _save_model_dir(model: torch.nn.Module, tokenizer: Tokenizer, directory: Path) -> None:
    model.save_pretrained(directory)
    tokenizer.save(directory)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- samples and messages
def _sampler(tokenizer: Tokenizer, config: TrainConfig, separator: list[int]):
    """A function that writes a short sample with the current model, or None if disabled.

    With no ``sample_prompt`` the model starts right after a document separator, i.e. it writes
    the beginning of a new story.
    """
    prompt = tokenizer.encode(config.sample_prompt) if config.sample_prompt else list(separator)
    new_tokens = min(config.sample_tokens, config.block_size - len(prompt))
    if new_tokens < 1 or not prompt:
        return None
    settings = GenerationConfig(
        max_new_tokens=new_tokens, do_sample=True, temperature=SAMPLE_TEMPERATURE, top_k=None, seed=config.seed
    )

    def sample(model: torch.nn.Module) -> str:
        device = next(model.parameters()).device
        ids = generate(model, torch.tensor([prompt], device=device), settings)
        return tokenizer.decode(ids[0, len(prompt):].tolist())

    return sample


def _announce(config: TrainConfig, model: GPT, shards: TokenShards, device: str, dist, trainer: Trainer) -> None:
    tokens = len(shards.train)
    per_step = config.batch_size * config.grad_accum * dist.world_size * config.block_size
    console.print(
        f"[bold]{config.preset}[/] GPT: {model.num_params() / 1e6:.2f}M parameters "
        f"(n_layer={config.n_layer}, n_head={config.n_head}, n_embd={config.n_embd}, "
        f"block_size={config.block_size}, vocab={model.config.vocab_size}) on {device}"
        + (f" x {dist.world_size} processes" if dist.enabled else "")
    )
    console.print(
        f"data: {tokens:,} train / {len(shards.val):,} val tokens ({shards.tokenizer_id.kind}); "
        f"{config.max_steps} steps x {per_step:,} tokens = "
        f"{config.max_steps * per_step / max(1, tokens):.1f} epochs"
    )
    console.print(_speed_settings(config, device, dist, trainer))


def _speed_settings(config: TrainConfig, device: str, dist, trainer: Trainer) -> str:
    """The precision and the CPU threads the run trains with, and what decided them."""
    dtype = trainer.precision.dtype
    precision = "fp32" if dtype is None else "bf16 autocast" if dtype is torch.bfloat16 else "fp16 autocast"
    chosen = ""
    if config.dtype == "auto" and device == "cpu" and not dist.enabled:
        if not cpu_has_fast_bf16():
            chosen = " (--dtype auto: this CPU has no native bf16)"
        elif forced := forced_cpu_dtype():
            chosen = f" (--dtype auto: FROMZERO_TRAIN_DTYPE={forced})"
        else:
            chosen = " (--dtype auto: the faster of bf16 and fp32 for this model, timed on this CPU)"
    if device != "cpu":
        cores = ""
    elif not trainer.follows_free_cores:
        count = torch.get_num_threads()
        cores = f"; {count} CPU thread{'s' if count > 1 else ''}, fixed"
    elif fixed := threads.fixed_by():
        cores = f"; CPU threads fixed by {fixed}"
    else:
        cores = "; CPU threads: as many as other programs leave free (--threads N fixes them)"
    return f"precision: {precision}{chosen}{cores}"


def _hint_prompt(tokenizer: Tokenizer, shards: TokenShards, config: TrainConfig) -> str:
    """A prompt this run's tokenizer can encode: the sample prompt, or the corpus's first words."""
    if config.sample_prompt:
        return config.sample_prompt
    words = tokenizer.decode(shards.train[:256].tolist()).split() or ["a"]
    prompt = " ".join(words[:3])[:40]
    try:
        tokenizer.encode(prompt)
    except FromzeroError:  # words joined by a space the corpus never has
        prompt = words[0][:40]
    return prompt


def _summary(result: TrainResult, out: Path, prompt: str) -> None:
    console.print(
        f"[green]done[/]: {result.step} steps in {result.elapsed_s:.0f} s, val loss "
        f"{result.val_loss:.4f} (best {result.best_val_loss:.4f}). Model: {escape(str(out))}"
    )
    hint = f"fromzero generate --model {shlex.quote(str(out))} --prompt {shlex.quote(prompt)}"
    console.print(f"try: {escape(hint)}", soft_wrap=True)
    stdout.print(str(out))
