"""``--tensorboard``: the scalars TensorBoard reads back, logs closed after an error or a resume,
and a one-line error when the package is missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fromzero.cli import main
from fromzero.models import GPT, GPTConfig
from fromzero.training import runlog
from fromzero.training.config import TrainConfig
from fromzero.training.trainer import Trainer

TINY = ["--preset", "tiny", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "32",
        "--batch-size", "4", "--eval-batches", "1", "--sample-tokens", "0", "--threads", "1",
        "--dtype", "float32", "--quiet"]
TRAIN_TAGS = ["train/loss", "train/lr", "train/tokens_per_s"]
EVAL_TAGS = ["eval/train_loss", "eval/val_loss"]


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in ``log_dir`` as TensorBoard itself reads it: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def tiny_trainer(out: Path, **settings) -> Trainer:
    """A one-layer GPT on a repeating sequence of 16 token ids, logging to TensorBoard."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=16, n_layer=1, n_embd=16, n_head=2, block_size=16))
    tokens = (np.arange(2000) % 16).astype(np.uint16)
    config = TrainConfig(batch_size=4, block_size=16, lr=1e-2, warmup_steps=2, eval_batches=1, sample_tokens=0,
                         dtype="float32", tensorboard=True, **settings)
    return Trainer(model, config, tokens[:1800], tokens[1800:], out_dir=out, quiet=True)


def test_train_logs_loss_lr_and_speed_that_tensorboard_reads_back(word_corpus, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(word_corpus), *TINY, "--max-steps", "6", "--log-interval", "2",
                 "--eval-interval", "3", "--tensorboard", "--out", str(out)]) == 0
    series = scalars(out / "tensorboard")
    assert sorted(series) == sorted(TRAIN_TAGS + EVAL_TAGS)
    for tag in TRAIN_TAGS:
        assert [step for step, _ in series[tag]] == [2, 4, 6], tag
    for tag in EVAL_TAGS:
        assert [step for step, _ in series[tag]] == [3, 6], tag
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss" in r]
    assert [v for _, v in series["train/loss"]] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    assert [v for _, v in series["train/lr"]] == pytest.approx([r["lr"] for r in logged], rel=1e-6)
    assert all(v > 0 for _, v in series["train/tokens_per_s"])
    evals = [r for r in records if "val_loss" in r]
    assert [v for _, v in series["eval/val_loss"]] == pytest.approx([r["val_loss"] for r in evals], rel=1e-6)


def test_a_run_stopped_by_an_error_still_flushes_and_closes_its_logs(tmp_path, monkeypatch):
    writers, real_writer = [], runlog.tensorboard_writer

    def recording_writer(*args, **kwargs):
        writers.append(real_writer(*args, **kwargs))
        return writers[-1]

    def full_disk(model):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runlog, "tensorboard_writer", recording_writer)
    trainer = tiny_trainer(tmp_path, max_steps=20, log_interval=2, eval_interval=4)
    trainer.on_best = full_disk  # saving the best model at the first evaluation fails
    with pytest.raises(OSError, match="No space left"):
        trainer.fit()
    series = scalars(tmp_path / "tensorboard")  # 8 scalars: fewer than the writer queues unflushed
    assert [step for step, _ in series["train/loss"]] == [2, 4]
    assert [step for step, _ in series["eval/val_loss"]] == [4]
    assert writers[0].all_writers is None  # closed (SummaryWriter.close drops its file writers)


def test_a_resumed_run_hides_what_the_killed_run_logged_after_its_checkpoint(tmp_path):
    first = tiny_trainer(tmp_path, max_steps=8, log_interval=1, eval_interval=4, keep_checkpoints=2)
    first.fit()  # as if killed after step 8, with the checkpoint of step 4 the last one kept
    second = tiny_trainer(tmp_path, max_steps=8, log_interval=1, eval_interval=4)
    second.resume(tmp_path / "checkpoints" / "step-0000004")
    second.fit()
    series = scalars(tmp_path / "tensorboard")
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert [step for step, _ in series["train/loss"]] == list(range(1, 9))  # each step once
    assert [step for step, _ in series["eval/val_loss"]] == [4, 8]


def test_tensorboard_asked_for_but_missing_is_a_one_line_error(word_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` now fails
    out = tmp_path / "run"
    assert main(["train", "--data", str(word_corpus), *TINY, "--max-steps", "2", "--tensorboard",
                 "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "--tensorboard needs the tensorboard package" in error and "pip install tensorboard" in error
    assert len(error.splitlines()) == 1
    assert not out.exists()  # the run stopped before training and left nothing behind
