"""`fromzero word2vec train|similar|analogy|plot` on a small planted corpus: the planted neighbours
and analogies come out, the text format loads in gensim, pictures are written, and every mistake
is one line with nothing written."""

from __future__ import annotations

import dataclasses
import io
import random
import re
import shlex
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from fromzero.cli import build_parser, main
from fromzero.embeddings.word2vec import Word2VecConfig, WordVectors

# Six words on a grid of two features: each sentence holds one of them with two context words of
# its gender and two of its role, so king - man + woman lands on queen (3CosAdd). car and truck
# never meet but share all their contexts: each should be the other's nearest neighbour.
GENDER = {"male": ["he", "him", "his", "beard", "mr", "sir"], "female": ["she", "her", "hers", "gown", "mrs", "madam"]}
ROLE = {"common": ["street", "work", "shop", "town", "bus", "job"],
        "royal": ["crown", "throne", "palace", "royal", "castle", "reign"],
        "young": ["school", "toys", "play", "small", "lessons", "ball"]}
GRID = {("male", "common"): "man", ("female", "common"): "woman", ("male", "royal"): "king",
        ("female", "royal"): "queen", ("male", "young"): "boy", ("female", "young"): "girl"}
VEHICLES = ["drive", "road", "wheels", "engine", "fast", "garage"]
SMALL = ["--dim", "20", "--min-count", "1", "--sample", "0"]  # a tiny vocabulary: keep every word


def planted_text(sentences: int = 1800, seed: int = 0) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        if rng.random() < 1 / 7:
            words = [rng.choice(["car", "truck"]), *rng.sample(VEHICLES, 4)]
        else:
            (gender, role), word = rng.choice(list(GRID.items()))
            words = [word, *rng.sample(GENDER[gender], 2), *rng.sample(ROLE[role], 2)]
        rng.shuffle(words)
        lines.append(" ".join(words))
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class Trained:
    corpus: Path
    vectors: Path
    text_format: Path
    output: str  # what `train` printed


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    folder = tmp_path_factory.mktemp("word2vec")
    corpus, vectors, text_format = folder / "planted.txt", folder / "vectors", folder / "vectors.txt"
    corpus.write_text(planted_text(), encoding="utf-8")
    with redirect_stdout(io.StringIO()) as out, redirect_stderr(io.StringIO()) as err:
        status = main(["word2vec", "train", str(corpus), "--out", str(vectors), "--text-format", str(text_format), *SMALL])
    assert status == 0, err.getvalue()
    return Trained(corpus, vectors, text_format, out.getvalue() + err.getvalue())


def _rows(output: str) -> list[tuple[str, float]]:
    """(word, cosine) of each row of a neighbour table."""
    return [(word, float(cosine)) for word, cosine in re.findall(r"│\s+\d+ │ (\S+)\s+│\s+(-?[\d.]+) │", output)]


def test_train_reports_and_saves_vectors_that_load(trained, capsys):
    vectors = WordVectors.load(trained.vectors)
    distinct = len(set(planted_text().split()))
    assert len(vectors.words) == distinct and vectors.dim == 20
    assert f"vocabulary: {distinct} words seen at least 1 times" in trained.output
    assert f"trained on {len(planted_text().split()):,} words x 5 epochs (skipgram" in trained.output
    hint = re.search(r"next: `(fromzero word2vec similar [^`]+)`", trained.output).group(1)
    assert main(shlex.split(hint)[1:]) == 0  # the advice runs
    assert len(_rows(capsys.readouterr().out)) == 10


def test_the_text_format_loads_in_gensim_with_the_same_vectors(trained):
    gensim_models = pytest.importorskip("gensim.models")
    loaded = gensim_models.KeyedVectors.load_word2vec_format(str(trained.text_format))
    vectors = WordVectors.load(trained.vectors)
    assert loaded.index_to_key == vectors.words
    np.testing.assert_array_equal(loaded.vectors, vectors.vectors)


