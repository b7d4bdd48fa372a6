"""``fromzero ngram train|generate|perplexity|show``: the level-1 n-gram models.

A run directory holds ``ngram.json`` (the model), ``run.json`` (which data and split it was
trained on, so ``perplexity`` can measure the same held-out text) and, for token models, the
tokenizer's files.
"""

from __future__ import annotations

import argparse
import time
from argparse import Namespace
from pathlib import Path

from rich.table import Table
from rich.text import Text

from fromzero.classic.ngram import NGramModel
from fromzero.classic.runs import NGRAM_FILE, RUN_FILE, TokenCodec, load_ngram_run
from fromzero.classic.render import bar, heat, show_token
from fromzero.commands.parsing import HelpFormatter, add_split_flags, sampling_seed
from fromzero.console import console, stdout
from fromzero.data.settings import DEFAULT_TEXT_FIELD
from fromzero.errors import InputError
from fromzero.files import write_json



def add_commands(subparsers: argparse._SubParsersAction) -> None:
    fmt = HelpFormatter
    ngram = subparsers.add_parser(
        "ngram",
        help="level 1: n-gram language models (counting which token follows which)",
        description="Count n-grams, look at the tables, sample text and measure perplexity.\n"
        "Character-level by default; --tokenizer gives a token-level model.",
        formatter_class=fmt,
    )
    commands = ngram.add_subparsers(dest="ngram_command", metavar="ACTION", required=True)

    p = commands.add_parser("train", help="count n-grams of a corpus and save the model", formatter_class=fmt,
                            description="Fit an n-gram model on the training split, report validation perplexity, save it.")
    add_split_flags(p)
    p.add_argument("--order", type=int, default=5, help="n: the model sees the n-1 previous tokens")
    p.add_argument("--smoothing", choices=("none", "add-k", "kneser-ney"), default="kneser-ney", help="how unseen continuations get probability")
    p.add_argument("--k", type=float, default=1.0, help="k of add-k smoothing (1 = Laplace)")
    p.add_argument("--tokenizer", default=None, help="a fromzero tokenizer (e.g. gpt2 or a saved tokenizer folder); default: characters")
    p.add_argument("--prompt", default="", help="start of the sample printed after training")
    p.add_argument("--out", default="runs/ngram", help="folder to save the model in")
    p.set_defaults(func=train)

    p = commands.add_parser("generate", help="sample text from a saved model", formatter_class=fmt,
                            description="Sample text; unseen contexts back off to shorter ones.\n"
                            "Each run draws a fresh seed and prints it (pass --seed N to repeat a sample); "
                            "training commands use a fixed seed unless given --seed.")
    p.add_argument("--model", default="runs/ngram", help="folder written by `fromzero ngram train`")
    p.add_argument("--prompt", default="", help="text to continue")
    p.add_argument("--length", type=int, default=300, help="number of tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="<1 sharper, >1 flatter, 0 = always the likeliest")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling (default: a fresh one, printed)")
    p.set_defaults(func=generate)

    p = commands.add_parser("perplexity", help="measure perplexity on held-out text", formatter_class=fmt,
                            description="Perplexity per token. Default: the validation split the model was trained beside.")
    p.add_argument("--model", default="runs/ngram", help="folder written by `fromzero ngram train`")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", default=None, help="score all of this corpus, .txt file or folder instead")
    source.add_argument("--text", default=None, help="score this text instead")
    p.add_argument("--text-field", default=None, metavar="NAME",
                   help="the field of the records of a .jsonl --data that holds the text (default: the model's)")
    p.set_defaults(func=perplexity)

    p = commands.add_parser("show", help="tables: frequent pairs, who follows a context, probability matrix", formatter_class=fmt,
                            description="Print the model's tables with colour bars.")
    p.add_argument("--model", default="runs/ngram", help="folder written by `fromzero ngram train`")
    p.add_argument("--context", default="th", help="show which tokens follow this text")
    p.add_argument("--top", type=int, default=15, help="rows per table")
    p.add_argument("--matrix", type=int, default=12, help="size of the bigram probability matrix (0: none)")
    p.set_defaults(func=show)


