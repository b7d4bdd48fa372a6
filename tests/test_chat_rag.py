"""``fromzero chat --rag IDX``: the retrieved chunks go in front of the question, cut to fit, and their
sources are listed after the answer."""

from __future__ import annotations

import io
import json
import sys

import pytest

from fromzero.cli import main
from fromzero.data.loading import DOCUMENT_SEPARATOR
from fromzero.embeddings.index import build_index, chunk_document, Hit
from fromzero.embeddings.rag import RAG_TEMPLATE, rag_question
from fromzero.tokenizers import CharTokenizer

FACTS = [("What is ice?", "Ice is frozen water."), ("Who makes honey?", "Bees make honey.")]
DOCS = ["Bees make honey from nectar.", "Ice is frozen water.", "Rain falls from clouds."]


@pytest.fixture(scope="module")
def rag_setup(make_qa_models, tmp_path_factory):
    base, tuned = make_qa_models("rag", FACTS, alphabet="".join(chr(c) for c in range(32, 127)) + "\n")
    root = tmp_path_factory.mktemp("rag")
    (root / "docs.txt").write_text(DOCUMENT_SEPARATOR.join(DOCS), encoding="utf-8")
    build_index([str(root / "docs.txt")], root / "idx", f"gpt:{base}", chunk_size=20, overlap=0, quiet=True)
    return base, tuned, root / "idx"


def test_the_context_is_cut_to_the_budget_best_chunk_first():
    tokenizer = CharTokenizer.train(RAG_TEMPLATE + "".join(DOCS) + "What is ice?")
    hits = [Hit(0.9 - i / 10, chunk_document(doc, 50, 0, "docs.txt", i)[0]) for i, doc in enumerate(DOCS)]
    question = "What is ice?"
    empty = len(tokenizer.encode(RAG_TEMPLATE.format(context="", question=question))) - len(question)
    asked, used = rag_question(question, hits, tokenizer, budget=empty + 40)
    assert len(tokenizer.encode(asked)) <= len(question) + empty + 40
    assert used == hits[:2] and DOCS[0] in asked and asked.endswith(f"Answer: {question}")
    assert DOCS[1][:10] in asked and DOCS[1] not in asked  # the second chunk is cut, the third left out
    assert rag_question(question, hits, tokenizer, budget=empty) == (question, [])


def test_chat_puts_the_retrieved_text_in_front_and_lists_the_sources(rag_setup, monkeypatch, capsys, tmp_path):
    from fromzero.chat import repl

    base, tuned, index = rag_setup
    prompts = []
    real = repl.stream

    def spy(model, tokenizer, ids, config):
        prompts.append(tokenizer.decode(ids))
        return real(model, tokenizer, ids, config)

    monkeypatch.setattr(repl, "stream", spy)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"honey?\nsave {tmp_path / 't'}\n"))
    status = main(["chat", "--model", str(tuned), "--rag", str(index), "--rag-k", "2", "--temperature", "0",
                   "--max-new-tokens", "4"])
    out, err = capsys.readouterr()
    assert status == 0 and "answers from" in err
    assert "Based on this textbook content:\n" in prompts[0] and prompts[0].count("Answer: honey?") == 1
    assert len(prompts[0]) <= 96 - 4  # cut to fit the tiny model's context beside the answer
    assert out.count("docs.txt, document") >= 1 and "[1] " in out
    entries = json.loads((tmp_path / "t.json").read_text())["entries"]
    assert any(entry["role"] == "sources" for entry in entries)


def test_bad_rag_flags_are_one_line(rag_setup, monkeypatch, capsys, tmp_path):
    base, tuned, index = rag_setup
    for flags, message in [(["--rag", str(tmp_path / "none")], "no index in"), (["--rag", str(index), "--rag-k", "0"], "--rag-k")]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        assert main(["chat", "--model", str(tuned), *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
