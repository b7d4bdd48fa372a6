"""Batches of training windows, computed from the step number alone.

A language model trains on windows of ``block_size + 1`` consecutive tokens: the first
``block_size`` are the input, the same window shifted by one is the target. Two ways to pick them:

- ``random``: every step draws fresh random start positions (like the course and nanoGPT).
  Windows overlap and some text is seen more often than other text, but it needs no bookkeeping.
- ``sequential``: the corpus is cut into non-overlapping windows, shuffled once per epoch,
  and every window is used exactly once per epoch.

Both are *pure functions of the step*: the rows of step ``s`` come from a random generator seeded
with ``(seed, s)``. So resuming at step ``s`` needs no saved data-loader state, gradient
accumulation and data parallelism only decide *who* processes which rows of the same global batch
(``batch_size * grad_accum * world_size`` rows), and two runs with the same seed see the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MODES = ("random", "sequential")


@dataclass(frozen=True)
class BatchPlan:
    """How one optimizer step's global batch is cut into micro-batches per process."""

    batch_size: int  # rows per micro-batch on one process
    grad_accum: int = 1  # micro-batches per step on one process
    world_size: int = 1  # processes

    @property
    def global_rows(self) -> int:
        return self.batch_size * self.grad_accum * self.world_size

    def rows(self, micro: int, rank: int) -> slice:
        """Rows of the global batch that process ``rank`` uses for micro-batch ``micro``.

        Ranks take contiguous blocks, micro-batches stride through each block, so a run with
        ``grad_accum=4, batch_size=8`` sees exactly the rows of ``batch_size=32``.
        """
        per_rank = self.batch_size * self.grad_accum
        start = rank * per_rank + micro * self.batch_size
        return slice(start, start + self.batch_size)


class WindowSampler:
    """Chooses the start position of every window of every step."""

    def __init__(self, n_tokens: int, block_size: int, mode: str = "random", seed: int = 0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.n_tokens = n_tokens
        self.block_size = block_size
        self.mode = mode
        self.seed = seed
        self.n_windows = (n_tokens - 1) // block_size  # non-overlapping windows (sequential mode)
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def starts(self, step: int, rows: int) -> np.ndarray:
        """Start positions of the ``rows`` windows of global step ``step``."""
        if self.mode == "random":
            rng = np.random.default_rng([self.seed, step])
            return rng.integers(0, self.n_tokens - self.block_size, size=rows)
        first = step * rows
        picks = [self._window(first + i) for i in range(rows)]
        return np.asarray(picks, dtype=np.int64) * self.block_size

    def epoch(self, step: int, rows: int) -> float:
        """How many passes over the data the first ``step`` steps make (for logging)."""
        return step * rows * self.block_size / max(1, self.n_tokens)

    def _window(self, index: int) -> int:
        epoch, position = divmod(index, self.n_windows)
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            order = np.random.default_rng([self.seed, 1, epoch]).permutation(self.n_windows)
            self._epoch_order = (epoch, order)
        return int(self._epoch_order[1][position])


def gather(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``x`` and targets ``y`` (int64, shape ``(len(starts), block_size)``)."""
    index = starts[:, None] + np.arange(block_size + 1)
    window = torch.from_numpy(tokens[index].astype(np.int64))
    return window[:, :-1], window[:, 1:]


class Batches:
    """The micro-batches of one split for one process: ``batches.get(step, micro)``."""

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        plan: BatchPlan,
        rank: int = 0,
        mode: str = "random",
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        self.tokens = tokens
        self.block_size = block_size
        self.plan = plan
        self.rank = rank
        self.sampler = WindowSampler(len(tokens), block_size, mode, seed)
        self.device = torch.device(device)
        self._step_starts: tuple[int, np.ndarray] | None = None

    def get(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        if self._step_starts is None or self._step_starts[0] != step:
            self._step_starts = (step, self.sampler.starts(step, self.plan.global_rows))
        starts = self._step_starts[1][self.plan.rows(micro, self.rank)]
        x, y = gather(self.tokens, starts, self.block_size)
        if self.device.type == "cuda":
            return (
                x.pin_memory().to(self.device, non_blocking=True),
                y.pin_memory().to(self.device, non_blocking=True),
            )
        return x.to(self.device), y.to(self.device)
