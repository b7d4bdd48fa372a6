"""Unit tests of the training pieces: schedule, batches, optimizer groups, checkpoints, the loop.

A tiny stand-in language model (embedding -> LayerNorm -> dropout -> linear) keeps these fast;
tests/test_training_cli.py exercises the real GPT through ``fromzero train``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.training import checkpoint as ckpt
from fromzero.training.batches import BatchPlan, Batches, WindowSampler
from fromzero.training.config import TrainConfig
from fromzero.training.optim import parameter_groups
from fromzero.training.recipe import read_recipe
from fromzero.training.schedule import CosineSchedule
from fromzero.training.trainer import LossNotFiniteError, Trainer


@dataclass
class Output:
    logits: torch.Tensor
    loss: torch.Tensor | None


class TinyLM(torch.nn.Module):
    """A bigram-style model: enough to learn a corpus, with dropout to exercise the RNG."""

    def __init__(self, vocab: int = 16, width: int = 24):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.norm = torch.nn.LayerNorm(width)
        self.drop = torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, x, targets=None):
        logits = self.head(self.drop(self.norm(self.embed(x))))
        loss = None
        if targets is not None:
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return Output(logits, loss)


def corpus(n: int = 4000, vocab: int = 16, seed: int = 0) -> np.ndarray:
    """A learnable sequence: each token is mostly (previous + 1) mod vocab."""
    rng = np.random.default_rng(seed)
    ids = np.zeros(n, dtype=np.uint16)
    for i in range(1, n):
        ids[i] = (ids[i - 1] + 1) % vocab if rng.random() < 0.9 else rng.integers(vocab)
    return ids


def config(**overrides) -> TrainConfig:
    base = dict(batch_size=8, block_size=16, max_steps=30, lr=1e-2, warmup_steps=5, eval_interval=10,
                eval_batches=4, log_interval=5, sample_tokens=0, seed=3, dtype="float32")
    base.update(overrides)
    return TrainConfig(**base)


def make_trainer(cfg: TrainConfig, out_dir=None, seed: int = 0) -> Trainer:
    torch.manual_seed(seed)
    data = corpus()
    return Trainer(TinyLM(), cfg, data[:3600], data[3600:], out_dir=out_dir, quiet=True)


# ---------------------------------------------------------------- schedule
def test_schedule_values_at_known_steps():
    s = CosineSchedule(max_lr=1e-3, warmup_steps=100, decay_steps=2000, min_lr=1e-4)
    assert s(0) == pytest.approx(1e-3 / 101)
    assert s(99) == pytest.approx(1e-3 * 100 / 101)
    assert s(100) == pytest.approx(1e-3)  # cosine starts at the top
    assert s(1050) == pytest.approx(1e-4 + 0.5 * 9e-4)  # half way: the mean of max and min
    assert s(2000) == pytest.approx(1e-4)
    assert s(5000) == pytest.approx(1e-4)  # the floor holds afterwards
    lrs = [s(i) for i in range(100, 2001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay


# ---------------------------------------------------------------- batches
def test_random_batches_are_a_function_of_seed_and_step():
    tokens = np.arange(1000, dtype=np.uint16)
    a = Batches(tokens, 8, BatchPlan(4), seed=1)
    b = Batches(tokens, 8, BatchPlan(4), seed=1)
    x1, y1 = a.get(5)
    x2, _ = b.get(5)
    assert torch.equal(x1, x2)
    assert torch.equal(y1[:, :-1], x1[:, 1:])  # targets are inputs shifted by one
    assert not torch.equal(a.get(6)[0], x1)
    assert not torch.equal(Batches(tokens, 8, BatchPlan(4), seed=2).get(5)[0], x1)


def test_accumulation_and_ranks_partition_the_same_global_batch():
    tokens = np.arange(5000, dtype=np.uint16)
    whole = Batches(tokens, 8, BatchPlan(32), seed=0).get(3)[0]
    micro = torch.cat([Batches(tokens, 8, BatchPlan(8, grad_accum=4), seed=0).get(3, m)[0] for m in range(4)])
    assert torch.equal(whole, micro)
    ranks = torch.cat([
        Batches(tokens, 8, BatchPlan(8, grad_accum=2, world_size=2), rank=r, seed=0).get(3, m)[0]
        for r in range(2) for m in range(2)
    ])
    assert torch.equal(whole, ranks)


def test_sequential_mode_visits_every_window_once_per_epoch():
    sampler = WindowSampler(n_tokens=101, block_size=10, mode="sequential", seed=0)
    assert sampler.n_windows == 10
    epoch0 = np.concatenate([sampler.starts(step, 5) for step in range(2)])
    epoch1 = np.concatenate([sampler.starts(step, 5) for step in range(2, 4)])
    assert sorted(epoch0) == list(range(0, 100, 10))
    assert sorted(epoch1) == list(range(0, 100, 10))
    assert list(epoch0) != list(epoch1)  # reshuffled every epoch


# ---------------------------------------------------------------- optimizer
def test_parameter_groups_decay_only_matrices():
    model = TinyLM()
    decay, no_decay = parameter_groups(model, 0.1)
    assert {p.dim() for p in decay["params"]} == {2}
    assert {p.dim() for p in no_decay["params"]} == {1}
    assert no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


# ---------------------------------------------------------------- the loop
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loss_decreases_on_a_tiny_corpus(dtype):
    trainer = make_trainer(config(max_steps=60, eval_interval=60, dtype=dtype))
    before = trainer.estimate_loss("val")
    result = trainer.fit()
    assert result.val_loss < before - 1.0, (before, result.val_loss)
    assert result.step == 60


def test_gradient_accumulation_4x8_equals_batch_32():
    big = make_trainer(config(batch_size=32, grad_accum=1, max_steps=5))
    small = make_trainer(config(batch_size=8, grad_accum=4, max_steps=5))
    big.raw_model.drop.p = small.raw_model.drop.p = 0.0  # dropout masks differ by batch shape
    big.fit()
    small.fit()
    for a, b in zip(big.raw_model.parameters(), small.raw_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_nan_loss_stops_with_a_clear_message():
    trainer = make_trainer(config(lr=1e-2, max_steps=10, log_interval=1))
    with torch.no_grad():
        trainer.raw_model.head.weight.fill_(float("nan"))
    with pytest.raises(LossNotFiniteError, match="loss became nan at step 1"):
        trainer.fit()


def test_run_writes_metrics_plot_and_checkpoint(tmp_path):
    trainer = make_trainer(config(max_steps=20), out_dir=tmp_path)
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [10, 20]
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "step-0000020"
    assert not (tmp_path / "checkpoints" / "step-0000010").exists()  # keep_checkpoints=1


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_restores_model_optimizer_and_rng(tmp_path):
    trainer = make_trainer(config(max_steps=7), out_dir=tmp_path)
    trainer.fit()
    saved = ckpt.latest_checkpoint(tmp_path / "checkpoints")
    torch.manual_seed(123)
    expected_rng = torch.get_rng_state()
    ckpt.save_checkpoint(tmp_path / "again", trainer.raw_model, trainer.optimizer, trainer.state())
    fresh = make_trainer(config(max_steps=7), seed=99)
    fresh.resume(ckpt.latest_checkpoint(tmp_path / "again"))
    assert fresh.step == 7 and saved.name == "step-0000007"
    assert torch.equal(torch.get_rng_state(), expected_rng)
    for a, b in zip(trainer.raw_model.state_dict().values(), fresh.raw_model.state_dict().values()):
        assert torch.equal(a, b)
    old, new = trainer.optimizer.state_dict(), fresh.optimizer.state_dict()
    assert old["param_groups"] == new["param_groups"]
    for index, state in old["state"].items():
        for key, value in state.items():
            assert torch.equal(value, new["state"][index][key]), key


@pytest.fixture
def saved_checkpoint(tmp_path):
    trainer = make_trainer(config(max_steps=5), out_dir=tmp_path)
    trainer.fit()
    return ckpt.latest_checkpoint(tmp_path / "checkpoints")


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors"])
def test_truncated_checkpoint_file_is_reported(saved_checkpoint, name):
    path = saved_checkpoint / name
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match=f"{name}.*truncated"):
        make_trainer(config()).resume(saved_checkpoint)


def test_corrupt_checkpoint_file_is_reported(saved_checkpoint):
    path = saved_checkpoint / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="SHA-256"):
        make_trainer(config()).resume(saved_checkpoint)


def test_corrupt_or_missing_state_file_is_reported(saved_checkpoint):
    (saved_checkpoint / "trainer.json").write_text('{"step": 5, "fi')
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        make_trainer(config()).resume(saved_checkpoint)
    (saved_checkpoint / "trainer.json").unlink()
    with pytest.raises(MissingFileError):
        make_trainer(config()).resume(saved_checkpoint)


def test_checkpoint_of_another_model_shape_is_refused(saved_checkpoint):
    torch.manual_seed(0)
    other = Trainer(TinyLM(width=32), config(), corpus()[:3600], corpus()[3600:], quiet=True)
    with pytest.raises(InputError, match="shape"):
        other.resume(saved_checkpoint)


# ---------------------------------------------------------------- config
def test_config_rejects_bad_values_and_reads_recipes(tmp_path):
    with pytest.raises(InputError, match="--batch-size"):
        TrainConfig(batch_size=0)
    (tmp_path / "r.toml").write_text('lr = 3e-3\nblock-size = 64\n')
    assert read_recipe(tmp_path / "r.toml") == {"lr": 3e-3, "block_size": 64}
    (tmp_path / "r.yaml").write_text("max_steps: 9\n")
    assert read_recipe(tmp_path / "r.yaml") == {"max_steps": 9}
    (tmp_path / "bad.yaml").write_text("learning_rat: 1\n")
    with pytest.raises(InputError, match="learning_rat"):
        read_recipe(tmp_path / "bad.yaml")


# ---------------------------------------------------------------- shards
def test_shards_round_trip_with_separators_and_split(tmp_path):
    from fromzero.tokenizers import CharTokenizer
    from fromzero.data.shards import load_shards, token_dtype, write_shards

    docs = [f"story {i}: the cat sat." for i in range(20)]
    tok = CharTokenizer.train([*docs, "\n\n\n"])
    shards = write_shards(tok, docs, tmp_path, val_fraction=0.1, seed=0)
    assert shards.dtype == "uint16" and shards.separator == tok.encode("\n\n\n")
    train_text = tok.decode(shards.train.tolist())
    assert train_text.count("\n\n\n") == 18 and train_text.endswith("\n\n\n")
    assert tok.decode(shards.val.tolist()).count("story") == 2
    again = load_shards(tmp_path)
    assert np.array_equal(again.train, shards.train) and again.tokenizer_id == shards.tokenizer_id
    assert token_dtype(50257) == np.uint16 and token_dtype(100277) == np.uint32


def test_several_sources_each_hold_out_what_they_would_hold_out_alone(tmp_path):
    from fromzero.data.loading import DOCUMENT_SEPARATOR
    from fromzero.data.prepare import prepare
    from fromzero.data.split import train_val_documents

    stories = [f"story {i}: the cat sat." for i in range(30)]
    answers = [f"answer {i}: water is wet." for i in range(12)]
    for name, docs in (("stories", stories), ("answers", answers)):
        (tmp_path / f"{name}.txt").write_text(DOCUMENT_SEPARATOR.join(docs), encoding="utf-8")
    shards = prepare([str(tmp_path / "stories.txt"), str(tmp_path / "answers.txt")], "char", tmp_path / "shards",
                     val_fraction=0.1, seed=3, quiet=True)
    from fromzero.tokenizers import load_tokenizer

    val_text = load_tokenizer(tmp_path / "shards").decode(shards.val.tolist())
    for docs in (stories, answers):
        _, alone = train_val_documents(docs, 0.1, 3)
        assert all(doc in val_text for doc in alone)
        assert sum(doc in val_text for doc in docs) == len(alone)


def test_shards_made_again_keep_the_old_ones_when_tokenizing_fails(tmp_path):
    from fromzero.tokenizers import CharTokenizer
    from fromzero.data.shards import is_shard_dir, load_shards, write_shards
    from fromzero.data.split import train_val_documents as split_documents

    docs = [f"story {chr(ord('A') + i)}: the cat sat." for i in range(20)]  # one capital letter each
    old = write_shards(CharTokenizer.train([*docs, "\n\n\n"]), docs, tmp_path)
    # a tokenizer that knows only the training stories' characters fails on the validation ones,
    # after the training split was tokenized
    train_docs, _ = split_documents(docs, 0.1, 0)
    with pytest.raises(InputError, match="not in the vocabulary"):
        write_shards(CharTokenizer.train([*train_docs, "\n\n\n"]), docs, tmp_path)
    assert is_shard_dir(tmp_path)
    again = load_shards(tmp_path)
    assert np.array_equal(again.train, old.train) and np.array_equal(again.val, old.val)


def test_truncated_shard_file_is_reported(tmp_path):
    from fromzero.tokenizers import CharTokenizer
    from fromzero.data.shards import load_shards, write_shards

    write_shards(CharTokenizer.train("abc\n"), ["abcabc" * 50], tmp_path)
    data = (tmp_path / "train.bin").read_bytes()
    (tmp_path / "train.bin").write_bytes(data[:-3])
    with pytest.raises(CorruptFileError, match="truncated"):
        load_shards(tmp_path)
