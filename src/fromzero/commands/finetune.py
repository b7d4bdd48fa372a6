"""``fromzero finetune``: teach a pretrained model to answer.

``prepare`` checks and shows the data, ``sft`` fine-tunes on question/answer examples (LoRA or the
whole model), ``dpo`` tunes on preference pairs, ``merge`` adds an adapter into its base model.
"""

from __future__ import annotations

import argparse
import os
import statistics

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fromzero.commands.parsing import HelpFormatter
from fromzero.console import console, stdout
from fromzero.errors import InputError

API_KEY_ENV = "FROMZERO_API_KEY"  # as `fromzero serve` reads it


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
    _add_sft(actions)
    _add_dpo(actions)
    _add_merge(actions)


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


# ---------------------------------------------------------------- sft and dpo
# The flags SFT and DPO share: (flag, type, default, help). Defaults are shown here because the
# parser must not import the torch-heavy settings module; tests check they equal TuneConfig's.
TUNE_FLAGS: list[tuple[str, type, object, str]] = [
    ("--model", str, None, "the model to tune (not needed with --resume): a folder (from `fromzero train`, transformers or `finetune sft "
                           "--lora-r 0`) or a hub name such as gpt2 or distilgpt2"),
    ("--template", str, None, "qa (the default), alpaca or chat (chat adds special tokens: needs --lora-r 0)"),
    ("--template-file", str, None, "your own template: text with {instruction}, optionally {input}, and {response}"),
    ("--lora-r", int, 8, "LoRA rank; 0 fine-tunes every weight instead"),
    ("--lora-alpha", float, 16, "LoRA alpha: the update is scaled by alpha / r"),
    ("--lora-dropout", float, 0.05, "dropout on the LoRA input"),
    ("--epochs", int, 3, "passes over the training examples"),
    ("--warmup-steps", int, 50, "steps of linear learning-rate warmup (clamped when the run is shorter)"),
    ("--batch-size", int, 8, "examples per micro-batch"),
    ("--grad-accum", int, 1, "micro-batches accumulated per optimizer step"),
    ("--max-length", int, None, "most tokens per example (default: the model's context length)"),
    ("--eval-interval", int, None, "steps between validation losses and checkpoints (default: once per epoch)"),
    ("--seed", int, 42, "seed of the train/validation split, the batches, the adapter's start and dropout"),
    ("--val-fraction", float, 0.1, "share of the examples held out for validation"),
    ("--device", str, "auto", "auto, cpu, cuda, cuda:N or mps"),
    ("--dtype", str, "auto", "auto, float32, bfloat16 or float16"),
    ("--out", str, None, "output folder: the adapter (or model), tokenizer, finetune.json, checkpoints, metrics"),
]


def _add_tune_flags(parser: argparse.ArgumentParser, data_help: str, lr: float) -> None:
    parser.add_argument("--data", metavar="DATA", default=argparse.SUPPRESS, help=data_help)
    for name, kind, default, text in TUNE_FLAGS:
        shown = "" if default is None else f" (default: {default})"
        parser.add_argument(name, type=kind, default=argparse.SUPPRESS, help=text + shown,
                            required=name == "--out")
    parser.add_argument("--lr", type=float, default=argparse.SUPPRESS, help=f"peak learning rate (default: {lr:g})")
    parser.add_argument("--lora-targets", nargs="+", metavar="NAME", default=argparse.SUPPRESS,
                        help="layers LoRA adapts: c_attn, c_proj, c_fc, attn.c_proj, mlp.c_proj ... (default: c_attn)")
    parser.add_argument("--skip-bad", action="store_true", default=argparse.SUPPRESS,
                        help="skip malformed records instead of stopping")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or messages")


