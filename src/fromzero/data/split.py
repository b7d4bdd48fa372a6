"""Deterministic train/validation splits.

A model is judged on data it never trained on. The split must be random (so the validation
set looks like the training set) yet reproducible (so two runs, or two people, compare like
with like): the same ``seed`` always picks the same validation items.

Two rules live here. They differ in how they draw the validation documents and when they fall
back to cutting the text, and each is kept as it is because saved results depend on it:

* :func:`train_val_split` splits any list. The classic models split a corpus with it, by
  document (:func:`fromzero.classic.corpus.train_val_text`); ``fromzero ngram perplexity``
  splits a saved model's corpus again from its ``run.json``, so a different rule would score
  saved models partly on their own training text, and the perplexities in
  ``benchmarks/RESULTS.md`` were measured on this split.
* :func:`train_val_documents` is the split of the token shards that ``fromzero train`` and
  ``fromzero data prepare`` write (:mod:`fromzero.data.shards`); the GPT results in
  ``benchmarks/RESULTS.md`` and the defaults of ``fromzero train`` were measured on it. Several
  sources trained together are split each on its own by it (:func:`train_val_by_source`).

Both refuse the same fractions (:func:`check_val_fraction`).
"""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

from fromzero.data.settings import DOCUMENT_SEPARATOR
from fromzero.errors import InputError

T = TypeVar("T")


def check_val_fraction(val_fraction: float) -> None:
    """A validation fraction must leave something on both sides."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"the validation fraction must be between 0 and 1 (exclusive), got {val_fraction}")


def train_val_split(items: Sequence[T], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[T], list[T]]:
    """Split ``items`` into ``(train, val)``; both keep the items' original order.

    The validation set is a seeded sample of ``round(len(items) * val_fraction)`` items, at least
    one, and the training set keeps at least one too, so neither side is ever empty.
    """
    check_val_fraction(val_fraction)
    if len(items) < 2:
        raise InputError(f"need at least 2 items to split into train and validation, got {len(items)}")
    n_val = min(max(1, round(len(items) * val_fraction)), len(items) - 1)
    val_indices = set(random.Random(seed).sample(range(len(items)), n_val))
    train = [item for i, item in enumerate(items) if i not in val_indices]
    val = [item for i, item in enumerate(items) if i in val_indices]
    return train, val


def train_val_documents(
    documents: Sequence[str], val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Hold out whole documents for validation, or the tail of the text if there are too few.

    With ten or more documents the first ``val_fraction`` of a seeded shuffle is held out, so
    validation stories are ones the model never saw (a different draw from
    :func:`train_val_split`'s sample: see the module docstring). With fewer, all the text is
    split like nanoGPT splits tinyshakespeare: the first 90% of characters train, the last 10%
    validate.
    """
    check_val_fraction(val_fraction)
    documents = [doc for doc in documents if doc.strip()]
    if not documents:
        raise InputError("the corpus is empty: there is no text to train on")
    if len(documents) >= 10:
        order = list(range(len(documents)))
        random.Random(seed).shuffle(order)
        n_val = max(1, round(len(documents) * val_fraction))
        val_ids = set(order[:n_val])
        train = [doc for i, doc in enumerate(documents) if i not in val_ids]
        val = [doc for i, doc in enumerate(documents) if i in val_ids]
        return train, val
    text = DOCUMENT_SEPARATOR.join(documents)
    cut = int(len(text) * (1.0 - val_fraction))
    return [text[:cut]], [text[cut:]]


def train_val_by_source(
    groups: Sequence[Sequence[str]], val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """:func:`train_val_documents` applied to each source's documents on its own, then joined.

    A corpus then holds out the same documents whatever it is trained with: the stories a model
    pretrained on stories and Q&A answers never saw are the stories one pretrained on stories
    alone never saw, so both are scored on the same held-out text (``fromzero evaluate``).
    """
    train: list[str] = []
    val: list[str] = []
    for documents in groups:
        if any(doc.strip() for doc in documents):
            part_train, part_val = train_val_documents(documents, val_fraction, seed)
            train += part_train
            val += part_val
    if not train:
        raise InputError("the corpus is empty: there is no text to train on")
    return train, val
