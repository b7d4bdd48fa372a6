"""From a model name and a prompt to what ``generate`` needs: the model, its tokenizer, the ids.

The ``generate`` command, and later the chat and the server, all load a model the same way and
fit a prompt into its context the same way, so that code lives here once.
"""

from __future__ import annotations

from fromzero.errors import InputError, MissingFileError
from fromzero.models import GPT
from fromzero.models.pretrained import model_directory
from fromzero.tokenizers import Tokenizer, load_tokenizer


def load_model_and_tokenizer(spec: str) -> tuple[GPT, Tokenizer]:
    """The model of a folder or hub name and its tokenizer: the folder's own, else GPT-2's."""
    directory = model_directory(spec)
    model = GPT.from_pretrained(directory)
    try:
        tokenizer = load_tokenizer(directory)
    except MissingFileError:
        tokenizer = load_tokenizer("gpt2")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise InputError(f"the tokenizer in {spec} has {tokenizer.vocab_size} tokens but the model only "
                         f"{model.config.vocab_size}: they do not belong together")
    return model, tokenizer


def fit_prompt(tokenizer: Tokenizer, prompt: str, context: int, max_new_tokens: int) -> tuple[list[int], int]:
    """Encode ``prompt`` and left-truncate it so prompt + ``max_new_tokens`` fit the context.

    Returns the ids and how many tokens were dropped from the start. An empty prompt starts
    from ``<|endoftext|>``, the way GPT-2's unconditional samples do.
    """
    if max_new_tokens >= context:
        raise InputError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the "
                         f"model's context of {context} tokens")
    ids = tokenizer.encode(prompt)
    if not ids:
        if tokenizer.eot_id is None:
            raise InputError("the prompt is empty and this tokenizer has no <|endoftext|> to start from")
        ids = [tokenizer.eot_id]
    room = context - max_new_tokens
    dropped = max(0, len(ids) - room)
    return ids[dropped:], dropped
