"""``fromzero evaluate``: score several models on the same held-out data, side by side (:mod:`fromzero.evaluate.report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fromzero.commands.parsing import HelpFormatter, add_device_flag
from fromzero.console import console, progress, stdout
from fromzero.errors import InputError

DEFAULT_OUT = "out/evaluation"


class _AddModel(argparse.Action):
    """``--model [NAME=]SPEC``: one more model of the report."""

    def __call__(self, parser, namespace, value, option_string=None):
        name, _, spec = value.partition("=") if "=" in value and not Path(value).exists() else ("", "", value)
        models = list(getattr(namespace, self.dest) or [])
        models.append({"name": name or Path(spec.rstrip("/")).name or spec, "spec": spec, "adapters": []})
        setattr(namespace, self.dest, models)


class _AddAdapter(argparse.Action):
    """``--adapter [NAME=]DIR``: a LoRA adapter on the ``--model`` just before it."""

    def __call__(self, parser, namespace, value, option_string=None):
        models = getattr(namespace, "models", None)
        if not models:
            parser.error("--adapter goes after the --model it belongs to")
        models[-1]["adapters"].append(value)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score models side by side: bits per byte, held-out Q&A, preference accuracy",
        description="Score one or more models on the same held-out data and print one table with every "
        "model side by side; --out gets report.md, report.json and report.png.\n\n"
        "suites:\n"
        "  lm     loss, perplexity, bits per byte and per character on held-out text (every kind of model:\n"
        "         n-gram and numpy-net runs, our GPTs, GPT-2 checkpoints; bits per byte compares across tokenizers)\n"
        "  qa     greedy answers to held-out questions: exact match, token F1, ROUGE-L, keyword recall,\n"
        "         stops properly, and the teacher-forced answer loss (GPTs)\n"
        "  prefs  how often the model finds the chosen answer of a held-out preference pair more likely (GPTs)\n\n"
        "examples:\n"
        "  fromzero evaluate --model out/quickstart/base --model out/quickstart/sft --model out/quickstart/dpo\n"
        "  fromzero evaluate --suite lm --model runs/ngram --model runs/numpy-net --model out/quickstart/base\n"
        "  fromzero evaluate --model gpt2 --model tuned=gpt2 --adapter runs/my-lora --suite qa",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", dest="models", action=_AddModel, metavar="[NAME=]SPEC", required=True,
                   help="a model to score (repeat for several): a model or adapter folder, gpt2/distilgpt2, "
                   "or a `fromzero ngram`/`numpy-net` run folder; NAME labels its column (default: the folder name)")
    p.add_argument("--adapter", action=_AddAdapter, metavar="[NAME=]DIR",
                   help="a LoRA adapter on the --model given just before it (repeatable)")
    p.add_argument("--suite", dest="suites", choices=("lm", "qa", "prefs", "all"), action="append",
                   help="what to measure (repeatable; default: all)")
    p.add_argument("--data", default="stories",
                   help="text for the lm suite: a bundled corpus, .txt/.jsonl file or folder")
    p.add_argument("--split", default="val", choices=("val", "all"),
                   help="lm suite: score the documents `fromzero train` holds out (val) or all of --data")
    p.add_argument("--max-tokens", type=int, default=None, help="lm suite: score at most this many tokens per model")
    p.add_argument("--stride", type=int, default=None,
                   help="lm suite: sliding-window step for text longer than the context (default: half the context)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="lm suite: precision of the matmuls; float32 is exact; bfloat16 measured 2.06x faster on an AMD "
                   "EPYC (Zen 5) with a perplexity 1e-4 apart (benchmarks/RESULTS.md)")
    p.add_argument("--qa-data", default="education_qa/test",
                   help="qa suite: questions with reference answers (an instruction file; never a train split)")
    p.add_argument("--questions", type=int, default=None, help="qa suite: only the first N questions (default: all)")
    p.add_argument("--max-new-tokens", type=int, default=80, help="qa suite: longest answer, in tokens")
    p.add_argument("--prefs-data", default=None,
                   help="prefs suite: preference pairs (default: the pairs the DPO run among the models held out, "
                   "else the validation part of the bundled preferences)")
    p.add_argument("--template", default=None,
                   help="ask every GPT in this template (qa, alpaca, chat); default: each model's own, else the "
                   "first one among the models, else qa")
    p.add_argument("--batch-size", type=int, default=8, help="windows or questions per forward pass")
    p.add_argument("--answers", type=int, default=5, help="how many questions' answers the report shows")
    p.add_argument("--seed", type=int, default=0, help="random seed (the scores themselves are deterministic)")
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for report.md, report.json and report.png")
    add_device_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from fromzero.devices import resolve_device
    from fromzero.evaluate.report import SUITES, ModelSpec, Settings, evaluate_models, rich_table, write_report
    from fromzero.finetune.tuned import parse_adapter_specs

    chosen = args.suites or ["all"]
    suites = list(SUITES) if "all" in chosen else list(dict.fromkeys(chosen))
    models = [ModelSpec(m["name"], m["spec"], parse_adapter_specs(m["adapters"])) for m in args.models]
    if Path(args.out).is_file():
        raise InputError(f"--out {args.out} is a file; give a folder for the report")
    settings = Settings(suites=suites, lm_data=args.data, lm_split=args.split, max_tokens=args.max_tokens,
                        stride=args.stride, batch_size=args.batch_size, qa_data=args.qa_data,
                        questions=args.questions, max_new_tokens=args.max_new_tokens, prefs_data=args.prefs_data,
                        template=args.template, device=resolve_device(args.device), dtype=args.dtype, seed=args.seed,
                        shown_answers=args.answers)
    with progress(transient=True) as bar:
        task = bar.add_task("loading", total=None)

        def report(what: str, done: int, total: int) -> None:
            bar.update(task, description=escape(what), completed=done, total=total)

        result = evaluate_models(models, settings, report)
    stdout.print(rich_table(result))
    written = write_report(result, args.out)
    console.print(f"[green]saved[/] {', '.join(str(path) for path in written)}")
    return 0
