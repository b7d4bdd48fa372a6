"""From a model name and a prompt to what ``generate`` needs: the model, its tokenizer, the ids.

The ``generate`` command, and later the chat and the server, all load a model the same way and
fit a prompt into its context the same way, so that code lives here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fromzero.data.shards import separator_ids
from fromzero.errors import InputError, MissingFileError
from fromzero.generation.config import GenerationConfig
from fromzero.models import GPT
from fromzero.models.context import can_slide, prompt_room
from fromzero.models.pretrained import model_directory
from fromzero.tokenizers import Tokenizer, load_tokenizer


@dataclass
class Prompt:
    """A prompt made ready for a model."""

    ids: list[int]
    """What the model reads: the prompt's tokens (its end, if it was too long), or the start of a
    new document when the prompt is empty."""
    text: str
    """The whole prompt as the tokenizer reads it, to show before the continuation ("" when empty)."""
    dropped: int
    """How many tokens were cut from its start to fit the context."""


def model_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer saved in a model folder, else GPT-2's (the hub's GPT-2 folders hold only its files)."""
    try:
        return load_tokenizer(directory)
    except MissingFileError:
        return load_tokenizer("gpt2")


def load_model_and_tokenizer(spec: str) -> tuple[GPT, Tokenizer]:
    """The model of a folder or hub name and its tokenizer: the folder's own, else GPT-2's."""
    directory = model_directory(spec)
    model = GPT.from_pretrained(directory)
    tokenizer = model_tokenizer(directory)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise InputError(f"the tokenizer in {spec} has {tokenizer.vocab_size} tokens but the model only "
                         f"{model.config.vocab_size}: they do not belong together")
    return model, tokenizer


def fit_prompt(tokenizer: Tokenizer, prompt: str, context: int, config: GenerationConfig) -> Prompt:
    """Encode ``prompt`` and keep the end of it that fits the context along with the new tokens.

    Only beam search needs room for every new token (see :mod:`fromzero.models.context`). An empty
    prompt starts a new document (:func:`new_document`).
    """
    room = prompt_room(context, config.max_new_tokens, can_slide(config.num_beams, padded=False))
    ids = tokenizer.encode(prompt)
    text = tokenizer.decode(ids)
    if not ids:
        ids = new_document(tokenizer)
    dropped = max(0, len(ids) - room)
    return Prompt(ids[dropped:], text, dropped)


def new_document(tokenizer: Tokenizer) -> list[int]:
    """The ids a document starts after: those the model saw between documents in training.

    That is ``<|endoftext|>`` for BPE models (how GPT-2's unconditional samples start) and the
    corpus's blank-line separator for the character model, which has no such token.
    """
    try:
        ids = separator_ids(tokenizer)
    except InputError:  # a vocabulary without a newline
        ids = []
    if not ids:
        raise InputError("the prompt is empty and this tokenizer has neither <|endoftext|> nor the blank lines "
                         "between documents to start one from: give some text with --prompt")
    return ids
