"""Levels 1 and 2 of the course in --quick mode, run through the CLI: their figures against references.

Each step is run with ``fromzero learn N.K --quick``; a spy on the runner keeps the figures it
reported, which are checked against numbers computed here another way (by hand, with the standard
library, or from the files the step wrote).
"""

from __future__ import annotations

import ast
import math
from collections import Counter

import pytest
from PIL import Image

from fromzero.classic.corpus import char_vocab, train_val_text
from fromzero.cli import main


def _quick_text() -> tuple[str, str]:
    train, val = train_val_text("stories")
    return train[:20_000], val[:4_000]


def test_level1_quick(tmp_path, monkeypatch, capsys, run_level):
    steps = run_level(1, tmp_path)
    assert list(steps) == ["1.1", "1.2", "1.3", "1.4", "1.5"]
    folder = tmp_path / "quick" / "level1"
    for picture in ("1_2_sampling_after_t.png", "1_3_temperature.png", "1_4_perplexity_by_order.png", "1_5_kneser_ney.png"):
        assert Image.open(folder / picture).size[0] > 300, picture

    sampling = steps["1.2"]
    assert sampling["a bigram sample"].startswith("T") and len(sampling["a bigram sample"]) == 301
    shares = {k[len("share of "):].split(" after")[0]: v for k, v in sampling.items() if k.startswith("share of ")}
    table = {k[2:].split(" |")[0]: v for k, v in sampling.items() if k.startswith("P(")}
    assert shares.keys() == table.keys() and len(table) == 6
    assert all(abs(shares[t] - table[t]) < 0.05 for t in table), (shares, table)  # 1,269 draws: a few % of noise

    temperature = steps["1.3"]
    exps = [math.exp(z) for z in (2.0, 1.0, 0.1)]
    for z, e in zip((2.0, 1.0, 0.1), exps):
        assert temperature[f"softmax: score {z}"] == pytest.approx(e / sum(exps), abs=1e-4)
    assert temperature["largest difference, p^(1/T) vs softmax(log p / T), T = 0.5"] < 1e-12
    top = [v for k, v in temperature.items() if k.startswith("T = ") and ": P(" in k]
    unsure = [v for k, v in temperature.items() if "as unsure" in k]
    assert top == sorted(top, reverse=True) and unsure == sorted(unsure) and len(top) == 3
    greedy = temperature["T = 0.0"][len("Once upon a time"):]
    assert any(greedy.count(greedy[i:i + 8]) >= 3 for i in range(len(greedy) - 8))  # greedy loops

    perplexity = steps["1.4"]
    assert perplexity["perplexity by hand: exp(-mean log P)"] == perplexity["perplexity from the library"]
    assert perplexity["unsmoothed bigram on validation"].startswith("perplexity inf:")
    train, val = _quick_text()
    counts, vocab = Counter(train), char_vocab(train, val)
    unigram = math.exp(-sum(math.log((counts[ch] + 1) / (len(train) + len(vocab))) for ch in val) / len(val))
    assert perplexity["add-one, 1-gram"] == pytest.approx(unigram, abs=1e-3)  # add-one unigram, by hand
    kn = [perplexity[f"Kneser-Ney, {n}-gram"] for n in range(1, 5)]
    add_one = [perplexity[f"add-one, {n}-gram"] for n in range(1, 5)]
    assert kn == sorted(kn, reverse=True) and add_one[-1] > min(add_one)  # KN keeps improving; add-one does not
    assert perplexity["best order (Kneser-Ney)"] == 4

    kneser_ney = steps["1.5"]
    for m in (2, 3):
        n1, n2 = (int(n.replace(",", "")) for n in kneser_ney[f"{m}-grams seen once (n1) / twice (n2)"].split(" / "))
        assert kneser_ney[f"D for {m}-grams = n1 / (n1 + 2 n2)"] == pytest.approx(n1 / (n1 + 2 * n2), abs=1e-4)
    for n in (3, 5):
        assert kneser_ney[f"{n}-gram, Kneser-Ney"] < kneser_ney[f"{n}-gram, add-one"]
    loser = next(k for k in kneser_ney if k.endswith(": share of the text"))
    character = ast.literal_eval(loser.split(":")[0])  # the repr of a character, as the step printed it
    assert kneser_ney[loser] == pytest.approx(counts[character] / len(train), abs=1e-4)
    before = Counter(a for a, b in zip(train, train[1:]) if b == character)
    assert kneser_ney[f"{character!r}: different characters it follows"] == len(before)


