"""``fromzero quickstart``: the whole course at small scale, from bundled data, on a laptop CPU.

Four stages, each one the library's own engine with the settings of the course's level-5 recipe
(the README's tour gives the same stages as separate commands, and a test checks they agree):

1. **pretrain** a GPT with a byte-level BPE tokenizer on the ``stories`` and the answers of the
   ``education_qa`` train split (so the base model has read the words the questions use; the test
   split is never read by any stage);
2. **sft**: teach it to answer in the ``qa`` template with a LoRA adapter;
3. **dpo**: tune that adapter to prefer the chosen answers of the ``preferences`` pairs;
4. **evaluate** base, SFT and DPO on held-out data (:mod:`fromzero.evaluate.report`, the report in
   ``OUT/report``).

A stage that finished is skipped when the command runs again; one that was interrupted resumes
from its last checkpoint, exactly. ``OUT/quickstart.json`` records each stage's wall time and the
evaluation.
"""

from __future__ import annotations

import argparse
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.markup import escape

from fromzero.commands.parsing import HelpFormatter
from fromzero.console import console, stdout
from fromzero.finetune.recipe import DPO_EPOCHS, PRETRAIN_STEPS, SFT_EPOCHS, dpo_settings, pretrain_settings, sft_settings

DEFAULT_OUT = "out/quickstart"
RECORD = "quickstart.json"
# Ten education_qa test questions whose answers are shown for every stage (the first ten of the split).
SHOWN_QUESTIONS = 10


@dataclass
class Stage:
    name: str
    what: str
    done: Callable[[Path], bool]
    run: Callable[[Path, bool], Any]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="the whole course at small scale: pretrain, fine-tune, prefer, evaluate (about 15 minutes on a CPU)",
        description="Build a small chatbot from the bundled data alone: pretrain a BPE GPT on the stories and "
        "the Q&A answers, teach it to answer with LoRA (SFT), tune it on preference pairs (DPO), and "
        "score all three on held-out questions. Run it again to skip what is done; an interrupted stage "
        "resumes exactly. Each stage is also a command of its own: `fromzero train`, `fromzero finetune "
        "sft`, `fromzero finetune dpo` (the README's tour shows them with these settings).\n\n"
        "examples:\n"
        "  fromzero quickstart\n"
        "  fromzero quickstart --out out/my-first-bot",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for every stage's output (default: %(default)s)")
    p.add_argument("--pretrain-steps", type=int, default=PRETRAIN_STEPS,
                   help="optimizer steps of pretraining, the longest stage (default: %(default)s; fewer: quicker, weaker)")
    p.add_argument("--sft-epochs", type=int, default=SFT_EPOCHS, help="passes over the Q&A examples (default: %(default)s)")
    p.add_argument("--dpo-epochs", type=int, default=DPO_EPOCHS, help="passes over the preference pairs (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    p.epilog = "A finished stage is kept when the command runs again, whatever the flags: delete its folder to redo it."
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from rich.rule import Rule

    out = Path(args.out)
    stages = _stages(args)
    record = _read_record(out)
    started = time.perf_counter()
    for number, stage in enumerate(stages, 1):
        title = f"[{number}/{len(stages)}] {stage.name}: {stage.what}"
        if stage.done(out):
            console.print(f"[dim]{escape(title)} — done, skipped[/]", soft_wrap=True)
            continue
        console.print(Rule(escape(title), align="left"))
        began = time.perf_counter()
        result = stage.run(out, (out / stage.name).is_dir())
        record.setdefault("seconds", {})[stage.name] = round(time.perf_counter() - began, 1)
        if result is not None:
            record[stage.name] = result
        _write_record(out, record)
    folder = shlex.quote(str(out / "dpo"))
    console.print(f"[green]quickstart done[/] in {time.perf_counter() - started:.0f} s; everything is in "
                  f"{escape(str(out))}", soft_wrap=True)
    console.print(f"next: fromzero chat --model {escape(folder)}", soft_wrap=True)
    console.print(f"or serve it to any OpenAI client and a web page: fromzero serve --model {escape(folder)}",
                  soft_wrap=True)
    stdout.print(str(out))


def _stages(args: argparse.Namespace) -> list[Stage]:
    device = args.device
    return [
        Stage("base", "pretrain a BPE GPT on the stories and the Q&A answers",
              lambda out: (out / "base" / "model.safetensors").is_file(),
              lambda out, again: _tune("train", pretrain_settings(out, args.pretrain_steps), again, device)),
        Stage("sft", "teach it to answer (LoRA on education_qa)", lambda out: _finished(out / "sft"),
              lambda out, again: _tune("sft", sft_settings(out, args.sft_epochs), again, device)),
        Stage("dpo", "prefer the better answer (DPO on the preference pairs)", lambda out: _finished(out / "dpo"),
              lambda out, again: _tune("dpo", dpo_settings(out, args.dpo_epochs), again, device)),
        Stage("evaluate", "score base, SFT and DPO on held-out questions and pairs",
              lambda out: "evaluate" in _read_record(out), lambda out, again: _evaluate(out)),
    ]


def _finished(folder: Path) -> bool:
    """A fine-tuning run is finished when its finetune.json has a result: it is written after the last step."""
    from fromzero.finetune.tuned import fine_tune_record

    record = fine_tune_record(folder) if folder.is_dir() else None
    return bool(record and "result" in record)


def _tune(method: str, settings: dict[str, Any], again: bool, device: str) -> None:
    """Run one training stage; a stage that was interrupted (it has a checkpoint) resumes exactly."""
    from fromzero.training.checkpoint import latest_checkpoint

    if method == "train":
        from fromzero.training.config import TrainConfig as Config
        from fromzero.training.run import train as fit
    elif method == "sft":
        from fromzero.finetune.sft import SFTConfig as Config
        from fromzero.finetune.sft import sft as fit
    else:
        from fromzero.finetune.dpo import DPOConfig as Config
        from fromzero.finetune.dpo import dpo as fit
    resume = again and latest_checkpoint(Path(settings["out"]) / "checkpoints") is not None
    fit(Config(**settings, device=device), given=set(settings), resume=resume, overwrite=again and not resume)


def _evaluate(out: Path) -> dict[str, Any]:
    """``fromzero evaluate`` on the three stages: every suite, the report in ``OUT/report``."""
    from fromzero.evaluate.report import ModelSpec, Settings, evaluate_models, rich_table, write_report

    models = [ModelSpec("base", str(out / "base")), ModelSpec("SFT", str(out / "sft")), ModelSpec("DPO", str(out / "dpo"))]
    with console.status("scoring base, SFT and DPO on held-out text, questions and preference pairs"):
        report = evaluate_models(models, Settings(shown_answers=SHOWN_QUESTIONS))
    stdout.print(rich_table(report, "held out: stories, education_qa test questions, preference pairs (* best)"))
    first = report["answers"][0]
    stdout.print(f"Q: {first['question']}")
    for name, answer in first["answers"].items():
        stdout.print(f"  {name}: {answer}")
    write_report(report, out / "report")
    return report


def _read_record(out: Path) -> dict[str, Any]:
    from fromzero.files import read_json

    return read_json(out / RECORD) if (out / RECORD).is_file() else {}


def _write_record(out: Path, record: dict[str, Any]) -> None:
    from fromzero.files import write_json

    write_json(out / RECORD, record)
