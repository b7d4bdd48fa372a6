"""Data parallelism with PyTorch's own DDP, started by ``torchrun``.

The same ``fromzero train`` command runs on one process or many. ``torchrun`` starts N copies
and tells each its place through environment variables (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``). Every copy holds the whole model, processes its
own slice of each global batch, and DDP averages the gradients across copies during
``backward()``, so all copies take the identical optimizer step. Rank 0 alone writes files.

One machine, 4 GPUs (nccl) or 4 CPU processes (gloo)::

    torchrun --standalone --nproc_per_node=4 -m fromzero train --batch-size 16

Several machines: run the same command on every node, naming the node's rank and the address of
node 0 (any free port); ``--batch-size`` stays the per-process micro-batch, so the global batch is
``batch_size * grad_accum * nnodes * nproc_per_node``::

    # on node 0 (address 10.0.0.1) and node 1, each with 8 GPUs
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 \\
             --master_addr=10.0.0.1 --master_port=29500 -m fromzero train ...
    torchrun --nnodes=2 --node_rank=1 --nproc_per_node=8 \\
             --master_addr=10.0.0.1 --master_port=29500 -m fromzero train ...

(Without InfiniBand, set ``NCCL_IB_DISABLE=1``.) The output directory must be on storage that
node 0 can write; the other nodes read the data, which must exist at the same path on each, and
with ``--resume`` every node also reads the checkpoint: use shared storage, or copy the output
directory to every node before resuming.

Leaving: :func:`teardown` must really end the process group, so that gloo's threads stop while
Python is still running. A gloo worker frees a finished barrier when it gets round to it; the
barrier holds the collectives before it (such as the gather of a checkpoint's random states),
whose tensors belong to Python objects, so freeing them takes the GIL. On a loaded machine that
happened during the interpreter's shutdown, where Python ends any thread asking for the GIL; a
thread ended inside a C++ destructor aborts the process ("terminate called without an active
exception", as a core dump showed). Two things kept the group alive past
``destroy_process_group()``: ``torch.distributed.nn.functional``, imported at DDP's first use,
stores the group of that moment as the default argument of its functions (so it is imported
here, before any group exists); and a DDP model holds the group in a reference cycle, which
:func:`teardown` collects first.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

if dist.is_available():  # builds without distributed support have no torch.distributed.nn
    import torch.distributed.nn  # noqa: F401  (before init_process_group: see above)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: str) -> tuple[Distributed, str]:
    """Join the process group when started by torchrun; return the layout and this rank's device.

    On CUDA each process drives the GPU with its local rank and talks over nccl; on CPU the
    processes talk over gloo.
    """
    if not launched_by_torchrun():
        return Distributed(), device
    info = Distributed(
        rank=int(os.environ["RANK"]),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ["WORLD_SIZE"]),
    )
    if device.startswith("cuda"):
        device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return info, device


def wrap(model: torch.nn.Module, info: Distributed, device: str) -> torch.nn.Module:
    """Wrap in DDP when running on several processes; otherwise return the model unchanged."""
    if not info.enabled:
        return model
    device_ids = [info.local_rank] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=device_ids)


def mean_across(value: torch.Tensor, info: Distributed) -> torch.Tensor:
    """Average a tensor over all processes (a no-op on one)."""
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= info.world_size
    return value


def gather_to_main(obj: Any, info: Distributed) -> list[Any] | None:
    """Every rank's ``obj`` (picklable), in rank order, on rank 0; None on the other ranks."""
    if not info.enabled:
        return [obj]
    gathered = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def barrier(info: Distributed) -> None:
    if info.enabled:
        dist.barrier()


def teardown(info: Distributed) -> None:
    """End the process group and its threads; call it when the run's models are gone."""
    if info.enabled and dist.is_initialized():
        gc.collect()  # a DDP model waiting in a reference cycle still holds the group
        dist.destroy_process_group()
