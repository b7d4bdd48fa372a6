"""The context length: a GPT reads at most ``block_size`` tokens at once. Its whole policy lives here.

Learned position embeddings have no row past ``block_size - 1`` and a KV cache is allocated for at
most that many positions, so:

1. one forward pass holds at most ``block_size`` positions, cached and new together. The model
   raises rather than cropping: silently forgetting the start of a text would hide bugs
   (:func:`check_context`, called by the model and the KV cache).
2. Decoding may go on past the context where the window can *slide* (the oldest tokens are
   forgotten and the rest re-encoded, see :mod:`fromzero.generation.engine`): greedy decoding and
   sampling of unpadded prompts. Beam search and padded batches cannot, so their prompt and every
   new token must fit together (:func:`can_slide`, :func:`prompt_room`).
3. A prompt longer than its room is an error for the library (:func:`check_prompt`); the
   ``generate`` command keeps its end instead, with a warning
   (:func:`fromzero.generation.prompts.fit_prompt`).
"""

from __future__ import annotations

from fromzero.errors import InputError


def check_context(length: int, context: int, detail: str = "") -> None:
    """Raise :class:`InputError` when ``length`` positions do not fit a context of ``context``.

    ``detail`` says where the positions come from, e.g. ``" (3 cached + 40 new)"``.
    """
    if length > context:
        raise InputError(f"{length} tokens{detail} exceed the model's context of {context} (block_size); "
                         f"keep only the last {context} tokens")


def can_slide(num_beams: int, padded: bool) -> bool:
    """Whether decoding can go on past the context: greedy decoding or sampling of unpadded prompts."""
    return num_beams == 1 and not padded


def prompt_room(context: int, max_new_tokens: int, slides: bool) -> int:
    """How many prompt tokens fit: the whole context when the window slides, else what the new tokens leave."""
    if slides:
        return context
    if max_new_tokens >= context:
        raise InputError(f"max_new_tokens (--max-new-tokens) {max_new_tokens} leaves no room for a prompt in the "
                         f"model's context of {context} tokens: beam search and padded batches cannot slide "
                         f"the window")
    return context - max_new_tokens


def check_prompt(length: int, context: int, max_new_tokens: int, slides: bool) -> None:
    """Raise :class:`InputError` unless a prompt of ``length`` tokens leaves room for the new tokens."""
    if length <= prompt_room(context, max_new_tokens, slides):
        return
    if slides:
        raise InputError(f"the prompt ({length} tokens) is longer than the model's context of {context} tokens: "
                         f"keep only its last {context} tokens")
    raise InputError(f"prompt ({length} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's context "
                     f"of {context} tokens, and beam search and padded batches cannot slide the window: shorten "
                     f"the prompt or ask for fewer new tokens (--max-new-tokens)")
