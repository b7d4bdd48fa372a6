"""``fromzero finetune``: teach a pretrained model to answer. ``prepare`` checks and shows the data."""

from __future__ import annotations

import argparse
import statistics

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fromzero.commands.parsing import HelpFormatter
from fromzero.console import console, stdout
from fromzero.errors import InputError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    finetune = subparsers.add_parser(
        "finetune",
        help="fine-tune a pretrained model on instruction data",
        description="Fine-tune a pretrained GPT to answer questions (supervised fine-tuning on "
        "question/answer records). Start with `fromzero finetune prepare` to check the data and see "
        "exactly what the model will be trained on.",
        formatter_class=HelpFormatter,
    )
    actions = finetune.add_subparsers(dest="finetune_command", metavar="ACTION", required=True)

    prepare = actions.add_parser(
        "prepare",
        help="check instruction data and show what fine-tuning will train on",
        description="Read instruction data, format it with a template and tokenize it with the "
        "model's tokenizer (no weights are loaded); print the counts, the train/validation split, "
        "token lengths, how many examples --max-length truncates or drops, and the first example "
        "with the part that gets no loss dimmed. Writes nothing.\n\n"
        "Records: Alpaca (instruction, input, output), question/answer (instruction or question; "
        "response, answer or output) or chat (messages: [{role, content}]), one per line of a "
        ".jsonl file or in a .json list.\n\n"
        "examples:\n"
        "  fromzero finetune prepare education_qa --model out/mini-stories\n"
        "  fromzero finetune prepare alpaca_data.json --model gpt2 --template alpaca --max-length 512\n"
        "  fromzero finetune prepare chats.jsonl --model distilgpt2 --template chat",
        formatter_class=HelpFormatter,
    )
    prepare.add_argument("data", metavar="DATA",
                         help="education_qa (its train part), or a .jsonl / .json file of records")
    prepare.add_argument("--model", required=True, metavar="M",
                         help="a model folder (its tokenizer is used) or a hub name such as gpt2 or distilgpt2")
    prepare.add_argument("--template", metavar="NAME", default=None,
                         help="how an example is written out: qa (the default), alpaca or chat; "
                         "`fromzero.finetune.templates` shows each one's exact text")
    prepare.add_argument("--template-file", metavar="FILE", default=None,
                         help="your own template: text with {instruction}, optionally {input}, and {response} "
                         "where the answer goes")
    prepare.add_argument("--max-length", type=int, default=None, metavar="N",
                         help="most tokens per example (default: the model's context length)")
    prepare.add_argument("--val-fraction", type=float, default=0.1,
                         help="share of the examples held out for validation")
    prepare.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    prepare.add_argument("--skip-bad", action="store_true", help="skip malformed records instead of stopping")
    prepare.add_argument("--train-on-prompt", action="store_true",
                         help="compute the loss on the prompt too, not only on the answer")
    prepare.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> None:
    from fromzero.data.split import train_val_split
    from fromzero.finetune.batches import IGNORE_INDEX, build_sft_data
    from fromzero.finetune.instructions import load_instructions
    from fromzero.finetune.templates import get_template
    from fromzero.finetune.vocab import add_special_tokens, load_model_tokenizer, model_context

    template = get_template(args.template, args.template_file)
    base = load_model_tokenizer(args.model)
    tokenizer = add_special_tokens(base, template.special_tokens)
    context = model_context(args.model)
    max_length = args.max_length or context
    if max_length is None:
        raise InputError(f"{args.model} has no config.json to read its context length from: give --max-length")
    if context is not None and max_length > context:
        raise InputError(f"--max-length {max_length} is longer than the model's context of {context} tokens")
    examples = load_instructions(args.data, skip_bad=args.skip_bad)
    train, val = train_val_split(examples, args.val_fraction, args.seed)
    splits = {name: build_sft_data(part, template, tokenizer, max_length, args.train_on_prompt)
              for name, part in (("train", train), ("val", val))}

    table = Table(title=f"fromzero finetune prepare: {escape(str(args.data))}", show_header=True)
    table.add_column("")
    for name in splits:
        table.add_column(name, justify="right")
    table.add_row("examples read", *(f"{len(data.lengths):,}" for data in splits.values()))
    table.add_row("tokens min / mean / max",
                  *(f"{min(d.lengths)} / {statistics.mean(d.lengths):.0f} / {max(d.lengths)}" for d in splits.values()))
    table.add_row(f"truncated to {max_length}", *(f"{data.truncated:,}" for data in splits.values()))
    table.add_row("dropped (answer cut away)", *(f"{data.dropped:,}" for data in splits.values()))
    table.add_row("examples to train on", *(f"{len(data.examples):,}" for data in splits.values()))
    stdout.print(table)
    trained = "whole text" if args.train_on_prompt else "answers"
    stdout.print(f"template {escape(template.name)}, tokenizer {escape(tokenizer.name)} "
                 f"({tokenizer.vocab_size:,} tokens), loss on the {trained}")
    if tokenizer is not base:
        gained = ", ".join(token for token in tokenizer.special_tokens if token not in base.special_tokens)
        stdout.print(f"the tokenizer gains {tokenizer.vocab_size - base.vocab_size} special tokens ({escape(gained)}, "
                     f"ids {base.vocab_size}-{tokenizer.vocab_size - 1}): the model's embedding grows by as many "
                     "rows, each the mean of the existing rows, when fine-tuning starts")
    for name, data in splits.items():
        if data.dropped:
            console.print(f"[yellow]warning:[/] {data.dropped} {name} example(s) dropped: their prompt fills "
                          f"--max-length {max_length}, leaving no answer to learn")

    first = splits["train"].examples[0]
    shown = Text()
    start = 0
    for end in range(1, len(first) + 1):  # one piece per run of tokens that are all trained, or all not
        if end == len(first) or (first.labels[end] == IGNORE_INDEX) != (first.labels[start] == IGNORE_INDEX):
            piece = tokenizer.decode(first.input_ids[start:end])
            shown.append(piece, style="dim" if first.labels[start] == IGNORE_INDEX else "bold")
            start = end
    stdout.print(f"\nfirst training example ({len(first)} tokens; dimmed: no loss):")
    stdout.print(shown)
