"""``fromzero seq2seq``: the original Transformer, and the GRU it replaced, learning to translate.

``train`` trains one on a task (English to Hindi, or a synthetic one), ``translate`` uses it,
``evaluate`` scores it on held-out pairs and ``attention`` draws its cross-attention alignment.
"""

from __future__ import annotations

import argparse
import dataclasses

from rich.markup import escape
from rich.table import Table

from fromzero.commands.parsing import HelpFormatter, add_device_flag
from fromzero.console import console, stdout

TRAIN_FLAGS = [
    ("task", str, "translate-en-hi (the bundled corpus), copy, reverse, numbers (digits to English words), "
                  "or a file of pairs: .jsonl with source/target (or en/hi) fields, .tsv source<TAB>target, or a "
                  "plain-text file of sources with --targets"),
    ("targets", str, "with a plain-text --task file: the file of its translations, line for line"),
    ("arch", str, "transformer, gru (the plain GRU encoder-decoder) or gru-attention (the GRU with attention)"),
    ("tokenizer", str, "char, or bpe:N (byte-level BPE of N tokens learned from the pairs) "
                       "(default: char for copy/reverse/numbers, bpe:1000 for text)"),
    ("max_len", int, "longest source or target, in tokens; longer training pairs are left out"),
    ("n_layer", int, "Transformer: encoder layers, and as many decoder layers"),
    ("n_head", int, "Transformer: attention heads"),
    ("n_embd", int, "embedding width (the Transformer's d_model; the GRU's word vectors)"),
    ("pos_encoding", str, "Transformer: sinusoidal (the paper's) or learned positions"),
    ("n_hidden", int, "GRU: hidden state size"),
    ("dropout", float, "dropout probability"),
    ("label_smoothing", float, "share of the target probability spread over the vocabulary (the paper: 0.1)"),
    ("train_size", int, "copy/reverse/numbers: training pairs to draw"),
    ("test_size", int, "copy/reverse/numbers: held-out pairs, never trained on"),
    ("max_chars", int, "copy/reverse: the longest string"),
    ("val_fraction", float, "share of the training pairs held out to watch the loss"),
    ("batch_size", int, "pairs per step"),
    ("max_steps", int, "optimizer steps"),
    ("lr", float, "peak learning rate"),
    ("schedule", str, "cosine (decay to lr/10) or noam (the paper's: warmup, then 1/sqrt(step))"),
    ("warmup_steps", int, "steps of linear warmup"),
    ("weight_decay", float, "AdamW weight decay"),
    ("grad_clip", float, "clip the gradient norm to this (0: off)"),
    ("eval_interval", int, "steps between validation losses (and checkpoints)"),
    ("seed", int, "random seed: the synthetic pairs, the split, the weights, the batches"),
    ("dtype", str, "float32, bfloat16 or auto"),
    ("threads", int, "CPU threads, fixed (default: as many as other programs leave free, re-measured every second)"),
    ("out", str, "output folder: the model, checkpoints, metrics.jsonl, loss.png"),
]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from fromzero.seq2seq.config import (
        Seq2SeqTrainConfig,  # light: no torch until a run starts
    )

    seq2seq = subparsers.add_parser(
        "seq2seq",
        help="train and use an encoder-decoder (the original Transformer, or a GRU) to translate",
        description="Sequence to sequence: an encoder reads the source, a decoder writes the target while "
        "looking back at it through cross-attention. Train the Transformer of 'Attention Is All You Need' or "
        "the GRU it replaced on English to Hindi or a synthetic task, translate with it, score it, and see "
        "its alignment.",
        formatter_class=HelpFormatter,
    )
    actions = seq2seq.add_subparsers(dest="seq2seq_command", metavar="ACTION", required=True)

    defaults = Seq2SeqTrainConfig()
    train = actions.add_parser(
        "train",
        help="train a translation model on a task",
        description="Train an encoder-decoder on pairs of texts and score it on held-out pairs.\n\n"
        "examples:\n"
        "  fromzero seq2seq train --task reverse --out out/reverse\n"
        "  fromzero seq2seq train --task translate-en-hi --max-steps 3000 --out out/en-hi\n"
        "  fromzero seq2seq train --task translate-en-hi --arch gru-attention --out out/en-hi-gru\n"
        "  fromzero seq2seq train --task sentences.en --targets sentences.hi --out out/mine",
        formatter_class=HelpFormatter,
    )
    for name, kind, text in TRAIN_FLAGS:
        default = getattr(defaults, name)
        shown = "" if default is None or "default:" in text else f" (default: {default!r})"
        train.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=argparse.SUPPRESS,
                           help=text + shown)
    train.add_argument("--post-ln", action="store_true", help="Transformer: the paper's post-LN blocks "
                       "(default: pre-LN, which trains more stably without a long warmup)")
    add_device_flag(train)
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint, "
                      "exactly (only --max-steps may change)")
    mode.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=run_train)

    translate = actions.add_parser(
        "translate",
        help="translate text with a trained model",
        description="Translate each --text (or each line of --file) with a model from `fromzero seq2seq train`.\n\n"
        "examples:\n"
        "  fromzero seq2seq translate --model out/en-hi --text 'The cat is sleeping.'\n"
        "  fromzero seq2seq translate --model out/en-hi --file sentences.txt --num-beams 4",
        formatter_class=HelpFormatter,
    )
    add_model_flags(translate)
    source = translate.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", nargs="+", help="the text(s) to translate")
    source.add_argument("--file", help="a UTF-8 file: one text to translate per line")
    translate.add_argument("--num-beams", type=int, default=1, help="beam search width (1: greedy)")
    translate.add_argument("--max-new-tokens", type=int, default=None,
                           help="longest translation in tokens (default: the model's longest target)")
    translate.set_defaults(func=run_translate)

    evaluate = actions.add_parser(
        "evaluate",
        help="score a trained model on held-out pairs (BLEU, chrF, exact match)",
        description="Translate held-out pairs and score the translations against the references with sacrebleu's "
        "BLEU and chrF, and exact match. By default the pairs are those the model was scored on after training "
        "(its task's test split).",
        formatter_class=HelpFormatter,
    )
    add_model_flags(evaluate)
    evaluate.add_argument("--pairs", help="a .jsonl/.tsv file of pairs to score on instead of the task's test split")
    evaluate.add_argument("--num-beams", type=int, default=1, help="beam search width (1: greedy)")
    evaluate.set_defaults(func=run_evaluate)

    attention = actions.add_parser(
        "attention",
        help="draw which source words the model looks at while translating (a PNG)",
        description="Translate --text and draw the decoder's cross-attention as a heatmap: one row per word "
        "written, one column per source word read.\n\n"
        "example:\n"
        "  fromzero seq2seq attention --model out/en-hi --text 'I drink milk every day.' --out align.png",
        formatter_class=HelpFormatter,
    )
    add_model_flags(attention)
    attention.add_argument("--text", required=True, help="the text to translate")
    attention.add_argument("--out", required=True, help="the PNG file to write")
    attention.add_argument("--layer", type=int, default=-1, help="decoder layer (-1: the last)")
    attention.add_argument("--head", type=int, default=None, help="one attention head (default: the mean of all)")
    attention.set_defaults(func=run_attention)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="a folder written by `fromzero seq2seq train`")
    add_device_flag(parser)


