"""Preference accuracy: does the model find the better answer of a held-out pair more likely?

It is the share of pairs whose chosen answer the model gives a higher log-probability than the
rejected one, by the sum over the answer's tokens and by the mean per token (the summed one favours
short answers; the mean one does not). DPO should raise both. The model is its own judge here: no
reference model, a plain likelihood test, on pairs no DPO run trained on (:func:`heldout_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from fromzero.data.split import train_val_split
from fromzero.finetune.dpo import encode_pairs, pair_batch
from fromzero.finetune.instructions import PreferencePair, load_preferences
from fromzero.finetune.losses import answer_lengths, sequence_logprobs
from fromzero.finetune.templates import Template
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

    The validation part of ``source`` (default: the first DPO run's data, else the bundled
    ``preferences``), split with that run's fraction and seed (else DPO's defaults, 0.1 and 42).
    """
    dpo = next((r["settings"] for r in records if r and r.get("method") == "dpo"), {})
    _, pairs = train_val_split(load_preferences(source or dpo.get("data", "preferences")),
                               dpo.get("val_fraction", 0.1), dpo.get("seed", 42))
    return pairs
