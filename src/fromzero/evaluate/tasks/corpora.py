"""The documents of the ``fromzero_*`` lm_eval tasks, built from the corpora bundled with fromzero.

lm_eval calls these through ``custom_dataset: !function corpora.NAME`` in the task YAMLs. The data
is read by corpus name (``"education_qa/test"``), which :func:`fromzero.data.bundled.corpus_path`
finds inside the installed package wherever pip put it, so the tasks run offline (lm_eval's own
``dataset_path: json`` would need the files' path written into the YAML).

Every task scores data that the course's default runs never trained on, so a model tuned with
fromzero's defaults is measured on unseen text:

* ``fromzero_education_qa``: the ``education_qa`` test split (SFT trains on the train split);
* ``fromzero_preferences_mc``: the preference pairs DPO holds out by default (its validation split);
* ``fromzero_stories_ppl``: the stories ``fromzero train`` holds out by default (its validation split).

Questions are asked in the ``qa`` template, the course's default, exactly as fine-tuning wrote them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import datasets

from fromzero.data.loading import load_documents
from fromzero.data.split import train_val_documents, train_val_split
from fromzero.finetune.dpo import DPOConfig
from fromzero.evaluate import answer_metrics
from fromzero.evaluate.qa import load_qa
from fromzero.finetune.instructions import Example, Message, load_preferences
from fromzero.finetune.templates import TEMPLATES
from fromzero.training.config import TrainConfig

QA = TEMPLATES["qa"]


def education_qa(**_metadata: Any) -> datasets.DatasetDict:
    """Held-out questions (``test``) and the training questions (``train``, for few-shot examples).

    lm_eval passes the run's metadata (its model arguments among them) as keywords; none is needed.
    """
    splits = {}
    for split in ("train", "test"):
        docs = [{"prompt": QA.prompt(item.example), "answer": item.reference, "keywords": list(item.keywords)}
                for item in load_qa(f"education_qa/{split}")]
        splits[split] = datasets.Dataset.from_list(docs)
    return datasets.DatasetDict(splits)


def preferences(**_metadata: Any) -> datasets.DatasetDict:
    """The held-out preference pairs as two-way multiple choice: which answer is the better one?

    The chosen answer comes first or second by the first byte of a hash of the prompt, so the order
    is the same on every run and machine (Python's ``hash`` of a string is not), and a model that
    always prefers the first (or the second) answer scores about one half, not 1 or 0.
    """
    _, held_out = train_val_split(load_preferences("preferences"), DPOConfig.val_fraction, DPOConfig.seed)
    docs = []
    for pair in held_out:
        chosen_second = hashlib.sha256(pair.prompt.encode("utf-8")).digest()[0] % 2 == 1
        choices = [pair.rejected, pair.chosen] if chosen_second else [pair.chosen, pair.rejected]
        prompt = QA.prompt(Example((Message("user", pair.prompt), Message("assistant", pair.chosen))))
        docs.append({"prompt": prompt, "choices": choices, "label": int(chosen_second)})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def stories(**_metadata: Any) -> datasets.DatasetDict:
    """The validation stories of ``fromzero train --data stories`` with its default fraction and seed."""
    _, held_out = train_val_documents(load_documents("stories"), TrainConfig.val_fraction, TrainConfig.seed)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([{"text": text} for text in held_out])})


def score_answer(doc: dict[str, str], results: list[str]) -> dict[str, float]:
    """Exact match, token F1, ROUGE-L and keyword recall of one generated answer
    (:mod:`fromzero.evaluate.answer_metrics`, the scores ``fromzero evaluate --suite qa`` reports)."""
    (generated,) = results
    scores = answer_metrics.score_answer(generated, doc["answer"], doc["keywords"])
    return {"exact_match": scores["exact_match"], "token_f1": scores["f1"], "rouge_l": scores["rouge_l"],
            "keyword_recall": scores["keyword_recall"]}
