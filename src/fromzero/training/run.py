"""The whole job behind ``fromzero train``: data, tokenizer, model, training loop, model dir.

:func:`train` reads top to bottom like the recipe it runs:

1. join the process group if ``torchrun`` started us; pick the device; seed everything;
2. check the output directory (new, ``--resume`` or ``--overwrite``; writable);
3. make token shards under ``OUT/data`` (or open prepared ones) with the chosen tokenizer;
4. build the GPT from a preset plus overrides, its vocabulary sized to the tokenizer;
5. run :class:`~fromzero.training.trainer.Trainer` (resuming from the last checkpoint if asked);
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
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fromzero.console import console
from fromzero.data.prepare import build_tokenizer, prepare
from fromzero.data.shards import TokenShards, check_length, check_tokenizer, is_shard_dir, load_shards
from fromzero.devices import resolve_device
from fromzero.errors import FromzeroError, InputError, MissingFileError
from fromzero.files import write_json
from fromzero.training import distributed
from fromzero.training.checkpoint import latest_checkpoint, saved_settings
from fromzero.training.config import TrainConfig
from fromzero.training.trainer import Trainer, TrainResult

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
        out = Path(config.out)
        # a new run into a new (or empty) directory that fails before training starts removes it
        # again, so fixing a typo and re-running does not trip over a half-made run
        fresh = not resume and dist.is_main and not (out.is_dir() and any(out.iterdir()))
        try:
            if resume:
                config = _resumed_config(config, out, given or set())
            elif dist.is_main:
                _prepare_new_out_dir(out, overwrite)
            distributed.barrier(dist)
            if config.threads:
                torch.set_num_threads(config.threads)
            _seed_everything(config.seed)

            tokenizer, shards = _data(config, out, dist, resume, quiet)
            model = _build_model(config, tokenizer.vocab_size)
            if dist.rank:  # every rank built the same weights; each now draws its own dropout masks
                torch.manual_seed(config.seed + dist.rank)
            check_length(shards, model.config.block_size)
            trainer = Trainer(
                model, config, shards.train, shards.val, model.config.block_size, out,
                dist=dist, device=device, quiet=quiet,
                sampler=_sampler(tokenizer, config, model.config.block_size, shards.separator),
                on_best=lambda m: _save_model_dir(m, tokenizer, out / "best"),
                extra_state={"tokenizer": shards.tokenizer_id.__dict__},
            )
        except FromzeroError:
            if fresh and out.is_dir():
                shutil.rmtree(out, ignore_errors=True)
            raise
        if resume:
            trainer.resume(latest_checkpoint(out / "checkpoints"))
            if not quiet and dist.is_main:
                console.print(f"resuming {out} at step {trainer.step} of {config.max_steps}")
        elif not quiet and dist.is_main:
            _announce(config, model, shards, device, dist)
        if dist.is_main:
            write_json(out / "train_config.json", config.to_dict())
        result = trainer.fit()
        if dist.is_main:
            _save_model_dir(trainer.raw_model, tokenizer, out)
            if not quiet:
                _summary(result, out)
        # leave the process group together: a rank that tore down while rank 0 was still writing
        # was sometimes aborted by gloo at exit ("terminate called without an active exception")
        distributed.barrier(dist)
        return result
    finally:
        distributed.teardown(dist)


# ---------------------------------------------------------------- output directory
def _prepare_new_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError(
                f"{out} already holds files; pass --resume to continue that run, --overwrite to "
                f"replace it, or choose another --out"
            )
        for name in RUN_OUTPUTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    _check_writable(out)


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise InputError(f"cannot write to output directory {out}: {err.strerror or err}") from None


def _resumed_config(config: TrainConfig, out: Path, given: set[str]) -> TrainConfig:
    """The settings saved with the run, plus the explicitly given ones that may change."""
    checkpoint = latest_checkpoint(out / "checkpoints")
    if checkpoint is None:
        raise MissingFileError(f"{out} has no checkpoint to resume; start without --resume")
    _check_writable(out)
    saved = TrainConfig(**saved_settings(checkpoint))
    changes = {}
    for name in sorted(given):
        value = getattr(config, name)
        if value == getattr(saved, name):
            continue
        if name not in RESUMABLE_CHANGES:
            raise InputError(
                f"--{name.replace('_', '-')} was {getattr(saved, name)!r} in the run being resumed; "
                f"it cannot change to {value!r} (start a new run with --overwrite or another --out)"
            )
        changes[name] = value
    if "max_steps" in changes and saved.decay_steps is None:
        changes["decay_steps"] = saved.max_steps  # the cosine already run keeps its shape
    changes["out"] = str(out)  # the directory may have been moved since
    return saved.replace(**changes)


# ---------------------------------------------------------------- data and tokenizer
def _data(
    config: TrainConfig, out: Path, dist: distributed.Distributed, resume: bool, quiet: bool
) -> tuple[Any, TokenShards]:
    """Open shards (prepared ones, or made from --data under OUT/data) and their tokenizer."""
    from fromzero.tokenizers import load_tokenizer

    if is_shard_dir(config.data):
        shards = load_shards(config.data)
        tokenizer = load_tokenizer(config.data)
        if config.tokenizer != "char":  # the default; any other choice must match the shards
            check_tokenizer(shards, build_tokenizer(config.tokenizer, []))
        return tokenizer, shards
    shard_dir = out / "data"
    if not (resume and is_shard_dir(shard_dir)) and dist.is_main:
        prepare(config.data, config.tokenizer, shard_dir, config.val_fraction, config.seed, quiet=quiet)
    distributed.barrier(dist)
    return load_tokenizer(shard_dir), load_shards(shard_dir)


# ---------------------------------------------------------------- model
def model_config(config: TrainConfig, vocab_size: int) -> Any:
    from fromzero.models import GPTConfig

    overrides = {
        name: getattr(config, name)
        for name in ("n_layer", "n_head", "n_embd", "block_size", "dropout")
        if getattr(config, name) is not None
    }
    return GPTConfig.preset(config.preset, vocab_size=vocab_size, **overrides)


def _build_model(config: TrainConfig, vocab_size: int) -> torch.nn.Module:
    from fromzero.models import GPT

    return GPT(model_config(config, vocab_size))


def _save_model_dir(model: torch.nn.Module, tokenizer: Any, directory: Path) -> None:
    model.save_pretrained(directory)
    tokenizer.save(directory)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- samples and messages
def _sampler(tokenizer: Any, config: TrainConfig, block_size: int, separator: list[int]):
    """A function that writes a short sample with the current model, or None if disabled.

    With no ``sample_prompt`` the model starts right after a document separator, i.e. it writes
    the beginning of a new story.
    """
    prompt = tokenizer.encode(config.sample_prompt) if config.sample_prompt else list(separator)
    new_tokens = min(config.sample_tokens, block_size - len(prompt))
    if new_tokens < 1 or not prompt:
        return None
    from fromzero.generation import GenerationConfig, generate

    settings = GenerationConfig(
        max_new_tokens=new_tokens, do_sample=True, temperature=SAMPLE_TEMPERATURE, top_k=None, seed=config.seed
    )

    def sample(model: torch.nn.Module) -> str:
        device = next(model.parameters()).device
        ids = generate(model, torch.tensor([prompt], device=device), settings)
        return tokenizer.decode(ids[0, len(prompt):].tolist())

    return sample


def _announce(config: TrainConfig, model: Any, shards: TokenShards, device: str, dist) -> None:
    c = model.config
    tokens = len(shards.train)
    per_step = config.batch_size * config.grad_accum * dist.world_size * c.block_size
    console.print(
        f"[bold]{config.preset}[/] GPT: {model.num_params() / 1e6:.2f}M parameters "
        f"(n_layer={c.n_layer}, n_head={c.n_head}, n_embd={c.n_embd}, block_size={c.block_size}, "
        f"vocab={c.vocab_size}) on {device}"
        + (f" x {dist.world_size} processes" if dist.enabled else "")
    )
    console.print(
        f"data: {tokens:,} train / {len(shards.val):,} val tokens ({shards.tokenizer_id.kind}); "
        f"{config.max_steps} steps x {per_step:,} tokens = "
        f"{config.max_steps * per_step / max(1, tokens):.1f} epochs"
    )


def _summary(result: TrainResult, out: Path) -> None:
    console.print(
        f"[green]done[/]: {result.step} steps in {result.elapsed_s:.0f} s, val loss "
        f"{result.val_loss:.4f} (best {result.best_val_loss:.4f}). Model: {out}\n"
        f"try: fromzero generate --model {out}"
    )
    from fromzero.console import stdout

    stdout.print(str(out))
