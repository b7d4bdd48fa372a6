"""Held-out preference accuracy, and the course's level-5 table: base, SFT and DPO side by side.

* **preference accuracy**: the share of held-out pairs whose chosen answer the model finds more
  likely than the rejected one, by the summed log-probability and by the mean per token (the summed
  one favours short answers; the mean one does not). DPO should raise both. The model is its own
  judge here: no reference model, a plain likelihood test.
* :func:`compare_stages` scores a base model and what was tuned from it on the same held-out data:
  the answer loss on the ``education_qa`` test split (:mod:`fromzero.evaluate.qa`), preference
  accuracy, and greedy answers to fixed questions, to read side by side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from fromzero.data.split import train_val_split
from fromzero.evaluate.qa import answer_loss, answers
from fromzero.finetune.dpo import encode_pairs, pair_batch
from fromzero.finetune.instructions import PreferencePair, load_instructions, load_preferences
from fromzero.finetune.losses import answer_lengths, sequence_logprobs
from fromzero.finetune.templates import Template
from fromzero.finetune.tuned import fine_tune_record, load_tuned
from fromzero.models import GPT
from fromzero.tokenizers import Tokenizer


@dataclass
class PreferenceScore:
    accuracy: float  # chosen more likely than rejected, by summed log-probability
    accuracy_per_token: float  # the same by mean log-probability per answer token
    pairs: int


@torch.no_grad()
def preference_score(model: GPT, tokenizer: Tokenizer, template: Template, pairs: Sequence[PreferencePair],
                     batch_size: int = 16) -> PreferenceScore:
    """How often ``model`` itself prefers the chosen answer (no reference model: a plain likelihood test)."""
    encoded = encode_pairs(list(pairs), template, tokenizer, model.config.block_size)
    model.eval()
    raw, per_token = [], []
    for start in range(0, len(encoded), batch_size):
        batch = pair_batch(encoded[start:start + batch_size])
        n = batch["count"]
        logps = sequence_logprobs(model(batch["input_ids"]).logits, batch["labels"])
        means = logps / answer_lengths(batch["labels"]).clamp(min=1)
        raw.append(logps[:n] > logps[n:])
        per_token.append(means[:n] > means[n:])
    return PreferenceScore(float(torch.cat(raw).float().mean()), float(torch.cat(per_token).float().mean()),
                           len(encoded))


def heldout_pairs(records: Sequence[Mapping[str, Any] | None], source: str | None = None) -> list[PreferencePair]:
    """The preference pairs no DPO run among ``records`` (fine-tune records) trained on.

    That is the validation part of the first DPO run's data, split by its fraction and seed; with no
    DPO run, the default split of ``source`` (the bundled ``preferences`` when not given). A
    ``source`` other than the run's own data is held out as a whole file would be: it is split the
    same way, so its validation part is what gets scored.
    """
    dpo = next((r["settings"] for r in records if r and r.get("method") == "dpo"), {})
    _, pairs = train_val_split(load_preferences(source or dpo.get("data", "preferences")),
                               dpo.get("val_fraction", 0.1), dpo.get("seed", 42))
    return pairs


def compare_stages(base: str | Path, tuned: Mapping[str, str | Path], questions: int = 10,
                   test_data: str = "education_qa/test") -> dict[str, Any]:
    """Score ``base`` and each tuned folder (name -> folder) on the same held-out data, in the tuned template.

    The held-out preference pairs are those the DPO run among ``tuned`` held out (its data, split
    fraction and seed), or the ``preferences`` pairs' default split when there is none.
    """
    records = {name: fine_tune_record(folder) or {} for name, folder in tuned.items()}
    template_name = next((r.get("template") for r in records.values() if r.get("template")), "qa")
    pairs = heldout_pairs(list(records.values()))
    examples = load_instructions(test_data)
    shown = [example.turns[0].content for example in examples[:questions]]
    models = {"base": load_tuned(str(base), template=template_name)}
    models.update({name: load_tuned(str(folder), template=template_name) for name, folder in tuned.items()})
    scores, replies = {}, {}
    for name, model in models.items():
        scores[name] = {"answer_loss": answer_loss(model.model, model.tokenizer, model.template, examples),
                        **_prefixed(preference_score(model.model, model.tokenizer, model.template, pairs))}
        replies[name] = answers(model.model, model.tokenizer, model.template, shown)
    return {
        "template": template_name, "test_examples": len(examples), "preference_pairs": len(pairs),
        "models": scores,
        "questions": [{"question": question, "reference": example.turns[1].content,
                       "answers": {name: replies[name][i] for name in models}}
                      for i, (question, example) in enumerate(zip(shown, examples))],
    }


def _prefixed(score: PreferenceScore) -> dict[str, float]:
    values = asdict(score)
    return {"preference_accuracy": values["accuracy"], "preference_accuracy_per_token": values["accuracy_per_token"]}
