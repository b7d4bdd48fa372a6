"""Exact resume under DDP: two gloo processes with dropout, stopped and resumed, end bitwise where
an uninterrupted two-process run ends (every rank's random generators are in the checkpoint); the
per-rank states, old checkpoints and another number of processes, checked in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fromzero.errors import CorruptFileError
from fromzero.models import GPT, GPTConfig
from fromzero.training import checkpoint as ckpt
from fromzero.training.config import TrainConfig
from fromzero.training.distributed import Distributed
from fromzero.training.trainer import Trainer

# A tiny GPT with dropout (so every rank draws random numbers) on one thread per process, so
# every run does bitwise the same arithmetic; --decay-steps keeps the cosine of the stopped run.
TINY = ["--preset", "tiny", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "32",
        "--batch-size", "4", "--eval-batches", "1", "--sample-tokens", "0", "--threads", "1",
        "--dtype", "float32", "--dropout", "0.2", "--decay-steps", "12", "--eval-interval", "3",
        "--log-interval", "1", "--quiet"]


def torchrun_train(*args: str) -> None:
    """``fromzero train`` in two gloo processes started by torchrun."""
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "fromzero", "train", *args],
        check=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def losses(out: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def test_ddp_run_stopped_and_resumed_ends_bitwise_like_an_uninterrupted_one(word_corpus, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    torchrun_train("--data", str(word_corpus), *TINY, "--max-steps", "12", "--out", str(whole))
    torchrun_train("--data", str(word_corpus), *TINY, "--max-steps", "5", "--out", str(cut))
    # without --quiet: the progress bar's MFU measurement must not shift rank 0's random streams
    torchrun_train("--resume", "--max-steps", "12", "--out", str(cut))
    assert json.loads((cut / "checkpoints" / "latest.json").read_text())["step"] == 12
    assert losses(whole) == losses(cut)
    assert (whole / "model.safetensors").read_bytes() == (cut / "model.safetensors").read_bytes()


# ---------------------------------------------------------------- the per-rank states, in one process
def tiny_trainer(out: Path | None = None) -> Trainer:
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=16, n_layer=1, n_embd=16, n_head=2, block_size=16))
    tokens = (np.arange(2000) % 16).astype(np.uint16)
    config = TrainConfig(batch_size=4, block_size=16, max_steps=3, eval_interval=3, eval_batches=1,
                         sample_tokens=0, dtype="float32", seed=5)
    return Trainer(model, config, tokens[:1800], tokens[1800:], out_dir=out, quiet=True)


def rng_of_seed(seed: int) -> dict:
    torch.manual_seed(seed)
    return ckpt.rng_states()


@pytest.fixture
def two_rank_checkpoint(tmp_path) -> Path:
    """A step-3 checkpoint holding the states of two ranks: torch seeded 10 on rank 0, 11 on rank 1."""
    trainer = tiny_trainer(tmp_path)
    trainer.fit()
    return ckpt.save_checkpoint(tmp_path / "two", trainer.raw_model, trainer.optimizer, trainer.state(),
                                rng=[rng_of_seed(10), rng_of_seed(11)])


def test_each_rank_restores_its_own_generator_states(two_rank_checkpoint, capsys):
    _, rng = ckpt.load_checkpoint(two_rank_checkpoint, tiny_trainer().raw_model)
    assert [r["torch"] for r in rng] == [rng_of_seed(10)["torch"], rng_of_seed(11)["torch"]]
    trainer = tiny_trainer()
    trainer.dist = Distributed(rank=1, world_size=2)  # what rank 1 of a two-process run does on resume
    trainer.resume(two_rank_checkpoint)
    assert torch.equal(torch.get_rng_state(), torch.tensor(rng_of_seed(11)["torch"], dtype=torch.uint8))
    assert capsys.readouterr().err == ""


def test_resuming_with_fewer_processes_warns_that_the_run_is_no_longer_exact(two_rank_checkpoint, capsys):
    trainer = tiny_trainer()
    trainer.resume(two_rank_checkpoint)
    assert trainer.step == 3
    assert torch.equal(torch.get_rng_state(), torch.tensor(rng_of_seed(10)["torch"], dtype=torch.uint8))
    warning = " ".join(capsys.readouterr().err.split())
    assert "random-generator states of 2 process(es), this run has 1: it will not continue exactly" in warning


def test_a_checkpoint_from_before_per_rank_states_resumes_rank_0_exactly_and_reseeds_the_rest(tmp_path, capsys):
    trainer = tiny_trainer(tmp_path)
    trainer.fit()
    saved = ckpt.latest_checkpoint(tmp_path / "checkpoints")
    record = json.loads((saved / ckpt.TRAINER_FILE).read_text())
    record["rng"] = record["rng"][0]  # older versions stored rank 0's states as one bare object
    (saved / ckpt.TRAINER_FILE).write_text(json.dumps(record))

    single = tiny_trainer()
    single.resume(saved)
    assert torch.equal(torch.get_rng_state(), torch.tensor(record["rng"]["torch"], dtype=torch.uint8))
    assert capsys.readouterr().err == ""  # one process, one state: exact, no warning

    second_rank = tiny_trainer()
    second_rank.dist = Distributed(rank=1, world_size=2)
    second_rank.resume(saved)
    resumed = torch.get_rng_state()
    fresh_start = rng_of_seed(5 + 1 + 1000 * 3)  # the documented fallback: seed + rank + 1000 * step
    assert torch.equal(resumed, torch.tensor(fresh_start["torch"], dtype=torch.uint8))


def test_invalid_generator_states_are_reported_as_a_corrupt_file(two_rank_checkpoint):
    record = json.loads((two_rank_checkpoint / ckpt.TRAINER_FILE).read_text())
    record["rng"] = [{"torch": []}]
    (two_rank_checkpoint / ckpt.TRAINER_FILE).write_text(json.dumps(record))
    with pytest.raises(CorruptFileError, match="holds no valid random-generator states"):
        ckpt.load_checkpoint(two_rank_checkpoint, tiny_trainer().raw_model)
