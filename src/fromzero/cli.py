"""The ``fromzero`` command: it assembles the commands of :mod:`fromzero.commands` and runs one.

Errors the user can fix (:class:`fromzero.errors.FromzeroError`) are printed as one red line and
exit with status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import sys

from fromzero import __version__
from fromzero.commands import (
    chat, data, doctor, evaluate, feedback, finetune, generate, index, learn, model, ngram, numpy_net, quickstart, seq2seq,
    serve, tokenizer, train, word2vec,
)
from fromzero.commands.parsing import HelpFormatter
from fromzero.errors import FromzeroError

# In the order they appear in `fromzero --help`.
COMMANDS = (learn, quickstart, data, tokenizer, ngram, numpy_net, model, generate, train, finetune, evaluate, seq2seq,
            word2vec, index, chat, serve, feedback, doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fromzero",
        description="Build your own language model from zero: data, tokenizers, models, "
        "training, generation. Run `fromzero COMMAND --help` for each command's flags.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fromzero {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fromzero`` command; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except FromzeroError as err:
        from rich.markup import escape

        from fromzero.console import console

        console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
