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

from fromzero.training.batches import BatchPlan, Batches
from fromzero.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from fromzero.training.config import TrainConfig, read_recipe
from fromzero.training.schedule import CosineSchedule
from fromzero.training.shards import TokenShards, load_shards, write_shards
from fromzero.training.trainer import LossNotFiniteError, Trainer, TrainResult

__all__ = [
    "BatchPlan",
    "Batches",
    "CosineSchedule",
    "LossNotFiniteError",
    "TokenShards",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "latest_checkpoint",
    "load_checkpoint",
    "load_shards",
    "read_recipe",
    "save_checkpoint",
    "write_shards",
]
