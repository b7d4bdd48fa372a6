"""Retrieval-augmented answers: look the question up in an index, and hand the model what was found.

Fine-tuning teaches a model *how* to answer; retrieval supplies *what*: the chunks of your own
documents closest in meaning to the question (:mod:`fromzero.embeddings.index`) are put in front of
it, in the course's words (``RAG_TEMPLATE``)::

    Based on this textbook content:
    {context}

    Answer: {question}

The context is cut, chunk by chunk and then token by token, to what fits in the model's context
beside the question and the answer, best chunk first; the sources of the chunks that went in are
listed after the answer.
"""

from __future__ import annotations

from pathlib import Path

from fromzero.embeddings.index import Hit, Retriever

__all__ = ["RAG_TEMPLATE", "Retriever", "load_retriever", "rag_question", "source_line"]

RAG_TEMPLATE = "Based on this textbook content:\n{context}\n\nAnswer: {question}"


def load_retriever(folder: str | Path, k: int = 3, device: str = "cpu") -> Retriever:
    """A :class:`Retriever` that has answered once, so that what would fail the first question fails now.

    A server loads it before it serves: a missing or damaged index, or an encoder whose vectors are
    not the size of the index's (it was built with another model), is one error at start, not a
    failed request later. The trial query is the index's first chunk, text its encoder has read before.
    """
    retriever = Retriever(folder, k, device)
    if retriever.index.chunks:
        retriever.retrieve(retriever.index.chunks[0].text)
    return retriever


def rag_question(question: str, hits: list[Hit], tokenizer, budget: int) -> tuple[str, list[Hit]]:
    """``question`` with as much retrieved context as ``budget`` more tokens allow, and the hits used.

    ``budget`` is what the template's words and the context may add to the question's own tokens.
    """
    words = len(tokenizer.encode(RAG_TEMPLATE.format(context="", question=question))) - len(tokenizer.encode(question))
    used, pieces, left = [], [], budget - words
    for hit in hits:
        if left <= 0:
            break
        ids = tokenizer.encode(hit.chunk.text)
        pieces.append(tokenizer.decode(ids[:left]).strip())
        used.append(hit)
        left -= len(ids) + 1  # and the line break between chunks
    if not used:
        return question, []
    return RAG_TEMPLATE.format(context="\n".join(pieces), question=question), used


def source_line(rank: int, hit: Hit) -> str:
    chunk = hit.chunk
    return f"[{rank}] {chunk.source}, document {chunk.document}, characters {chunk.start}-{chunk.end} (similarity {hit.score:.2f})"
