"""fromzero finetune dpo: preference tuning through the training loop, on a tiny random GPT made here."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import TOY_PREFERENCE_PAIRS as PAIRS  # (question, better, worse)
from fromzero.cli import main
from fromzero.finetune.dpo import DPOConfig, _start, dpo, encode_pairs, pair_batch, preference_metrics
from fromzero.finetune.instructions import load_preferences
from fromzero.training.example_batches import FixedBatches
from fromzero.finetune.sft import SFTConfig, sft
from fromzero.finetune.templates import get_template
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import CharTokenizer, load_tokenizer


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """``(base model folder, prefs.jsonl, qa.jsonl)`` for a random tiny GPT with a character tokenizer."""
    root = tmp_path_factory.mktemp("dpo")
    prefs, qa = root / "prefs.jsonl", root / "qa.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"{q} ({i})", "chosen": c, "rejected": r}) + "\n"
                             for i in range(8) for q, c, r in PAIRS), encoding="utf-8")
    qa.write_text("".join(json.dumps({"question": f"{q} ({i})", "answer": c}) + "\n"
                          for i in range(8) for q, c, _ in PAIRS), encoding="utf-8")
    tokenizer = CharTokenizer.train("".join("".join(p) for p in PAIRS) + "### Question:\nAnswer\n()0123456789")
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=96))
    model.save_pretrained(root / "base")
    tokenizer.save(root / "base")
    return root / "base", prefs, qa


def config(base, out, **changes) -> DPOConfig:
    settings = dict(model=str(base[0]), data=str(base[1]), out=str(out), epochs=2, batch_size=4, lr=1e-2,
                    warmup_steps=2, lora_r=4, lora_dropout=0.0, device="cpu", dtype="float32")
    return DPOConfig(**{**settings, **changes})


@pytest.mark.parametrize("loss", ["sigmoid", "ipo"])
def test_dpo_raises_the_heldout_preference_accuracy(base, tmp_path, loss):
    out = tmp_path / "dpo"
    result = dpo(config(base, out, loss=loss), quiet=True)
    record = json.loads((out / "finetune.json").read_text())
    assert record["method"] == "dpo" and record["adapter"] == "lora"
    # before any step the policy is the reference: every reward is 0 and the accuracy 0
    assert record["result"]["val_preference_accuracy"] > 0.5
    assert record["result"]["val_reward_margin"] > 0
    if loss == "sigmoid":
        assert result.val_loss < math.log(2)  # the held-out DPO loss of the starting model
    evaluations = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
                   if "val_loss" in line]
    assert evaluations and all("val_preference_accuracy" in r and "val_reward_margin" in r for r in evaluations)
    assert (out / "adapter_model.safetensors").is_file() and (out / "best" / "adapter_config.json").is_file()


def test_dpo_on_an_sft_adapter_uses_the_sft_model_as_its_reference(base, tmp_path):
    sft_out = tmp_path / "sft"
    sft(SFTConfig(model=str(base[0]), data=str(base[2]), out=str(sft_out), epochs=1, batch_size=4, lr=1e-2,
                  warmup_steps=1, lora_r=4, device="cpu", dtype="float32"), quiet=True)
    settings = config(base, tmp_path / "dpo", adapter=str(sft_out))
    tokenizer = load_tokenizer(base[0])
    model, reference = _start(settings, tokenizer, "cpu")
    pairs = encode_pairs(load_preferences(base[1])[:8], get_template("qa"), tokenizer, 96)
    metrics = preference_metrics(model, FixedBatches(pairs, 4, pair_batch, "cpu"), settings, reference)
    assert metrics["val_reward_margin"] == 0  # the policy starts as its reference: the SFT model, not the base
    plain, _ = _start(config(base, tmp_path / "plain"), tokenizer, "cpu")
    ids = torch.tensor([pairs[0].chosen.input_ids])
    with torch.no_grad():  # the SFT adapter did change the model, so a base reference would give margins
        assert not torch.equal(model.eval()(ids).logits, plain.eval()(ids).logits)
    result = dpo(settings, quiet=True)
    record = json.loads((tmp_path / "dpo" / "finetune.json").read_text())
    assert record["template"] == "qa" and record["result"]["val_preference_accuracy"] > 0.5
    assert result.step == record["result"]["step"]


def test_dpo_resume_is_exact(base, tmp_path, monkeypatch):
    from fromzero.training.trainer import Trainer

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    dpo(config(base, whole, eval_interval=4, lora_dropout=0.1), quiet=True)
    step_of = Trainer.train_step

    def stop_at_step_5(self, step):
        if step == 5:
            raise KeyboardInterrupt
        return step_of(self, step)

    monkeypatch.setattr(Trainer, "train_step", stop_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        dpo(config(base, cut, eval_interval=4, lora_dropout=0.1), quiet=True)
    monkeypatch.setattr(Trainer, "train_step", step_of)
    dpo(DPOConfig(out=str(cut)), given={"out"}, resume=True, quiet=True)
    assert (whole / "adapter_model.safetensors").read_bytes() == (cut / "adapter_model.safetensors").read_bytes()


def test_a_pair_whose_chosen_equals_rejected_is_refused(base, tmp_path, capsys):
    data = tmp_path / "same.jsonl"
    data.write_text(base[1].read_text() + json.dumps({"prompt": "Why?", "chosen": "Yes.", "rejected": "Yes."}) + "\n")
    out = tmp_path / "out"
    assert main(["finetune", "dpo", "--model", str(base[0]), "--data", str(data), "--out", str(out), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert "line 49" in error and "the same answer" in error and len(error.splitlines()) == 1, error
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--lora-r", "0"], "full-model DPO"),
    (["--beta", "0"], "--beta must be positive"),
    (["--loss", "hinge"], "unknown --loss 'hinge'"),
    (["--adapter", "nowhere"], "nowhere"),
], ids=["full", "beta", "loss", "adapter"])
def test_bad_dpo_input_is_one_line_exit_2_and_writes_nothing(base, tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    argv = ["finetune", "dpo", "--model", str(base[0]), "--data", str(base[1]), "--out", str(out), "--quiet"]
    assert main(argv + flags) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and message in error and len(error.splitlines()) == 1, error
    assert not out.exists()
