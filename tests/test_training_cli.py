"""``fromzero train`` / ``fromzero data prepare`` end to end with the real GPT: exact resume after
SIGKILL, DDP with two gloo processes, the model directory it writes, and clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fromzero.cli import main
from fromzero.machine import threads
from fromzero.models import GPT
from fromzero.tokenizers import CharTokenizer, load_tokenizer


# A tiny GPT and a short run; one thread so every run does bitwise the same arithmetic.
TINY = ["--preset", "tiny", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "32",
        "--batch-size", "8", "--eval-batches", "2", "--sample-tokens", "0", "--threads", "1", "--dtype", "float32",
        "--quiet"]


def fromzero_train(*args: str) -> list[str]:
    return [sys.executable, "-m", "fromzero", "train", *args]


def losses(out: Path) -> list[float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line]


def test_train_writes_a_model_dir_that_loads_and_generates(word_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(word_corpus), *TINY, "--max-steps", "40", "--eval-interval", "20",
                 "--lr", "1e-2", "--out", str(out)]) == 0
    model, tokenizer = GPT.from_pretrained(out), load_tokenizer(out)
    assert isinstance(tokenizer, CharTokenizer) and model.config.vocab_size == tokenizer.vocab_size
    assert model.config.n_layer == 1 and model.config.block_size == 32
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(evals) == 2 and evals[-1] < 2.8 < evals[0] + 1  # learned well below uniform (ln 24 = 3.2)
    steps = [r for r in records if "tokens_per_s" in r]
    assert steps and all(0 < r["mfu"] < 1 for r in steps)  # measured against this CPU's peak, also when quiet
    assert (out / "loss.png").is_file() and (out / "best" / "model.safetensors").is_file()
    assert main(["generate", "--model", str(out), "--prompt", "the cat", "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out.startswith("the cat")


def test_the_run_says_its_precision_and_threads(word_corpus, tmp_path, capsys, monkeypatch):
    """What the CPU run multiplies in and on how many threads: the two things measured or followed for speed."""
    settings = [arg for arg in TINY if arg != "--quiet"]
    at = settings.index("--threads")
    free = settings[:at] + settings[at + 2:]

    def said(*args: str) -> str:
        assert main(["train", "--data", str(word_corpus), *args, "--max-steps", "1", "--out", str(tmp_path / "o"),
                     "--overwrite"]) == 0
        return " ".join(capsys.readouterr().err.split())

    assert "precision: fp32; 1 CPU thread, fixed" in said(*settings)
    assert "precision: fp32; CPU threads fixed by FROMZERO_THREADS=1" in said(*free)  # conftest's pin
    monkeypatch.delenv("FROMZERO_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(threads.initial)  # `--threads 1` above set this process's count; a new process starts here
    try:
        assert "CPU threads: as many as other programs leave free (--threads N fixes them)" in said(*free)
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_resume_after_sigkill_is_bitwise_exact(word_corpus, tmp_path):
    args = ["--data", str(word_corpus), *TINY, "--max-steps", "100", "--eval-interval", "10", "--dropout", "0.1"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run(fromzero_train(*args, "--out", str(whole)), check=True, timeout=120)

    victim = subprocess.Popen(fromzero_train(*args, "--out", str(cut)))
    pointer = cut / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 60
    while not pointer.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (cut / "model.safetensors").exists(), "the run finished before it could be killed"
    killed_at = json.loads(pointer.read_text())["step"]
    assert killed_at < 100

    subprocess.run(fromzero_train("--resume", "--out", str(cut), "--quiet"), check=True, timeout=120)
    assert (whole / "model.safetensors").read_bytes() == (cut / "model.safetensors").read_bytes()
    assert losses(whole) == losses(cut)  # the metrics log continues seamlessly too


def test_ddp_two_gloo_processes_match_one_process(word_corpus, tmp_path):
    common = ["--data", str(word_corpus), *TINY, "--max-steps", "12", "--eval-interval", "6", "--log-interval", "2"]
    single, double = tmp_path / "single", tmp_path / "double"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(fromzero_train(*common, "--batch-size", "8", "--out", str(single)), check=True, timeout=120)
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "fromzero", "train", *common, "--batch-size", "4", "--out", str(double)],
        check=True, timeout=180, env=env,
    )
    assert losses(single) == pytest.approx(losses(double), rel=1e-5)
    a, b = GPT.from_pretrained(single), GPT.from_pretrained(double)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)


def test_prepare_then_train_on_shards(word_corpus, tmp_path, capsys):
    shards = tmp_path / "shards"
    assert main(["data", "prepare", str(word_corpus), "--out", str(shards)]) == 0
    header = json.loads((shards / "shards.json").read_text())
    assert header["dtype"] == "uint16" and header["documents"] == {"train": 27, "val": 3}
    assert main(["train", "--data", str(shards), *TINY, "--max-steps", "2", "--out", str(tmp_path / "o")]) == 0
    assert load_tokenizer(tmp_path / "o").vocab_size == header["tokenizer"]["vocab_size"]


# ---------------------------------------------------------------- bad input: one clear line, exit 2
def error_of(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    return capsys.readouterr().err


def test_empty_and_too_short_corpora_are_refused(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("  \n")
    assert "empty" in error_of(capsys, "train", "--data", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "a"))
    (tmp_path / "short.txt").write_text("a short text. " * 5)
    err = error_of(capsys, "train", "--data", str(tmp_path / "short.txt"), *TINY, "--out", str(tmp_path / "b"))
    assert "fewer than block_size + 1" in err and "Traceback" not in err
    # a run that never started leaves no output directory behind
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_shards_made_with_another_tokenizer_are_refused(word_corpus, tmp_path, capsys):
    main(["data", "prepare", str(word_corpus), "--out", str(tmp_path / "shards")])
    CharTokenizer.train("abc xyz").save(tmp_path / "other")
    err = error_of(capsys, "train", "--data", str(tmp_path / "shards"), "--tokenizer", f"bpe:{tmp_path / 'other'}",
                   *TINY, "--out", str(tmp_path / "o"))
    assert "were made with" in err and "prepare the shards again" in err


def test_existing_out_dir_needs_resume_or_overwrite_and_nothing_is_lost(word_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert "--resume" in error_of(capsys, "train", "--data", str(word_corpus), *TINY, "--out", str(out))
    assert "no checkpoint to resume" in error_of(capsys, "train", "--resume", "--out", str(out))
    assert (out / "notes.txt").read_text() == "mine" and sorted(os.listdir(out)) == ["notes.txt"]
    assert main(["train", "--data", str(word_corpus), *TINY, "--max-steps", "2", "--out", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite replaces only what a run writes
    err = error_of(capsys, "train", "--resume", "--out", str(out), "--n-embd", "64")
    assert "--n-embd was 32" in err


def test_unwritable_out_dir_is_refused(word_corpus, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    err = error_of(capsys, "train", "--data", str(word_corpus), *TINY, "--out", str(tmp_path / "file" / "out"))
    assert "cannot write to output directory" in err or "is a file" in err


def test_bad_model_settings_leave_no_output_and_a_rerun_works(word_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    err = error_of(capsys, "train", "--data", str(word_corpus), *TINY, "--n-head", "3", "--out", str(out))
    assert "divisible" in err and not out.exists()
    assert main(["train", "--data", str(word_corpus), *TINY, "--max-steps", "2", "--out", str(out)]) == 0


def test_config_file_sets_hyperparameters_and_flags_win(word_corpus, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"data: {word_corpus}\nmax_steps: 3\nlr: 0.005\nn_embd: 48\n")
    out = tmp_path / "o"
    assert main(["train", "--config", str(recipe), *TINY, "--max-steps", "2", "--out", str(out)]) == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["max_steps"] == 2 and saved["lr"] == 0.005
    assert GPT.from_pretrained(out).config.n_embd == 32  # the TINY flag beats the recipe's 48
