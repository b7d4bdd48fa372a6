"""The learning-rate schedule: linear warmup, then cosine decay to a floor.

Early on the weights are random and Adam's moment estimates are poor, so big steps can throw the
model somewhere it never recovers from: warmup raises the rate linearly from almost zero over
``warmup_steps``. Afterwards a cosine curve lowers it smoothly to ``min_lr`` at ``decay_steps``,
which lets the model settle into a minimum instead of bouncing around it. Past ``decay_steps``
the rate stays at the floor. This is the schedule of GPT-2/3 and nanoGPT.

The original Transformer used another one ("Noam", after Noam Shazeer): the same linear warmup, then
a decay with the inverse square root of the step, ``lr = d_model ** -0.5 * min(step ** -0.5, step *
warmup ** -1.5)``. It never reaches a floor, and it needs no decay length: handy when how long to
train is not known in advance. :class:`NoamSchedule` writes it with its peak as the parameter (the
paper's base model: d_model 512, 4000 warmup steps, a peak of 512 ** -0.5 * 4000 ** -0.5 = 7.0e-4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


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


@dataclass(frozen=True)
class NoamSchedule:
    max_lr: float  # reached at the end of the warmup
    warmup_steps: int

    def __call__(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (from 0): ``max_lr * min(n / w, sqrt(w / n))``, n = step + 1."""
        n, warmup = step + 1, max(1, self.warmup_steps)
        return self.max_lr * min(n / warmup, math.sqrt(warmup / n))


SCHEDULES = ("cosine", "noam")


def build_schedule(name: str, max_lr: float, warmup_steps: int, decay_steps: int, min_lr: float
                   ) -> Callable[[int], float]:
    """The schedule called ``name`` (one of :data:`SCHEDULES`); Noam ignores ``decay_steps`` and ``min_lr``."""
    if name == "noam":
        return NoamSchedule(max_lr, warmup_steps)
    return CosineSchedule(max_lr, warmup_steps, decay_steps, min_lr)
