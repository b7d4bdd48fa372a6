"""``fromzero tokenizer train|encode|decode|show|export``: tokenizers from the command line.

Results (ids, text) go to stdout so other programs can read them; status goes to stderr. The
tokenizers package (tiktoken, urllib) is imported inside the handlers, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from fromzero.commands.parsing import HelpFormatter
from fromzero.console import console, stdout
from fromzero.errors import InputError

if TYPE_CHECKING:
    from fromzero.tokenizers import Tokenizer

EXAMPLE = "Hello prasad how are you doing?"
# Token backgrounds, alternating. Each palette is exact in its colour system (a colour the terminal
# lacks is replaced by its nearest one, and nearby shades then collapse into one), so neighbouring
# tokens always differ; without colour a bar marks each boundary.
COLOURS_256 = tuple(f"bright_white on color({n})" for n in (24, 89, 22, 54, 94, 30))
COLOURS_16 = ("bright_white on blue", "black on cyan", "bright_white on magenta", "black on green",
              "bright_white on red", "black on yellow")
BOUNDARY = "|"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tokenizer",
        help="train, inspect and use tokenizers (char, word, byte-level BPE, GPT-2)",
        description="Turn text into token ids and back. TOKENIZER is 'gpt2' (GPT-2's vocabulary, cached in\n"
        "$FROMZERO_HOME/gpt2) or a folder written by `fromzero tokenizer train` or a model training run.",
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    p = commands.add_parser("train", help="learn a vocabulary from a corpus and save it", formatter_class=HelpFormatter,
                            description="Train a tokenizer and save it to --out. BPE starts from the 256 bytes and\n"
                            "merges the most frequent pair until the vocabulary has --vocab-size tokens.")
    p.add_argument("--input", required=True, help="bundled corpus name (e.g. stories), .txt file or folder of .txt files")
    p.add_argument("--out", required=True, help="folder to save the tokenizer in")
    p.add_argument("--kind", choices=("bpe", "char", "word"), default="bpe", help="which tokenizer to train")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="bpe: total tokens incl. bytes and specials (required); word: maximum size; char: unused")
    p.add_argument("--pattern", default="gpt2", help="bpe: chunking regex, 'gpt2', 'gpt4' or your own regex")
    p.add_argument("--special-tokens", nargs="*", default=["<|endoftext|>"], help="bpe: special tokens added after the merges")
    p.add_argument("--hf", action="store_true", help="bpe: also write Hugging Face tokenizer.json + tokenizer_config.json into --out")
    p.add_argument("--lowercase", action="store_true", help="word: lower-case text before splitting")
    p.add_argument("--min-freq", type=int, default=1, help="word: keep words seen at least this often")
    p.add_argument("--unk", action="store_true", help="char: add [UNK] for unseen characters (else they are an error)")
    p.add_argument("--pad", action="store_true", help="char: add [PAD] (id 0) for batching")
    p.add_argument("--name", default=None, help="label saved with the tokenizer (None: the --out folder name)")
    p.set_defaults(func=train)

    p = commands.add_parser("encode", help="print the ids of a text as a JSON list", formatter_class=HelpFormatter,
                            description="Encode --text and print its token ids as a JSON list on stdout.")
    p.add_argument("--tokenizer", default="gpt2", help="'gpt2' or a saved tokenizer folder")
    p.add_argument("--text", required=True, help="text to encode")
    p.add_argument("--allow-special", action="store_true", help="encode special tokens in the text (e.g. <|endoftext|>) as their ids")
    p.set_defaults(func=encode)

    p = commands.add_parser("decode", help="print the text of a JSON list of ids", formatter_class=HelpFormatter,
                            description="Decode ids given as a JSON list, e.g. --ids \"[15496, 11]\".")
    p.add_argument("--tokenizer", default="gpt2", help="'gpt2' or a saved tokenizer folder")
    p.add_argument("--ids", required=True, help="JSON list of token ids")
    p.set_defaults(func=decode)

    p = commands.add_parser("show", help="show how a text is split into tokens, in colour", formatter_class=HelpFormatter,
                            description="Print the text with each token on its own background colour, then the ids.\n"
                            "Without colour (a pipe, NO_COLOR) a | marks each token boundary.")
    p.add_argument("--tokenizer", default="gpt2", help="'gpt2' or a saved tokenizer folder")
    p.add_argument("--text", default=EXAMPLE, help="text to split")
    p.set_defaults(func=show)

    p = commands.add_parser("export", help="write a BPE tokenizer for tiktoken or Hugging Face", formatter_class=HelpFormatter,
                            description="--format hf writes tokenizer.json (tokenizers / transformers);\n"
                            "--format tiktoken writes a ranks file for tiktoken.load.load_tiktoken_bpe.")
    p.add_argument("--tokenizer", default="gpt2", help="'gpt2' or a saved BPE tokenizer folder")
    p.add_argument("--format", choices=("hf", "tiktoken"), required=True, help="which format to write")
    p.add_argument("--out", required=True,
                   help="hf: folder for tokenizer.json + tokenizer_config.json (created), or a file name ending in .json; "
                   "tiktoken: file name, or a folder to write NAME.tiktoken in")
    p.set_defaults(func=export)


def train(args: Namespace) -> None:
    from fromzero.data.loading import load_text
    from fromzero.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer

    out = Path(args.out)
    if out.exists() and not out.is_dir():  # checked before training, so no work is lost
        raise InputError(f"--out {args.out} is a file; give a folder to save the tokenizer in")
    text = load_text(args.input)
    name = args.name or out.resolve().name
    if args.kind == "bpe":
        if args.vocab_size is None:
            raise InputError("--vocab-size is required for BPE (e.g. 4096)")
        tok = BPETokenizer.train(text, args.vocab_size, pattern=args.pattern, special_tokens=args.special_tokens,
                                 name=name, verbose=True)
    elif args.kind == "word":
        tok = WordTokenizer.train(text, lowercase=args.lowercase, min_freq=args.min_freq, max_size=args.vocab_size, name=name)
    else:
        tok = CharTokenizer.train(text, pad=args.pad, unk=args.unk, name=name)
    tok.save(out)
    if args.hf and isinstance(tok, BPETokenizer):
        tok.export_hf(out)  # a folder by now: tokenizer.json + tokenizer_config.json beside ours
    console.print(f"[green]saved[/] {args.kind} tokenizer with {tok.vocab_size:,} tokens to {args.out}")


def encode(args: Namespace) -> None:
    from fromzero.tokenizers import BPETokenizer, load_tokenizer
    from fromzero.tokenizers.bpe import SpecialTokenError

    tok = load_tokenizer(args.tokenizer)
    if not isinstance(tok, BPETokenizer):
        print(json.dumps(tok.encode(args.text)))
        return
    try:
        ids = tok.encode(args.text, allowed_special="all" if args.allow_special else frozenset())
    except SpecialTokenError as err:
        raise InputError(f"the text contains the special token {err.token!r}; pass --allow-special to encode it as its id") from None
    print(json.dumps(ids))


def decode(args: Namespace) -> None:
    from fromzero.tokenizers import load_tokenizer

    try:
        ids = json.loads(args.ids)
    except json.JSONDecodeError:
        raise InputError(f"--ids must be a JSON list of integers such as \"[15496, 11]\", got {args.ids!r}") from None
    if not isinstance(ids, list):
        raise InputError(f"--ids must be a JSON list of integers, got {args.ids!r}")
    print(load_tokenizer(args.tokenizer).decode(ids))


def show(args: Namespace) -> None:
    from fromzero.tokenizers import BPETokenizer, load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    ids = tok.encode(args.text, allowed_special="all") if isinstance(tok, BPETokenizer) else tok.encode(args.text)
    pieces = [piece.replace("\n", "\\n\n") for piece in token_pieces(tok, ids)]
    palette = _palette(stdout)
    if palette:
        gap = Text(" " if tok.kind == "word" else "")  # word tokens lost their spacing
        stdout.print(gap.join(Text(piece, style=palette[n % len(palette)]) for n, piece in enumerate(pieces)))
    else:
        stdout.print(Text(BOUNDARY.join(pieces)))
    stdout.print(f"[dim]{len(ids)} tokens, {len(args.text)} characters ({tok.name}, vocabulary {tok.vocab_size:,})[/]")
    stdout.print(f"[dim]{json.dumps(ids)}[/]")


def token_pieces(tok: Tokenizer, ids: list[int]) -> list[str]:
    """The text of each token; BPE tokens holding part of a character are grouped until it is whole."""
    from fromzero.tokenizers import BPETokenizer

    if not isinstance(tok, BPETokenizer):
        return [tok.decode([i]) for i in ids]
    pieces: list[str] = []
    group: list[int] = []
    for i in ids:
        group.append(i)
        try:
            pieces.append(tok.decode_bytes(group).decode("utf-8"))
        except UnicodeDecodeError:
            continue  # part of a multi-byte character: wait for the rest
        group = []
    if group:
        pieces.append(tok.decode(group))
    return pieces


def _palette(out: Console) -> tuple[str, ...]:
    """The background colours ``out`` shows exactly; none when it shows no colour (a pipe, NO_COLOR)."""
    if out.color_system is None or out.no_color:
        return ()
    return COLOURS_16 if out.color_system in ("standard", "windows") else COLOURS_256


def export(args: Namespace) -> None:
    from fromzero.tokenizers import BPETokenizer, load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    if not isinstance(tok, BPETokenizer):
        raise InputError(f"only BPE tokenizers can be exported; {args.tokenizer} is a {tok.kind} tokenizer")
    written = tok.export_hf(args.out) if args.format == "hf" else tok.export_tiktoken(args.out)
    console.print(f"[green]wrote[/] {args.format} export of {tok.name} to {written}")
