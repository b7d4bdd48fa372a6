"""``/v1/feedback``: the chat page's 👍/👎, edits and choices, kept as training data.

``POST /v1/feedback`` stores one record (:mod:`fromzero.chat.feedback`: a rating, an edit or a
choice between two answers) and answers ``{"id": ..., "stored": true}`` only once the record is
on disk: the store fsyncs before it returns, so an acknowledged rating survives a crash of the
server. ``GET /v1/feedback?limit=N`` lists the latest records, newest first. Both sit under
``/v1`` and need the server's API key when it has one.

The server adds what a client cannot know: the text the model read (the conversation written in
the template of the model id, as a chat completion writes it), the template, the model the
server was started with and the adapter behind the model id. With ``--rag`` that text is the
conversation without the retrieved chunks: the lookup is not repeated for a rating.
``fromzero feedback export --format sft|dpo`` turns the records into fine-tuning data.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any, Callable, Literal, Protocol

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from fromzero.chat.feedback import Feedback, FeedbackStore
from fromzero.finetune.instructions import Message
from fromzero.finetune.tuned import TunedModel
from fromzero.serve.errors import APIError
from fromzero.serve.schemas import ChatMessage, ErrorResponse, ModelInfo

ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in [
    (400, "a bad field (named in param)"), (401, "a missing or wrong API key"), (404, "an unknown model"),
    (413, "a request body too large")]}
Setting = str | int | float | bool | None


class Served(Protocol):
    """A model id of the server (:class:`fromzero.serve.app.Served`): what a record says produced the answer."""

    id: str
    adapter: str | None
    tuned: TunedModel

    @property
    def info(self) -> ModelInfo: ...


class FeedbackRequest(BaseModel):
    """What a person said about an answer; which fields a kind needs is in :mod:`fromzero.chat.feedback`."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    kind: Literal["rating", "edit", "choice"]
    model: str = Field(description="the model id that wrote the answer (GET /v1/models lists them)")
    messages: list[ChatMessage] = Field(min_length=1, description="the conversation the answer replied to, as it "
                                        "was sent to /v1/chat/completions: ending with the user's question")
    answer: str = Field(description="the model's answer (a choice: answer 1)")
    rating: Literal["up", "down"] | None = Field(None, description="rating: the person's verdict")
    better: str | None = Field(None, description="edit: the person's better version of the answer")
    other: str | None = Field(None, description="choice: answer 2, to the same messages")
    other_model: str | None = Field(None, description="choice: the model id that wrote answer 2 (default: model)")
    chosen: Literal[1, 2] | None = Field(None, description="choice: the better answer, 1 or 2")
    settings: dict[str, Setting] = Field(default_factory=dict, description="the sampling fields the answer was "
                                         "asked with (temperature, top_k, max_tokens, seed, ...)")


class FeedbackStored(BaseModel):
    id: str
    stored: Literal[True] = True


class FeedbackList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]] = Field(description="the latest records, newest first")


def feedback_router(store: FeedbackStore, served: dict[str, Served], model: str,
                    chat_prompt: Callable[[Served, list[Message], int | None], tuple[list[int], int]]) -> APIRouter:
    """The routes, storing in ``store``; ``served`` are the server's model ids, ``model`` what it was started
    with, ``chat_prompt`` the chat route's own prompt builder (so a record holds the text the model read)."""
    router = APIRouter(tags=["feedback"])

    def find(model_id: str, param: str) -> Served:
        if model_id not in served:
            raise APIError(404, f"the model {model_id!r} does not exist; this server has {', '.join(served)}",
                           param=param, code="model_not_found")
        return served[model_id]

    @router.post("/feedback", response_model=FeedbackStored, responses=ERRORS)
    async def post_feedback(body: FeedbackRequest, request: Request) -> FeedbackStored:
        target = find(body.model, "model")
        other = find(body.other_model, "other_model") if body.other_model else target
        messages = [Message("system" if m.role == "developer" else m.role, m.text) for m in body.messages]
        record = Feedback(
            kind=body.kind, messages=[{"role": m.role, "content": m.content} for m in messages], answer=body.answer,
            rating=body.rating, better=body.better, other=body.other, chosen=body.chosen,
            template=target.info.template, model=model, adapter=target.adapter,
            other_adapter=other.adapter if body.kind == "choice" else None, settings=body.settings, origin="serve",
        ).check()

        def store_it() -> Feedback:  # tokenizing a long conversation and the fsync stay off the event loop
            requested = body.settings.get("max_tokens")
            if not (isinstance(requested, int) and not isinstance(requested, bool) and requested > 0):
                requested = None  # the chat route's default: the whole context
            record.prompt = target.tuned.tokenizer.decode(chat_prompt(target, messages, requested)[0])
            return store.add(record)

        stored = await asyncio.to_thread(store_it)
        request.state.log.update(model=target.id, feedback=stored.kind)
        return FeedbackStored(id=stored.id)

    @router.get("/feedback", response_model=FeedbackList, responses=ERRORS)
    async def list_feedback(limit: int = Query(20, ge=1, le=1000, description="how many records")) -> FeedbackList:
        records = await asyncio.to_thread(store.records)
        return FeedbackList(data=[asdict(record) for record in reversed(records[-limit:])])

    return router
