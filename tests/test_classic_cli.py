"""`fromzero ngram ...` and `fromzero numpy-net ...` on a small corpus file."""

from __future__ import annotations

import json

import pytest

from fromzero.cli import main

STORY = "The fox ran to the river. It drank the cold water and sat in the sun.\nThen the fox went home."


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n\n".join(f"{STORY} Story {i}." for i in range(20)), encoding="utf-8")
    return str(path)


def test_ngram_commands(corpus, tmp_path, capsys):
    out = str(tmp_path / "ngram")
    assert main(["ngram", "train", "--data", corpus, "--order", "3", "--out", out, "--prompt", "The "]) == 0
    assert "val perplexity" in capsys.readouterr().out
    run = json.loads((tmp_path / "ngram" / "run.json").read_text())
    assert run["data"] == corpus and run["val_perplexity"] > 1

    assert main(["ngram", "generate", "--model", out, "--prompt", "The f", "--length", "30", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("The f") and len(first.strip()) >= 30
    main(["ngram", "generate", "--model", out, "--prompt", "The f", "--length", "30", "--seed", "1"])
    assert capsys.readouterr().out == first

    assert main(["ngram", "perplexity", "--model", out]) == 0
    assert f"{run['val_perplexity']:.3f}" in capsys.readouterr().out
    assert main(["ngram", "perplexity", "--model", out, "--text", "The fox ran."]) == 0

    assert main(["ngram", "show", "--model", out, "--context", "fo", "--matrix", "5"]) == 0
    shown = capsys.readouterr().out
    assert "who follows fo?" in shown and "most frequent pairs" in shown


def test_unsmoothed_perplexity_is_reported_as_infinite(corpus, tmp_path, capsys):
    out = str(tmp_path / "mle")
    main(["ngram", "train", "--data", corpus, "--order", "2", "--smoothing", "none", "--out", out])
    capsys.readouterr()
    assert main(["ngram", "perplexity", "--model", out, "--text", "The fox ran, zzz."]) == 0
    captured = capsys.readouterr()
    assert "inf" in captured.out and "had probability 0" in captured.err


def test_numpy_net_commands(corpus, tmp_path, capsys):
    out = tmp_path / "net"
    args = ["numpy-net", "train", "--data", corpus, "--out", str(out), "--epochs", "2", "--hidden", "32", "--context", "4"]
    assert main(args) == 0
    assert "val perplexity" in capsys.readouterr().out
    assert {"config.json", "model.safetensors", "vocab.json", "history.json", "history.png"} <= {p.name for p in out.iterdir()}
    assert main(["numpy-net", "generate", "--model", str(out), "--prompt", "The ", "--length", "20"]) == 0
    assert capsys.readouterr().out.startswith("The ")
    (out / "history.png").unlink()
    assert main(["numpy-net", "plot", "--model", str(out)]) == 0
    assert (out / "history.png").is_file()


def test_toy_and_gradcheck(tmp_path, capsys):
    gif = tmp_path / "xor.gif"
    assert main(["numpy-net", "toy", "--gate", "xor", "--epochs", "300", "--gif", str(gif)]) == 0
    assert "MLP 100%" in capsys.readouterr().out and gif.is_file()
    assert main(["numpy-net", "gradcheck"]) == 0
    assert "WRONG" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ngram", "train", "--order", "0"], "order must be an integer >= 1"),
        (["numpy-net", "train", "--activation", "swish"], "unknown activation"),
        (["ngram", "generate", "--model", "no/such/dir"], "no n-gram run"),
        (["numpy-net", "generate", "--model", "no/such/dir"], "no char-MLP run"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_empty_text_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    assert main(["ngram", "train", "--data", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "error" in capsys.readouterr().err


def test_token_level_ngram_with_a_fromzero_tokenizer(corpus, tmp_path, capsys):
    from fromzero.data import load_text
    from fromzero.tokenizers import BPETokenizer

    tokenizer_dir = tmp_path / "bpe"
    tokenizer = BPETokenizer.train(load_text(corpus), vocab_size=300)
    tokenizer.save(str(tokenizer_dir))
    out = str(tmp_path / "tokens")
    assert main(["ngram", "train", "--data", corpus, "--order", "3", "--tokenizer", str(tokenizer_dir), "--out", out]) == 0
    assert "val perplexity per token" in capsys.readouterr().out
    assert main(["ngram", "generate", "--model", out, "--prompt", "The fox", "--length", "10", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("The fox")
    assert main(["ngram", "show", "--model", out, "--context", "The"]) == 0
    assert "who follows" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "-1"], "--epochs must be at least 1, got -1"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--lr", "0"], "--lr must be positive, got 0.0"),
        (["--context", "0"], "--context must be at least 1, got 0"),
        (["--embed", "0"], "--embed must be at least 1, got 0"),
        (["--hidden", "-3"], "--hidden must be at least 1, got -3"),
        (["--prompt", "Zebra\u20ac"], "the model's vocabulary lacks 3 characters of the text, e.g. 'Z'"),
    ],
)
def test_numpy_net_train_refuses_bad_flags_before_writing_anything(corpus, tmp_path, capsys, flags, message):
    out = tmp_path / "nn1"
    assert main(["numpy-net", "train", "--data", corpus, "--hidden", "8", "--epochs", "1", *flags, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists()


def test_ngram_train_refuses_an_order_too_big_for_memory(corpus, tmp_path, capsys, monkeypatch):
    import fromzero.classic.ngram as ngram

    monkeypatch.setattr(ngram, "memory_budget", lambda: 50 * 2**20, raising=False)  # a 100 MB machine
    out = tmp_path / "big"
    assert main(["ngram", "train", "--data", corpus, "--order", "50", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: counting the 50-grams of" in err and "GB of memory, more than the 0.0 GB allowed" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(["ngram", "train", "--data", corpus, "--order", "3", "--out", str(out)]) == 0


@pytest.mark.parametrize("command", ["ngram", "numpy-net"])
def test_sampling_draws_a_fresh_seed_and_prints_it(corpus, tmp_path, capsys, command):
    out = str(tmp_path / command)
    train = ["--order", "3"] if command == "ngram" else ["--epochs", "1", "--hidden", "16", "--context", "3"]
    assert main([command, "train", "--data", corpus, *train, "--out", out]) == 0
    capsys.readouterr()
    generate = [command, "generate", "--model", out, "--prompt", "The ", "--length", "40"]
    assert main(generate) == 0
    first = capsys.readouterr()
    seed = int(first.err.split("sampling with seed ")[1].split()[0])
    assert f"(pass --seed {seed} to repeat)" in first.err
    assert main([*generate, "--seed", str(seed)]) == 0
    again = capsys.readouterr()
    assert again.out == first.out and "sampling with seed" not in again.err
    assert main([*generate, "--temperature", "0"]) == 0  # nothing is drawn: no seed to print
    assert "sampling with seed" not in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([command, "generate", "--help"])
    assert "draws a fresh seed and prints it" in " ".join(capsys.readouterr().out.split())


def test_level_1_2_models_read_jsonl_by_its_text_field(tmp_path, capsys):
    path = tmp_path / "stories.jsonl"
    path.write_text("".join(json.dumps({"story": f"{STORY} Story {i}.", "source": "x"}) + "\n" for i in range(20)))
    out = tmp_path / "ngram"
    assert main(["ngram", "train", "--data", str(path), "--text-field", "story", "--order", "3", "--out", str(out)]) == 0
    model = json.loads((out / "ngram.json").read_text())
    assert set(model["vocab"]) == set(STORY + " Story 0123456789.\n")  # none of the JSON's characters
    capsys.readouterr()
    assert main(["ngram", "perplexity", "--model", str(out)]) == 0  # the held-out records, split again
    assert f"{json.loads((out / 'run.json').read_text())['val_perplexity']:.3f}" in capsys.readouterr().out
    net = tmp_path / "net"
    assert main(["numpy-net", "train", "--data", str(path), "--text-field", "story", "--epochs", "1", "--hidden", "8",
                 "--out", str(net)]) == 0
    assert set(json.loads((net / "vocab.json").read_text())) == set(model["vocab"])
