"""The ``fromzero`` command. It only parses arguments and calls the library.

Each part of the library contributes its subcommands through a small ``cli`` module with an
``add_commands(subparsers)`` function; heavy imports (torch, transformers) happen inside the
command handlers, so ``fromzero --help`` stays fast. Errors the user can fix
(:class:`fromzero.errors.FromzeroError`) are printed as one red line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fromzero import __version__
from fromzero.errors import FromzeroError

# Modules that add subcommands, in the order they appear in `fromzero --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "fromzero.data.cli",
    "fromzero.tokenizers.cli",
    "fromzero.classic.cli",
    "fromzero.models.cli",
    "fromzero.generation.cli",
    "fromzero.training.cli",
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults next to every flag and keeps the hand-made line breaks of descriptions."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # a required flag, one without a default and an on/off switch have nothing useful to show
        if action.required or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fromzero",
        description="Build your own language model from zero: data, tokenizers, models, "
        "training, generation. Run `fromzero COMMAND --help` for each command's flags.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fromzero {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
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
