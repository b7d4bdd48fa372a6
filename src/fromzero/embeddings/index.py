"""A semantic search index: documents cut into overlapping chunks, one sentence vector per chunk.

Search by meaning rather than by words: every chunk of the documents is encoded once into a unit
vector (:mod:`fromzero.embeddings.encoders`), and a query is encoded the same way; the chunks
whose vectors have the largest cosine with the query's (a dot product, as all are unit length)
are the answer. The search here is exact: every chunk is scored, which takes milliseconds for
tens of thousands of chunks.

Chunks are runs of ``chunk_size`` words, each starting ``chunk_size - overlap`` words after the
last, so a sentence cut by one chunk's end is whole in the next. An index folder holds

* ``index.json``: the encoder it was built with (a query must use the same one), the chunk
  settings, the number of chunks and the vector size;
* ``vectors.safetensors``: the (chunks, dim) float32 matrix;
* ``chunks.jsonl``: each chunk's text and where it came from (source, document number and
  character offsets in that document).

Every file is written whole or not at all, ``index.json`` last; adding documents rewrites them.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fromzero.errors import CorruptFileError, InputError, MissingFileError

INDEX_JSON, VECTORS, CHUNKS = "index.json", "vectors.safetensors", "chunks.jsonl"
FORMAT = "fromzero-index/1"
WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    text: str
    source: str  # the source it was read from (file, folder or corpus name)
    document: int  # which document of that source, from 0
    start: int  # character offsets of the chunk in that document
    end: int


@dataclass(frozen=True)
class Hit:
    score: float  # cosine similarity with the query
    chunk: Chunk


def chunk_document(text: str, chunk_size: int, overlap: int, source: str = "", document: int = 0) -> list[Chunk]:
    """``text`` as chunks of ``chunk_size`` words overlapping by ``overlap`` words (offsets kept)."""
    if chunk_size < 1 or not 0 <= overlap < chunk_size:
        raise InputError(f"the chunk size (--chunk-size) must be at least 1 and the overlap (--overlap) between 0 "
                         f"and chunk size - 1, got {chunk_size} and {overlap}")
    words = [match.span() for match in WORD.finditer(text)]
    chunks = []
    for first in range(0, len(words), chunk_size - overlap):
        span = words[first:first + chunk_size]
        start, end = span[0][0], span[-1][1]
        chunks.append(Chunk(text[start:end], source, document, start, end))
        if first + chunk_size >= len(words):
            break
    return chunks


def load_encoder_spec(spec: str, device: str = "cpu"):
    """``minilm`` or a BERT / sentence-transformers folder, or ``gpt:DIR`` for a GPT's mean-pooled states."""
    from fromzero.embeddings.encoders import GPTMeanPoolEncoder, load_encoder

    if spec.startswith("gpt:"):
        return GPTMeanPoolEncoder.load(spec[4:], device=device)
    return load_encoder(spec, device=device)


@dataclass
class Index:
    encoder: str  # the spec the index was built with
    dim: int
    chunk_size: int
    overlap: int
    vectors: np.ndarray
    chunks: list[Chunk]

    def search(self, query_vector: np.ndarray, k: int = 3) -> list[Hit]:
        """The ``k`` chunks most similar to a unit ``query_vector``, best first (exact)."""
        if not self.chunks:
            raise InputError("the index is empty: add documents with `fromzero index build`")
        if k < 1:
            raise InputError(f"-k must be at least 1, got {k}")
        scores = self.vectors @ np.asarray(query_vector, dtype=np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]  # best first; equal scores in index order
        return [Hit(float(scores[i]), self.chunks[i]) for i in top]


