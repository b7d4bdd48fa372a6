"""From a conversation to the prompt a model reads: the template, and the history that fits.

The chat REPL and the server both turn messages into token ids here, so that a model answers the
same question the same way wherever it is asked, and exactly the way it was taught
(:func:`fromzero.finetune.batches.encode_prompt`, the training text up to where the answer starts).

* The ``chat`` template sees the whole conversation: system prompt, every turn.
* A one-question template (``qa``, ``alpaca``, a template file) sees only the last user message,
  since that is all it was trained on.
* With no template (plain continuation) the last user message is the text to continue.

A model reads at most ``block_size`` tokens, and the answer needs room too. When a conversation is
too long, whole turns are dropped from the oldest on (a user turn with its answer), never the system
prompt or the last question; what was dropped is reported so the caller can say so. A last message
that alone does not fit is an error, not a silently cut question.

With retrieval (``--rag``), :func:`question_with_context` puts the retrieved chunks in front of the
last question, given what is left of the context once the conversation without them and the answer
have their room: the REPL and the server cut the same text the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from fromzero.embeddings.index import Hit
from fromzero.embeddings.rag import rag_question
from fromzero.errors import InputError
from fromzero.finetune.batches import encode_prompt, encode_text
from fromzero.finetune.instructions import Example, Message
from fromzero.finetune.templates import ChatTemplate
from fromzero.finetune.tuned import TunedModel
from fromzero.generation.prompts import new_document
from fromzero.models.context import prompt_room

ROLES = ("system", "user", "assistant")


@dataclass
class ConversationPrompt:
    ids: list[int]
    dropped_turns: int  # oldest turns left out to fit the context (0: the whole history is in)


def conversation_prompt(
    tuned: TunedModel,
    messages: Sequence[Message],
    max_new_tokens: int,
    system: str | None = None,
    continuing: bool = False,
) -> ConversationPrompt:
    """The ids that ask ``tuned`` to answer the last user message of ``messages``.

    ``system`` is used when ``messages`` has no system message of its own (chat template only).
    Room is kept for ``max_new_tokens`` new tokens. ``continuing``: ``messages`` ends with the
    start of an answer, which the model is to go on with: the prompt of the question before it,
    then that text (a "prefill", what vLLM's ``continue_final_message`` does).
    """
    messages = list(messages)
    if continuing:
        if not messages or messages[-1].role != "assistant":
            raise InputError("to continue an answer, the conversation must end with it (an assistant message)")
        start = encode_text(tuned.tokenizer, messages[-1].content)
        asked = conversation_prompt(tuned, messages[:-1], max_new_tokens + len(start), system)
        return ConversationPrompt(asked.ids + start, asked.dropped_turns)
    for message in messages:
        if message.role not in ROLES:
            raise InputError(f"a message's role must be one of {', '.join(ROLES)}, got {message.role!r}")
    if not messages or messages[-1].role != "user":
        raise InputError("the conversation must end with a user message: the question to answer")
    room = prompt_room(tuned.model.config.block_size, max_new_tokens, slides=False)
    if isinstance(tuned.template, ChatTemplate):
        return _chat_prompt(tuned, messages, system, room)
    question = messages[-1].content
    if tuned.template is None:
        ids = encode_text(tuned.tokenizer, question) or new_document(tuned.tokenizer)
    else:
        ids = encode_prompt(tuned.tokenizer, tuned.template, Example((Message("user", question),)))
    if len(ids) > room:
        raise InputError(_too_long(len(ids), room))
    return ConversationPrompt(ids, dropped_turns=0)


def default_answer_tokens(context: int) -> int:
    """Room for an answer when nobody said how long: 200 tokens, or half the context if less,
    so that the question (and any retrieved text) keeps the other half."""
    return min(200, context // 2)


def question_with_context(
    tuned: TunedModel,
    messages: Sequence[Message],
    hits: Sequence[Hit],
    max_new_tokens: int,
    system: str | None = None,
) -> tuple[str, list[Hit]]:
    """The last user message of ``messages`` with the retrieved ``hits`` that fit in front of it, and those hits.

    The budget of the context is what the model's context leaves after the conversation as it is
    (:func:`conversation_prompt`) and ``max_new_tokens`` for the answer; the hits are cut best
    first to fit it (:func:`fromzero.embeddings.rag.rag_question`). When none fits, the question
    comes back unchanged with no hits.
    """
    plain = conversation_prompt(tuned, messages, max_new_tokens, system)
    budget = tuned.model.config.block_size - max_new_tokens - len(plain.ids)
    return rag_question(messages[-1].content, list(hits), tuned.tokenizer, budget)


def _chat_prompt(tuned: TunedModel, messages: list[Message], system: str | None, room: int) -> ConversationPrompt:
    head = [m for m in messages[:1] if m.role == "system"] or ([Message("system", system)] if system else [])
    turns = messages[len(head):] if head and head[0] is messages[0] else messages
    if any(m.role == "system" for m in turns):
        raise InputError("only the first message may be the system message")
    # Cut points: each user message starts a turn; keep turns from the newest that fit.
    starts = [i for i, m in enumerate(turns) if m.role == "user"]
    for dropped, start in enumerate(starts):
        ids = encode_prompt(tuned.tokenizer, tuned.template, Example(tuple(head + turns[start:])))
        if len(ids) <= room:
            return ConversationPrompt(ids, dropped_turns=dropped)
    raise InputError(_too_long(len(ids), room))


def _too_long(length: int, room: int) -> str:
    return (f"the message is {length} tokens, more than the {room} the model's context leaves for it "
            f"(with room for the answer): shorten it, or ask for fewer new tokens")
