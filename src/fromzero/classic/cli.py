"""``fromzero ngram ...`` and ``fromzero numpy-net ...``: the level 1–2 models from the command line.

Parsers only; the handlers live in ``ngram_commands`` and ``net_commands`` and are imported when
a command runs, so ``fromzero --help`` stays fast.
"""

from __future__ import annotations

import importlib
from argparse import Namespace


def _handler(module: str, name: str):
    def run(args: Namespace):
        return getattr(importlib.import_module(f"fromzero.classic.{module}"), name)(args)

    return run


def _data_flags(parser) -> None:
    parser.add_argument("--data", default="stories", help="bundled corpus name, .txt file or folder of .txt files")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of documents held out to measure perplexity (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the split, the initial weights, sampling")


def add_commands(subparsers) -> None:
    from fromzero.cli import HelpFormatter

    _add_ngram(subparsers, HelpFormatter)
    _add_numpy_net(subparsers, HelpFormatter)


def _add_ngram(subparsers, fmt) -> None:
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
    _data_flags(p)
    p.add_argument("--order", type=int, default=5, help="n: the model sees the n-1 previous tokens")
    p.add_argument("--smoothing", choices=("none", "add-k", "kneser-ney"), default="kneser-ney", help="how unseen continuations get probability")
    p.add_argument("--k", type=float, default=1.0, help="k of add-k smoothing (1 = Laplace)")
    p.add_argument("--tokenizer", default=None, help="a fromzero tokenizer (e.g. gpt2 or a saved tokenizer folder); default: characters")
    p.add_argument("--prompt", default="", help="start of the sample printed after training")
    p.add_argument("--out", default="runs/ngram", help="folder to save the model in")
    p.set_defaults(func=_handler("ngram_commands", "train"))

    p = commands.add_parser("generate", help="sample text from a saved model", formatter_class=fmt,
                            description="Sample text; unseen contexts back off to shorter ones.")
    p.add_argument("--model", default="runs/ngram", help="folder written by `fromzero ngram train`")
    p.add_argument("--prompt", default="", help="text to continue")
    p.add_argument("--length", type=int, default=300, help="number of tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="<1 sharper, >1 flatter, 0 = always the likeliest")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=_handler("ngram_commands", "generate"))

    p = commands.add_parser("perplexity", help="measure perplexity on held-out text", formatter_class=fmt,
                            description="Perplexity per token. Default: the validation split the model was trained beside.")
    p.add_argument("--model", default="runs/ngram", help="folder written by `fromzero ngram train`")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", default=None, help="score all of this corpus, .txt file or folder instead")
    source.add_argument("--text", default=None, help="score this text instead")
    p.set_defaults(func=_handler("ngram_commands", "perplexity"))

    p = commands.add_parser("show", help="tables: frequent pairs, who follows a context, probability matrix", formatter_class=fmt,
                            description="Print the model's tables with colour bars.")
    p.add_argument("--model", default="runs/ngram", help="folder written by `fromzero ngram train`")
    p.add_argument("--context", default="th", help="show which tokens follow this text")
    p.add_argument("--top", type=int, default=15, help="rows per table")
    p.add_argument("--matrix", type=int, default=12, help="size of the bigram probability matrix (0: none)")
    p.set_defaults(func=_handler("ngram_commands", "show"))


def _add_numpy_net(subparsers, fmt) -> None:
    net = subparsers.add_parser(
        "numpy-net",
        help="level 2: neural networks in NumPy with hand-written backprop",
        description="A neuron, an MLP and a character-level MLP language model, every gradient written by hand.",
        formatter_class=fmt,
    )
    commands = net.add_subparsers(dest="net_command", metavar="ACTION", required=True)

    p = commands.add_parser("train", help="train the character-level MLP language model", formatter_class=fmt,
                            description="k previous characters -> embeddings -> hidden layer -> softmax (Bengio et al. 2003).\n"
                            "Saves the model, history.json and a loss-curve PNG.")
    _data_flags(p)
    p.add_argument("--context", type=int, default=6, help="k: previous characters the model sees")
    p.add_argument("--embed", type=int, default=32, help="size of each character's embedding")
    p.add_argument("--hidden", type=int, default=512, help="hidden units")
    p.add_argument("--activation", default="tanh", help="sigmoid, tanh, relu or gelu")
    p.add_argument("--epochs", type=int, default=5, help="passes over the training text")
    p.add_argument("--batch-size", type=int, default=128, help="windows per Adam step")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (decays linearly to 10%%)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="float64 is exact but slower")
    p.add_argument("--prompt", default="", help="start of the sample printed after training")
    p.add_argument("--out", default="runs/numpy-net", help="folder to save the model in")
    p.set_defaults(func=_handler("net_commands", "train"))

    p = commands.add_parser("generate", help="sample text from a saved char-MLP", formatter_class=fmt)
    p.add_argument("--model", default="runs/numpy-net", help="folder written by `fromzero numpy-net train`")
    p.add_argument("--prompt", default="", help="text to continue")
    p.add_argument("--length", type=int, default=300, help="number of characters to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="<1 sharper, >1 flatter, 0 = always the likeliest")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=_handler("net_commands", "generate"))

    p = commands.add_parser("plot", help="redraw the loss curves of a training run", formatter_class=fmt)
    p.add_argument("--model", default="runs/numpy-net", help="folder holding history.json")
    p.add_argument("--output", default=None, help="PNG to write (default: history.png in the model folder)")
    p.set_defaults(func=_handler("net_commands", "plot"))

    p = commands.add_parser("toy", help="one neuron vs a 2-layer MLP on AND / OR / XOR", formatter_class=fmt,
                            description="Why XOR needs a hidden layer; --gif animates the MLP's decision boundary.")
    p.add_argument("--gate", choices=("and", "or", "xor"), default="xor", help="logic gate to learn")
    p.add_argument("--hidden", type=int, default=4, help="hidden units of the MLP")
    p.add_argument("--activation", default="tanh", help="sigmoid, tanh, relu or gelu")
    p.add_argument("--epochs", type=int, default=400, help="training epochs (full batch of 4)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate of the MLP")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.add_argument("--gif", default=None, help="write a decision-boundary animation to this .gif")
    p.set_defaults(func=_handler("net_commands", "toy"))

    p = commands.add_parser("gradcheck", help="check every layer's backward pass numerically", formatter_class=fmt)
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.set_defaults(func=_handler("net_commands", "gradcheck"))
