"""Validation perplexity per character of the classic models on the bundled stories.

Split: documents of the corpus, 10% held out with ``fromzero.data.train_val_split`` (seed 0),
each side joined with the corpus' document separator (``fromzero.classic.corpus``). Every model
shares one closed character vocabulary (all characters of the corpus) and scores every
validation character, so the numbers are directly comparable.

Run: flock /tmp/fromzero-bench.lock python benchmarks/classic_perplexity.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from rich.table import Table

from fromzero.classic.char_mlp import CharMLP, CharMLPConfig, TrainConfig, train_char_mlp
from fromzero.classic.corpus import char_vocab, train_val_text
from fromzero.classic.ngram import NGramModel
from fromzero.console import console, stdout
from fromzero.files import write_json
from timing import timed  # benchmarks/timing.py

RESULTS = Path(__file__).resolve().parent / "results" / "classic_perplexity.json"

NGRAMS = [
    ("unigram (add-1)", 1, "add-k"),
    ("bigram (unsmoothed)", 2, "none"),
    ("bigram (add-1)", 2, "add-k"),
    ("bigram (Kneser-Ney)", 2, "kneser-ney"),
    ("3-gram (Kneser-Ney)", 3, "kneser-ney"),
    ("5-gram (Kneser-Ney)", 5, "kneser-ney"),
]




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="stories", help="corpus to split and measure")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, 1 char-MLP epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats of each n-gram fit/evaluation")
    parser.add_argument("--context", type=int, default=6)
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--output", type=Path, default=None, help=f"JSON to write (default {RESULTS.name}; --quick: *_quick.json)")
    args = parser.parse_args(argv)
    output = args.output or (RESULTS.with_name(RESULTS.stem + "_quick.json") if args.quick else RESULTS)
    repeats, epochs = (1, 1) if args.quick else (args.repeats, args.epochs)
    wall_start = time.perf_counter()

    train_text, val_text = train_val_text(args.data, 0.1, 0)
    vocab = char_vocab(train_text, val_text)
    console.print(f"{args.data}: {len(train_text):,} training / {len(val_text):,} validation characters, vocabulary {len(vocab)}")
    rows = []
    for name, order, smoothing in NGRAMS:
        model, fit_s = timed(lambda: NGramModel(order, smoothing, k=1.0).fit(train_text, vocab=vocab), repeats)
        evaluation, eval_s = timed(lambda: model.evaluate(val_text), repeats)
        rows.append({"model": name, "perplexity": evaluation.perplexity, "zero_probability_chars": evaluation.n_zero,
                     "train_s": fit_s, "eval_s": eval_s})
        console.print(f"{name}: {evaluation.explain()}")

    index = {ch: i for i, ch in enumerate(vocab)}
    train_ids, val_ids = [index[c] for c in train_text], [index[c] for c in val_text]
    config = CharMLPConfig(len(vocab), args.context, args.embed, args.hidden, "tanh")
    mlp = CharMLP(config, seed=0, dtype=np.float32)
    start = time.perf_counter()
    history = train_char_mlp(mlp, train_ids, None, TrainConfig(epochs, args.batch_size, args.lr, seed=0))
    train_s = time.perf_counter() - start
    perplexity, eval_s = timed(lambda: mlp.perplexity(val_ids), 1)
    name = f"char-MLP (k={args.context}, d={args.embed}, h={args.hidden}, {epochs} ep)"
    rows.append({"model": name, "perplexity": perplexity, "zero_probability_chars": 0, "train_s": train_s, "eval_s": eval_s,
                 "parameters": mlp.num_params(), "train_loss_per_epoch": history.series("train_loss")})

    bigram = next(r["perplexity"] for r in rows if r["model"] == "bigram (Kneser-Ney)")
    table = Table(title=f"validation perplexity per character — {args.data}", title_justify="left")
    for column in ("model", "val perplexity", "vs bigram KN", "train s", "eval s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        ppl = r["perplexity"]
        table.add_row(r["model"], "inf" if ppl == float("inf") else f"{ppl:.3f}",
                      "-" if ppl == float("inf") else f"{ppl / bigram:.2f}x", f"{r['train_s']:.2f}", f"{r['eval_s']:.2f}")
    stdout.print(table)
    wall = time.perf_counter() - wall_start
    console.print(f"total wall time {wall:.1f} s")
    write_json(output, {
        "benchmark": "classic_perplexity",
        "data": args.data,
        "split": "documents, val_fraction=0.1, seed=0 (fromzero.classic.corpus.train_val_text)",
        "train_chars": len(train_text),
        "val_chars": len(val_text),
        "vocab_size": len(vocab),
        "quick": args.quick,
        "repeats": repeats,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "wall_s": wall,
        "command": " ".join(["python", "benchmarks/classic_perplexity.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "processor": platform.machine()},
        "results": [{**r, "perplexity": None if r["perplexity"] == float("inf") else r["perplexity"]} for r in rows],
    })
    console.print(f"[green]wrote[/] {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
