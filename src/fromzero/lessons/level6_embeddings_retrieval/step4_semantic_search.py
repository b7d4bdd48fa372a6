"""Semantic search: documents cut into chunks, one vector each, and the chunks nearest a question."""

from __future__ import annotations

import json

from fromzero.data.loading import load_documents
from fromzero.embeddings.index import Index, Retriever, build_index, chunk_document
from fromzero.evaluate.qa import load_qa
from fromzero.evaluate.retrieval import recall_at_k
from fromzero.files import write_text
from fromzero.lessons.course import Step

TITLE = "Semantic search"
NEEDS = ("5.2",)
QUESTIONS = ("Why do plants need sunlight?", "How does the heart move blood?", "What causes the seasons?")


def run(step: Step) -> None:
    step.say("""
        To search your own documents by meaning: cut them into **chunks** (runs of words that overlap, so a
        sentence cut at one chunk's end is whole in the next), encode every chunk once, and keep the
        vectors. A question is encoded the same way; the chunks with the largest cosine are the answer.
        Here the "textbook" is the answers of the education Q&A train split:
    """)
    step.show(chunk_document)
    source = _quick_subset(step, "education_qa/train", 40)
    index = build_index([source], step.output("6.4"), "minilm", chunk_size=60, overlap=15, text_field="output",
                        quiet=step.quick)
    step.figure("chunks in the index", len(index.chunks))
    step.figure("numbers per chunk vector", index.dim)
    step.show(Index.search)
    retriever = Retriever(step.output("6.4"), k=2)
    for question in QUESTIONS:
        best = retriever.retrieve(question)[0]
        step.figure(f"best chunk for '{question}'", f"{best.score:.2f}: {best.chunk.text[:90]}...")

    step.say("""
        Does it find the *right* text? The Q&A test split pairs each question with its answer. Put the test
        answers in an index, ask every test question, and count how often its own answer comes first
        (**recall@1**) or among the first three (**recall@3**). The same test for the course GPT's
        mean-pooled vectors shows what a sentence encoder trained for similarity is worth.
    """)
    step.show(recall_at_k)
    questions = [item.question for item in load_qa()][: step.pick(30, None)]
    answers = _quick_subset(step, "education_qa/test", len(questions))
    step.figure("test questions", len(questions))
    for name, encoder in (("MiniLM", "minilm"), ("course GPT", f"gpt:{step.output('5.2')}")):
        folder = step.folder / f"step6_4_test_answers_{name.replace(' ', '_')}"
        build_index([answers], folder, encoder, chunk_size=1000, overlap=0, text_field="output",
                    quiet=True)  # one answer = one chunk, numbered like the questions
        retriever = Retriever(folder)
        vectors = retriever.encoder.encode(questions, normalize=True)  # all questions at once: faster
        ranked = [[hit.chunk.document for hit in retriever.index.search(vector, k=3)] for vector in vectors]
        relevant = list(range(len(questions)))
        step.figure(f"{name}: recall@1", f"{recall_at_k(ranked, relevant, 1):.0%}")
        step.figure(f"{name}: recall@3", f"{recall_at_k(ranked, relevant, 3):.0%}")
    step.figure("picking at random: recall@1", f"{1 / len(questions):.0%}")
    step.say("""
        The course GPT's vectors find some answers through the words a question and its answer share;
        MiniLM was trained on pairs that belong together, questions and answers among them, and it shows.
    """)


def _quick_subset(step: Step, source: str, records: int) -> str:
    """``source`` itself, or in --quick mode a file of its first ``records`` answers (less to encode)."""
    if not step.quick:
        return source
    path = step.folder / f"{source.replace('/', '_')}_quick.jsonl"
    write_text(path, "".join(json.dumps({"output": text}) + "\n" for text in load_documents(source, "output")[:records]))
    return str(path)