def test_level2_quick(tmp_path, monkeypatch, capsys, run_level):
    steps = run_level(2, tmp_path)
    assert list(steps) == ["2.1", "2.2", "2.3", "2.4"]
    folder = tmp_path / "quick" / "level2"

    neuron = steps["2.1"]
    assert neuron["AND: accuracy after 500 steps"] == neuron["OR: accuracy after 500 steps"] == "100%"
    assert neuron["XOR: loss"] == pytest.approx(math.log(2), abs=1e-3)
    assert neuron["XOR: best accuracy of any line tried"] == "75%"  # 3 of 4: no line does better
    assert Image.open(folder / "2_1_neuron.png").size[0] > 600

    hidden = steps["2.2"]
    assert hidden["parameters: (2 x 4 + 4) + (4 x 2 + 2)"] == 2 * 4 + 4 + 4 * 2 + 2
    assert hidden["XOR accuracy after training"] == "100%"
    for point, target in (("0, 0", 0), ("0, 1", 1), ("1, 0", 1), ("1, 1", 0)):
        assert (hidden[f"P(1) for ({point})"] > 0.5) == bool(target)
    gif = Image.open(folder / "2_2_xor.gif")
    assert gif.format == "GIF" and gif.n_frames >= 10

    backprop = steps["2.3"]
    errors = {k: v for k, v in backprop.items() if "relative error" in k and "buggy" not in k}
    assert len(errors) == 8 and all(v < 1e-6 for v in errors.values()), errors
    assert backprop["buggy tanh backward: relative error"] > 1e-2
    assert backprop["weights checked"] == (3 * 8 + 8) + (8 * 2 + 2)

    char = steps["2.4"]
    train, val = _quick_text()
    v, k, d, h = len(char_vocab(train, val)), 6, 32, 64
    assert char["parameters"] == (v + 1) * d + (k * d * h + h) + (h * v + v)
    assert char["loss of a uniform guess: ln V"] == pytest.approx(math.log(v), abs=1e-4)
    assert char["best validation loss"] < math.log(v)
    assert char["validation perplexity"] == pytest.approx(math.exp(char["best validation loss"]), rel=1e-3)
    assert Image.open(folder / "2_4_char_network_loss.png").size[0] > 300
    capsys.readouterr()
    assert main(["numpy-net", "generate", "--model", str(folder / "step2_4"), "--prompt", "The ", "--seed", "0",
                 "--length", "20"]) == 0  # the saved network is one the CLI can use
    assert capsys.readouterr().out.startswith("The ")


EXERCISES = [
    ("1.temperature",
     ("def apply_temperature(probs, temperature):\n    w = [p ** (1 / temperature) for p in probs]\n"
      "    return [x / sum(w) for x in w]\n"),
     ("def apply_temperature(probs, temperature):\n    w = [p / temperature for p in probs]\n"
      "    return [x / sum(w) for x in w]\n")),
    ("2.xor_hidden",
     ("import numpy as np\nfrom fromzero.classic.mlp import MLP, train\nfrom fromzero.classic.neuron import logic_dataset\n"
      "def xor_accuracy(hidden, seed):\n    x, y = logic_dataset('xor')\n    model = MLP([2, hidden, 2], 'tanh', seed=seed)\n"
      "    return train(model, x, y.astype(int), lr=0.05, epochs=400, batch_size=4, seed=seed).last['accuracy']\n"),
     "def xor_accuracy(hidden, seed):\n    return 1.0\n"),
    ("2.mlp_parameters",
     "def mlp_parameters(sizes):\n    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))\n",
     "def mlp_parameters(sizes):\n    return sum(a * b for a, b in zip(sizes, sizes[1:]))\n"),
]


@pytest.mark.parametrize("key, right, wrong", EXERCISES, ids=[e[0] for e in EXERCISES])
def test_exercises_pass_a_right_answer_and_fail_a_wrong_one(key, right, wrong, tmp_path, capsys):
    (tmp_path / "right.py").write_text(right)
    (tmp_path / "wrong.py").write_text(wrong)
    assert main(["learn", "check", key, str(tmp_path / "right.py")]) == 0
    assert "agree with the library" in capsys.readouterr().out
    assert main(["learn", "check", key, str(tmp_path / "wrong.py"), "--solution"]) == 1
    out = capsys.readouterr().out
    assert "cases differ" in out and "One solution" in out


def test_the_listing_shows_levels_1_and_2(capsys):
    assert main(["learn"]) == 0
    listing = capsys.readouterr().out
    assert "Neural network" in listing and "1.5" in listing and "2.4" in listing
