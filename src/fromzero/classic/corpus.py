"""The held-out split every classic model is trained and measured on.

Perplexities are only comparable on the same text, so the n-gram CLI, the char-MLP CLI and the
benchmark all call :func:`train_val_text`. A corpus of several documents (the bundled stories:
documents separated by two blank lines) is split *by document* with
``fromzero.data.train_val_split`` — the validation stories are entirely unseen, like new text
would be. A single document falls back to its first ``1 - val_fraction`` of characters.
"""

from __future__ import annotations

from fromzero.data.loading import DOCUMENT_SEPARATOR, load_documents
from fromzero.data.split import train_val_split
from fromzero.errors import InputError


def train_val_text(source: str = "stories", val_fraction: float = 0.1, seed: int = 0) -> tuple[str, str]:
    """``(train_text, val_text)`` of ``source`` (a bundled corpus name, a .txt file or a folder).

    ``val_fraction = 0`` returns all the text for training and an empty validation text.
    """
    documents = load_documents(source)
    if not documents:
        raise InputError(f"{source} holds no text")
    if val_fraction == 0:
        return DOCUMENT_SEPARATOR.join(documents), ""
    if len(documents) >= 2:
        train, val = train_val_split(documents, val_fraction, seed)
        return DOCUMENT_SEPARATOR.join(train), DOCUMENT_SEPARATOR.join(val)
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    text = documents[0]
    cut = round(len(text) * (1 - val_fraction))
    if cut < 1 or cut >= len(text):
        raise InputError(f"{source} is too short to hold out {val_fraction:.0%} of it")
    return text[:cut], text[cut:]


def char_vocab(*texts: str) -> list[str]:
    """The sorted characters of the texts: one closed vocabulary shared by train and val."""
    return sorted(set().union(*texts))
