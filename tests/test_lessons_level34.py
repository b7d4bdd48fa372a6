"""Levels 3 and 4 of the course in --quick mode, run through the CLI: their figures against references.

Each step runs with ``fromzero learn N.K --quick``; a spy on the runner keeps the figures it reported,
which are checked against numbers computed here another way (by hand, by ``fromzero model info``, by
the textbook BPE, by the model's own loss).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from fromzero.cli import main
from fromzero.lessons.course import find_level


def _picture(path) -> None:
    assert Image.open(path).size[0] > 300, path


def test_level3_quick(tmp_path, monkeypatch, capsys, run_level):
    steps = run_level(3, tmp_path)
    assert list(steps) == ["3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "3.7"]
    folder = tmp_path / "quick" / "level3"
    _picture(folder / "3_1_positions.png")
    _picture(folder / "3_4_attention_heads.png")
    _picture(folder / "3_7_alignment.png")

    positions = steps["3.1"]
    assert positions["sinusoidal: parameters"] == 0 and positions["learned: parameters"] == 32 * 64
    assert positions["sinusoidal position 0 starts"] == [0.0, 1.0, 0.0, 1.0]
    assert positions["sinusoidal position 1 starts"][:2] == [round(math.sin(1), 3), round(math.cos(1), 3)]
    assert positions["spread of that likeness over all p"] < 1e-3
    assert positions["both 't's of 'the cat' get the same vector"] == "yes"

    by_hand = steps["3.2"]
    scores = [0.5 ** 0.5, 2 / 2 ** 0.5, 2 / 2 ** 0.5]  # 'sat' = (1, 1) against the keys (1,0), (0,2), (1,1)
    weights = torch.tensor(scores).softmax(-1).tolist()
    assert by_hand["weight of 'cat' for 'sat' (softmax)"] == pytest.approx(weights[1], abs=1e-4)
    assert by_hand["weight of 'the' for 'sat' (softmax)"] == pytest.approx(weights[0], abs=1e-4)
    assert by_hand["the weights of 'sat' add up to"] == 1.0
    assert by_hand["largest difference in the weights, by hand vs library"] < 1e-12
    assert by_hand["largest difference in the outputs, by hand vs library"] < 1e-12

    mask = steps["3.3"]
    assert mask["position 0 may look at"] == "1...." and mask["position 4 may look at"] == "11111"
    assert mask["weight on later positions, with the mask"] == 0 < mask["weight on later positions, no mask"]
    assert mask["masked: largest change at the earlier positions"] == 0
    assert mask["no mask: largest change at the earlier positions"] > 0
    assert mask["fast kernel vs explicit formula, largest difference"] < 1e-5

    heads = steps["3.4"]
    assert heads["heads per layer"] == 4 and heads["numbers per head (head_dim = n_embd / n_head)"] == 16
    assert heads["every row of every head adds up to 1 (largest error)"] < 1e-5
    assert len([k for k in heads if k.endswith("weight on the previous character")]) == 8

    block = steps["3.5"]
    e = 64
    assert block["parameters of one block (counted)"] == 12 * e * e + 13 * e
    assert block["branches off: largest difference between input and output"] == 0

    whole = steps["3.6"]
    command = whole["the same count, from the command line"].split()
    capsys.readouterr()
    assert main([*command[1:], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert whole["parameters in all (counted on the model)"] == info["parameters"]["total"]
    assert whole["parameters: attention (4 blocks)"] == info["parameters"]["components"]["attention (4 blocks)"]
    assert whole["loss of the untrained model"] == pytest.approx(math.log(info["config"]["vocab_size"]), abs=0.2)
    translation = steps["3.7"]
    for name in ("the Transformer", "a GRU with attention", "a plain GRU"):
        assert translation[f"{name}: parameters"] > 0
        for letters in ("4-6", "10-12"):
            assert 0 <= translation[f"{name}: reversed exactly, {letters} letters"] <= 100
    assert 0 <= translation["mean attention on the mirrored letter"] <= 1
    lesson = find_level(3).lesson.read_text(encoding="utf-8")
    assert f"{info['parameters']['total']:,}" in lesson and f"{4 * (12 * e * e + 13 * e):,}" in lesson


def test_level4_quick(tmp_path, monkeypatch, capsys, run_level):
    from fromzero.classic.corpus import train_val_text
    from fromzero.models import GPT, GPTConfig
    from fromzero.models.summary import summarize
    from fromzero.tokenizers import naive

    steps = run_level(4, tmp_path)
    assert list(steps) == ["4.1", "4.2", "4.3", "4.4"]
    folder = tmp_path / "quick" / "level4"
    for picture in ("4_1_tokenizers.png", "step4_2/loss.png", "4_3_sampling_presets.png", "4_4_perplexity.png"):
        _picture(folder / picture)

    tokens = steps["4.1"]
    train, _ = train_val_text("stories")
    merges = naive.train(train[:30_000], 268)  # the textbook loop learns the same first merges
    vocab = {b: bytes([b]) for b in range(256)}
    for (left, right), new_id in merges.items():
        vocab[new_id] = vocab[left] + vocab[right]
    first = ", ".join(repr(vocab[i].decode()) for i in sorted(merges.values())[:12])
    assert tokens["BPE: the first merges learned"] == first
    assert tokens["BPE: vocabulary"] == 300
    assert tokens["characters: characters per token on unseen stories"] == 1.0
    assert 1 < tokens["BPE: characters per token on unseen stories"] < tokens["words: characters per token on unseen stories"]
    assert tokens["BPE: decode(encode(text)) gives the text back exactly"] == "yes"

    pretrain = steps["4.2"]
    model = GPT.from_pretrained(folder / "step4_2")
    assert pretrain["parameters"] == model.num_params()
    assert pretrain["validation loss at the end"] < pretrain["loss at the first logged step"]
    mini = summarize(GPTConfig.preset("mini", vocab_size=model.config.vocab_size)).total
    assert pretrain["the course's mini GPT (mini preset, this vocabulary)"].startswith(f"{mini:,} parameters")
    assert f"{mini:,}" in find_level(4).lesson.read_text(encoding="utf-8")

    sampling = steps["4.3"]
    kept = {name: sampling[f"{name}: characters it may pick after 'Once upon a time'"]
            for name in ("greedy", "focused", "balanced", "creative")}
    assert kept["greedy"] == 1 and kept["focused"] <= 10
    assert kept["focused"] <= kept["balanced"] <= kept["creative"] <= model.config.vocab_size
    assert all(sampling[f"{name} writes"].startswith("Once upon a time") for name in kept)

    ppl = steps["4.4"]
    assert ppl["mini GPT: perplexity"] == pytest.approx(math.exp(ppl["mini GPT: loss"]), rel=1e-2)
    assert ppl["mini GPT: bits per character"] == pytest.approx(ppl["mini GPT: loss"] / math.log(2), abs=1e-2)
    assert ppl["2-gram (Kneser-Ney): perplexity"] > ppl["5-gram (Kneser-Ney): perplexity"]
    assert ppl["mini GPT: perplexity"] < ppl["knowing nothing: perplexity = vocabulary"]


def test_text_loss_is_the_models_own_loss_window_by_window():
    from fromzero.evaluate.perplexity import text_loss
    from fromzero.models import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", block_size=8, n_layer=1)).eval()
    ids = torch.randint(0, 256, (30,))
    # windows of 8 every 4 tokens (half the context): 0-7 scores tokens 1-7, 4-11 scores 8-11, ...,
    # and the last, 24-29, scores 28-29: each token once, with at least 4 tokens of context after the first window
    nll = 0.0
    with torch.no_grad():
        for begin, first in ((0, 1), (4, 8), (8, 12), (12, 16), (16, 20), (20, 24), (24, 28)):
            end = min(begin + 8, 30)
            logp = torch.log_softmax(model(ids[begin:end][None]).logits[0], -1)
            nll -= sum(float(logp[t - begin - 1, ids[t]]) for t in range(first, end))
    assert text_loss(model, ids.tolist(), batch_size=2) == pytest.approx(nll / 29, rel=1e-5)


def test_heads_exercise(tmp_path):
    right = tmp_path / "right.py"
    right.write_text("def attention_parameters(n_embd, n_head):\n    return 4 * n_embd * n_embd + 4 * n_embd\n")
    assert main(["learn", "check", "3.heads", str(right)]) == 0
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def attention_parameters(n_embd, n_head):\n    return n_head * 4 * n_embd * n_embd\n")
    assert main(["learn", "check", "3.heads", str(wrong)]) == 1


def test_top_p_exercise(tmp_path, capsys):
    right = tmp_path / "right.py"
    right.write_text(
        "import torch\n"
        "def top_p(scores, p):\n"
        "    probs, order = scores.softmax(-1).sort(dim=-1, descending=True)\n"
        "    before = probs.cumsum(-1) - probs\n"
        "    drop = (before >= p).scatter(-1, order, before >= p)\n"
        "    return scores.masked_fill(drop, float('-inf'))\n")
    assert main(["learn", "check", "4.top_p", str(right)]) == 0
    wrong = tmp_path / "wrong.py"  # stops before the token that crosses p
    wrong.write_text(
        "import torch\n"
        "def top_p(scores, p):\n"
        "    probs, order = scores.softmax(-1).sort(dim=-1, descending=True)\n"
        "    drop = probs.cumsum(-1) > p\n"
        "    drop[..., 0] = False\n"
        "    return scores.masked_fill(drop.scatter(-1, order, drop), float('-inf'))\n")
    assert main(["learn", "check", "4.top_p", str(wrong)]) == 1
    assert "cases differ" in capsys.readouterr().out
    assert main(["learn", "check", "4.top_p", str(wrong), "--solution"]) == 1
    assert "def _top_p" in capsys.readouterr().out
