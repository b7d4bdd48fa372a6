"""Checkpoints that resume a run exactly, written so a crash can never leave a broken one.

A checkpoint is a directory ``OUT/checkpoints/step-NNNNNNN/`` holding everything the next step
depends on::

    model.safetensors + config.json   the weights (``model.save_pretrained`` output: a model dir)
    optimizer.safetensors             AdamW's tensors (moments, step counts), one entry per param
    optimizer.json                    its scalars and parameter-group layout (lr, betas, decay...)
    trainer.json                      step (also the data position), tokens seen, training time,
                                      best val loss, the run's settings, the random-number-
                                      generator states (torch, numpy, python, CUDA) of every
                                      process and a SHA-256 manifest of the files above

Batches are a pure function of the step (see :mod:`fromzero.training.batches`), so the step *is*
the data position: no data-loader or batch-generator state needs saving. With weights, optimizer,
step and RNG states restored, the resumed run performs the very same floating-point operations as
an uninterrupted one: on CPU the final weights are bitwise identical.

Under DDP every process has its own generators (each draws its own dropout masks). Rank 0 gathers
their states and stores them as a list, entry ``r`` for rank ``r``; on resume each rank restores
its own entry (:func:`save_distributed`, :func:`resume_distributed`). Checkpoints written before
this list existed hold one bare state (rank 0's) and read as a list of one. A run resumed with
another number of processes cannot continue exactly (its global batch changes too).

Atomicity: each file is written to a temporary name and renamed; the directory only counts once
``checkpoints/latest.json`` names it, and that pointer is itself replaced atomically. A run killed
mid-save therefore resumes from the previous checkpoint. Older step directories are then removed.
Loading re-hashes every file against the manifest, so truncation or corruption is reported as a
:class:`~fromzero.errors.CorruptFileError` naming the file, never as a confusing stack trace.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.markup import escape
from safetensors.torch import load_model, save_file, save_model

from fromzero.console import console
from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.files import atomic_path, read_json, write_json
from fromzero.models.pretrained import check_state, read_safetensors, read_state
from fromzero.training import distributed

POINTER = "latest.json"
TRAINER_FILE = "trainer.json"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
WEIGHTS = "model.safetensors"
RNG_KINDS = {"python", "numpy", "torch"}  # always in a rank's RNG states ("cuda" only with a GPU)


@dataclass
class TrainerState:
    """The small, JSON-friendly part of a checkpoint."""

    step: int  # optimizer steps completed; also the data position
    best_val_loss: float | None = None
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    settings: dict = field(default_factory=dict)  # the run's TrainConfig as a dict


# ----------------------------------------------------------------------------- RNG states
def rng_states() -> dict:
    """Every random generator a training step may touch (dropout, sampling, shuffles)."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    states = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_kind, np_keys.tolist(), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        states["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return states


