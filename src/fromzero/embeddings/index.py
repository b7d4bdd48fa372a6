"""A semantic search index: documents cut into overlapping chunks, one sentence vector per chunk.

Search by meaning rather than by words: every chunk of the documents is encoded once into a unit
vector (:mod:`fromzero.embeddings.encoders`), and a query is encoded the same way; the chunks
whose vectors have the largest cosine with the query's (a dot product, as all are unit length)
are the answer. The search is exact: every chunk is scored. NumPy does it in milliseconds for
tens of thousands of chunks; from ``FAISS_MIN_VECTORS`` chunks on, ``backend="auto"`` uses faiss's
exact inner-product index (``IndexFlatIP``, when ``faiss-cpu`` is installed), which scores the same
vectors faster. Both backends return exactly the same hits, scores included: each only proposes
candidates, and the candidates' final scores and order come from one NumPy computation (see
:meth:`Index.search`).

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fromzero.errors import CorruptFileError, InputError, MissingFileError

INDEX_JSON, VECTORS, CHUNKS = "index.json", "vectors.safetensors", "chunks.jsonl"
FORMAT = "fromzero-index/1"
WORD = re.compile(r"\S+")
BACKENDS = ("auto", "numpy", "faiss")
# From this many vectors on, backend="auto" searches with faiss (one thread per query). On a quiet
# 2-core AMD EPYC, dim 384 (benchmarks/embeddings_bench.py --only search): faiss on one thread takes
# 0.33 ms a query at 10k vectors and 8.5 ms at 100k, NumPy 0.55 and 16-19 ms on one thread, 0.31 and
# 8.9 ms on both cores: as fast as NumPy with both cores, while leaving one free.
FAISS_MIN_VECTORS = 5_000


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


def import_faiss():
    """The ``faiss`` module, or a clear error saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise InputError("the faiss search backend needs the faiss-cpu package: pip install faiss-cpu") from None
    return faiss


@dataclass
class Index:
    encoder: str  # the spec the index was built with
    dim: int
    chunk_size: int
    overlap: int
    vectors: np.ndarray
    chunks: list[Chunk]
    # Built on first use for the current ``vectors``: their largest norm, and the faiss index.
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def search(self, query_vector: np.ndarray, k: int = 3, backend: str = "auto") -> list[Hit]:
        """The ``k`` chunks most similar to a unit ``query_vector``, best first, equal scores in index order (exact).

        ``backend``: ``numpy``, ``faiss`` (needs ``faiss-cpu``) or ``auto`` (faiss from
        ``FAISS_MIN_VECTORS`` chunks on, when it is installed). Both give exactly the same hits and
        scores. Two float32 dot products of the same vectors may differ in their last bits (BLAS and
        faiss add the products in different orders), so neither backend's scores decide: each
        proposes every chunk whose score is within ``margin`` of its k-th best, which provably
        includes the true top k, and :meth:`_rank` scores those few candidates one way for both.
        """
        if not self.chunks:
            raise InputError("the index is empty: add documents with `fromzero index build`")
        if k < 1:
            raise InputError(f"-k must be at least 1, got {k}")
        query = np.asarray(query_vector, dtype=np.float32)
        k = min(k, len(self.chunks))
        cache = self._prepared()
        # A float32 dot product of d terms is within about d * eps/2 * |x| |q| of the true value,
        # whatever the order of the additions, so two ways of computing it differ by at most
        # d * eps * |x| |q|, and a chunk one way puts twice that below the k-th best may still be
        # in the top k. The margin doubles that again: a few more candidates, never a wrong answer.
        margin = 4 * self.dim * float(np.finfo(np.float32).eps) * float(np.linalg.norm(query)) * cache["norm"]
        if self.backend_for(backend) == "faiss":
            hits = self._search_faiss(query, k, margin)
            if hits is not None:
                return hits
        scores = self.vectors @ query
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        return self._rank(np.flatnonzero(scores >= kth - margin), query, k)

    def backend_for(self, backend: str = "auto") -> str:
        """The backend ``search`` uses for ``backend`` ("auto": faiss for large indexes, if installed)."""
        if backend not in BACKENDS:
            raise InputError(f"the search backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if backend == "faiss":
            import_faiss()
        elif backend == "auto":
            try:
                backend = "faiss" if len(self.chunks) >= FAISS_MIN_VECTORS and import_faiss() else "numpy"
            except InputError:
                backend = "numpy"
        return backend

    def _prepared(self) -> dict[str, Any]:
        """The cache, emptied whenever ``vectors`` was replaced (as adding documents does)."""
        if self._cache.get("vectors") is not self.vectors:
            self._cache.clear()
            self._cache["vectors"] = self.vectors
            self._cache["norm"] = float(np.linalg.norm(self.vectors, axis=1).max(initial=0.0))
        return self._cache

    def _search_faiss(self, query: np.ndarray, k: int, margin: float) -> list[Hit] | None:
        """faiss's best candidates ranked by :meth:`_rank`; None when they may miss one (many near-ties)."""
        cache = self._prepared()
        if "faiss" not in cache:  # built once per index, not per query: it copies the vectors
            faiss = import_faiss()
            cache["faiss"] = faiss.IndexFlatIP(self.dim)
            cache["faiss"].add(np.ascontiguousarray(self.vectors, dtype=np.float32))
        n = len(self.chunks)
        for fetch in (min(n, 2 * k + 16), min(n, 16 * k + 256)):
            scores, ids = _one_thread_search(cache["faiss"], query, fetch)
            threshold = scores[k - 1] - margin
            # Every chunk faiss did not return scores at most its last one: below the threshold,
            # none of them can be in the top k.
            if fetch == n or scores[-1] < threshold:
                return self._rank(ids[scores >= threshold], query, k)
        return None

    def _rank(self, candidates: np.ndarray, query: np.ndarray, k: int) -> list[Hit]:
        """The best ``k`` of ``candidates``, by scores computed row by row (multiply, then NumPy's
        sum along the row): a row's score never depends on which other rows are candidates."""
        scores = (self.vectors[candidates] * query).sum(axis=1)
        best = np.lexsort((candidates, -scores))[:k]  # best first; equal scores in index order
        return [Hit(float(scores[i]), self.chunks[candidates[i]]) for i in best]


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


def _one_thread_search(index: Any, query: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss's ``fetch`` best (scores, ids) for one query, on one thread.

    For a single query faiss's OpenMP threads cost more than they save: on a 2-core AMD EPYC it took
    17.5 ms at 100k vectors with both threads against 8.5 ms with one (NumPy: 8.9 ms on both cores),
    so one query uses one core and leaves the other to the rest of the program.
    """
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        scores, ids = index.search(query[None], fetch)
    finally:
        faiss.omp_set_num_threads(threads)
    return scores[0], ids[0]


class Retriever:
    """An index and its encoder, loaded once, answering many queries (a search, or a chat with ``--rag``)."""

    def __init__(self, folder: str | Path, k: int = 3, device: str = "cpu", backend: str = "auto") -> None:
        self.index = load_index(folder)
        self.backend = self.index.backend_for(backend)  # a bad name or a missing faiss fails here, once
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
        return self.index.search(vector, self.k, self.backend)


def search_index(folder: str | Path, query: str, k: int = 3, device: str = "cpu", backend: str = "auto") -> list[Hit]:
    """Load the index in ``folder`` and its encoder, and return the ``k`` best chunks for ``query``."""
    if not query.strip():
        raise InputError("give a query to search for")  # before loading anything
    return Retriever(folder, k, device, backend).retrieve(query)
