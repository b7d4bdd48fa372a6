"""Batches of whole examples (instructions, preference pairs, sentence pairs), epoch after epoch.

Token windows (:mod:`~fromzero.training.batches`) can start anywhere; examples cannot be cut, so
these batches walk through a list of them in a shuffled order, one epoch after another, and a
``collate`` function pads each batch. Like the windows, a batch is a pure function of the step, so
a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch


class EpochBatches:
    """The micro-batches of ``items``, epoch after epoch, each epoch in its own seeded order.

    Like the pretraining batches, a pure function of the step: item ``i`` of the run is item
    ``i % n`` of the order of epoch ``i // n``, so resuming at step ``s`` needs no saved state.
    """

    def __init__(self, items: Sequence, batch_size: int, grad_accum: int, seed: int,
                 collate: Callable[[list], dict], device: str):
        self.items, self.batch_size, self.rows = items, batch_size, batch_size * grad_accum
        self.seed, self.collate, self.device = seed, collate, device
        self._order: tuple[int, list[int]] | None = None

    def steps(self, epochs: int) -> int:
        """Optimizer steps for ``epochs`` passes (the last step may reach into the next epoch's order)."""
        return math.ceil(epochs * len(self.items) / self.rows)

    def _item(self, index: int):
        epoch, position = divmod(index, len(self.items))
        if self._order is None or self._order[0] != epoch:
            order = torch.randperm(len(self.items), generator=torch.Generator().manual_seed(self.seed + epoch))
            self._order = (epoch, order.tolist())
        return self.items[self._order[1][position]]

    def get(self, step: int, micro: int = 0) -> dict:
        first = step * self.rows + micro * self.batch_size
        return to_device(self.collate([self._item(first + i) for i in range(self.batch_size)]), self.device)


class FixedBatches:
    """Evaluation batches: ``items`` in order, ``batch_size`` at a time (``get(k)`` wraps around)."""

    def __init__(self, items: Sequence, batch_size: int, collate: Callable[[list], dict], device: str):
        self.items, self.batch_size, self.collate, self.device = items, batch_size, collate, device
        self.count = math.ceil(len(items) / batch_size)

    def get(self, step: int, micro: int = 0) -> dict:
        k = step % self.count
        return to_device(self.collate(list(self.items[k * self.batch_size:(k + 1) * self.batch_size])), self.device)


def to_device(batch: dict, device: str) -> dict:
    return {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