def train(args: Namespace) -> int:
    from fromzero.classic.corpus import char_vocab, train_val_text

    codec = TokenCodec()
    if args.tokenizer:
        from fromzero.tokenizers import load_tokenizer

        codec = TokenCodec(load_tokenizer(args.tokenizer))
    train_text, val_text = train_val_text(args.data, args.val_fraction, args.seed, args.text_field)
    train_tokens, val_tokens = codec.encode(train_text), codec.encode(val_text)
    vocab = char_vocab(train_text, val_text) if codec.tokenizer is None else range(codec.tokenizer.vocab_size)
    start = time.perf_counter()
    with console.status(f"counting {args.order}-grams of {len(train_tokens):,} {codec.unit}"):
        model = NGramModel(args.order, args.smoothing, k=args.k).fit(train_tokens, vocab=vocab)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    model.save(out / NGRAM_FILE)
    if codec.tokenizer is not None:
        codec.tokenizer.save(str(out))
    run = {
        "data": args.data,
        "text_field": args.text_field,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "tokenizer": codec.tokenizer is not None,
        "train_tokens": len(train_tokens),
        "fit_seconds": round(seconds, 3),
    }
    table = Table(title=f"{args.order}-gram model ({args.smoothing}) of {args.data}", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row(f"training {codec.unit}", f"{len(train_tokens):,}")
    table.add_row("vocabulary", f"{len(model.vocab):,}")
    for m in range(1, args.order + 1):
        table.add_row(f"distinct {m}-grams", f"{sum(len(n) for n in model.raw[m].table.values()):,}")
    table.add_row("fit time", f"{seconds:.2f} s")
    if val_tokens:
        evaluation = model.evaluate(val_tokens)
        run["val_perplexity"] = evaluation.perplexity if evaluation.n_zero == 0 else None
        table.add_row(f"val perplexity per {codec.unit[:-1]}", _ppl(evaluation.perplexity))
    write_json(out / RUN_FILE, run)
    stdout.print(table)
    if val_tokens and evaluation.n_zero:
        console.print(f"[yellow]{evaluation.explain()}[/]")
    sample = codec.decode(model.sample(codec.encode(args.prompt), 200, 1.0, args.seed))
    stdout.print(Text("sample: ", style="bold") + Text(args.prompt, style="bold cyan") + Text(sample))
    console.print(f"[green]saved[/] {out / NGRAM_FILE}; next: `fromzero ngram generate --model {out}`")
    return 0


def _ppl(value: float) -> str:
    return "[bold red]inf[/]" if value == float("inf") else f"[bold]{value:.3f}[/]"


def generate(args: Namespace) -> int:
    model, _, codec = load_ngram_run(Path(args.model))
    seed = sampling_seed(args.seed) if args.temperature > 0 else None  # temperature 0 draws nothing
    tokens = model.sample(codec.encode(args.prompt), args.length, args.temperature, seed)
    stdout.print(Text(args.prompt, style="bold cyan") + Text(codec.decode(tokens)))
    return 0


def perplexity(args: Namespace) -> int:
    from fromzero.classic.corpus import train_val_text
    from fromzero.data.loading import load_text

    model, run, codec = load_ngram_run(Path(args.model))
    text_field = args.text_field or run.get("text_field", DEFAULT_TEXT_FIELD)
    if args.text is not None:
        label, text = "--text", args.text
    elif args.data is not None:
        label, text = args.data, load_text(args.data, text_field)
    elif run["val_fraction"] == 0:
        raise InputError(f"the model was trained on all of {run['data']}; give --data or --text to score")
    else:
        label = f"{run['data']} (validation split, {run['val_fraction']:.0%}, seed {run['seed']})"
        _, text = train_val_text(run["data"], run["val_fraction"], run["seed"], text_field)
    evaluation = model.evaluate(codec.encode(text))
    table = Table(title=f"perplexity of the {model.order}-gram model ({model.smoothing})", title_justify="left")
    table.add_column("text")
    table.add_column(codec.unit, justify="right")
    table.add_column("cross-entropy (nats)", justify="right")
    table.add_column("perplexity", justify="right")
    table.add_row(label, f"{evaluation.n_tokens:,}", f"{evaluation.cross_entropy:.4f}", _ppl(evaluation.perplexity))
    stdout.print(table)
    if evaluation.n_zero:
        console.print(f"[yellow]{evaluation.explain()}[/]")
    return 0


def show(args: Namespace) -> int:
    model, _, codec = load_ngram_run(Path(args.model))
    decode = None if codec.tokenizer is None else codec.decode
    if model.order >= 2:
        top = model.top_bigrams(args.top)
        table = Table(title=f"the {len(top)} most frequent pairs", title_justify="left")
        for name, justify in (("pair", "left"), ("count", "right"), ("", "left")):
            table.add_column(name, justify=justify)
        for (a, b), count in top:
            table.add_row(f"{show_token(a, decode)} {show_token(b, decode)}", f"{count:,}", bar(count / top[0][1]))
        stdout.print(table)
    context = codec.encode(args.context)
    followers = model.followers(context, args.top)
    shown = "".join(show_token(t, decode) for t in model._context(context)) or "(no context)"
    table = Table(title=f"who follows {shown!s}?", title_justify="left")
    for name, justify in (("next", "left"), ("count", "right"), ("P(next | context)", "right"), ("", "left")):
        table.add_column(name, justify=justify)
    for token, count, p in followers:
        table.add_row(show_token(token, decode), f"{count:,}", f"{p:.3f}", bar(p))
    stdout.print(table)
    if model.order >= 2 and args.matrix:
        _matrix(model, args.matrix, decode)
    return 0


def _matrix(model: NGramModel, size: int, decode) -> None:
    """P(column | row) for the most frequent tokens, as a heat map of numbers."""
    unigrams = model.raw[1].table[()]
    tokens = sorted(unigrams, key=lambda t: -unigrams[t])[:size]
    matrix = model.probability_matrix(tokens)
    table = Table(title="P(column follows row), most frequent tokens", title_justify="left", padding=(0, 0))
    table.add_column("")
    for t in tokens:
        table.add_column(show_token(t, decode), justify="center", min_width=4)
    for t, row in zip(tokens, matrix):
        table.add_row(show_token(t, decode), *(Text(f"{p * 100:3.0f}", style=f"on {heat(p)}") for p in row))
    stdout.print(table)
    stdout.print("[dim]cells are percentages; brighter = more likely[/]")