def build_index(sources: Sequence[str], out: str | Path, encoder: str = "minilm", chunk_size: int = 200,
                overlap: int = 40, add: bool = False, device: str = "cpu", batch_size: int = 32,
                text_field: str = "text", quiet: bool = False) -> Index:
    """Chunk and encode every document of ``sources`` into the index folder ``out`` (``add``: to the index there)."""
    from fromzero.console import progress
    from fromzero.data.loading import load_documents

    out = Path(out)
    old = load_index(out) if add and (out / INDEX_JSON).is_file() else None
    if old is not None:
        if old.encoder != encoder:
            raise InputError(f"{out} was built with the encoder {old.encoder!r}, not {encoder!r}: "
                             f"add to it with --encoder {old.encoder}")
        chunk_size, overlap = old.chunk_size, old.overlap
    elif out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the index")
    chunks = []
    for source in sources:
        for number, document in enumerate(load_documents(source, text_field)):
            chunks += chunk_document(document, chunk_size, overlap, str(source), number)
    if not chunks:
        raise InputError(f"{', '.join(map(str, sources))}: no text to index")
    model = load_encoder_spec(encoder, device)
    vectors = []
    with progress(transient=True, disable=quiet) as bar:
        task = bar.add_task("encoding chunks", total=len(chunks))
        for start in range(0, len(chunks), batch_size):
            batch = [chunk.text for chunk in chunks[start:start + batch_size]]
            vectors.append(np.atleast_2d(model.encode(batch, batch_size=batch_size, normalize=True)))
            bar.advance(task, len(batch))
    matrix = np.concatenate(vectors).astype(np.float32)
    if old is not None:
        matrix, chunks = np.concatenate([old.vectors, matrix]), old.chunks + chunks
    index = Index(encoder, int(matrix.shape[1]), chunk_size, overlap, matrix, chunks)
    save_index(index, out)
    return index


def save_index(index: Index, out: str | Path) -> None:
    from safetensors.numpy import save_file

    from fromzero.files import atomic_path, write_json, write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_JSON).unlink(missing_ok=True)  # written last: a half-written index is no index
    with atomic_path(out / VECTORS) as tmp:
        save_file({"vectors": np.ascontiguousarray(index.vectors)}, str(tmp))
    write_text(out / CHUNKS, "".join(json.dumps(asdict(chunk), ensure_ascii=False) + "\n" for chunk in index.chunks))
    write_json(out / INDEX_JSON, {"format": FORMAT, "encoder": index.encoder, "dim": index.dim,
                                  "chunk_size": index.chunk_size, "overlap": index.overlap,
                                  "chunks": len(index.chunks)})


def load_index(folder: str | Path) -> Index:
    """An index folder, checked: its three files agree with each other, or a clear error says which does not."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder)
    if not (folder / INDEX_JSON).is_file():
        raise MissingFileError(f"no index in {folder}; build one with `fromzero index build DOCS --out {folder}`")
    try:
        header: dict[str, Any] = json.loads((folder / INDEX_JSON).read_text(encoding="utf-8"))
        if header.get("format") != FORMAT:
            raise CorruptFileError(f"{folder / INDEX_JSON} is not a fromzero index ({FORMAT})")
        vectors = load_file(str(folder / VECTORS))["vectors"]
        chunks = [Chunk(**json.loads(line)) for line in
                  (folder / CHUNKS).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, SafetensorError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"the index in {folder} is damaged ({type(err).__name__}: {err}); build it again") from None
    if vectors.shape != (header["chunks"], header["dim"]) or len(chunks) != header["chunks"]:
        raise CorruptFileError(f"the index in {folder} is damaged: {header['chunks']} chunks of {header['dim']} "
                               f"numbers expected, found {len(chunks)} chunks and vectors {tuple(vectors.shape)}; "
                               "build it again")
    return Index(header["encoder"], header["dim"], header["chunk_size"], header["overlap"], vectors, chunks)


class Retriever:
    """An index and its encoder, loaded once, answering many queries (a search, or a chat with ``--rag``)."""

    def __init__(self, folder: str | Path, k: int = 3, device: str = "cpu") -> None:
        self.index = load_index(folder)
        self.encoder = load_encoder_spec(self.index.encoder, device)
        self.k = k

    def retrieve(self, query: str) -> list[Hit]:
        """The ``k`` chunks most similar to ``query``, best first."""
        if not query.strip():
            raise InputError("give a query to search for")
        vector = np.atleast_2d(self.encoder.encode([query], normalize=True))[0]
        if vector.shape[0] != self.index.dim:
            raise InputError(f"the encoder {self.index.encoder!r} gives vectors of {vector.shape[0]} numbers, the "
                             f"index holds {self.index.dim}: it was built with another model; build it again")
        return self.index.search(vector, self.k)


def search_index(folder: str | Path, query: str, k: int = 3, device: str = "cpu") -> list[Hit]:
    """Load the index in ``folder`` and its encoder, and return the ``k`` best chunks for ``query``."""
    if not query.strip():
        raise InputError("give a query to search for")  # before loading anything
    return Retriever(folder, k, device).retrieve(query)