def run_train(args: argparse.Namespace) -> None:
    from fromzero.errors import InputError
    from fromzero.seq2seq.config import Seq2SeqTrainConfig
    from fromzero.seq2seq.train import saved_config, train_seq2seq

    fields = {field.name for field in dataclasses.fields(Seq2SeqTrainConfig)}
    values = {name: value for name, value in vars(args).items() if name in fields}
    if args.resume:
        changed = sorted(set(values) - {"out", "max_steps", "device"}) + (["post_ln"] if args.post_ln else [])
        if changed:
            raise InputError(f"--resume continues the run as it was set up; only --max-steps may change, not "
                             f"{', '.join('--' + name.replace('_', '-') for name in changed)}")
        out = values.pop("out", Seq2SeqTrainConfig.out)
        config = saved_config(out, **values)
    else:
        config = Seq2SeqTrainConfig(**values, norm_first=not args.post_ln)
    train_seq2seq(config, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)


def _translator(args: argparse.Namespace):
    from fromzero.devices import resolve_device
    from fromzero.seq2seq.translate import Translator

    return Translator.load(args.model, resolve_device(args.device))


def run_translate(args: argparse.Namespace) -> None:
    from fromzero.seq2seq.tasks import read_lines

    texts = args.text if args.text else [line for line in read_lines(args.file) if line.strip()]
    for translation in _translator(args).translate(texts, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens):
        stdout.print(translation, markup=False, highlight=False)


def run_evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from fromzero.seq2seq.tasks import load_task, read_pairs

    translator = _translator(args)
    if args.pairs:
        pairs, name = read_pairs(Path(args.pairs).expanduser()), args.pairs
    else:
        settings = translator.record.get("settings", {})
        task = load_task(settings.get("task", ""), targets=settings.get("targets"),
                         train_size=settings.get("train_size", 1), test_size=settings.get("test_size", 1),
                         max_len=settings.get("max_chars", 16), seed=settings.get("seed", 0))
        if not task.test:
            from fromzero.errors import InputError

            raise InputError(f"the task {task.name} has no test split: give --pairs FILE")
        pairs, name = task.test, f"{task.name} (test)"
    scores = translator.evaluate(pairs, num_beams=args.num_beams)
    table = Table(title=f"{escape(args.model)} on {len(pairs)} pairs of {escape(name)}")
    for metric in scores:
        table.add_column(metric.replace("_", " "), justify="right")
    table.add_row(*(f"{value:.1f}" for value in scores.values()))
    stdout.print(table)


def run_attention(args: argparse.Namespace) -> None:
    from fromzero.seq2seq.plots import plot_alignment

    translator = _translator(args)
    alignment = translator.alignment(args.text, layer=args.layer)
    translation = "".join(alignment.target[:-1])
    for note in plot_alignment(alignment, args.out, head=args.head, title=f"{args.text}\n→ {translation}"):
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"translation: {escape(translation)}")
    stdout.print(args.out)