def _add_sft(actions: argparse._SubParsersAction) -> None:
    sft = actions.add_parser(
        "sft",
        help="supervised fine-tuning on question/answer examples (LoRA or the whole model)",
        description="Fine-tune a model to answer: the loss is on the answers (and the end-of-text token "
        "after each, so the model learns to stop). Writes a LoRA adapter in PEFT's format (or, with "
        "--lora-r 0, the whole model), the tokenizer and finetune.json (base model, template, settings) "
        "into --out; the model with the best validation loss goes to OUT/best. Ctrl-C stops with a "
        "checkpoint that --resume continues exactly.\n\n"
        "examples:\n"
        "  fromzero finetune sft --model out/mini-stories --out out/sft\n"
        "  fromzero finetune sft --model distilgpt2 --data education_qa --epochs 3 --out out/sft-distilgpt2\n"
        "  fromzero finetune sft --model gpt2 --data chats.jsonl --template chat --lora-r 0 --out out/chat",
        formatter_class=HelpFormatter,
    )
    _add_tune_flags(sft, "education_qa (its train part; the default) or a .jsonl / .json file of records", 2e-4)
    sft.add_argument("--train-on-prompt", action="store_true", default=argparse.SUPPRESS,
                     help="compute the loss on the prompt too, not only on the answer")
    sft.add_argument("--pack", action="store_true", default=argparse.SUPPRESS,
                     help="join whole training examples into rows of --max-length tokens: less padding, faster "
                     "epochs; each example then also sees the ones packed before it")
    sft.set_defaults(func=run_sft)


def _add_dpo(actions: argparse._SubParsersAction) -> None:
    dpo = actions.add_parser(
        "dpo",
        help="preference tuning (DPO/IPO) on prompt/chosen/rejected pairs, with LoRA",
        description="Direct preference optimisation: raise the likelihood of each chosen answer above "
        "the rejected one's, relative to the frozen starting model (the reference: the same weights "
        "with the adapter being trained switched off, so no second copy is held). Logs the held-out "
        "reward margin and preference accuracy at each evaluation. Start from an SFT result with "
        "--adapter (its adapter is trained on; the reference is the SFT model).\n\n"
        "Closing the loop: --from-feedback DIR trains on the choices, edits and ratings people gave in "
        "`fromzero chat` or on the page of `fromzero serve` (exported as `fromzero feedback export --format "
        "dpo` would), and --serve-to URL loads the result into that running server (POST /v1/adapters), "
        "where it is a new model id at once.\n\n"
        "examples:\n"
        "  fromzero finetune dpo --model out/mini-stories --adapter out/sft --out out/dpo\n"
        "  fromzero finetune dpo --model distilgpt2 --adapter out/sft-distilgpt2 --beta 0.1 --out out/dpo-distilgpt2\n"
        "  fromzero finetune dpo --model out/mini-stories --from-feedback ~/.fromzero/feedback --out out/dpo-fb "
        "--serve-to http://127.0.0.1:8000",
        formatter_class=HelpFormatter,
    )
    _add_tune_flags(dpo, "preferences (bundled; the default) or a .jsonl / .json file of prompt/chosen/rejected "
                    "records", 5e-5)
    dpo.add_argument("--adapter", metavar="DIR", default=argparse.SUPPRESS,
                     help="an SFT adapter folder on --model to start from (and to use as the reference)")
    dpo.add_argument("--beta", type=float, default=argparse.SUPPRESS,
                     help="how far the model may move from the reference: small beta, weak pull back (default: 0.1)")
    dpo.add_argument("--loss", default=argparse.SUPPRESS, metavar="KIND",
                     help="sigmoid (DPO, the default) or ipo")
    dpo.add_argument("--from-feedback", metavar="DIR", default=argparse.SUPPRESS,
                     help="train on the preference pairs of a feedback folder (--feedback-dir of serve or chat) "
                     "instead of --data; they are written to DIR/dpo-pairs-HASH.jsonl, which finetune.json names")
    dpo.add_argument("--serve-to", metavar="URL", default=argparse.SUPPRESS,
                     help="after training, load the adapter into the fromzero serve at URL (it must see --out)")
    dpo.add_argument("--serve-name", metavar="NAME", default=argparse.SUPPRESS,
                     help="its model id there (default: the name of --out; an adapter of that name is replaced)")
    dpo.add_argument("--api-key", default=None, help="the server's API key (default: $FROMZERO_API_KEY)")
    dpo.set_defaults(func=run_dpo)


def _add_merge(actions: argparse._SubParsersAction) -> None:
    merge = actions.add_parser(
        "merge",
        help="add a LoRA adapter into its base model: a plain model folder",
        description="Merge a LoRA adapter (ours or PEFT's) into the weights of its base model and write a "
        "plain Hugging Face-format model folder (config.json, model.safetensors) with the tokenizer, "
        "which fromzero and transformers load like any GPT-2.\n\n"
        "examples:\n"
        "  fromzero finetune merge --model out/mini-stories --adapter out/sft --out out/sft-merged",
        formatter_class=HelpFormatter,
    )
    merge.add_argument("--model", required=True, metavar="M", help="the base model: a folder or a hub name")
    merge.add_argument("--adapter", required=True, metavar="DIR", help="the adapter folder (adapter_config.json ...)")
    merge.add_argument("--out", required=True, metavar="DIR", help="the new model folder (must not hold files yet)")
    merge.set_defaults(func=run_merge)


