"""The training loop: batches in, a better model out.

One optimizer step, as :meth:`Trainer.train_step` does it:

1. set the learning rate the schedule gives for this step;
2. for each of ``grad_accum`` micro-batches: forward, loss divided by ``grad_accum``, backward
   (gradients add up, so 4 micro-batches of 8 rows equal one batch of 32);
3. clip the gradient norm to ``grad_clip`` (one bad batch cannot wreck the weights);
4. AdamW update; zero the gradients.

Around it, :meth:`Trainer.fit` logs the loss every ``log_interval`` steps, evaluates the
train/val loss every ``eval_interval`` steps on fixed batches, keeps the best model and writes
checkpoints; it stops with a clear message if the loss becomes NaN or infinite, and with a
checkpoint when you press Ctrl-C. The loop calls ``.item()`` (which waits for the GPU) only every
``log_interval`` steps. What it reports goes through :class:`~fromzero.training.runlog.RunLog`,
what a checkpoint holds is :mod:`~fromzero.training.checkpoint`'s business.

The trainer works with any ``torch.nn.Module`` whose ``forward(x, targets=y)`` returns an object
with a ``.loss``, such as :class:`fromzero.models.GPT`.

What it trains on is open too: by default the windows of a token array (:mod:`~fromzero.training.batches`)
and the next-token loss (:data:`NEXT_TOKEN`), but any *batch source* (an object whose
``get(step, micro)`` returns a batch, a pure function of the step so that resuming stays exact)
with an :class:`Objective` (the loss of a batch, and how many items it averages over) trains the
same way: fine-tuning (:mod:`fromzero.finetune`) uses the loop with batches of examples.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fromzero.errors import InputError
from fromzero.machine import threads
from fromzero.training import checkpoint as ckpt
from fromzero.training import distributed
from fromzero.training.batches import BatchPlan, Batches
from fromzero.training.config import TrainConfig
from fromzero.training.metrics import Speedometer, flops_per_token, peak_flops
from fromzero.training.optim import build_adamw
from fromzero.machine import cpu_has_fast_bf16
from fromzero.training.precision import Precision, measured_cpu_dtype, untouched_cpu_step
from fromzero.training.runlog import RunLog, require_tensorboard
from fromzero.training.schedule import build_schedule

EVAL_SEED_OFFSET = 7919  # evaluation windows come from their own seed, fixed for the whole run


class LossNotFiniteError(InputError):
    """The loss became NaN or infinite: the run diverged."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run after ``step`` steps; ``checkpoint`` holds them (None if not saved)."""

    def __init__(self, step: int, checkpoint: Path | None):
        super().__init__(step, checkpoint)
        self.step, self.checkpoint = step, checkpoint


@dataclass(frozen=True)
class Objective:
    """What a step minimises: ``loss(model, batch)``, a mean over ``count(batch)`` items (tokens, pairs).

    The count weights the micro-batches of a step and the batches of an evaluation, so that every
    item counts the same however the items fall into batches.
    """

    loss: Callable[[torch.nn.Module, Any], torch.Tensor]
    count: Callable[[Any], int]


NEXT_TOKEN = Objective(loss=lambda model, batch: model(batch[0], targets=batch[1]).loss,
                       count=lambda batch: batch[1].numel())


@dataclass
class TrainResult:
    step: int
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    tokens_seen: int
    elapsed_s: float


