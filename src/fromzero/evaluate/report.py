"""The report card: several models, the same held-out data, one table.

Three suites, each answering one question about every model given:

* ``lm``: how well does it predict text it never read? Loss, perplexity, and bits per byte and per
  character, which compare across tokenizers (:mod:`fromzero.evaluate.perplexity`). Every model of
  the course takes part: n-grams, the char-MLP and the GPTs.
* ``qa``: does it answer held-out questions? Generated answers scored against the references, the
  stop rate and the answer loss (:mod:`fromzero.evaluate.qa`). GPTs only.
* ``prefs``: does it prefer the better answer? Preference accuracy on pairs no DPO run trained on
  (:mod:`fromzero.evaluate.preferences`). GPTs only.

Everything is loaded and checked before anything is scored, and nothing is written until every
score is in, so a bad model or data file costs seconds and leaves no half-written report.
Greedy answers and fixed data make a report reproducible.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from fromzero.errors import InputError

SUITES = ("lm", "qa", "prefs")
REPORT_JSON, REPORT_MD, REPORT_PNG = "report.json", "report.md", "report.png"

# (key, label, higher is better) of each suite, in table order
METRICS = {
    "lm": [("bits_per_byte", "bits per byte", False), ("bits_per_char", "bits per character", False),
           ("loss", "loss (nats/token)", False), ("perplexity", "perplexity", False), ("tokens", "tokens scored", None)],
    "qa": [("answer_loss", "answer loss", False), ("exact_match", "exact match", True), ("f1", "token F1", True),
           ("rouge_l", "ROUGE-L", True), ("keyword_recall", "keyword recall", True),
           ("stops_properly", "stops properly", True)],
    "prefs": [("preference_accuracy", "preference accuracy", True),
              ("preference_accuracy_per_token", "accuracy per token", True), ("pairs", "pairs", None)],
}

# the picture: (title, suite, metrics, values are shares from 0 to 1)
PANELS = [("held-out text: bits per byte\n(lower is better)", "lm", {"bits_per_byte"}, False),
          ("held-out answers: loss\n(lower is better)", "qa", {"answer_loss"}, False),
          ("held-out questions\n(higher is better)", "qa", {"exact_match", "f1", "rouge_l", "keyword_recall",
                                                      "stops_properly"}, True),
          ("held-out preference pairs\n(higher is better)", "prefs",
           {"preference_accuracy", "preference_accuracy_per_token"}, True)]

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class ModelSpec:
    """One model of the report: a folder or hub name, and LoRA adapters to put on it."""

    name: str
    spec: str
    adapters: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Settings:
    suites: Sequence[str] = SUITES
    lm_data: str = "stories"
    lm_split: str = "val"  # "val": the part `fromzero train` holds out; "all": every document
    max_tokens: int | None = None
    stride: int | None = None
    batch_size: int = 8
    qa_data: str = "education_qa/test"
    questions: int | None = None  # the first N questions; None: all
    max_new_tokens: int = 80
    prefs_data: str | None = None  # None: the pairs the DPO run held out, else `preferences`' split
    template: str | None = None
    device: str = "cpu"
    dtype: str = "float32"  # of the lm suite's matmuls; the other suites always run in float32
    seed: int = 0
    shown_answers: int = 5

    def check(self) -> None:
        unknown = [suite for suite in self.suites if suite not in SUITES]
        if unknown or not self.suites:
            raise InputError(f"unknown suite {unknown[0] if unknown else ''!r}: choose from {', '.join(SUITES)} or all")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise InputError(f"the dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.lm_split not in ("val", "all"):
            raise InputError(f"the split must be val or all, got {self.lm_split!r}")
        for name in ("max_tokens", "questions"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        for name in ("batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")


def lm_text(source: str, split: str) -> str:
    """The text the ``lm`` suite scores: ``source``'s held-out documents, or all of them."""
    from fromzero.data.loading import DOCUMENT_SEPARATOR, load_documents
    from fromzero.data.split import train_val_documents
    from fromzero.training.config import TrainConfig

    documents = load_documents(source)
    if not any(doc.strip() for doc in documents):
        raise InputError(f"{source} holds no text to score")
    if split == "val":
        _, documents = train_val_documents(documents, TrainConfig.val_fraction, TrainConfig.seed)
    return DOCUMENT_SEPARATOR.join(documents)


