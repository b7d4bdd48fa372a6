"""What every ``fromzero`` command parser shares: the help formatter (so all ``--help`` pages look
alike) and the flags several commands take."""

from __future__ import annotations

import argparse
import random

from fromzero.console import console
from fromzero.data.settings import DEFAULT_TEXT_FIELD


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults next to every flag and keeps the hand-made line breaks of descriptions."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # a required flag, one without a default and an on/off switch have nothing useful to show
        if action.required or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_split_flags(parser: argparse.ArgumentParser) -> None:
    """--data, --text-field, --val-fraction and --seed of the level 1-2 models, which split a corpus themselves."""
    parser.add_argument("--data", default="stories",
                        help="bundled corpus name, .txt, .html or .jsonl file, folder of .txt/.html files, or hf:NAME")
    parser.add_argument("--text-field", default=DEFAULT_TEXT_FIELD, metavar="NAME",
                        help="the field of a .jsonl file's records (or column of an hf: dataset) that holds the text")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of documents held out to measure perplexity (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the split, the initial weights, sampling")


def add_nucleus_flags(parser: argparse.ArgumentParser) -> None:
    """--top-k and --top-p, with the same defaults and meaning wherever text is sampled."""
    parser.add_argument("--top-k", type=int, default=50, help="sample only among the k most likely tokens (0 = all)")
    parser.add_argument("--top-p", type=float, default=1.0,
                        help="nucleus sampling: smallest set of tokens with this total probability (1 = off)")


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (a CUDA GPU when PyTorch sees one, else the CPU), "
                        "cpu, cuda, cuda:N or mps")


def sampling_seed(seed: int | None) -> int:
    """The rule of every sampling command: ``--seed`` if given, else a fresh seed, printed (dim,
    on stderr) so that the sample can be repeated. Training commands default to a fixed seed instead."""
    if seed is None:
        seed = random.randrange(2**31)
        console.print(f"[dim]sampling with seed {seed} (pass --seed {seed} to repeat)[/]")
    return seed