class Trainer:
    """Trains ``model`` on token arrays; writes checkpoints, metrics and plots under ``out_dir``.

    ``config.block_size`` must be the model's context length (``fromzero train`` fills it in
    from the preset before it builds the trainer).

    Instead of token arrays, ``batches`` (a batch source) and ``eval_batches`` (one per split,
    ``"train"`` and ``"val"``, each read at ``get(k)`` for ``k < config.eval_batches``) may be given,
    with the ``objective`` they are scored by and ``tokens_per_step`` for the speed readings.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        train_tokens: np.ndarray | None = None,
        val_tokens: np.ndarray | None = None,
        out_dir: str | Path | None = None,
        *,
        dist: distributed.Distributed = distributed.Distributed(),
        device: str = "cpu",
        sampler: Callable[[torch.nn.Module], str] | None = None,
        on_best: Callable[[torch.nn.Module], None] | None = None,
        on_eval: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        quiet: bool = False,
        batches: Any = None,
        eval_batches: dict[str, Any] | None = None,
        objective: Objective = NEXT_TOKEN,
        tokens_per_step: int | None = None,
    ):
        if config.block_size is None:
            raise ValueError("config.block_size is None: set it to the model's context length")
        self.config = config
        self.raw_model = model.to(device)
        self.dist = dist
        self.device = device
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.sampler = sampler
        self.on_best = on_best
        self.on_eval = on_eval  # more held-out metrics, logged with each evaluation (DPO: preference accuracy)
        self.quiet = quiet
        if config.tensorboard:
            require_tensorboard()  # a missing package stops the run now, not at the first log

        self.objective = objective
        if batches is not None:
            if eval_batches is None or tokens_per_step is None:
                raise ValueError("with batches, give eval_batches and tokens_per_step too")
            self.train_batches, self.eval_batches, self.tokens_per_step = batches, eval_batches, tokens_per_step
        else:
            block = config.block_size
            plan = BatchPlan(config.batch_size, config.grad_accum, dist.world_size)
            self.train_batches = Batches(train_tokens, block, plan, dist.rank, config.batch_mode, config.seed, device)
            eval_plan = BatchPlan(config.batch_size, 1, dist.world_size)
            eval_seed = config.seed + EVAL_SEED_OFFSET
            self.eval_batches = {
                split: Batches(tokens, block, eval_plan, dist.rank, "random", eval_seed, device)
                for split, tokens in (("train", train_tokens), ("val", val_tokens))
            }
            self.tokens_per_step = plan.global_rows * block

        self.optimizer = build_adamw(
            self.raw_model, config.lr, config.weight_decay, (config.beta1, config.beta2), device=torch.device(device)
        )
        self.schedule = build_schedule(config.schedule, config.lr, config.warmup_steps, config.cosine_end, config.floor_lr)
        dtype = self._training_dtype(config, device)
        if dtype != config.dtype:  # measured: checkpoints keep the choice, so a resumed run trains the same way
            self.config = config = config.replace(dtype=dtype)
        self.precision = Precision(dtype, device)
        model = distributed.wrap(self.raw_model, dist, device)
        if config.compile and torch.device(device).type == "cpu" and self.precision.dtype is not None:
            # a compiled graph cannot time anything: one eager step first makes the choices the eager model
            # measures here (the precision of attention), which the graph then reads
            batch = self.train_batches.get(0, 0)
            untouched_cpu_step(lambda: self.objective.loss(self.raw_model, batch), self.raw_model, self.precision.dtype)
        self.model = torch.compile(model) if config.compile else model  # compile after DDP wraps

        self.step = 0
        self.best_val_loss: float | None = None
        self.tokens_seen = 0
        self.elapsed_s = 0.0
        self._saved: tuple[int, Path | None] | None = None  # (step, directory) of the last checkpoint

    def _training_dtype(self, config: TrainConfig, device: str) -> str:
        """``config.dtype``, with ``auto`` on a bf16-capable CPU settled by timing a step both ways.

        Not under torchrun: every rank must train in the same precision, and each would measure alone.
        """
        if config.dtype != "auto" or device != "cpu" or self.dist.enabled or not cpu_has_fast_bf16():
            return config.dtype
        batch = self.train_batches.get(0, 0)
        shape = getattr(self.raw_model, "config", None)
        # "attention=measured": decisions kept before the bf16 step measured its attention's precision too
        # (bf16 attention alone made it slow on CPUs) are not reused
        key = f"model={shape!r} batch={_batch_shape(batch)} attention=measured"
        return measured_cpu_dtype(lambda: self.objective.loss(self.raw_model, batch), self.raw_model, key)

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int) -> torch.Tensor:
        """One optimizer step; returns its loss, the count-weighted mean of the micro-batches' (no GPU sync).

        Each micro-batch's mean loss is scaled by ``count / total`` (its share of the step's items)
        before its backward, so the accumulated gradient is that of the whole step's mean loss, also
        when the micro-batches hold different numbers of items (masked fine-tuning batches). With
        equal counts (token windows) ``total / count`` is exactly ``grad_accum``.
        """
        threads.follow()  # inside following_free_cores: a clock read, and a new count when a second has passed
        lr = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum, scaler = self.config.grad_accum, self.precision.scaler
        micro_batches = [self.train_batches.get(step, micro) for micro in range(accum)]
        counts = [self.objective.count(batch) for batch in micro_batches]
        items = sum(counts)
        total = torch.zeros((), device=self.device)
        for micro, (batch, count) in enumerate(zip(micro_batches, counts)):
            last = micro == accum - 1
            # DDP would average gradients after every backward; only the last one needs it.
            no_sync = self.model.no_sync() if self.dist.enabled and not last else contextlib.nullcontext()
            with no_sync:
                with self.precision.autocast:
                    loss = self.objective.loss(self.model, batch) / (items / count)
                scaler.scale(loss).backward()
            total += loss.detach()
        if self.config.grad_clip > 0:
            scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.config.grad_clip)
        scaler.step(self.optimizer)
        scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    @torch.no_grad()
    def estimate_loss(self, split: str) -> float:
        """Mean loss over ``eval_batches`` fixed batches of ``split`` (dropout off), batches weighted by count."""
        self.raw_model.eval()
        n = self.config.eval_batches
        losses = torch.zeros(n, device=self.device)
        counts = torch.zeros(n, dtype=torch.float64)
        for k in range(n):
            batch = self.eval_batches[split].get(k)
            counts[k] = self.objective.count(batch)
            with self.precision.autocast:
                losses[k] = self.objective.loss(self.raw_model, batch).float()
        self.raw_model.train()
        weights = (counts * n / counts.sum()).float().to(self.device)  # all 1.0 exactly when the counts are equal
        return float(distributed.mean_across((losses * weights).mean(), self.dist))

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> ckpt.TrainerState:
        return ckpt.TrainerState(self.step, self.best_val_loss, self.tokens_seen, self.elapsed_s,
                                 settings=self.config.to_dict())

    def save_checkpoint(self) -> Path | None:
        """The checkpoint of the current step (written once: Ctrl-C right after a save reuses it)."""
        if self.out_dir is None:
            return None
        if self._saved is None or self._saved[0] != self.step:
            path = ckpt.save_distributed(self.out_dir / "checkpoints", self.raw_model, self.optimizer, self.state(),
                                         self.dist, keep=self.config.keep_checkpoints)
            self._saved = (self.step, path)
        return self._saved[1]

    def resume(self, directory: str | Path) -> None:
        """Continue from a checkpoint: weights, optimizer, counters and random streams."""
        state = ckpt.resume_distributed(Path(directory), self.raw_model, self.optimizer, self.dist, self.config.seed)
        self.step, self.best_val_loss = state.step, state.best_val_loss
        self.tokens_seen, self.elapsed_s = state.tokens_seen, state.elapsed_s
        self._saved = (self.step, Path(directory))

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Train up to ``max_steps``; Ctrl-C stops after the step under way, with a checkpoint.

        That checkpoint (single-process runs with an ``out_dir``) resumes exactly like any other;
        :class:`TrainingInterrupted` then says where it is. Under ``torchrun`` a Ctrl-C stops
        every process at once (the launcher's doing): resume from the last regular checkpoint.
        """
        log = RunLog(self.config, self.out_dir, self.step, is_main=self.dist.is_main, quiet=self.quiet,
                     sampler=self.sampler)
        with log, StopBetweenSteps(enabled=not self.dist.enabled) as stop, self.following_free_cores():
            try:
                return self._loop(log, stop)
            except KeyboardInterrupt:
                if self.dist.enabled or stop.forced:  # mid-step: the state is not one of a whole step
                    raise
                raise TrainingInterrupted(self.step, self.save_checkpoint()) from None

    def following_free_cores(self) -> contextlib.AbstractContextManager:
        """On a CPU, train on as many threads as other programs leave free, re-measured every second.

        Why: two threads on two cores, one of them busy with another program, wait for each other at
        every barrier of every product. With one core kept busy, nanoGPT's CPU config took 78-119 ms a
        step in fromzero with 2 threads fixed, and 37-40 ms following the free cores (AMD EPYC,
        benchmarks/RESULTS.md). Not under torchrun (each process has its own share) nor with
        ``--threads``. The thread count changes the last bits of a backward's sums, so runs whose
        counts differed agree to rounding, not bit for bit: fix the count (``--threads N`` or
        ``FROMZERO_THREADS=N``) for bit-identical repeats.
        """
        return threads.following(self.device) if self.follows_free_cores else contextlib.nullcontext()

    @property
    def follows_free_cores(self) -> bool:
        """Whether :meth:`following_free_cores` lets the free cores set the thread count."""
        return not (self.dist.enabled or self.config.threads)

    def _loop(self, log: RunLog, stop: StopBetweenSteps) -> TrainResult:
        config = self.config
        model_shape = getattr(self.raw_model, "config", None)
        flops = flops_per_token(sum(p.numel() for p in self.raw_model.parameters()),
                                getattr(model_shape, "n_layer", 0), getattr(model_shape, "n_embd", 0),
                                config.block_size)
        peak = peak_flops(self.device, self.precision.dtype) if log.active else None
        speed = Speedometer(self.tokens_per_step, flops, peak)
        train_loss = val_loss = None
        self.raw_model.train()

        while self.step < config.max_steps:
            stop.check()
            loss = self.train_step(self.step)
            self.step += 1
            self.tokens_seen += self.tokens_per_step
            speed.step()
            log.advance()
            last = self.step == config.max_steps

            if self.step % config.log_interval == 0 or last:
                loss_value = float(distributed.mean_across(loss, self.dist))
                self._check_finite(loss_value)
                seconds, tokens_per_s, mfu = speed.read()
                self.elapsed_s += seconds
                record = {"step": self.step, "loss": loss_value, "lr": self.schedule(self.step - 1),
                          "tokens_per_s": tokens_per_s, "tokens": self.tokens_seen,
                          "elapsed_s": round(self.elapsed_s, 3)}
                if mfu is not None:
                    record["mfu"] = mfu
                log.train(record)

            if self.step % config.eval_interval == 0 or last:
                speed.pause()  # evaluation time is not training speed
                train_loss, val_loss = self.estimate_loss("train"), self.estimate_loss("val")
                self._check_finite(val_loss)
                best = self.best_val_loss is None or val_loss < self.best_val_loss
                if best:
                    self.best_val_loss = val_loss
                extra = self.on_eval(self.raw_model) if self.on_eval is not None else {}
                log.evaluation(self.step, train_loss, val_loss, best, extra)
                if best and self.on_best is not None and self.dist.is_main:
                    self.on_best(self.raw_model)
                log.sample(self.raw_model)
                speed.resume()

            if self.step % config.save_every == 0 or last:
                speed.pause()
                self.save_checkpoint()
                speed.resume()

        return TrainResult(self.step, train_loss, val_loss, self.best_val_loss, self.tokens_seen, self.elapsed_s)

    def _check_finite(self, value: float) -> None:
        if not math.isfinite(value):
            where = f"; the last good checkpoint is in {self.out_dir / 'checkpoints'}" if self.out_dir else ""
            raise LossNotFiniteError(
                f"the loss became {value} at step {self.step}: training diverged. Lower --lr "
                f"(now {self.config.lr:g}), raise --warmup-steps or keep --grad-clip on{where}"
            )


class StopBetweenSteps:
    """Makes Ctrl-C (SIGINT) take effect between two steps, where the state is that of whole steps.

    A step cut in the middle has drawn random numbers and may have updated some of the weights
    but not others; the checkpoint written after it would not resume exactly. So the first
    Ctrl-C only asks to stop and :meth:`check` raises ``KeyboardInterrupt`` before the next step;
    a second one stops at once (``forced``). Python lets only the main thread handle signals;
    elsewhere, or with ``enabled`` False, Ctrl-C keeps its usual meaning.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = self.forced = False
        self._previous: Any = None

    def __enter__(self) -> StopBetweenSteps:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


def _batch_shape(batch: Any) -> str:
    """The shapes of a batch's tensors, however it is nested: what a timing depends on."""
    if isinstance(batch, torch.Tensor):
        return "x".join(map(str, batch.shape))
    if isinstance(batch, dict):
        return "{" + ",".join(f"{k}:{_batch_shape(v)}" for k, v in batch.items()) + "}"
    if isinstance(batch, (tuple, list)):
        return "(" + ",".join(_batch_shape(item) for item in batch) + ")"
    return type(batch).__name__
