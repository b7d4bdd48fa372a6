"""Held-out scores of a tuned model: answer loss, preference accuracy, and its answers to fixed questions.

These are the numbers the course's level 5 claims progress with, on data no stage trained on:

* **answer loss**: the mean next-token loss on the reference answers of held-out questions (the
  ``education_qa`` test split), teacher-forced, with the prompt written in the model's template.
  It is meaningful even for a tiny model whose generated answers are still poor, and it is the
  loss SFT minimises, measured on questions it never saw. Every answer token counts the same,
  however the examples fall into batches.
* **preference accuracy**: the share of held-out pairs whose chosen answer the model finds more
  likely than the rejected one, by the summed log-probability and by the mean per token (the summed
  one favours short answers; the mean one does not). DPO should raise both.
* **answers**: greedy answers to fixed questions, to read side by side.

:func:`compare_stages` puts the three side by side for a base model and what was tuned from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from fromzero.finetune.batches import build_sft_data, collate, encode_prompt
from fromzero.finetune.dpo import encode_pairs, pair_batch
from fromzero.data.split import train_val_split
from fromzero.finetune.instructions import Example, Message, PreferencePair, load_instructions, load_preferences
from fromzero.finetune.losses import answer_lengths, sequence_logprobs, sft_model_loss
from fromzero.finetune.templates import Template
from fromzero.finetune.tuned import eos_ids, fine_tune_record, load_tuned, stop_strings
from fromzero.generation import GenerationConfig, generate
from fromzero.generation.stopping import finished_text
from fromzero.models import GPT
from fromzero.tokenizers import Tokenizer


@torch.no_grad()
def answer_loss(model: GPT, tokenizer: Tokenizer, template: Template, examples: Sequence[Example],
                batch_size: int = 16) -> float:
    """Mean loss per answer token of ``examples`` (cut to the model's context, as SFT cuts them)."""
    data = build_sft_data(examples, template, tokenizer, model.config.block_size)
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data.examples), batch_size):
        batch = collate(data.examples[start:start + batch_size])
        tokens = int(answer_lengths(batch["labels"]).sum())
        total += float(sft_model_loss(model, batch["input_ids"], batch["labels"])) * tokens
        count += tokens
    return total / count


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


def answers(model: GPT, tokenizer: Tokenizer, template: Template, questions: Sequence[str],
            max_new_tokens: int = 80) -> list[str]:
    """Greedy answers to ``questions``, each asked on its own in ``template``, ending where the model stops."""
    settings = GenerationConfig(max_new_tokens=max_new_tokens, eos_token_id=eos_ids(template, tokenizer) or None,
                                stop_strings=stop_strings(template, tokenizer))
    replies = []
    for question in questions:
        ids = encode_prompt(tokenizer, template, Example((Message("user", question),)))
        ids = ids[-(model.config.block_size - max_new_tokens):]
        output = generate(model.eval(), torch.tensor([ids]), settings, tokenizer=tokenizer)
        replies.append(finished_text(tokenizer, output[0, len(ids):].tolist(), settings).strip())
    return replies


def compare_stages(base: str | Path, tuned: Mapping[str, str | Path], questions: int = 10,
                   test_data: str = "education_qa/test") -> dict[str, Any]:
    """Score ``base`` and each tuned folder (name -> folder) on the same held-out data, in the tuned template.

    The held-out preference pairs are those the DPO run among ``tuned`` held out (its data, split
    fraction and seed), or the ``preferences`` pairs' default split when there is none.
    """
    records = {name: fine_tune_record(folder) or {} for name, folder in tuned.items()}
    template_name = next((r.get("template") for r in records.values() if r.get("template")), "qa")
    dpo_settings = next((r["settings"] for r in records.values() if r.get("method") == "dpo"), {})
    _, pairs = train_val_split(load_preferences(dpo_settings.get("data", "preferences")),
                               dpo_settings.get("val_fraction", 0.1), dpo_settings.get("seed", 42))
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
