"""``fromzero evaluate``: every kind of model in one table, a report that is whole or absent, held-out data only."""

from __future__ import annotations

import json
import shutil

import pytest

from fromzero.cli import main

FACTS = [("What is ice?", "Ice is frozen water."), ("What is rain?", "Rain is water falling from clouds."),
         ("Who makes honey?", "Bees make honey from nectar.")]
QA_FLAGS = ["--questions", "3", "--max-new-tokens", "12", "--max-tokens", "400"]


@pytest.fixture(scope="module")
def qa_models(make_qa_models):
    # the tokenizer must spell the held-out stories and questions: give it every printable character
    return make_qa_models("evaluate", FACTS, alphabet="".join(chr(c) for c in range(32, 127)) + "\n’—“”é")


@pytest.fixture(scope="module")
def classic_runs(tmp_path_factory):
    """A character bigram and a char-MLP trained on the bundled stories by their own commands."""
    root = tmp_path_factory.mktemp("classic")
    assert main(["ngram", "train", "--order", "2", "--out", str(root / "bigram")]) == 0
    assert main(["numpy-net", "train", "--epochs", "1", "--hidden", "16", "--out", str(root / "mlp")]) == 0
    return root / "bigram", root / "mlp"


def evaluate(capsys, *flags) -> tuple[int, str, str]:
    status = main(["evaluate", *map(str, flags)])
    out, err = capsys.readouterr()
    return status, out, err


def test_base_and_tuned_side_by_side_with_a_report_on_disk(qa_models, tmp_path, capsys):
    base, tuned = qa_models
    out = tmp_path / "report"
    status, table, _ = evaluate(capsys, "--model", base, "--model", f"tuned={tuned}", *QA_FLAGS, "--out", out)
    assert status == 0
    for word in ("base", "tuned", "bits per byte", "ROUGE-L", "stops properly", "preference accuracy"):
        assert word in table
    report = json.loads((out / "report.json").read_text())
    assert list(report["models"]) == ["base", "tuned"]
    for name in ("base", "tuned"):
        model = report["models"][name]
        assert model["template"] == "qa"  # the base is asked the way its tuned model was
        assert set(model) >= {"lm", "qa", "prefs"}
        assert 0 <= model["qa"]["rouge_l"] <= 1 and model["qa"]["answer_loss"] > 0
        assert model["lm"]["tokens"] == 400
    assert report["data"]["qa_questions"] == 3 and len(report["answers"]) == 3
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert "| qa | ROUGE-L |" in markdown and report["answers"][0]["question"] in markdown
    # deterministic: a second run writes the same numbers
    again = tmp_path / "again"
    assert evaluate(capsys, "--model", base, "--model", f"tuned={tuned}", *QA_FLAGS, "--out", again)[0] == 0
    assert json.loads((again / "report.json").read_text())["models"] == report["models"]


def test_an_adapter_given_after_its_model_is_the_tuned_model(qa_models, tmp_path, capsys):
    base, tuned = qa_models
    flags = [*QA_FLAGS, "--suite", "qa"]
    assert evaluate(capsys, "--model", f"a={tuned}", *flags, "--out", tmp_path / "a")[0] == 0
    assert evaluate(capsys, "--model", f"b={base}", "--adapter", tuned, *flags, "--out", tmp_path / "b")[0] == 0
    a = json.loads((tmp_path / "a" / "report.json").read_text())["models"]["a"]["qa"]
    b = json.loads((tmp_path / "b" / "report.json").read_text())["models"]["b"]["qa"]
    assert a == b


def test_ngram_numpy_net_and_gpt_share_one_bits_per_byte_table(qa_models, classic_runs, tmp_path, capsys):
    from fromzero.evaluate.report import lm_text

    bigram, mlp = classic_runs
    base, _ = qa_models
    status, table, _ = evaluate(capsys, "--suite", "lm", "--model", bigram, "--model", mlp, "--model", base,
                                "--max-tokens", "2000", "--out", tmp_path)
    assert status == 0
    models = json.loads((tmp_path / "report.json").read_text())["models"]
    assert [models[n]["kind"] for n in ("bigram", "mlp", "base")] == ["n-gram", "char-MLP", "GPT"]
    text = lm_text("stories", "val")[:2000]
    for name in ("bigram", "mlp"):  # characters: every one of the first 2000 is scored
        assert models[name]["lm"]["tokens"] == 2000 and models[name]["lm"]["bytes"] == len(text.encode())
    for model in models.values():
        lm = model["lm"]
        assert lm["bits_per_byte"] == pytest.approx(lm["loss"] * lm["tokens"] / (lm["bytes"] * 0.6931471805599453))
    assert "qa" not in models["bigram"] and "n-gram" not in table  # only the lm suite was asked for


def test_held_out_questions_never_read_the_train_split(qa_models, tmp_path, capsys, monkeypatch):
    from fromzero.data import bundled

    base, tuned = qa_models
    flags = ["--model", base, "--model", f"tuned={tuned}", "--suite", "qa", *QA_FLAGS]
    assert evaluate(capsys, *flags, "--out", tmp_path / "clean")[0] == 0
    poisoned = tmp_path / "corpora"
    shutil.copytree(bundled.corpora_dir(), poisoned)
    (poisoned / "education_qa" / "train.jsonl").write_text('{"instruction": "poison"\nnot json at all\n')
    monkeypatch.setattr(bundled, "corpora_dir", lambda: poisoned)
    assert evaluate(capsys, *flags, "--out", tmp_path / "poisoned")[0] == 0
    clean, dirty = (json.loads((tmp_path / name / "report.json").read_text()) for name in ("clean", "poisoned"))
    assert clean["models"] == dirty["models"]


@pytest.mark.parametrize("problem, flags, message", [
    ("missing model", ["--model", "{tmp}/nowhere"], "nowhere"),
    ("empty data", ["--data", "{tmp}/empty.txt", "--suite", "lm"], "empty.txt"),
    ("malformed questions", ["--qa-data", "{tmp}/bad.jsonl", "--suite", "qa"], "line 2"),
    ("questions without answers", ["--qa-data", "{tmp}/fields.jsonl", "--suite", "qa"], "fields"),
    ("unknown template", ["--template", "shouting", "--suite", "qa"], "shouting"),
    ("no tokens", ["--max-tokens", "0"], "--max-tokens must be at least 1"),
])
def test_bad_input_is_one_line_and_writes_no_report(qa_models, tmp_path, capsys, problem, flags, message):
    base, _ = qa_models
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bad.jsonl").write_text('{"question": "a?", "answer": "b"}\n{"question": \n')
    (tmp_path / "fields.jsonl").write_text('{"title": "a", "body": "b"}\n')
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    if "--model" not in flags:
        flags = ["--model", str(base), *flags]
    status, _, err = evaluate(capsys, *flags, "--out", tmp_path / "report")
    assert status == 2, problem
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "report").exists()


def test_help_explains_every_flag_and_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom fromzero.cli import main\n"
            "try:\n    main(['evaluate', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"
    for flag in ("--model", "--adapter", "--suite", "--data", "--split", "--max-tokens", "--stride", "--qa-data",
                 "--questions", "--max-new-tokens", "--prefs-data", "--template", "--batch-size", "--out", "--device"):
        assert flag in result.stdout
