"""The learning-rate schedule: linear warmup, then cosine decay to a floor.

Early on the weights are random and Adam's moment estimates are poor, so big steps can throw the
model somewhere it never recovers from: warmup raises the rate linearly from almost zero over
``warmup_steps``. Afterwards a cosine curve lowers it smoothly to ``min_lr`` at ``decay_steps``,
which lets the model settle into a minimum instead of bouncing around it. Past ``decay_steps``
the rate stays at the floor. This is the schedule of GPT-2/3 and nanoGPT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CosineSchedule:
    max_lr: float
    warmup_steps: int
    decay_steps: int
    min_lr: float

    def __call__(self, step: int) -> float:
        """The learning rate used by optimizer step ``step`` (counting from 0)."""
        if step < self.warmup_steps:
            return self.max_lr * (step + 1) / (self.warmup_steps + 1)
        if step >= self.decay_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / max(1, self.decay_steps - self.warmup_steps)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.max_lr - self.min_lr)
