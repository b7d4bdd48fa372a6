"""``fromzero train``: pretrain a GPT, with every hyperparameter as a flag."""

from __future__ import annotations

import argparse

from fromzero.commands.parsing import HelpFormatter
from fromzero.training.config import TrainConfig

# One flag per TrainConfig field: (field, type, help). Defaults come from TrainConfig.
TRAIN_FLAGS: list[tuple[str, type, str]] = [
    ("data", str, "training text: a bundled corpus (stories, education_qa/train), a .txt, .html or .jsonl "
                  "file, a folder of .txt/.html files, hf:NAME (see `fromzero data prepare --help`), or shards "
                  "made by `fromzero data prepare`; several sources (not shards) are joined"),
    ("tokenizer", str, "char (the corpus's characters), gpt2 (GPT-2's BPE), bpe:DIR (a saved tokenizer) or "
                       "bpe:N (a byte-level BPE of N tokens, trained on the data first)"),
    ("text_field", str, "the field of a .jsonl file's records (or column of an hf: dataset) that holds the text"),
    ("val_fraction", float, "share of the documents (or of the text, if few) held out for validation"),
    ("batch_mode", str, "random: fresh random windows every step (nanoGPT); sequential: shuffled "
                        "non-overlapping windows, each used once per epoch"),
    ("preset", str, "model size: tiny, mini, gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2"),
    ("n_layer", int, "Transformer blocks (overrides the preset)"),
    ("n_head", int, "attention heads per block (overrides the preset)"),
    ("n_embd", int, "embedding width (overrides the preset)"),
    ("block_size", int, "context length in tokens (overrides the preset)"),
    ("dropout", float, "dropout probability (overrides the preset; the course's mini has none)"),
    ("batch_size", int, "sequences per micro-batch on each process"),
    ("grad_accum", int, "micro-batches accumulated per optimizer step"),
    ("max_steps", int, "optimizer steps to train for"),
    ("lr", float, "peak learning rate (reached after warmup)"),
    ("min_lr", float, "floor of the cosine decay (default: lr / 10)"),
    ("warmup_steps", int, "steps of linear learning-rate warmup"),
    ("schedule", str, "after the warmup: cosine (decay to min_lr at decay_steps, as GPT-2) or noam (1/sqrt(step), "
                      "as the original Transformer)"),
    ("decay_steps", int, "step where the cosine decay reaches min_lr (default: max_steps)"),
    ("weight_decay", float, "AdamW weight decay of the weight matrices"),
    ("beta1", float, "AdamW beta1"),
    ("beta2", float, "AdamW beta2"),
    ("grad_clip", float, "clip the gradient norm to this (0: no clipping)"),
    ("eval_interval", int, "steps between train/val loss estimates (with a sample and a checkpoint)"),
    ("eval_batches", int, "batches averaged for each loss estimate"),
    ("log_interval", int, "steps between progress/metrics updates"),
    ("sample_tokens", int, "tokens of sample text printed at each evaluation (0: none)"),
    ("sample_prompt", str, "prompt of those samples (default: the start of a new document)"),
    ("checkpoint_interval", int, "steps between checkpoints (default: eval_interval)"),
    ("keep_checkpoints", int, "how many checkpoints to keep"),
    ("seed", int, "random seed (weights, batches, dropout, samples)"),
    ("device", str, "auto, cpu, cuda, cuda:N or mps"),
    ("dtype", str, "auto (GPUs: bf16 autocast, fp16 on older ones; CPUs with native bf16: bf16 or fp32, "
                   "whichever a timed step of this model found faster, kept in $FROMZERO_HOME/tuning.json; "
                   "other CPUs: fp32), float32, bfloat16 or float16"),
    ("threads", int, "CPU threads, fixed (default: as many as other programs leave free, re-measured "
                     "every second; a fixed count makes repeated runs bit-identical)"),
    ("out", str, "output directory (the model dir, checkpoints, metrics, loss.png)"),
]
SWITCHES = [
    ("compile", "compile the model with torch.compile (slow start: 10-30 s on a 2-core CPU; faster steps on a GPU; "
                "on CPUs it depends on the CPU: nanoGPT's model measured fp32 steps 1.23x faster on an AMD Zen 5 "
                "but 1.02x on a Zen 3, and bf16 steps about as fast as without, see benchmarks/RESULTS.md)"),
    ("tensorboard", "also log to OUT/tensorboard (needs the tensorboard package)"),
]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    defaults = TrainConfig()
    train = subparsers.add_parser(
        "train",
        help="pretrain a GPT from scratch (default: the course's mini GPT on the bundled stories)",
        description="Pretrain a GPT language model. With no flags it trains the course's mini GPT "
        "(0.8M parameters, characters) on the bundled stories in a few minutes on a laptop CPU and "
        "writes a model directory that `fromzero generate --model OUT` reads.\n\n"
        "examples:\n"
        "  fromzero train\n"
        "  fromzero train --data input.txt --block-size 64 --max-steps 2000 --out out/shakespeare\n"
        "  fromzero train --config recipe.toml --resume\n"
        "  torchrun --standalone --nproc_per_node=4 -m fromzero train --device cuda --preset gpt2 ...\n\n"
        "Precedence: defaults < --config FILE < flags. With --resume the run's saved settings are "
        "used; only flags such as --max-steps or --eval-interval may change them.",
        formatter_class=HelpFormatter,
    )
    for name, kind, text in TRAIN_FLAGS:
        default = getattr(defaults, name)
        shown = "" if default is None or "default:" in text else f" (default: {default!r})"
        train.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=kind, default=argparse.SUPPRESS, help=text + shown,
            nargs="+" if name == "data" else None,
        )
    for name, text in SWITCHES:
        train.add_argument("--" + name, dest=name, action="store_true", default=argparse.SUPPRESS, help=text)
    train.add_argument(
        "--config", metavar="FILE", help="a TOML/YAML/JSON recipe of these settings (field names as above)"
    )
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar or samples")
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> None:
    from fromzero.training.recipe import read_recipe
    from fromzero.training.run import train

    fields = set(TrainConfig.field_names())
    values = read_recipe(args.config) if args.config else {}
    flags = {name: value for name, value in vars(args).items() if name in fields}
    values.update(flags)
    config = TrainConfig(**values)
    given = set(flags) | set(values)
    train(config, given=given, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)

