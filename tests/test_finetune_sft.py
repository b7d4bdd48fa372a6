"""fromzero finetune sft / merge: SFT through the training loop, on a tiny random GPT made here.

The base model is a 2-layer GPT with a character tokenizer that covers the test's question/answer
records, so nothing is downloaded and a few dozen steps show whether tuning works.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from fromzero.cli import main
from fromzero.data.split import train_val_split
from fromzero.finetune.batches import build_sft_data, collate
from fromzero.finetune.instructions import load_instructions
from fromzero.finetune.losses import sft_loss
from fromzero.finetune.peft_format import load_adapter
from fromzero.finetune.run import train_config
from fromzero.training.example_batches import EpochBatches, FixedBatches
from fromzero.finetune.sft import SFT_OBJECTIVE, SFTConfig, sft, sft_batch
from fromzero.finetune.templates import get_template
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import CharTokenizer, load_tokenizer
from fromzero.training.config import TrainConfig
from fromzero.training.trainer import Trainer

FACTS = [("What colour is the sky?", "The sky is blue."), ("What do cats say?", "Cats say meow."),
         ("What do dogs say?", "Dogs say woof."), ("What is two plus two?", "Two plus two is four."),
         ("Where do fish live?", "Fish live in water."), ("What do cows give?", "Cows give milk.")]
TIMING = {"tokens_per_s", "elapsed_s", "mfu"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """``(base model folder, qa.jsonl)``: 48 records, a random tiny GPT and its character tokenizer."""
    root = tmp_path_factory.mktemp("sft")
    records = [{"question": f"{q} ({i})", "answer": a} for i in range(8) for q, a in FACTS]
    data = root / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    tokenizer = CharTokenizer.train("".join(q + a for q, a in FACTS) + "### Question:\nAnswer\n()0123456789")
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=96))
    model.save_pretrained(root / "base")
    tokenizer.save(root / "base")
    return root / "base", data


def config(base, out, **changes) -> SFTConfig:
    model, data = base
    settings = dict(model=str(model), data=str(data), out=str(out), epochs=2, batch_size=4, lr=1e-2,
                    warmup_steps=2, lora_r=4, lora_dropout=0.0, device="cpu", dtype="float32")
    return SFTConfig(**{**settings, **changes})


def heldout_loss(model: GPT, base) -> float:
    """The loss of ``model`` on the validation examples sft holds out (same split, same template)."""
    tokenizer = load_tokenizer(base[0])
    _, val = train_val_split(load_instructions(base[1]), 0.1, 42)
    batch = collate(build_sft_data(val, get_template("qa"), tokenizer, 96).examples)
    with torch.no_grad():
        return float(sft_loss(model.eval()(batch["input_ids"]).logits, batch["labels"]))


def records(out) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


@pytest.mark.parametrize("lora_r", [4, 0], ids=["lora", "full"])
def test_sft_lowers_the_heldout_loss_and_writes_its_folder(base, tmp_path, lora_r):
    out = tmp_path / "out"
    result = sft(config(base, out, lora_r=lora_r, epochs=3), quiet=True)
    before = heldout_loss(GPT.from_pretrained(base[0]), base)
    if lora_r:
        tuned = GPT.from_pretrained(base[0])
        load_adapter(tuned, out)
        assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    else:
        tuned = GPT.from_pretrained(out)
    after = heldout_loss(tuned, base)
    assert after < before - 0.1, (before, after)
    assert after == pytest.approx(result.val_loss, abs=1e-4)  # the loop's val loss is this loss
    record = json.loads((out / "finetune.json").read_text())
    assert record["method"] == "sft" and record["template"] == "qa"
    assert record["base_model"] == str(base[0].resolve()) and record["adapter"] == ("lora" if lora_r else None)
    assert record["result"]["step"] == result.step and record["settings"]["lora_r"] == lora_r
    assert (out / "fromzero_tokenizer.json").is_file() and (out / "loss.png").is_file()
    assert (out / "best" / "finetune.json").is_file()
    evaluations = [r for r in records(out) if "val_loss" in r]
    assert len(evaluations) == 3  # once per epoch


def test_seeded_sft_runs_are_reproducible(base, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    sft(config(base, first), quiet=True)
    sft(config(base, second), quiet=True)
    assert records(first) == records(second)
    assert (first / "adapter_model.safetensors").read_bytes() == (second / "adapter_model.safetensors").read_bytes()


def test_sft_resume_after_an_interruption_is_exact(base, tmp_path, monkeypatch):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    sft(config(base, whole, eval_interval=4, lora_dropout=0.1), quiet=True)

    step_of = Trainer.train_step

    def stop_at_step_6(self, step):
        if step == 6:
            raise KeyboardInterrupt  # before the step: the state is that of 6 whole steps
        return step_of(self, step)

    monkeypatch.setattr(Trainer, "train_step", stop_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        sft(config(base, cut, eval_interval=4, lora_dropout=0.1), quiet=True)
    monkeypatch.setattr(Trainer, "train_step", step_of)
    assert not (cut / "adapter_model.safetensors").exists()
    sft(SFTConfig(out=str(cut)), given={"out"}, resume=True, quiet=True)
    assert (whole / "adapter_model.safetensors").read_bytes() == (cut / "adapter_model.safetensors").read_bytes()
    assert records(whole) == records(cut)


def _step_gradients(base, batch_size: int, grad_accum: int) -> tuple[list[torch.Tensor], list[int]]:
    """The gradients one optimizer step of SFT applies, and the answer tokens of its micro-batches."""
    tokenizer = load_tokenizer(base[0])
    examples = build_sft_data(load_instructions(base[1])[:4], get_template("qa"), tokenizer, 96).examples
    batches = EpochBatches(examples, batch_size, grad_accum, 0, sft_batch, "cpu")
    evals = {split: FixedBatches(examples, 4, sft_batch, "cpu") for split in ("train", "val")}
    loop = TrainConfig(batch_size=batch_size, grad_accum=grad_accum, grad_clip=0, block_size=96, eval_batches=1,
                       dtype="float32", device="cpu")
    model = GPT.from_pretrained(base[0])
    trainer = Trainer(model, loop, batches=batches, eval_batches=evals, objective=SFT_OBJECTIVE, tokens_per_step=1)
    seen: list[torch.Tensor] = []
    trainer.optimizer.step = lambda *args, **kwargs: seen.extend(p.grad.clone() for p in model.parameters())
    trainer.train_step(0)
    return seen, [batches.get(0, micro)["count"] for micro in range(grad_accum)]


def test_gradient_accumulation_weights_micro_batches_by_answer_tokens(base):
    """2 micro-batches of 2 examples give the gradient of one batch of 4, although their answers differ in length."""
    whole, _ = _step_gradients(base, 4, 1)
    accumulated, counts = _step_gradients(base, 2, 2)
    assert counts[0] != counts[1]  # a plain mean of the two micro-batch means would weigh tokens unequally
    for a, b in zip(whole, accumulated):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_warmup_longer_than_the_run_is_clamped_with_a_warning(base, tmp_path, capsys):
    loop = train_config(config(base, tmp_path, warmup_steps=50), 42, 14, 2, 96, quiet=False)
    assert loop.warmup_steps == 4
    assert "--warmup-steps 50" in capsys.readouterr().err


def test_merge_writes_a_model_transformers_loads_with_the_adapted_logits(base, tmp_path, transformers):
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    sft(config(base, adapter, epochs=1), quiet=True)
    assert main(["finetune", "merge", "--model", str(base[0]), "--adapter", str(adapter), "--out", str(merged)]) == 0
    ours = GPT.from_pretrained(base[0])
    load_adapter(ours, adapter)
    ids = torch.tensor([[1, 5, 9, 2, 7, 3]])
    with torch.no_grad():
        expected = ours.eval()(ids).logits
        theirs = transformers.GPT2LMHeadModel.from_pretrained(merged).eval()(input_ids=ids).logits
    assert (expected - theirs).abs().max() < 1e-5
    assert json.loads((merged / "finetune.json").read_text())["template"] == "qa"
    assert (merged / "fromzero_tokenizer.json").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--template", "nope"], "unknown template 'nope'"),
    (["--lora-r", "-1"], "--lora-r must be 0"),
    (["--lora-alpha", "0"], "--lora-alpha"),
    (["--lora-targets", "c_atn"], "valid names: c_attn"),
    (["--max-length", "5"], "--max-length 5 is shorter than every prompt"),
    (["--max-length", "500"], "longer than the model's context of 96"),
    (["--data", "missing.jsonl"], "missing.jsonl"),
    (["--template", "chat"], "cannot gain the special tokens"),
    (["--resume"], "no checkpoint to resume"),
], ids=["template", "rank", "alpha", "target", "short", "long", "data", "chat", "resume"])
def test_bad_sft_input_is_one_line_exit_2_and_writes_nothing(base, tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    argv = ["finetune", "sft", "--model", str(base[0]), "--data", str(base[1]), "--out", str(out), "--quiet"]
    assert main(argv + flags) == 2
    captured = capsys.readouterr()
    error = (captured.out + captured.err).strip()
    assert error.startswith("error:") and message in error and len(error.splitlines()) == 1, error
    assert not out.exists()


def test_an_existing_out_folder_needs_overwrite_or_resume(base, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["finetune", "sft", "--model", str(base[0]), "--data", str(base[1]), "--out", str(out), "--quiet"]
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_sft_help_names_the_flags(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "sft", "--help"])
    text = capsys.readouterr().out
    for flag in ("--lora-r", "--lora-targets", "--epochs", "--warmup-steps", "--grad-accum", "--max-length",
                 "--train-on-prompt", "--val-fraction", "--resume", "--skip-bad"):
        assert flag in text


def test_the_help_defaults_are_the_settings_defaults():
    from fromzero.commands.finetune import TUNE_FLAGS

    defaults = SFTConfig(model="m", out="o")
    for flag, _, default, _ in TUNE_FLAGS:
        if flag in ("--model", "--out"):  # required settings: no default
            continue
        assert getattr(defaults, flag.removeprefix("--").replace("-", "_")) == default, flag
    assert math.isclose(defaults.lr, 2e-4)


def test_packing_trains_fewer_rows_on_the_same_examples(base, tmp_path, capsys):
    model_dir = tmp_path / "long-context"  # the fixture's model, with room for three examples a row
    torch.manual_seed(0)
    tokenizer = load_tokenizer(base[0])
    GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=200)).save_pretrained(model_dir)
    tokenizer.save(model_dir)
    packed, plain = tmp_path / "packed", tmp_path / "plain"
    sft(config((model_dir, base[1]), plain, epochs=2), quiet=True)
    result = sft(config((model_dir, base[1]), packed, epochs=2, pack=True, lr=2e-2))
    rows = int(re.search(r"packed 43 training examples into (\d+) rows", capsys.readouterr().err)[1])
    assert rows <= 22  # two or three examples a row
    last_step = {out: json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] for out in (packed, plain)}
    assert last_step[packed] <= last_step[plain] / 2 + 1
    assert result.val_loss < heldout_loss(GPT.from_pretrained(model_dir), base) - 0.1


def test_generate_asks_a_tuned_model_in_its_template_and_stops(base, tmp_path, capsys):
    from fromzero.finetune.batches import encode_prompt
    from fromzero.finetune.instructions import Example, Message
    from fromzero.generation import GenerationConfig, generate

    out = tmp_path / "out"
    sft(config(base, out, epochs=3), quiet=True)
    question = "What do cats say? (3)"
    argv = ["generate", "--model", str(out), "--prompt", question, "--greedy", "--max-new-tokens", "40", "--seed", "0"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "template qa" in captured.err

    model = GPT.from_pretrained(base[0])
    load_adapter(model, out)
    tokenizer = load_tokenizer(out)
    ids = encode_prompt(tokenizer, get_template("qa"), Example((Message("user", question),)))
    settings = GenerationConfig(max_new_tokens=40, stop_strings=["\n\n\n", "\n### Question:"])
    expected = generate(model.eval(), torch.tensor([ids]), settings, tokenizer=tokenizer)[0, len(ids):].tolist()
    from fromzero.generation.stopping import finished_text

    assert captured.out == finished_text(tokenizer, expected, settings) + "\n"
    assert "### Question" not in captured.out  # only the answer is printed, and it stops before a new question

    assert main(["generate", "--model", str(out), "--template", "none", "--prompt", "What", "--greedy",
                 "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("What")  # plain continuation: the prompt, then its continuation


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sft_resume_after_sigkill_is_exact(base, tmp_path):
    model, data = base
    args = ["--model", str(model), "--data", str(data), "--epochs", "6", "--batch-size", "4", "--lr", "1e-2",
            "--warmup-steps", "2", "--lora-r", "4", "--lora-dropout", "0.1", "--eval-interval", "3",
            "--device", "cpu", "--dtype", "float32", "--quiet"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    command = [sys.executable, "-m", "fromzero", "finetune", "sft"]
    subprocess.run([*command, *args, "--out", str(whole)], check=True, timeout=120)

    victim = subprocess.Popen([*command, *args, "--out", str(cut)])
    pointer = cut / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 60
    while not pointer.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (cut / "adapter_model.safetensors").exists(), "the run finished before it could be killed"

    subprocess.run([*command, "--resume", "--out", str(cut), "--quiet"], check=True, timeout=120)
    assert (whole / "adapter_model.safetensors").read_bytes() == (cut / "adapter_model.safetensors").read_bytes()
    assert records(whole) == records(cut)
