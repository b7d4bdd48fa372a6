"""fromzero quickstart: the course pipeline's stages run in order, are skipped when done, resume when cut.

The stages get a tiny model and few steps here (the real recipe takes minutes); what is tested is
the pipeline: every stage's output, the evaluation record, skipping and exact resuming.
"""

from __future__ import annotations

import json

import pytest

from fromzero.cli import main
from fromzero.commands import quickstart
from fromzero.training.trainer import Trainer

real_pretrain = quickstart.pretrain_settings


def tiny_pretrain(out, steps=quickstart.PRETRAIN_STEPS):
    return {**real_pretrain(out, steps), "tokenizer": "bpe:400", "n_layer": 1, "n_embd": 32, "n_head": 2,
            "block_size": 128, "max_steps": 4, "eval_interval": 2, "sample_tokens": 0}


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(quickstart, "pretrain_settings", tiny_pretrain)
    monkeypatch.setattr(quickstart, "SHOWN_QUESTIONS", 2)


def argv(out) -> list[str]:
    return ["quickstart", "--out", str(out), "--sft-epochs", "1", "--dpo-epochs", "1", "--device", "cpu"]


def test_quickstart_runs_every_stage_then_skips_them(tiny, tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(argv(out)) == 0
    captured = capsys.readouterr()
    record = json.loads((out / "quickstart.json").read_text())
    assert set(record["seconds"]) == {"base", "sft", "dpo", "evaluate"}
    report = record["evaluate"]
    assert list(report["models"]) == ["base", "SFT", "DPO"] and report["data"]["qa_questions"] == 86
    assert all(set(model) >= {"lm", "qa", "prefs"} for model in report["models"].values())
    assert len(report["answers"]) == 2 and set(report["answers"][0]["answers"]) == {"base", "SFT", "DPO"}
    assert (out / "report" / "report.md").is_file() and (out / "report" / "report.png").is_file()
    for name in ("sft", "dpo"):
        assert json.loads((out / name / "finetune.json").read_text())["result"]["step"] > 0
    assert "answer loss" in captured.out and f"fromzero chat --model {out / 'dpo'}" in captured.err

    weights = (out / "base" / "model.safetensors").stat().st_mtime_ns
    assert main(argv(out)) == 0
    assert capsys.readouterr().err.count("done, skipped") == 4
    assert (out / "base" / "model.safetensors").stat().st_mtime_ns == weights


def test_an_interrupted_stage_resumes_where_it_stopped(tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "qs"
    step_of = Trainer.train_step
    calls = {"n": 0}

    def stop_in_sft(self, step):
        if "sft" in str(self.out_dir) and step == 20:
            calls["n"] += 1
            raise KeyboardInterrupt
        return step_of(self, step)

    monkeypatch.setattr(Trainer, "train_step", stop_in_sft)
    assert main(argv(out)) == 130
    assert calls["n"] == 1 and (out / "base" / "model.safetensors").is_file()
    assert not (out / "sft" / "adapter_model.safetensors").exists()
    monkeypatch.setattr(Trainer, "train_step", step_of)
    capsys.readouterr()
    assert main(argv(out)) == 0
    err = capsys.readouterr().err
    assert "base: pretrain" in err and "done, skipped" in err and "resuming" in err
    assert json.loads((out / "sft" / "finetune.json").read_text())["result"]["step"] == 57  # one epoch of 8s


def test_the_readme_tour_runs_the_same_recipe():
    """The level-5 commands in the README are quickstart's stages, flag for flag."""
    import argparse
    import shlex

    from fromzero.cli import build_parser
    from test_readme_commands import readme_commands

    parser: argparse.ArgumentParser = build_parser()
    found = {}
    for command in readme_commands():
        if "--out out/level5/" in command and not command.startswith("fromzero evaluate"):  # the stages only
            args = vars(parser.parse_args(shlex.split(command)[1:]))
            found[args["out"].removeprefix("out/level5/")] = args
    from pathlib import Path

    expected = {"base": real_pretrain(Path("out/level5")), "sft": quickstart.sft_settings(Path("out/level5")),
                "dpo": quickstart.dpo_settings(Path("out/level5"))}
    assert set(found) == set(expected)
    for stage, settings in expected.items():
        for name, value in settings.items():
            given = found[stage][name]
            assert (tuple(given) if isinstance(value, tuple) else given) == value, (stage, name)