def evaluate_models(models: Sequence[ModelSpec], settings: Settings, on_progress: Progress | None = None) -> dict[str, Any]:
    """Score every model on every suite; returns the report (what ``report.json`` holds)."""
    from fromzero.evaluate.preferences import heldout_pairs, preference_score
    from fromzero.evaluate.qa import load_qa, qa_scores
    from fromzero.evaluate.scorers import GPTScorer

    settings.check()
    if not models:
        raise InputError("give at least one --model")
    names = [model.name for model in models]
    if len(set(names)) != len(names):
        raise InputError(f"two models are named {next(n for n in names if names.count(n) > 1)!r}: name them NAME=DIR")
    text = lm_text(settings.lm_data, settings.lm_split) if "lm" in settings.suites else None
    items = load_qa(settings.qa_data)[:settings.questions] if "qa" in settings.suites else []
    scorers = _load_models(models, settings)
    records = [scorer.tuned.record for scorer in scorers.values() if isinstance(scorer, GPTScorer)]
    pairs = heldout_pairs(records, settings.prefs_data) if "prefs" in settings.suites else []

    results: dict[str, dict[str, Any]] = {}
    answers: dict[str, list[str]] = {}
    for model in models:
        name, scorer = model.name, scorers[model.name]
        torch.manual_seed(settings.seed)
        result: dict[str, Any] = {"kind": scorer.kind, "spec": model.spec}
        if text is not None:
            report = None if on_progress is None else (lambda done, total, n=name: on_progress(f"{n}: text", done, total))
            result["lm"] = scorer.score(text, settings.max_tokens, settings.stride, settings.batch_size, report).as_dict()
        if isinstance(scorer, GPTScorer):
            tuned = scorer.tuned
            result["template"] = tuned.template.name
            if items:
                if on_progress is not None:
                    on_progress(f"{name}: answering {len(items)} questions", 0, 1)
                result["qa"], replies = qa_scores(tuned.model, tuned.tokenizer, tuned.template, items,
                                                  settings.max_new_tokens, settings.batch_size)
                answers[name] = [reply.text for reply in replies]
            if pairs:
                score = preference_score(tuned.model, tuned.tokenizer, tuned.template, pairs, settings.batch_size)
                result["prefs"] = {"preference_accuracy": score.accuracy,
                                   "preference_accuracy_per_token": score.accuracy_per_token, "pairs": score.pairs}
        results[name] = result
        if on_progress is not None:
            on_progress(f"{name}: done", 1, 1)
    shown = items[:settings.shown_answers] if answers else []
    return {
        "settings": {**asdict(settings), "suites": list(settings.suites)},
        "data": {"lm_text_bytes": len(text.encode("utf-8")) if text else 0, "qa_questions": len(items),
                 "preference_pairs": len(pairs)},
        "models": results,
        "answers": [{"question": item.question, "reference": item.reference,
                     "answers": {name: replies[i] for name, replies in answers.items()}}
                    for i, item in enumerate(shown)],
    }


def _load_models(models: Sequence[ModelSpec], settings: Settings) -> dict[str, Any]:
    """Every model; a GPT in the template it is asked in: ``--template``, else its own fine-tune
    record's, else the first one among the models, else ``qa`` (so a base model is asked the way
    its tuned models were)."""
    from fromzero.classic.runs import is_char_mlp_run, is_ngram_run
    from fromzero.evaluate.scorers import GPTScorer, load_scorer
    from fromzero.finetune.tuned import load_tuned

    own = {model.name: settings.template or _own_template(model) for model in models}
    shared = next((template for template in own.values() if template), "qa")
    scorers = {}
    for model in models:
        folder = Path(model.spec).expanduser()
        if folder.is_dir() and (is_ngram_run(folder) or is_char_mlp_run(folder)):
            if model.adapters:
                raise InputError(f"{model.name} is a level 1-2 run: adapters only go on a GPT")
            scorers[model.name] = load_scorer(model.spec, name=model.name)
            continue
        tuned = load_tuned(model.spec, model.adapters, template=own[model.name] or shared, device=settings.device)
        if tuned.template is None and set(settings.suites) != {"lm"}:
            raise InputError(f"{model.name}: the qa and prefs suites ask in a template; --template none leaves it none")
        scorers[model.name] = GPTScorer(model.name, tuned, settings.dtype)
    return scorers


def _own_template(model: ModelSpec) -> str | None:
    """The template of the fine-tune record of the model's folder or of one of its adapters."""
    from fromzero.finetune.tuned import fine_tune_record

    for folder in [model.spec, *(folder for _, folder in model.adapters)]:
        record = fine_tune_record(folder) if Path(folder).expanduser().is_dir() else None
        if record and record.get("template"):
            return record["template"]
    return None


