"""``fromzero feedback``: what people said about the answers (ratings, edits, choices), listed and exported."""

from __future__ import annotations

import argparse
from argparse import Namespace
from collections import Counter

from fromzero.commands.parsing import HelpFormatter
from fromzero.console import console, stdout

DESCRIPTION = """\
Feedback on answers, given in `fromzero chat` (good, bad, edit, better 1|2 after compare) or on the
page of `fromzero serve` (👍/👎, edit, regenerate then "this one is better"), is stored in a folder:
$FROMZERO_HOME/feedback unless --feedback-dir named another (give the same folder as --dir here).

  list    counts by kind, model and adapter, and the latest records
  export  the records as fine-tuning data:
          --format sft: instruction examples from the answers rated up and the edited answers,
          for `fromzero finetune sft --data FILE`;
          --format dpo: preference pairs (prompt, chosen, rejected) from edits, choices, and
          answers rated down next to better ones, for `fromzero finetune dpo --data FILE`

Examples:
  fromzero feedback list
  fromzero feedback export --format sft --out out/feedback-sft.jsonl
  fromzero finetune sft --model out/level5/base --data out/feedback-sft.jsonl --out out/level5/sft-feedback
  fromzero feedback export --format dpo --out out/feedback-dpo.jsonl
"""


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    feedback = subparsers.add_parser("feedback", help="list the ratings and edits given in chat and serve, export "
                                     "them as SFT or DPO data", description=DESCRIPTION, formatter_class=HelpFormatter)
    actions = feedback.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="counts by kind, model and adapter, and the latest records",
                                 formatter_class=HelpFormatter)
    listing.add_argument("--last", type=int, default=5, metavar="N", help="show the N latest records")
    export = actions.add_parser("export", help="write the records as SFT examples or DPO pairs",
                                formatter_class=HelpFormatter)
    export.add_argument("--format", required=True, choices=("sft", "dpo"),
                        help="sft: instruction examples; dpo: preference pairs")
    export.add_argument("--out", required=True, metavar="FILE",
                        help="the file to write: JSONL, or a JSON list when it ends in .json")
    for parser in (listing, export):
        parser.add_argument("--dir", default=None, metavar="DIR",
                            help="the feedback folder (the --feedback-dir of chat or serve; default: "
                            "$FROMZERO_HOME/feedback)")
    listing.set_defaults(func=run_list)
    export.set_defaults(func=run_export)


def run_list(args: Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from fromzero.chat.feedback import FeedbackStore
    from fromzero.errors import InputError

    if args.last < 0:
        raise InputError(f"--last must be 0 or more, got {args.last}")
    store = FeedbackStore(args.dir)
    records = store.records()
    if not records:
        console.print(f"no feedback in {store.path} yet: rate answers with good, bad or edit in `fromzero chat`, "
                      "or with 👍/👎 on the page of `fromzero serve`", soft_wrap=True)
        return 0
    counts = Counter((r.model, r.adapter or "base", _verdict(r)) for r in records)
    columns = ("up", "down", "edit", "choice")
    table = Table(title=f"{len(records)} record(s) in {store.path}")
    for name in ("model", "adapter", *columns):
        table.add_column(name, justify="right" if name in columns else "left")
    for model, adapter in dict.fromkeys((model, adapter) for model, adapter, _ in counts):
        table.add_row(Text(model or "-"), Text(adapter), *(str(counts[model, adapter, c]) for c in columns))
    stdout.print(table)
    if args.last:
        latest = Table(title="latest")
        for name in ("time", "kind", "adapter", "question", "answer"):
            latest.add_column(name, overflow="fold")
        for record in records[-args.last:][::-1]:
            latest.add_row(record.time, _verdict(record), record.adapter or "base", Text(_short(record.question)),
                           Text(_short(record.better if record.kind == "edit" else record.winner
                                       if record.kind == "choice" else record.answer)))
        stdout.print(latest)
    return 0


def run_export(args: Namespace) -> int:
    from fromzero.chat.feedback import FeedbackStore, export

    store = FeedbackStore(args.dir)
    result = export(store, args.format, args.out)
    what = "instruction examples" if args.format == "sft" else "preference pairs"
    console.print(f"wrote {len(result.records)} {what} to {args.out}"
                  + (f" ({result.left_out} left out: an empty text, or two answers that are the same)"
                     if result.left_out else ""), soft_wrap=True)
    console.print(f"[dim]train on them: fromzero finetune {args.format} --model MODEL --data {args.out}[/]",
                  soft_wrap=True)
    return 0


def _verdict(record) -> str:
    """``up`` or ``down`` for a rating, else the kind."""
    return record.rating if record.kind == "rating" else record.kind


def _short(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"
