"""``fromzero word2vec train|similar|analogy|plot``: word vectors from scratch (:mod:`fromzero.embeddings.word2vec`).

A vectors folder holds ``vectors.safetensors`` (one row per word) and ``vocab.json`` (the words,
most frequent first, and their counts): what :meth:`WordVectors.save` writes and ``load`` reads.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from rich.table import Table

from fromzero.commands.parsing import HelpFormatter
from fromzero.data.settings import DEFAULT_TEXT_FIELD, WORD2VEC_DEFAULTS, WORD2VEC_LR
from fromzero.errors import InputError

# One flag per Word2VecConfig field: (field, type, help). The defaults are Word2VecConfig's own,
# read from fromzero.data.settings so that building the parser does not import PyTorch.
CONFIG_FLAGS: list[tuple[str, type, str]] = [
    ("mode", str, "skipgram: each word predicts the words around it; cbow: the average of the words "
                  "around predicts the word in the middle"),
    ("dim", int, "numbers per word vector"),
    ("window", int, "the most words looked at on each side of a word (each word draws 1..window)"),
    ("negatives", int, "noise words per prediction (negative sampling)"),
    ("min_count", int, "words seen fewer times than this get no vector"),
    ("epochs", int, "passes over the corpus"),
    ("lr", float, "starting learning rate (default: "
                  + ", ".join(f"{rate:g} for {mode}" for mode, rate in WORD2VEC_LR.items()) + ")"),
    ("min_lr", float, "learning rate at the very end (it falls in a straight line from --lr)"),
    ("sample", float, "subsampling threshold: very frequent words are often skipped (0 keeps every word)"),
    ("batch_size", int, "center words whose updates are computed together at most (fewer on a tiny vocabulary, "
                        "where a frequent word would recur too often in one batch)"),
    ("seed", int, "random seed: the same seed, corpus and flags give the same vectors"),
    ("threads", int, "CPU threads for PyTorch (these small matrices gain little from more)"),
]
VECTORS_HELP = "a folder written by `fromzero word2vec train`"
WORDS_NOTE = "Training lowercases the text, so the vocabulary is lowercase."


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    fmt = HelpFormatter
    word2vec = subparsers.add_parser(
        "word2vec", help="word vectors from scratch: train word2vec, then ask for neighbours, analogies, pictures",
        description="Learn one vector per word from which words appear near which (skip-gram or CBOW with "
        "negative sampling), then look at what was learned.\n\nexamples:\n"
        "  fromzero word2vec train stories --epochs 20 --dim 50 --out out/word2vec\n"
        "  fromzero word2vec similar out/word2vec red\n"
        "  fromzero word2vec analogy out/word2vec man king woman    # man : king = woman : ?\n"
        "  fromzero word2vec plot out/word2vec --top 40 --method tsne",
        formatter_class=fmt)
    commands = word2vec.add_subparsers(dest="word2vec_command", metavar="ACTION", required=True)

    p = commands.add_parser("train", help="learn word vectors from documents and save them", formatter_class=fmt,
                            description="Read the documents (any source `fromzero data` reads: bundled corpora, "
                            ".txt/.html/.jsonl files, folders, hf:NAME), split them into sentences of lowercase "
                            "words and learn a vector for every word seen --min-count times or more.")
    p.add_argument("sources", nargs="+", metavar="SOURCES", help="corpus names, files or folders to learn from")
    p.add_argument("--out", required=True, metavar="DIR", help="the vectors folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the vectors already in --out (only the files this command writes)")
    p.add_argument("--text-field", default=DEFAULT_TEXT_FIELD, metavar="NAME",
                   help="the field of a .jsonl file's records (or column of an hf: dataset) that holds the text")
    p.add_argument("--text-format", metavar="FILE",
                   help="also write the vectors in word2vec's text format (gensim's KeyedVectors.load_word2vec_format "
                   "reads it)")
    for name, kind, text in CONFIG_FLAGS:
        choices = tuple(WORD2VEC_LR) if name == "mode" else None  # the modes: each has its own starting rate
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=WORD2VEC_DEFAULTS.get(name),
                       choices=choices, help=text)
    p.set_defaults(func=train)

    p = commands.add_parser("similar", help="the words nearest to a word (or to a sum of words), by cosine",
                            formatter_class=fmt,
                            description="The words whose vectors point most nearly the same way as the query's. "
                            "Several words are added (their unit vectors), --negative words subtracted: "
                            f"`similar DIR king woman --negative man` is the analogy man : king = woman : ?. {WORDS_NOTE}")
    p.add_argument("vectors", metavar="DIR", help=VECTORS_HELP)
    p.add_argument("words", nargs="+", metavar="WORD", help="the word(s) to find neighbours of")
    p.add_argument("--negative", nargs="+", default=[], metavar="WORD", help="words whose vectors are subtracted")
    p.add_argument("-k", type=int, default=10, help="how many neighbours to show")
    p.set_defaults(func=similar)

    p = commands.add_parser("analogy", help="A is to B as C is to ?  (e.g. man king woman -> queen)",
                            formatter_class=fmt,
                            description="Answer \"A is to B as C is to ?\" by 3CosAdd: the words nearest to "
                            "B - A + C (unit vectors), leaving out A, B and C. The order is that of the sentence: "
                            f"`analogy DIR man king woman` asks man : king = woman : ? (ideally queen). {WORDS_NOTE}")
    p.add_argument("vectors", metavar="DIR", help=VECTORS_HELP)
    p.add_argument("a", metavar="A", help="the first word of the known pair (man)")
    p.add_argument("b", metavar="B", help="the second word of the known pair (king)")
    p.add_argument("c", metavar="C", help="the word whose partner is asked for (woman)")
    p.add_argument("-k", type=int, default=5, help="how many answers to show, best first")
    p.set_defaults(func=analogy)

    p = commands.add_parser("plot", help="draw words as points in 2-D (PCA or t-SNE), or their cosine heatmap",
                            formatter_class=fmt,
                            description="PCA keeps the two directions along which the vectors spread most (honest "
                            "distances); t-SNE keeps each word's neighbours near it (clear clusters, but distances "
                            f"between clusters mean nothing). --heatmap shows the cosine of every pair. {WORDS_NOTE}")
    p.add_argument("vectors", metavar="DIR", help=VECTORS_HELP)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--words", nargs="+", metavar="WORD", help="the words to draw")
    which.add_argument("--top", type=int, default=30, metavar="N", help="draw the N most frequent words")
    p.add_argument("--method", choices=("pca", "tsne"), default="pca", help="how to bring the vectors down to 2-D")
    p.add_argument("--heatmap", action="store_true", help="a heatmap of the words' cosine similarities instead")
    p.add_argument("--out", metavar="PNG", help="the picture (default: DIR/pca.png, DIR/tsne.png or DIR/heatmap.png)")
    p.set_defaults(func=plot)


def _hint_word(words: list[str]) -> str:
    """A word worth asking about in the ``next:`` hint: the most frequent one of five letters or
    more (the most frequent words of all are "the", "and", "a", whose neighbours say little)."""
    return next((word for word in words if len(word) >= 5), words[0])


def train(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from fromzero.console import console
    from fromzero.data.loading import load_documents
    from fromzero.embeddings.word2vec import VECTORS_FILE, VOCAB_FILE, Word2VecConfig, train_word2vec
    from fromzero.files import prepare_output_dir

    # Everything is checked before training, and nothing is written until the vectors exist.
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise InputError(f"{out} already holds files; pass --overwrite to replace the vectors there, "
                         "or choose another --out")
    if args.text_format and Path(args.text_format).is_dir():
        raise InputError(f"--text-format {args.text_format} is a folder; give a file name")
    config = Word2VecConfig(**{name: getattr(args, name) for name, _, _ in CONFIG_FLAGS})
    documents = load_documents(args.sources, args.text_field)
    start = time.perf_counter()
    vectors = train_word2vec(documents, config)
    seconds = time.perf_counter() - start

    prepare_output_dir(out, (VECTORS_FILE, VOCAB_FILE) if args.overwrite else ())
    vectors.save(out)
    saved = f"{VECTORS_FILE}, {VOCAB_FILE}"
    if args.text_format:
        vectors.save_word2vec_format(args.text_format)
        saved += f"; text format: {args.text_format}"
    console.print(f"vocabulary: {len(vectors.words):,} words seen at least {config.min_count} times; trained on "
                  f"{sum(vectors.counts):,} words x {config.epochs} epochs ({config.mode}, {config.dim} numbers "
                  f"per word) in {seconds:.1f} s", soft_wrap=True)
    hint = f"fromzero word2vec similar {shlex.quote(str(out))} {shlex.quote(_hint_word(vectors.words))}"
    console.print(f"[green]saved[/] {escape(str(out))} ({escape(saved)}); next: `{escape(hint)}`", soft_wrap=True)
    return 0


def _neighbour_table(title: str, neighbours: list[tuple[str, float]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("word")
    table.add_column("cosine", justify="right", style="cyan")
    for rank, (word, cosine) in enumerate(neighbours, start=1):
        table.add_row(str(rank), word, f"{cosine:.3f}")
    return table


def similar(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from fromzero.console import stdout
    from fromzero.embeddings.word2vec import WordVectors

    vectors = WordVectors.load(args.vectors)
    neighbours = vectors.most_similar(positive=args.words, negative=args.negative, k=args.k)
    query = " + ".join(args.words) + "".join(f" - {word}" for word in args.negative)
    stdout.print(_neighbour_table(escape(f"nearest to {query}"), neighbours))
    return 0


def analogy(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from fromzero.console import stdout
    from fromzero.embeddings.word2vec import WordVectors

    vectors = WordVectors.load(args.vectors)
    answer = vectors.analogy(args.a, args.b, args.c)
    # analogy() is this query with k=1: the table adds the runners-up.
    answers = vectors.most_similar(positive=[args.b, args.c], negative=[args.a], k=args.k)
    stdout.print(escape(f"{args.a} is to {args.b} as {args.c} is to ") + f"[bold]{escape(answer)}[/]")
    stdout.print(_neighbour_table(escape(f"{args.b} - {args.a} + {args.c}"), answers))
    return 0


def plot(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.markup import escape

    from fromzero.console import console
    from fromzero.embeddings.plots import pca, plot_points, plot_similarity, tsne
    from fromzero.embeddings.word2vec import WordVectors

    if args.words is None and args.top < 1:
        raise InputError(f"--top must be at least 1, not {args.top}")
    vectors = WordVectors.load(args.vectors)
    words = list(dict.fromkeys(args.words)) if args.words else vectors.words[: args.top]
    matrix = np.stack([vectors.vector(word) for word in words])
    name = "heatmap" if args.heatmap else args.method
    out = Path(args.out) if args.out else Path(args.vectors) / f"{name}.png"
    if args.heatmap:
        title = f"cosine similarity of {len(words)} word vectors"
        plot_similarity(matrix, words, out, title=title)
    else:
        points = pca(matrix) if args.method == "pca" else tsne(matrix)
        title = f"{len(words)} word vectors, " + {"pca": "PCA", "tsne": "t-SNE"}[args.method]
        plot_points(points, words, out, title=title)
    console.print(f"[green]saved[/] {escape(str(out))}: {escape(title)}", soft_wrap=True)
    return 0