# ---- writing it down ----------------------------------------------------------------------------

def rows(report: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """``(suite, metric label, [value per model])`` for every metric some model has, best marked ``*``."""
    names = list(report["models"])
    table = []
    for suite, metrics in METRICS.items():
        for key, label, higher in metrics:
            values = [report["models"][name].get(suite, {}).get(key) for name in names]
            if all(value is None for value in values):
                continue
            finite = [v for v in values if v is not None and math.isfinite(v)]
            best = None if higher is None or len(set(finite)) < 2 else (max(finite) if higher else min(finite))
            table.append((suite, label, [_cell(v, best) for v in values]))
    return table


def _cell(value: float | None, best: float | None) -> str:
    if value is None:
        return "–"
    text = f"{value:,}" if isinstance(value, int) else (f"{value:.4g}" if abs(value) >= 1 else f"{value:.3f}")
    return f"{text} *" if best is not None and value == best else text


def rich_table(report: dict[str, Any], title: str = "evaluation (* best of the row)"):
    """The report as a terminal table: a row per metric, a column per model."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("suite", style="dim")
    table.add_column("metric")
    for name in report["models"]:
        table.add_column(escape(name), justify="right", style="bold")
    for suite, label, values in rows(report):
        table.add_row(suite, label, *[escape(v) for v in values])
    return table


def markdown(report: dict[str, Any]) -> str:
    names = list(report["models"])
    settings = report["settings"]
    lines = ["# Evaluation report", "",
             f"Suites: {', '.join(settings['suites'])}. Text: {settings['lm_data']} ({settings['lm_split']}, "
             f"{report['data']['lm_text_bytes']:,} bytes); questions: {settings['qa_data']} "
             f"({report['data']['qa_questions']}); preference pairs: {report['data']['preference_pairs']}. "
             "`*` marks the best of each row.", "",
             "| suite | metric | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    lines += [f"| {suite} | {label} | " + " | ".join(values) + " |" for suite, label, values in rows(report)]
    lines += ["", "| model | kind | template | from |", "|---|---|---|---|"]
    lines += [f"| {name} | {m['kind']} | {m.get('template', '–')} | `{m['spec']}` |" for name, m in report["models"].items()]
    for entry in report["answers"]:
        lines += ["", f"**Q:** {entry['question']}", "", f"- *reference*: {entry['reference']}"]
        lines += [f"- *{name}*: {answer or '(nothing)'}" for name, answer in entry["answers"].items()]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """One bar chart per suite, the models side by side (base vs SFT vs DPO is the course's picture)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fromzero.files import atomic_path

    names = list(report["models"])
    panels = []
    for title, suite, keys, share in PANELS:
        metrics = [(key, label) for key, label, _ in METRICS[suite]
                   if key in keys and any(key in report["models"][n].get(suite, {}) for n in names)]
        if metrics:
            panels.append((title, suite, metrics, share))
    if not panels:
        raise InputError("the report has no scores to draw")
    figure = Figure(figsize=(1.6 + 1.2 * sum(len(m) for _, _, m, _ in panels) * max(1, len(names) / 3)
                             + 1.6 * len(panels), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    widths = [len(metrics) for _, _, metrics, _ in panels]
    grid = figure.add_gridspec(1, len(panels), width_ratios=widths)
    for index, (title, suite, metrics, share) in enumerate(panels):
        axes = figure.add_subplot(grid[0, index])
        width = 0.8 / len(names)
        for m, name in enumerate(names):
            values = [report["models"][name].get(suite, {}).get(key) for key, _ in metrics]
            values = [v if v is not None and math.isfinite(v) else math.nan for v in values]
            positions = [i + (m - (len(names) - 1) / 2) * width for i in range(len(metrics))]
            axes.bar(positions, values, width, label=name)
        axes.set_xticks(range(len(metrics)), [label for _, label in metrics], rotation=20, ha="right")
        if share:
            axes.set_ylim(0, 1)
        axes.set_title(title, fontsize="medium")
    figure.legend(*axes.get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)


def write_report(report: dict[str, Any], out: str | Path) -> list[Path]:
    """``report.json``, ``report.md`` and ``report.png`` in ``out``, each written whole or not at all."""
    from fromzero.files import write_json, write_text

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / REPORT_JSON, report)
    write_text(out / REPORT_MD, markdown(report))
    return [out / REPORT_JSON, out / REPORT_MD, plot(report, out / REPORT_PNG)]