def test_similar_lists_the_planted_neighbour(trained, capsys):
    assert main(["word2vec", "similar", str(trained.vectors), "car", "-k", "3"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert len(rows) == 3 and rows[0][0] == "truck"
    assert rows[0][1] == pytest.approx(WordVectors.load(trained.vectors).similarity("car", "truck"), abs=5e-4)
    # several words and --negative: the same 3CosAdd query as the analogy
    assert main(["word2vec", "similar", str(trained.vectors), "king", "woman", "--negative", "man"]) == 0
    out = capsys.readouterr().out
    assert "nearest to king + woman - man" in out and _rows(out)[0][0] == "queen"


@pytest.mark.parametrize("a, b, c, answer", [("man", "king", "woman", "queen"), ("man", "boy", "woman", "girl"),
                                             ("queen", "king", "girl", "boy")])
def test_analogy_answers_the_planted_analogies(trained, capsys, a, b, c, answer):
    assert main(["word2vec", "analogy", str(trained.vectors), a, b, c, "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert f"{a} is to {b} as {c} is to {answer}" in out
    rows = _rows(out)
    assert len(rows) == 3 and rows[0][0] == answer and {a, b, c}.isdisjoint(word for word, _ in rows)


@pytest.mark.parametrize("flags, default", [(["--words", "king", "queen", "man", "woman", "car"], "pca.png"),
                                            (["--top", "6", "--heatmap"], None),
                                            (["--top", "8", "--method", "tsne"], None)])
def test_plot_writes_a_png(trained, tmp_path, capsys, flags, default):
    if "tsne" in flags:
        pytest.importorskip("sklearn")
    out = trained.vectors / default if default else tmp_path / "words.png"  # no --out: a picture in DIR
    assert main(["word2vec", "plot", str(trained.vectors), *flags, *([] if default else ["--out", str(out)])]) == 0
    assert out.read_bytes().startswith(b"\x89PNG") and f"saved {out}" in capsys.readouterr().err


def test_train_flags_default_to_word2vec_config():
    args = build_parser().parse_args(["word2vec", "train", "stories", "--out", "x"])
    for field in dataclasses.fields(Word2VecConfig):
        assert getattr(args, field.name) == field.default, field.name


def test_an_existing_out_needs_overwrite_which_replaces_only_the_vectors(trained, tmp_path, capsys):
    out = tmp_path / "vectors"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["word2vec", "train", str(trained.corpus), "--out", str(out), "--epochs", "1", *SMALL]
    assert main(argv) == 2
    assert "already holds files; pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert main([*argv, "--overwrite"]) == 0 and main([*argv, "--overwrite", "--dim", "8"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "vectors.safetensors", "vocab.json"]
    assert WordVectors.load(out).dim == 8


@pytest.mark.parametrize("argv, message", [
    (["similar", "{vectors}", "zebra"], "'zebra' is not in the vocabulary"),
    (["similar", "{vectors}", "king", "--negative", "Queen"], "'Queen' is not in the vocabulary"),
    (["analogy", "{vectors}", "man", "king", "empress"], "'empress' is not in the vocabulary"),
    (["plot", "{vectors}", "--words", "king", "zebra", "--out", "{tmp}/p.png"], "'zebra' is not in the vocabulary"),
    (["similar", "{tmp}/no/such/dir", "king"], "no word vectors in"),
    (["similar", "{vectors}", "king", "-k", "0"], "k must be a whole number of at least 1, not 0"),
    (["analogy", "{vectors}", "man", "king", "woman", "-k", "-2"], "k must be a whole number of at least 1, not -2"),
    (["plot", "{vectors}", "--top", "0", "--out", "{tmp}/p.png"], "--top must be at least 1, not 0"),
    (["train", "{tmp}/empty.txt", "--out", "{tmp}/o"], "is empty"),
    (["train", "{tmp}/punctuation.txt", "--out", "{tmp}/o"], "the corpus is empty"),
    (["train", "{tmp}/missing.txt", "--out", "{tmp}/o"], "missing.txt does not exist"),
    (["train", "{corpus}", "--out", "{tmp}/o", "--min-count", "100000"], "no word occurs at least min_count=100000"),
    (["train", "{corpus}", "--out", "{tmp}/o", "--dim", "0"], "dim must be a whole number of at least 1, not 0"),
    (["train", "{corpus}", "--out", "{tmp}/o", "--lr", "-1"], "lr must be a number above 0"),
    (["train", "{corpus}", "--out", "{tmp}/o", "--sample", "-0.5"], "sample must be a number of at least 0"),
    (["train", "{corpus}", "--out", "{tmp}/o", "--text-format", "{tmp}"], "is a folder; give a file name"),
    (["train", "{corpus}", "--out", "{corpus}"], "is a file; give a directory"),
])
def test_mistakes_are_one_line_and_write_nothing(trained, tmp_path, capsys, argv, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "punctuation.txt").write_text("... !!\n")
    before = sorted(tmp_path.rglob("*")), sorted(trained.vectors.parent.rglob("*"))
    argv = [arg.format(vectors=trained.vectors, corpus=trained.corpus, tmp=tmp_path) for arg in argv]
    assert main(["word2vec", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert (sorted(tmp_path.rglob("*")), sorted(trained.vectors.parent.rglob("*"))) == before


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "vectors.safetensors").write_bytes(b"not safetensors"), "truncated or corrupt"),
    (lambda d: (d / "vocab.json").write_text("{"), "is not valid JSON"),
    (lambda d: (d / "vocab.json").unlink(), "vocab.json does not exist"),
])
def test_a_damaged_vectors_folder_is_one_line(trained, tmp_path, capsys, damage, message):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("vectors.safetensors", "vocab.json"):
        (broken / name).write_bytes((trained.vectors / name).read_bytes())
    damage(broken)
    assert main(["word2vec", "similar", str(broken), "king"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