def set_rng_states(states: dict) -> None:
    py_version, py_state, py_gauss = states["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = states["numpy"]
    np.random.set_state((np_kind, np.asarray(np_keys, dtype=np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in states["cuda"]])


# ----------------------------------------------------------------------------- weights
def save_weights(model: torch.nn.Module, directory: Path) -> None:
    """A fromzero GPT writes its Hugging Face-style model dir; other modules their state dict."""
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(directory)
    else:
        with atomic_path(directory / WEIGHTS) as tmp:
            save_model(model, str(tmp))


def load_weights(model: torch.nn.Module, directory: Path) -> None:
    """Copy the weights saved in ``directory`` into ``model`` (names and shapes must match).

    A GPT's file is read as a state dict, with the key conversion ``from_pretrained`` uses, and
    checked by the same rule; no second model is built.
    """
    if not hasattr(model, "save_pretrained"):
        # safetensors' own reader: it knows which names share one tensor (tied tables are stored once)
        try:
            missing, unexpected = load_model(model, str(directory / WEIGHTS), strict=False)
        except RuntimeError as err:  # a shape that does not fit
            raise InputError(f"the checkpoint in {directory} does not fit the model of this run's settings: "
                             f"{str(err).splitlines()[-1].strip()}") from None
        if missing or unexpected:
            raise InputError(f"the checkpoint in {directory} does not fit the model of this run's settings "
                             f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
        return
    state = read_state(directory, model.config)
    check_state(state, model.state_dict(), f"the checkpoint in {directory}",
                expected_by="the model of this run's settings", error=InputError)
    model.load_state_dict(state)


# ----------------------------------------------------------------------------- optimizer
def save_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Tensors to safetensors (``state.<param index>.<name>``); everything else to JSON."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    shapes = [list(p.shape) for group in optimizer.param_groups for p in group["params"]]
    layout = {
        "param_groups": state_dict["param_groups"],
        "param_shapes": shapes,
        "scalars": scalars,
    }
    with atomic_path(directory / OPTIMIZER_TENSORS) as tmp:
        save_file(tensors, str(tmp))
    write_json(directory / OPTIMIZER_JSON, layout)


def load_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    layout = read_json(directory / OPTIMIZER_JSON)
    shapes = [list(p.shape) for group in optimizer.param_groups for p in group["params"]]
    if layout["param_shapes"] != shapes:
        raise InputError(
            f"the optimizer state in {directory} belongs to a model with other parameter shapes"
        )
    tensors = read_safetensors(directory / OPTIMIZER_TENSORS)
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for name, value in layout["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = layout["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ----------------------------------------------------------------------------- whole checkpoints
def save_checkpoint(
    root: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainerState,
    keep: int = 1,
    rng: list[dict] | None = None,
) -> Path:
    """Write ``root/step-NNNNNNN/``, point ``root/latest.json`` at it, prune older ones.

    ``rng`` holds every rank's :func:`rng_states` (rank order); by default this process's alone.
    """
    root = Path(root)
    directory = root / f"step-{state.step:07d}"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    save_weights(model, directory)
    save_optimizer(optimizer, directory)
    manifest = {p.name: _file_digest(p) for p in sorted(directory.iterdir()) if p.is_file()}
    record = {
        "step": state.step,
        "best_val_loss": state.best_val_loss,
        "tokens_seen": state.tokens_seen,
        "elapsed_s": state.elapsed_s,
        "settings": state.settings,
        "rng": rng if rng is not None else [rng_states()],
        "files": manifest,
    }
    write_json(directory / TRAINER_FILE, record, indent=None)
    write_json(root / POINTER, {"step": state.step, "dir": directory.name})
    _prune(root, keep_names={directory.name}, keep=keep)
    return directory


def latest_checkpoint(root: str | Path) -> Path | None:
    """The directory ``latest.json`` points to, or None if no checkpoint was completed."""
    pointer = Path(root) / POINTER
    if not pointer.is_file():
        return None
    return Path(root) / read_json(pointer)["dir"]


def load_checkpoint(
    directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> tuple[TrainerState, list[dict]]:
    """Verify every file, restore weights and optimizer in place; return state and RNG states.

    The RNG states (one entry per rank of the run that saved them) are returned rather than
    applied so the caller restores them last, after anything else (building models, loading
    files) that might consume random numbers.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingFileError(f"checkpoint directory {directory} does not exist")
    state, record = _read_trainer_file(directory)
    try:
        manifest, rng = record["files"], record["rng"]
    except KeyError as err:
        raise CorruptFileError(f"{directory / TRAINER_FILE} lacks a field ({err})") from err
    if isinstance(rng, dict):  # written before every rank's states were saved: rank 0's alone
        rng = [rng]
    if not rng or not all(isinstance(r, dict) and RNG_KINDS <= r.keys() for r in rng):
        raise CorruptFileError(f"{directory / TRAINER_FILE} holds no valid random-generator states")
    for name, expected in manifest.items():
        path = directory / name
        if not path.is_file():
            raise MissingFileError(f"checkpoint file {path} is missing")
        actual = _file_digest(path)
        if actual["bytes"] != expected["bytes"]:
            raise CorruptFileError(
                f"checkpoint file {path} has {actual['bytes']} bytes, expected "
                f"{expected['bytes']}: it is truncated; resume from another checkpoint"
            )
        if actual["sha256"] != expected["sha256"]:
            raise CorruptFileError(f"checkpoint file {path} is corrupt (its SHA-256 does not match)")
    load_weights(model, directory)
    if optimizer is not None:
        load_optimizer(optimizer, directory)
    return state, rng


def saved_state(directory: str | Path) -> TrainerState:
    """The step, counters and run settings of a checkpoint, without loading its tensors."""
    return _read_trainer_file(Path(directory))[0]


# ----------------------------------------------------------------------------- under DDP
def save_distributed(
    root: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainerState,
    dist: distributed.Distributed, keep: int = 1,
) -> Path | None:
    """Every rank calls this: rank 0 writes the checkpoint, with the RNG states of every rank.

    The others wait until it is written, so no rank can run ahead and be killed (or finish) while
    the checkpoint it belongs to is still half-made. Returns the directory on rank 0.
    """
    rng = distributed.gather_to_main(rng_states(), dist)
    path = save_checkpoint(root, model, optimizer, state, keep=keep, rng=rng) if dist.is_main else None
    distributed.barrier(dist)
    return path


def resume_distributed(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    dist: distributed.Distributed, seed: int,
) -> TrainerState:
    """Every rank calls this: restore weights, optimizer and this rank's RNG states.

    With as many processes as the run that saved it, every rank continues its own random
    streams and the run goes on exactly. With another number, ranks without a saved state get
    a reproducible fresh seed (``seed + rank + 1000 * step``) and a warning says the run no
    longer continues exactly.
    """
    state, rng = load_checkpoint(directory, model, optimizer)
    if len(rng) != dist.world_size and dist.is_main:
        console.print(
            f"[yellow]warning:[/] {escape(str(directory))} holds the random-generator states of "
            f"{len(rng)} process(es), this run has {dist.world_size}: it will not continue "
            f"exactly as the saved run would have (ranks without a saved state start fresh random "
            f"streams; another number of processes also changes the global batch)"
        )
    if dist.rank < len(rng):
        set_rng_states(rng[dist.rank])
    else:
        torch.manual_seed(seed + dist.rank + 1000 * state.step)
    return state


# ----------------------------------------------------------------------------- helpers
def _read_trainer_file(directory: Path) -> tuple[TrainerState, dict]:
    """``trainer.json`` as a :class:`TrainerState` and the raw record (for its other fields)."""
    record = read_json(directory / TRAINER_FILE)
    try:
        state = TrainerState(
            step=int(record["step"]),
            best_val_loss=record["best_val_loss"],
            tokens_seen=int(record["tokens_seen"]),
            elapsed_s=float(record["elapsed_s"]),
            settings=dict(record["settings"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CorruptFileError(f"{directory / TRAINER_FILE} lacks a field ({err})") from err
    return state, record


def _file_digest(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _prune(root: Path, keep_names: set[str], keep: int) -> None:
    """Delete all but the newest ``keep`` step directories (always keeping ``keep_names``)."""
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[: max(0, len(steps) - keep)]:
        if old.name not in keep_names:
            shutil.rmtree(old, ignore_errors=True)