def _given(args: argparse.Namespace, fields: list[str]) -> dict:
    values = {name: value for name, value in vars(args).items() if name in fields}
    if "lora_targets" in values:
        values["lora_targets"] = tuple(values["lora_targets"])
    return values


def run_sft(args: argparse.Namespace) -> None:
    import dataclasses

    from fromzero.finetune.sft import SFTConfig, sft

    values = _given(args, [f.name for f in dataclasses.fields(SFTConfig)])
    sft(SFTConfig(**values), given=set(values), resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)


def run_dpo(args: argparse.Namespace) -> None:
    import dataclasses
    from pathlib import Path

    from fromzero.finetune.dpo import DPOConfig, dpo

    values = _given(args, [f.name for f in dataclasses.fields(DPOConfig)])
    serve_to = getattr(args, "serve_to", None)
    if serve_to is not None and not serve_to.startswith(("http://", "https://")):
        raise InputError(f"--serve-to {serve_to!r}: give the server's URL, such as http://127.0.0.1:8000")
    if hasattr(args, "from_feedback"):
        if "data" in values:
            raise InputError("give --data or --from-feedback, not both")
        values["data"] = str(_feedback_pairs(args.from_feedback, args.quiet))
    config = DPOConfig(**values)
    dpo(config, given=set(values), resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)
    if serve_to is not None:
        name = getattr(args, "serve_name", None) or Path(config.out).resolve().name
        _serve_adapter(serve_to, name, Path(config.out).resolve(), args.api_key or os.environ.get(API_KEY_ENV))
        if not args.quiet:
            console.print(f"[green]serving[/] it as model {escape(name)} at {escape(serve_to)}", soft_wrap=True)


MIN_FEEDBACK_PAIRS = 2  # one to learn from, one held out to check the result on


def _feedback_pairs(folder: str, quiet: bool):
    """Export the DPO pairs of a feedback folder to ``DIR/dpo-pairs-HASH.jsonl`` and return its path.

    The name holds a hash of the pairs: the file a run's ``finetune.json`` names never changes, so its
    held-out pairs can be found again after more feedback has come in.
    """
    import hashlib
    import tempfile
    from pathlib import Path

    from fromzero.chat.feedback import FeedbackStore, export
    from fromzero.files import write_text

    store = FeedbackStore(folder)
    with tempfile.TemporaryDirectory() as tmp:
        result = export(store, "dpo", Path(tmp) / "pairs.jsonl")
        text = (Path(tmp) / "pairs.jsonl").read_text(encoding="utf-8")
    if len(result.records) < MIN_FEEDBACK_PAIRS:
        raise InputError(f"{store.path} gives {len(result.records)} preference pair(s); DPO needs at least "
                         f"{MIN_FEEDBACK_PAIRS} (one to learn from, one held out): compare or edit more answers")
    path = store.folder / f"dpo-pairs-{hashlib.sha256(text.encode()).hexdigest()[:12]}.jsonl"
    if not path.is_file():
        write_text(path, text)
    if not quiet:
        console.print(f"{len(result.records)} preference pairs from {escape(str(store.path))} in "
                      f"{escape(str(path))}", soft_wrap=True)
    return path


def _serve_adapter(url: str, name: str, folder, api_key: str | None) -> None:
    """``POST URL/v1/adapters``: the running server loads the adapter in ``folder`` as model ``name``."""
    import json
    import urllib.error
    import urllib.request

    base = url.rstrip("/")
    endpoint = base + ("/adapters" if base.endswith("/v1") else "/v1/adapters")
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    request = urllib.request.Request(endpoint, json.dumps({"name": name, "path": str(folder)}).encode(), headers,
                                     method="POST")
    kept = f"the adapter stays in {folder} (load it later with POST /v1/adapters)"
    try:
        with urllib.request.urlopen(request, timeout=300):
            return
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = error.reason
        raise InputError(f"{endpoint} refused the adapter ({error.code}: {message}); {kept}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise InputError(f"cannot reach {endpoint} ({reason}); {kept}") from None


def run_merge(args: argparse.Namespace) -> None:
    from fromzero.finetune.run import merge_adapter

    stdout.print(str(merge_adapter(args.model, args.adapter, args.out)))
