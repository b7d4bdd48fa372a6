"""The training loop: batches in, a better model out.

One optimizer step, as :meth:`Trainer.train_step` does it:

1. set the learning rate the schedule gives for this step;
2. for each of ``grad_accum`` micro-batches: forward, loss divided by ``grad_accum``, backward
   (gradients add up, so 4 micro-batches of 8 rows equal one batch of 32);
3. clip the gradient norm to ``grad_clip`` (one bad batch cannot wreck the weights);
4. AdamW update; zero the gradients.

Around it, :meth:`Trainer.fit` evaluates the train/val loss every ``eval_interval`` steps on fixed
batches, prints a sample, keeps the best and last checkpoints, logs metrics, draws the loss curve
and stops with a clear message if the loss becomes NaN or infinite. The loop calls ``.item()``
(which waits for the GPU) only every ``log_interval`` steps.

The trainer works with any ``torch.nn.Module`` whose ``forward(x, targets=y)`` returns an object
with a ``.loss``, such as :class:`fromzero.models.GPT`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.markup import escape

from fromzero.console import console, progress
from fromzero.errors import InputError
from fromzero.training import checkpoint as ckpt
from fromzero.training import distributed
from fromzero.training.batches import BatchPlan, Batches
from fromzero.training.config import TrainConfig
from fromzero.training.metrics import (
    MetricsLog,
    flops_per_token,
    peak_flops,
    plot_losses,
    require_tensorboard,
    tensorboard_writer,
)
from fromzero.training.optim import build_adamw
from fromzero.training.schedule import CosineSchedule

EVAL_SEED_OFFSET = 7919  # evaluation windows come from their own seed, fixed for the whole run


class LossNotFiniteError(InputError):
    """The loss became NaN or infinite: the run diverged."""


@dataclass
class TrainResult:
    step: int
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    tokens_seen: int
    elapsed_s: float


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX instructions)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast_dtype(dtype: str, device: str) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32.

    ``auto`` picks bf16 on CUDA GPUs that have it (fp16 with loss scaling otherwise) and on CPUs
    with native bf16 matrix instructions, where it measured about 1.3x faster per step than fp32
    with the same loss curve (benchmarks/RESULTS.md); other CPUs stay in fp32.
    """
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device == "cpu" and cpu_has_fast_bf16() else None
    return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class Trainer:
    """Trains ``model`` on token arrays; writes checkpoints, metrics and plots under ``out_dir``."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        train_tokens: np.ndarray,
        val_tokens: np.ndarray,
        block_size: int,
        out_dir: str | Path | None = None,
        *,
        dist: distributed.Distributed = distributed.Distributed(),
        device: str = "cpu",
        sampler: Callable[[torch.nn.Module], str] | None = None,
        on_best: Callable[[torch.nn.Module], None] | None = None,
        extra_state: dict | None = None,
        quiet: bool = False,
    ):
        self.config = config
        self.raw_model = model.to(device)
        self.dist = dist
        self.device = device
        self.block_size = block_size
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.sampler = sampler
        self.on_best = on_best
        self.extra_state = extra_state or {}
        self.quiet = quiet or not dist.is_main
        if config.tensorboard:
            require_tensorboard()  # a missing package stops the run now, not at the first log

        plan = BatchPlan(config.batch_size, config.grad_accum, dist.world_size)
        self.train_batches = Batches(
            train_tokens, block_size, plan, dist.rank, config.batch_mode, config.seed, device
        )
        eval_plan = BatchPlan(config.batch_size, 1, dist.world_size)
        self.eval_batches = {
            split: Batches(tokens, block_size, eval_plan, dist.rank, "random", config.seed + EVAL_SEED_OFFSET, device)
            for split, tokens in (("train", train_tokens), ("val", val_tokens))
        }
        self.tokens_per_step = plan.global_rows * block_size

        self.optimizer = build_adamw(
            self.raw_model, config.lr, config.weight_decay, (config.beta1, config.beta2), device=torch.device(device)
        )
        self.schedule = CosineSchedule(config.lr, config.warmup_steps, config.cosine_end, config.floor_lr)
        amp = autocast_dtype(config.dtype, device)
        device_type = torch.device(device).type
        self.autocast = (
            torch.autocast(device_type=device_type, dtype=amp) if amp is not None else contextlib.nullcontext()
        )
        self.scaler = torch.amp.GradScaler(device_type, enabled=amp is torch.float16)

        model = distributed.wrap(self.raw_model, dist, device)
        self.model = torch.compile(model) if config.compile else model  # compile after DDP wraps

        self.step = 0
        self.best_val_loss: float | None = None
        self.tokens_seen = 0
        self.elapsed_s = 0.0

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int) -> torch.Tensor:
        """One optimizer step; returns the mean micro-batch loss as a tensor (no GPU sync)."""
        lr = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum = self.config.grad_accum
        total = torch.zeros((), device=self.device)
        for micro in range(accum):
            x, y = self.train_batches.get(step, micro)
            last = micro == accum - 1
            # DDP would average gradients after every backward; only the last one needs it.
            no_sync = self.model.no_sync() if self.dist.enabled and not last else contextlib.nullcontext()
            with no_sync:
                with self.autocast:
                    loss = self.model(x, targets=y).loss / accum
                self.scaler.scale(loss).backward()
            total += loss.detach()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    @torch.no_grad()
    def estimate_loss(self, split: str) -> float:
        """Mean loss over ``eval_batches`` fixed batches of ``split`` (dropout off)."""
        self.raw_model.eval()
        losses = torch.zeros(self.config.eval_batches, device=self.device)
        for k in range(self.config.eval_batches):
            x, y = self.eval_batches[split].get(k)
            with self.autocast:
                losses[k] = self.raw_model(x, targets=y).loss.float()
        self.raw_model.train()
        return float(distributed.mean_across(losses.mean(), self.dist))

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> ckpt.TrainerState:
        return ckpt.TrainerState(
            step=self.step,
            best_val_loss=self.best_val_loss,
            tokens_seen=self.tokens_seen,
            elapsed_s=self.elapsed_s,
            settings=self.config.to_dict(),
            tokenizer=self.extra_state,
        )

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes the checkpoint, with the random-generator states of every rank."""
        if self.out_dir is None:
            return None
        rng = distributed.gather_to_main(ckpt.rng_states(), self.dist)
        path = None
        if self.dist.is_main:
            path = ckpt.save_checkpoint(
                self.out_dir / "checkpoints", self.raw_model, self.optimizer, self.state(),
                keep=self.config.keep_checkpoints, rng=rng,
            )
        distributed.barrier(self.dist)
        return path

    def resume(self, directory: str | Path) -> None:
        """Restore weights, optimizer, counters and this rank's RNG states from a checkpoint.

        With as many processes as the run that saved it, every rank continues its own random
        streams and the run goes on exactly. With another number, ranks without a saved state get
        a reproducible fresh seed and a warning says the run no longer continues exactly.
        """
        state, rng = ckpt.load_checkpoint(directory, self.raw_model, self.optimizer)
        self.step = state.step
        self.best_val_loss = state.best_val_loss
        self.tokens_seen = state.tokens_seen
        self.elapsed_s = state.elapsed_s
        if len(rng) != self.dist.world_size and self.dist.is_main:
            console.print(
                f"[yellow]warning:[/] {escape(str(directory))} holds the random-generator states of "
                f"{len(rng)} process(es), this run has {self.dist.world_size}: it will not continue "
                f"exactly as the saved run would have (ranks without a saved state start fresh random "
                f"streams; another number of processes also changes the global batch)"
            )
        if self.dist.rank < len(rng):
            ckpt.set_rng_states(rng[self.dist.rank])
        else:
            torch.manual_seed(self.config.seed + self.dist.rank + 1000 * state.step)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Train up to ``max_steps``; the logs are flushed and closed however the loop ends."""
        metrics = tboard = None
        if self.dist.is_main and self.out_dir is not None:
            metrics = MetricsLog(self.out_dir / "metrics.jsonl", resume_step=self.step)
            if self.config.tensorboard:
                tboard = tensorboard_writer(self.out_dir / "tensorboard", resume_step=self.step)
        try:
            return self._loop(metrics, tboard)
        finally:
            if metrics:
                metrics.close()
            if tboard:
                tboard.close()

    def _loop(self, metrics: MetricsLog | None, tboard: Any) -> TrainResult:
        config = self.config
        flops = flops_per_token(
            sum(p.numel() for p in self.raw_model.parameters()),
            getattr(getattr(self.raw_model, "config", None), "n_layer", 0),
            getattr(getattr(self.raw_model, "config", None), "n_embd", 0),
            self.block_size,
        )
        # rank 0 logs MFU (also when quiet, for metrics.jsonl); the other ranks need no peak
        peak = peak_flops(self.device) if self.dist.is_main else None
        train_loss = val_loss = last_loss = None
        self.raw_model.train()

        with progress(disable=self.quiet) as bar:
            task = bar.add_task("training", total=config.max_steps, completed=self.step)
            window_start, window_steps = time.perf_counter(), 0
            while self.step < config.max_steps:
                loss = self.train_step(self.step)
                self.step += 1
                window_steps += 1
                self.tokens_seen += self.tokens_per_step
                bar.advance(task)

                if self.step % config.log_interval == 0 or self.step == config.max_steps:
                    last_loss = float(distributed.mean_across(loss, self.dist))
                    self._check_finite(last_loss)
                    now = time.perf_counter()
                    seconds = now - window_start
                    self.elapsed_s += seconds
                    tokens_per_s = window_steps * self.tokens_per_step / seconds
                    mfu = flops * tokens_per_s / peak if peak else None
                    window_start, window_steps = now, 0
                    record = {"step": self.step, "loss": last_loss, "lr": self.schedule(self.step - 1),
                              "tokens_per_s": tokens_per_s, "tokens": self.tokens_seen,
                              "elapsed_s": round(self.elapsed_s, 3)}
                    if mfu is not None:
                        record["mfu"] = mfu
                    bar.update(task, description=_describe(record))
                    if metrics:
                        metrics.log(record)
                    if tboard:
                        for key in ("loss", "lr", "tokens_per_s"):
                            tboard.add_scalar(f"train/{key}", record[key], self.step)

                if self.step % config.eval_interval == 0 or self.step == config.max_steps:
                    train_loss = self.estimate_loss("train")
                    val_loss = self.estimate_loss("val")
                    self._check_finite(val_loss)
                    improved = self.best_val_loss is None or val_loss < self.best_val_loss
                    if improved:
                        self.best_val_loss = val_loss
                    self._report_eval(bar, metrics, tboard, train_loss, val_loss, improved)
                    window_start = time.perf_counter()  # evaluation time is not training speed

                if self.step % config.save_every == 0 or self.step == config.max_steps:
                    self.save_checkpoint()
                    window_start = time.perf_counter()

        return TrainResult(self.step, train_loss, val_loss, self.best_val_loss, self.tokens_seen, self.elapsed_s)

    def _check_finite(self, value: float) -> None:
        if not math.isfinite(value):
            where = f"; the last good checkpoint is in {self.out_dir / 'checkpoints'}" if self.out_dir else ""
            raise LossNotFiniteError(
                f"the loss became {value} at step {self.step}: training diverged. Lower --lr "
                f"(now {self.config.lr:g}), raise --warmup-steps or keep --grad-clip on{where}"
            )

    def _report_eval(self, bar, metrics, tboard, train_loss, val_loss, improved) -> None:
        record = {"step": self.step, "train_loss": train_loss, "val_loss": val_loss}
        if not self.dist.is_main:
            return
        if metrics:
            metrics.log(record)
            plot_losses(metrics.records, self.out_dir / "loss.png", title=f"training ({self.out_dir.name})")
        if tboard:
            tboard.add_scalar("eval/train_loss", train_loss, self.step)
            tboard.add_scalar("eval/val_loss", val_loss, self.step)
        if improved and self.on_best is not None:
            self.on_best(self.raw_model)
        if not self.quiet:
            star = " [green](best)[/]" if improved else ""
            bar.console.print(f"step {self.step}: train loss {train_loss:.4f}, val loss {val_loss:.4f}{star}")
            if self.sampler is not None:
                cuda = torch.device(self.device)
                devices = [cuda.index or 0] if cuda.type == "cuda" else []
                with torch.random.fork_rng(devices=devices):  # sampling must not shift training's RNG
                    self.raw_model.eval()
                    text = self.sampler(self.raw_model)
                    self.raw_model.train()
                bar.console.print(f"[dim]{escape(text)}[/]", highlight=False)


def _describe(record: dict) -> str:
    parts = [f"loss {record['loss']:.3f}", f"lr {record['lr']:.2e}", f"{record['tokens_per_s']:,.0f} tok/s"]
    if "mfu" in record:
        parts.append(f"MFU {100 * record['mfu']:.0f}%")
    return " | ".join(parts)
