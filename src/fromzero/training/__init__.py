"""Pretraining: token shards on disk, the training loop, checkpoints, metrics, torchrun scale-out.

Modules, in the order a run uses them:

- :mod:`~fromzero.training.shards`      tokenize a corpus once into memory-mapped train/val shards
- :mod:`~fromzero.training.batches`     random or sequential windows, a pure function of the step
- :mod:`~fromzero.training.schedule`    linear warmup + cosine decay to a floor
- :mod:`~fromzero.training.optim`       AdamW with decay / no-decay parameter groups
- :mod:`~fromzero.training.trainer`     the loop: accumulation, clipping, autocast, eval, samples
- :mod:`~fromzero.training.checkpoint`  exact-resume checkpoints, atomic and verified
- :mod:`~fromzero.training.metrics`     metrics.jsonl, loss.png, TensorBoard, MFU
- :mod:`~fromzero.training.distributed` DDP under ``torchrun`` (single- and multi-node)
- :mod:`~fromzero.training.run`         the whole job behind ``fromzero train``
"""

import importlib

# Loaded on first use, so `fromzero --help` does not pay for importing torch.
_EXPORTS = {
    "BatchPlan": "batches",
    "Batches": "batches",
    "CosineSchedule": "schedule",
    "LossNotFiniteError": "trainer",
    "TokenShards": "shards",
    "TrainConfig": "config",
    "TrainResult": "trainer",
    "Trainer": "trainer",
    "latest_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_shards": "shards",
    "read_recipe": "config",
    "save_checkpoint": "checkpoint",
    "train": "run",
    "write_shards": "shards",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fromzero.training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fromzero.training.{_EXPORTS[name]}"), name)
