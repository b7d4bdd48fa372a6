"""``fromzero data``: collect text into a corpus, describe it, list the bundled ones, tokenize into shards."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from fromzero.commands.parsing import HelpFormatter
from fromzero.console import console, stdout
from fromzero.data.settings import DEFAULT_MIN_CHARS, DEFAULT_TEXT_FIELD, DEFAULT_TIMEOUT
from fromzero.errors import InputError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data",
        help="collect, describe, list and tokenize text corpora",
        description="Work with training text: build a corpus from web pages and files, "
        "describe a corpus in numbers, list the corpora bundled with fromzero, tokenize a corpus "
        "once into token shards for `fromzero train`.",
        formatter_class=HelpFormatter,
    )
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    collect = actions.add_parser(
        "collect",
        help="build a clean, deduplicated corpus from URLs, HTML files and text files",
        description="Read each source (an http(s) URL, an .html file, a .txt file or a folder of "
        ".txt and .html files), extract and clean its text, drop short documents and duplicates, and "
        "write the result atomically. A source that fails is skipped with its reason; if every "
        "source fails nothing is written and the exit status is 2.\n\n"
        "example: fromzero data collect notes.txt page.html https://example.org --out corpus.txt",
        formatter_class=HelpFormatter,
    )
    collect.add_argument(
        "sources", nargs="+", metavar="URL_OR_FILE",
        help="http(s) URLs, .html files, .txt files, .jsonl files (the 'text' field of each record), "
        "folders of .txt/.html files",
    )
    collect.add_argument(
        "--out", required=True, type=Path, metavar="FILE",
        help="output file: .jsonl gives one {text, source} record per line; anything else gives "
        "text with documents separated by two blank lines (the format of the bundled stories)",
    )  # fmt: skip
    collect.add_argument(
        "--min-chars", type=int, default=DEFAULT_MIN_CHARS, metavar="N", help="drop documents shorter than N characters"
    )
    collect.add_argument("--no-dedup", action="store_true", help="keep exact and near-duplicate documents")
    collect.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS", help="seconds to wait for each URL"
    )
    collect.set_defaults(func=run_collect)

    stats = actions.add_parser(
        "stats",
        help="describe a corpus: characters, words, documents, top words, JSONL fields",
        description="Describe a text corpus (characters, words, lines, documents, unique "
        "characters, most frequent words) or a JSONL file (records, fields, subjects, grades); "
        "with --text-field, the text of that field of a JSONL file's records instead.\n\n"
        "examples: fromzero data stats stories | fromzero data stats education_qa | "
        "fromzero data stats education_qa/train --text-field output | fromzero data stats my_notes.txt",
        formatter_class=HelpFormatter,
    )
    stats.add_argument(
        "source", metavar="FILE_OR_CORPUS", help="a bundled corpus name, a .txt, .html or .jsonl file, a folder of .txt/.html files, "
        "or hf:NAME[:SPLIT][:column=C][:config=C][:rows=N] (a Hugging Face dataset)"
    )
    stats.add_argument("--top", type=int, default=10, metavar="N", help="how many of the most frequent words to show")
    stats.add_argument("--skip-bad", action="store_true", help="skip malformed JSONL lines instead of stopping")
    stats.add_argument(
        "--text-field", metavar="NAME", default=None,
        help="for a JSONL file, describe the text in this field of its records instead of the records; "
        f"for an hf: dataset, the column to read (default there: {DEFAULT_TEXT_FIELD})",
    )  # fmt: skip
    stats.add_argument("--json", action="store_true", help="print the numbers as JSON instead of tables")
    stats.set_defaults(func=run_stats)

    listing = actions.add_parser(
        "list",
        help="list the corpora bundled with fromzero",
        description="List the bundled corpora with their kind, size, item counts and description.",
        formatter_class=HelpFormatter,
    )
    listing.add_argument("--json", action="store_true", help="print the list as JSON instead of a table")
    listing.set_defaults(func=run_list)

    prepare = actions.add_parser(
        "prepare",
        help="tokenize a corpus once into train/val token shards for `fromzero train --data DIR`",
        description="Tokenize a text source into memory-mapped token shards (train.bin, val.bin, "
        "shards.json and the tokenizer) so training never re-tokenizes.\n\n"
        "examples:\n"
        "  fromzero data prepare stories --out data/stories-char\n"
        "  fromzero data prepare my_books/ --tokenizer gpt2 --out data/books-gpt2\n"
        "  fromzero data prepare hf:roneneldan/TinyStories --tokenizer gpt2 --out data/tinystories\n"
        "  fromzero data prepare hf:HuggingFaceFW/fineweb-edu:rows=100000 --tokenizer gpt2 --out data/fineweb",
        formatter_class=HelpFormatter,
    )
    prepare.add_argument("source", nargs="+", help="a bundled corpus name, a .txt, .html or .jsonl file, a folder of .txt/.html files, "
                         "or hf:NAME[:SPLIT][:column=C][:config=C][:rows=N]: a Hugging Face dataset (hub name "
                         "or local folder/file; needs `datasets`, and a network for the hub), by default its "
                         "train split's 'text' column; rows=N streams only the first N rows; several sources "
                         "are joined, in order")
    prepare.add_argument("--tokenizer", default="char",
                         help="char, gpt2, bpe:DIR (a saved tokenizer) or bpe:N (a BPE of N tokens trained on the data)")
    prepare.add_argument("--out", required=True, help="directory for the shards")
    prepare.add_argument("--val-fraction", type=float, default=0.1, help="share held out for validation")
    prepare.add_argument("--seed", type=int, default=0, help="seed of the document split")
    prepare.add_argument(
        "--text-field", metavar="NAME", default=DEFAULT_TEXT_FIELD,
        help="the field of a .jsonl file's records (and the default column of an hf: dataset) that holds the text",
    )  # fmt: skip
    prepare.add_argument("--skip-bad", action="store_true", help="skip malformed JSONL lines instead of stopping")
    prepare.set_defaults(func=run_prepare)


def run_collect(args: argparse.Namespace) -> None:
    from fromzero.data.collect import collect, skip_reason, write_collection

    if args.min_chars < 1:
        raise InputError(f"--min-chars must be at least 1, got {args.min_chars}")
    if args.timeout <= 0:
        raise InputError(f"--timeout must be positive, got {args.timeout}")
    if args.out.is_dir():
        raise InputError(f"--out {args.out} is a folder; give a file name such as {args.out / 'corpus.txt'}")
    with console.status("collecting..."):
        collection = collect(args.sources, min_chars=args.min_chars, dedup=not args.no_dedup, timeout=args.timeout)
    table = Table(title="fromzero data collect")
    for column in ("source", "result", "documents", "characters", "notes"):
        table.add_column(column, justify="right" if column in ("documents", "characters") else "left", overflow="fold")
    for report in collection.reports:
        result = "[green]kept[/]" if report.ok else "[yellow]skipped[/]"
        notes = escape(skip_reason(report, args.min_chars))
        table.add_row(escape(report.source), result, str(report.kept), f"{report.chars:,}", notes)
    console.print(table)
    if not collection.documents:
        raise InputError(f"nothing collected from {len(collection.reports)} source(s); {args.out} was not written")
    write_collection(collection, args.out)
    total = sum(len(doc) for doc in collection.documents)
    console.print(f"wrote {len(collection.documents)} document(s), {total:,} characters, to {escape(str(args.out))}")


def _stats_of(source: str, top: int, skip_bad: bool, text_field: str | None) -> dict[str, object]:
    """{label: TextStats or JsonlStats} for one corpus name or path (one per part of a split corpus)."""
    from fromzero.data.bundled import get_corpus, is_corpus_name
    from fromzero.data.loading import is_jsonl_source, load_jsonl, load_text
    from fromzero.data.stats import jsonl_stats, text_stats

    if not is_jsonl_source(source):
        return {source: text_stats(load_text(source, text_field or DEFAULT_TEXT_FIELD, skip_bad), top)}
    labels = [source]
    if is_corpus_name(source) and "/" not in source:
        labels = [f"{source}/{part}" for part in get_corpus(source).parts]
    if text_field is None:
        return {label: jsonl_stats(load_jsonl(label, skip_bad)) for label in labels}
    return {f"{label} ({text_field})": text_stats(load_text(label, text_field, skip_bad), top) for label in labels}


def _listing(counts: dict[str, int]) -> str:
    """``{"science": 3, "civics": 2}`` as ``science (3), civics (2)``, safe for rich markup."""
    return escape(", ".join(f"{name} ({count:,})" for name, count in counts.items()))


def run_stats(args: argparse.Namespace) -> None:
    from fromzero.data.stats import TextStats

    results = _stats_of(args.source, args.top, args.skip_bad, args.text_field)
    if args.json:
        print(json.dumps({label: asdict(stats) for label, stats in results.items()}, indent=2, ensure_ascii=False))
        return
    for label, stats in results.items():
        table = Table(title=escape(label), show_header=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        if isinstance(stats, TextStats):
            for name in ("characters", "words", "lines", "documents", "unique_characters"):
                table.add_row(name.replace("_", " "), f"{getattr(stats, name):,}")
            table.add_row("top words", escape(", ".join(f"{word} ({count:,})" for word, count in stats.top_words)))
        else:
            table.add_row("records", f"{stats.records:,}")
            table.add_row("fields", _listing(stats.fields))
            means = ", ".join(f"{name} {mean:.0f}" for name, mean in stats.mean_chars.items())
            table.add_row("mean characters", escape(means))
            if stats.by_subject:
                table.add_row("subjects", _listing(stats.by_subject))
            if stats.by_grade:
                table.add_row("grades", _listing(stats.by_grade))
        stdout.print(table)


def run_list(args: argparse.Namespace) -> None:
    from fromzero.data.catalog import list_corpora

    corpora = list_corpora()
    if args.json:
        print(json.dumps([asdict(info) for info in corpora], indent=2, ensure_ascii=False))
        return
    table = Table(title="bundled corpora")
    for column in ("name", "version", "kind", "size", "items", "description"):
        table.add_column(column, justify="right" if column == "size" else "left", overflow="fold")
    for info in corpora:
        items = ", ".join(f"{count:,} {part}" for part, count in info.counts.items())
        table.add_row(info.name, info.version, info.kind, f"{info.size_bytes / 1024:,.0f} KB", items,
                      escape(info.description))
    stdout.print(table)


def run_prepare(args: argparse.Namespace) -> None:
    from fromzero.data.prepare import prepare

    shards = prepare(
        args.source[0] if len(args.source) == 1 else args.source, args.tokenizer, args.out, args.val_fraction, args.seed,
        text_field=args.text_field, skip_bad=args.skip_bad,
    )  # fmt: skip
    console.print(
        f"{len(shards.train):,} train + {len(shards.val):,} val tokens "
        f"({shards.dtype}, {shards.tokenizer_id.kind}, vocab {shards.vocab_size}) in {shards.directory}"
    )
    stdout.print(str(shards.directory))
