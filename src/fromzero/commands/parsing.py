"""What every ``fromzero`` command parser shares: the help formatter (so all ``--help`` pages look
alike) and the flags several commands take."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults next to every flag and keeps the hand-made line breaks of descriptions."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # a required flag, one without a default and an on/off switch have nothing useful to show
        if action.required or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_split_flags(parser: argparse.ArgumentParser) -> None:
    """--data, --val-fraction and --seed of the level 1-2 models, which split a corpus themselves."""
    parser.add_argument("--data", default="stories", help="bundled corpus name, .txt file or folder of .txt files")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of documents held out to measure perplexity (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the split, the initial weights, sampling")
