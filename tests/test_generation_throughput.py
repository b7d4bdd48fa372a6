"""The bytes a decoding step reads (fromzero.generation.throughput) and `fromzero generate --stats`."""

from __future__ import annotations

import copy

import pytest
import torch

from fromzero.cli import main
from fromzero.generation.quantize import quantize
from fromzero.generation.throughput import cache_bytes_per_token, decode_reading, weight_bytes_per_token
from fromzero.models import GPT, GPTConfig

CONFIG = GPTConfig(vocab_size=500, block_size=64, n_layer=2, n_head=2, n_embd=32)


def test_a_step_reads_every_weight_and_one_row_of_each_table():
    model = GPT(CONFIG)
    everything = sum(p.numel() for p in model.parameters()) * 4  # the tied head is counted once
    row = CONFIG.n_embd * 4
    # tied: the token table is read whole (it is the output layer); the position table one row
    assert weight_bytes_per_token(model) == everything - CONFIG.block_size * row + row
    packed = quantize(copy.deepcopy(model), "fp32")
    head = sum(t.numel() * t.element_size() for t in packed.lm_head.buffers())
    # the head has its own copy: now the token table is only looked up, one row per token
    assert weight_bytes_per_token(packed) == everything - (CONFIG.vocab_size + CONFIG.block_size) * row + 2 * row + head
    assert weight_bytes_per_token(quantize(copy.deepcopy(model), "int8")) < weight_bytes_per_token(packed) / 2


def test_cache_bytes_and_the_reading():
    model = GPT(CONFIG)
    assert cache_bytes_per_token(model, 10) == 2 * 2 * 10 * 32 * 4
    assert cache_bytes_per_token(model, 10, torch.bfloat16) == 2 * 2 * 10 * 32 * 2
    reading = decode_reading(model, rows=2, prompt_tokens=8, new_tokens=20, seconds=0.5, bandwidth_gb_s=10.0)
    step = weight_bytes_per_token(model) + 2 * cache_bytes_per_token(model, 18)
    assert reading.bytes_per_step == step and reading.tokens_per_second == 80.0
    assert reading.read_gb_s == pytest.approx(20 * step / 0.5 / 1e9) and reading.utilisation == pytest.approx(reading.read_gb_s / 10)
    assert "80.0 tokens/s" in str(reading)


def test_generate_stats_prints_the_reading(tmp_path, capsys, monkeypatch):
    from fromzero.tokenizers import CharTokenizer

    tokenizer = CharTokenizer.train("abcdefgh ")
    GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32)).save_pretrained(
        tmp_path / "model")
    tokenizer.save(tmp_path / "model")
    assert main(["generate", "--model", str(tmp_path / "model"), "--prompt", "abc", "--max-new-tokens", "5",
                 "--greedy", "--stats"]) == 0
    err = capsys.readouterr().err
    assert "5 new tokens in" in err and "of the" in err and "GB/s this machine reads" in err
    assert "steps ran in eager PyTorch: its Linear layers are not all gemv layers" in err  # conftest pins torch's
    from fromzero.generation.fused_step import unavailable_reason

    if unavailable_reason() is None:
        monkeypatch.setenv("FROMZERO_LINEAR_KERNEL", "gemv")
        assert main(["generate", "--model", str(tmp_path / "model"), "--prompt", "abc", "--max-new-tokens", "5",
                     "--greedy", "--stats"]) == 0
        assert "each step was one call to C" in capsys.readouterr().err
