"""The held-out split every classic model is trained and measured on.

Perplexities are only comparable on the same text, so the n-gram CLI, the char-MLP CLI and the
benchmark all call :func:`train_val_text`. A corpus of several documents (the bundled stories:
documents separated by two blank lines) is split *by document* with
:func:`fromzero.data.train_val_split` — the validation stories are entirely unseen, like new text
would be. A single document falls back to its first ``1 - val_fraction`` of characters.

This is not the split of ``fromzero train``'s token shards
(:func:`fromzero.data.split.train_val_documents`, which draws its documents differently and
only from ten documents on); :mod:`fromzero.data.split` says why both are kept.
"""

from __future__ import annotations

from fromzero.data.loading import DOCUMENT_SEPARATOR, load_documents
from fromzero.data.settings import DEFAULT_TEXT_FIELD
from fromzero.data.split import check_val_fraction, train_val_split
from fromzero.errors import InputError


def train_val_text(
    source: str = "stories", val_fraction: float = 0.1, seed: int = 0, text_field: str = DEFAULT_TEXT_FIELD
) -> tuple[str, str]:
    """``(train_text, val_text)`` of ``source`` (anything :func:`~fromzero.data.load_documents`
    reads; ``text_field`` is the text of JSONL records).

    ``val_fraction = 0`` returns all the text for training and an empty validation text.
    """
    documents = load_documents(source, text_field)
    if not documents:
        raise InputError(f"{source} holds no text")
    if val_fraction == 0:
        return DOCUMENT_SEPARATOR.join(documents), ""
    if len(documents) >= 2:
        train, val = train_val_split(documents, val_fraction, seed)
        return DOCUMENT_SEPARATOR.join(train), DOCUMENT_SEPARATOR.join(val)
    check_val_fraction(val_fraction)
    text = documents[0]
    cut = round(len(text) * (1 - val_fraction))
    if cut < 1 or cut >= len(text):
        raise InputError(f"{source} is too short to hold out {val_fraction:.0%} of it")
    return text[:cut], text[cut:]


def char_vocab(*texts: str) -> list[str]:
    """The sorted characters of the texts: one closed vocabulary shared by train and val."""
    return sorted(set().union(*texts))
