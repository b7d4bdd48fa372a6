"""A deterministic train/validation split.

A model is judged on data it never trained on. The split must be random (so the validation
set looks like the training set) yet reproducible (so two runs, or two people, compare like
with like): the same ``seed`` always picks the same validation items.
"""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

from fromzero.data.loading import DOCUMENT_SEPARATOR
from fromzero.errors import InputError

T = TypeVar("T")


def train_val_split(items: Sequence[T], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[T], list[T]]:
    """Split ``items`` into ``(train, val)``; both keep the items' original order.

    The validation set has ``round(len(items) * val_fraction)`` items, at least one, and the
    training set keeps at least one too, so neither side is ever empty.
    """
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
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

    With ten or more documents a seeded shuffle picks ``val_fraction`` of them, so validation
    stories are ones the model never saw. A single long text (tinyshakespeare) is split like
    nanoGPT does: the first 90% of characters train, the last 10% validate.
    """
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
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
