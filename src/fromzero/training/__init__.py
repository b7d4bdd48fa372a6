"""Pretraining: the training loop, checkpoints, metrics, torchrun scale-out.

Modules, in the order a run uses them (the token shards it reads are made by
:mod:`fromzero.data.shards`):

- :mod:`~fromzero.training.config`      every setting of a run (:mod:`~fromzero.training.recipe`: from a file)
- :mod:`~fromzero.training.batches`     random or sequential windows, a pure function of the step
- :mod:`~fromzero.training.example_batches` whole examples (instructions, pairs), epoch after epoch
- :mod:`~fromzero.training.schedule`    linear warmup + cosine decay to a floor (or the Transformer's Noam)
- :mod:`~fromzero.training.optim`       AdamW with decay / no-decay parameter groups
- :mod:`~fromzero.training.precision`   bf16/fp16 autocast and fp16 loss scaling
- :mod:`~fromzero.training.trainer`     the loop: accumulation, clipping, eval, Ctrl-C
- :mod:`~fromzero.training.checkpoint`  exact-resume checkpoints, atomic and verified
- :mod:`~fromzero.training.runlog`      progress bar, metrics.jsonl, loss.png, TensorBoard, samples
- :mod:`~fromzero.training.metrics`     tokens per second and MFU
- :mod:`~fromzero.training.distributed` DDP under ``torchrun`` (single- and multi-node)
- :mod:`~fromzero.training.run`         the whole job behind ``fromzero train``
"""

from fromzero.lazy import lazy_exports

# Imported on first use (see fromzero.lazy), so `fromzero --help` does not pay for torch.
_EXPORTS = {
    "BatchPlan": "batches",
    "Batches": "batches",
    "CosineSchedule": "schedule",
    "EpochBatches": "example_batches",
    "FixedBatches": "example_batches",
    "LossNotFiniteError": "trainer",
    "NoamSchedule": "schedule",
    "TrainConfig": "config",
    "TrainResult": "trainer",
    "Trainer": "trainer",
    "TrainingInterrupted": "trainer",
    "latest_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_recipe": "recipe",
    "save_checkpoint": "checkpoint",
    "train": "run",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
