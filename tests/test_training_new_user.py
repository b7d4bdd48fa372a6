"""``fromzero train`` as a careless new user meets it: a finished run resumed, a recipe with a
wrong type, Ctrl-C before the first checkpoint, a folder given as recipe, flags left out, and the
hints the program prints, each run as printed."""

from __future__ import annotations

import json
import os
import shlex
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fromzero.cli import main
from fromzero.models import GPT, GPTConfig
from fromzero.training import checkpoint as ckpt
from fromzero.training import metrics
from fromzero.training import run as run_module
from fromzero.training import trainer as trainer_module
from fromzero.training.config import TrainConfig
from fromzero.training.recipe import read_recipe
from fromzero.training.trainer import Trainer, TrainingInterrupted

SHAPE = ["--preset", "tiny", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "32",
         "--batch-size", "8", "--eval-batches", "2", "--sample-tokens", "0", "--threads", "1", "--dtype", "float32"]
TINY = [*SHAPE, "--quiet"]


def error_of(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def snapshot(directory: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``directory`` (and itself) with its mtime and, for files, its bytes."""
    paths = [directory, *sorted(directory.rglob("*"))]
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in paths}


def latest_step(out: Path) -> int:
    return json.loads((out / "checkpoints" / ckpt.POINTER).read_text())["step"]


# ---------------------------------------------------------------- issue 16.1: resume a finished run
def test_resuming_a_finished_run_says_so_and_touches_nothing(word_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(word_corpus), *TINY, "--max-steps", "2", "--out", str(out)]) == 0
    before = snapshot(out)
    err = error_of(capsys, "train", "--resume", "--out", str(out))
    assert "is finished (2 steps" in err and "--resume --max-steps N with N > 2" in err
    assert snapshot(out) == before
    assert main(["train", "--resume", "--max-steps", "3", "--out", str(out), "--quiet"]) == 0  # the advice works
    assert latest_step(out) == 3


# ---------------------------------------------------------------- issue 16.4: recipe values typed
def test_a_recipe_value_of_the_wrong_type_is_named_with_its_field(tmp_path, capsys):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('max_steps = "twenty"\n')
    err = error_of(capsys, "train", "--config", str(recipe), "--out", str(tmp_path / "o"))
    assert "max_steps must be an integer, got 'twenty'" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text, expected", [
    ("lr: 3e-3\n", {"lr": 0.003}),  # YAML 1.1 reads 3e-3 as text; the flag would read it as a number
    ("lr: 1\nblock_size: null\n", {"lr": 1.0, "block_size": None}),
    ("max_steps: '20'\ncompile: true\n", {"max_steps": 20, "compile": True}),
])
def test_recipe_values_are_read_as_their_fields_take_them(tmp_path, text, expected):
    (tmp_path / "r.yaml").write_text(text)
    assert read_recipe(tmp_path / "r.yaml") == expected


@pytest.mark.parametrize("text, message", [
    ("max_steps: true\n", "max_steps must be an integer, got True"),
    ("compile: 1\n", "compile must be true or false, got 1"),
    ("lr: fast\n", "lr must be a number, got 'fast'"),
    ("data: 3\n", "data must be a string, got 3"),
    ("min_lr: [1]\n", "min_lr must be a number (or null for the default), got [1]"),
])
def test_recipe_values_of_other_types_are_refused(tmp_path, text, message):
    from fromzero.errors import InputError

    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        read_recipe(tmp_path / "r.yaml")


# ---------------------------------------------------------------- issue 16.10: Ctrl-C
def test_ctrl_c_writes_a_checkpoint_that_the_printed_command_resumes_exactly(word_corpus, tmp_path, capsys,
                                                                              monkeypatch):
    args = ["--data", str(word_corpus), *TINY, "--max-steps", "8", "--dropout", "0.1"]  # first checkpoint: step 8
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["train", *args, "--out", str(whole)]) == 0
    real_step = Trainer.train_step

    def ctrl_c_at_step_3(self, step):
        if step == 3:
            raise KeyboardInterrupt
        return real_step(self, step)

    monkeypatch.setattr(Trainer, "train_step", ctrl_c_at_step_3)
    capsys.readouterr()
    assert main(["train", *args, "--out", str(cut)]) == 130
    err = capsys.readouterr().err
    assert "stopped at step 3 of 8; checkpoint saved in" in err
    assert latest_step(cut) == 3 and not (cut / "model.safetensors").exists()

    monkeypatch.setattr(Trainer, "train_step", real_step)  # not undo(): that would drop conftest's pins too
    command = shlex.split(err.split("Continue with: ")[1].splitlines()[0])
    assert command[:3] == ["fromzero", "train", "--resume"]
    assert main(command[1:]) == 0
    assert (whole / "model.safetensors").read_bytes() == (cut / "model.safetensors").read_bytes()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_sigint_takes_effect_when_the_step_under_way_ends(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=16, n_layer=1, n_embd=16, n_head=2, block_size=16))
    tokens = (np.arange(2000) % 16).astype(np.uint16)
    config = TrainConfig(batch_size=4, block_size=16, max_steps=10, eval_interval=10, eval_batches=1,
                         sample_tokens=0, dtype="float32")
    trainer = Trainer(model, config, tokens[:1800], tokens[1800:], out_dir=tmp_path, quiet=True)
    real_step = Trainer.train_step

    def ctrl_c_during_step_3(self, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as the terminal sends it, in the middle of a step
        return real_step(self, step)

    monkeypatch.setattr(Trainer, "train_step", ctrl_c_during_step_3)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as stopped:
        trainer.fit()
    assert stopped.value.step == 4 and stopped.value.checkpoint.name == "step-0000004"
    assert latest_step(tmp_path) == 4
    assert signal.getsignal(signal.SIGINT) is handler  # after the run, Ctrl-C means what it meant before


def test_an_interrupted_start_leaves_nothing_and_the_advice_does_not_go_in_circles(word_corpus, tmp_path,
                                                                                   capsys, monkeypatch):
    out = tmp_path / "out"

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    real_prepare = run_module.prepare
    monkeypatch.setattr(run_module, "prepare", ctrl_c)  # Ctrl-C while the corpus is being tokenized
    assert main(["train", "--data", str(word_corpus), *TINY, "--out", str(out)]) == 130
    assert not out.exists()
    monkeypatch.setattr(run_module, "prepare", real_prepare)  # not undo(): that would drop conftest's pins too
    capsys.readouterr()

    out.mkdir()  # what an older run, killed before its first checkpoint, may have left
    (out / "metrics.jsonl").write_text("")
    without = error_of(capsys, "train", "--data", str(word_corpus), *TINY, "--out", str(out))
    resumed = error_of(capsys, "train", "--resume", "--out", str(out))
    assert "no checkpoint" in without and "--overwrite" in without and "pass --resume" not in without
    assert "no checkpoint" in resumed and "--overwrite" in resumed and "without --resume" not in resumed
    assert main(["train", "--data", str(word_corpus), *TINY, "--max-steps", "2", "--out", str(out),
                 "--overwrite"]) == 0


# ---------------------------------------------------------------- issue 16.16: MFU in the precision used
def test_the_cpu_peak_is_measured_in_the_dtype_asked_for(monkeypatch):
    dtypes, real_mm = [], torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b: dtypes.append(a.dtype) or real_mm(a, b))
    metrics.measure_cpu_peak(size=32, repeats=2, dtype=torch.bfloat16)
    assert set(dtypes) == {torch.bfloat16}
    dtypes.clear()
    metrics.measure_cpu_peak(size=32, repeats=2)
    assert set(dtypes) == {torch.float32}


def test_a_precision_without_a_fast_kernel_is_measured_in_well_under_a_second(monkeypatch):
    """bf16 on a CPU without native bf16 multiplies at about 1 GFLOP/s: 2 s per full-size product."""
    sizes, real_mm = [], torch.mm

    def one_gflop_per_second(a, b):
        sizes.append(a.shape[0])
        time.sleep(2.0 * a.shape[0] ** 3 / 1e9)
        return real_mm(a, b)

    monkeypatch.setattr(torch, "mm", one_gflop_per_second)
    start = time.perf_counter()
    peak = metrics.measure_cpu_peak(dtype=torch.bfloat16)
    assert time.perf_counter() - start < 1.0 and max(sizes) == 128  # never the 1024 x 1024 product
    assert 0.2e9 < peak < 1.1e9  # the slow speed is what it reports
    sizes.clear()
    monkeypatch.setattr(torch, "mm", lambda a, b: sizes.append(a.shape[0]) or real_mm(a, b))
    metrics.measure_cpu_peak(size=256, repeats=2, dtype=torch.float32)
    assert max(sizes) == 256  # a fast kernel is measured at full size


@pytest.mark.parametrize("dtype, expected", [("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_mfu_is_measured_against_the_peak_of_the_training_precision(tmp_path, monkeypatch, dtype, expected):
    measured = []
    monkeypatch.setattr(metrics, "measure_cpu_peak", lambda dtype: measured.append(dtype) or 1e12)
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=16, n_layer=1, n_embd=16, n_head=2, block_size=16))
    tokens = (np.arange(2000) % 16).astype(np.uint16)
    config = TrainConfig(batch_size=4, block_size=16, max_steps=2, eval_interval=2, eval_batches=1,
                         log_interval=1, sample_tokens=0, dtype=dtype)
    Trainer(model, config, tokens[:1800], tokens[1800:], out_dir=tmp_path, quiet=True).fit()
    assert measured == [expected]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["mfu"] > 0 for r in records if "loss" in r)


def test_no_peak_is_measured_when_nothing_reads_it(monkeypatch):
    monkeypatch.setattr(trainer_module, "peak_flops", lambda *a: pytest.fail("peak measured for nobody"))
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=16, n_layer=1, n_embd=16, n_head=2, block_size=16))
    tokens = (np.arange(2000) % 16).astype(np.uint16)
    config = TrainConfig(batch_size=4, block_size=16, max_steps=2, eval_batches=1, sample_tokens=0, dtype="float32")
    assert Trainer(model, config, tokens[:1800], tokens[1800:], quiet=True).fit().step == 2


# ---------------------------------------------------------------- issue 16.17 and 16.12: flags
def test_a_folder_given_as_recipe_is_called_a_folder(tmp_path, capsys):
    (tmp_path / "recipes").mkdir()
    err = error_of(capsys, "train", "--config", str(tmp_path / "recipes"))
    assert "is a folder" in err and "does not exist" not in err


def test_dropout_left_out_keeps_the_presets(monkeypatch):
    configs = []
    monkeypatch.setattr(run_module, "train", lambda config, **kwargs: configs.append(config))
    assert main(["train", "--preset", "distilgpt2"]) == 0
    assert main(["train", "--preset", "distilgpt2", "--dropout", "0.05"]) == 0
    assert main(["train"]) == 0
    preset, overridden, course = (run_module.gpt_config(c, vocab_size=100).dropout for c in configs)
    assert preset == GPTConfig.preset("distilgpt2").dropout == 0.1
    assert overridden == 0.05
    assert course == 0.0  # the course's mini GPT trains without dropout, as before


def test_bad_settings_name_the_flag(capsys):
    assert "--batch-size must be at least 1" in error_of(capsys, "train", "--batch-size", "0")
    assert "--warmup-steps must be 0 or more" in error_of(capsys, "train", "--warmup-steps", "-1")


def test_the_config_holds_the_models_real_shape(word_corpus, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(word_corpus), "--preset", "tiny", "--batch-size", "4", "--eval-batches", "1",
                 "--sample-tokens", "0", "--threads", "1", "--max-steps", "1", "--quiet", "--out", str(out)]) == 0
    saved = json.loads((out / "train_config.json").read_text())
    preset = GPTConfig.preset("tiny")
    assert [saved[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "dropout")] == \
        [preset.n_layer, preset.n_head, preset.n_embd, preset.block_size, preset.dropout]
    assert ckpt.saved_state(ckpt.latest_checkpoint(out / "checkpoints")).settings == saved


# ---------------------------------------------------------------- issue 16.9: the closing hint runs
def test_the_hint_printed_at_the_end_is_a_command_that_works(word_corpus, tmp_path, capsys):
    out = tmp_path / "my run"  # a space: the hint must quote it
    assert main(["train", "--data", str(word_corpus), *SHAPE, "--max-steps", "2", "--out", str(out)]) == 0
    hint = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("try: "))
    command = shlex.split(hint.removeprefix("try: "))
    assert command[:4] == ["fromzero", "generate", "--model", str(out)] and "--prompt" in command
    assert main(command[1:]) == 0
    prompt = command[command.index("--prompt") + 1]
    assert capsys.readouterr().out.startswith(prompt)


@pytest.mark.slow  # two torch.compile runs: about 30 s
def test_a_compiled_bf16_cpu_run_resumes_exactly(word_corpus, tmp_path):
    """--compile on a CPU in bf16 runs an untouched eager step before compiling (the attention precision
    it measures is what the graph reads): stopped at 6 steps and resumed to 12, it ends as 12 straight."""
    flags = ["--data", str(word_corpus), *SHAPE[:-2], "--dtype", "bfloat16", "--compile", "--quiet",
             "--eval-interval", "6"]
    assert main(["train", *flags, "--max-steps", "6", "--out", str(tmp_path / "a")]) == 0
    assert main(["train", *flags, "--max-steps", "12", "--out", str(tmp_path / "a"), "--resume"]) == 0
    assert main(["train", *flags, "--max-steps", "12", "--out", str(tmp_path / "b")]) == 0
    resumed, straight = (load_file(tmp_path / name / "model.safetensors") for name in ("a", "b"))
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[key], straight[key]) for key in resumed)
