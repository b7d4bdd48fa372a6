"""``fromzero serve``: a model (and its adapters) behind OpenAI's HTTP API, with a chat page at ``/``.

Any OpenAI client can talk to it: set the client's base URL to ``http://HOST:PORT/v1``.

* ``GET /v1/models``: ``"base"`` (the base model, adapters off) and each adapter by name.
* ``POST /v1/chat/completions``: the messages are written into the model's template
  (:func:`fromzero.chat.conversation.conversation_prompt`, the same prompt ``fromzero generate``
  and ``fromzero chat`` build), so a tuned model is asked the way it was taught.
* ``POST /v1/completions``: the prompt is continued as it is, with no template.
* With an index (``fromzero serve --rag IDX``), a chat completion looks the last user message up in
  it (in a worker thread: the event loop goes on) and asks it with the chunks found in front, in
  ``fromzero chat --rag``'s template and cut the same way
  (:func:`~fromzero.chat.conversation.question_with_context`); without ``max_tokens`` the chunks
  leave room for an answer of :func:`~fromzero.chat.conversation.default_answer_tokens`. The
  response lists them in ``sources`` (below). ``/v1/completions`` never retrieve: the prompt is
  continued as it is.
* ``GET /health``, ``/`` (the chat page), ``/docs`` and ``/openapi.json``.

Every request becomes one job per answer for the batching scheduler
(:mod:`fromzero.generation.batching`): concurrent requests share forward passes, each with its own
settings and seed; requests for different adapters share the base weights. ``n`` answers are ``n``
jobs; with a ``seed`` answer ``i`` is sampled with ``seed + i``, so each answer is reproducible on
its own, whatever else is in the batch. Without a seed each job draws a fresh one.

Sampling follows OpenAI's defaults: ``temperature`` 1, ``top_p`` 1, nothing else, so an unchanged
client gets plain sampling. ``temperature`` 0 (or ``top_p`` 0) is greedy. fromzero's extra knobs are
extra body fields (``extra_body=`` in the ``openai`` client): ``top_k``, ``min_p``,
``repetition_penalty``, ``no_repeat_ngram_size``, and for chat ``rag`` (``false``: no retrieval for
this request). ``max_tokens`` (or ``max_completion_tokens``) defaults to the whole context for chat
and to 16 for completions (OpenAI's defaults) and is capped to what the model's context leaves after
the prompt: the answer then ends with ``"length"``.

Accepted and ignored (an OpenAI client may send them; they change nothing here):
``frequency_penalty``, ``presence_penalty``, ``logit_bias``, ``logprobs``, ``top_logprobs``, ``user``,
``response_format``, ``tools``, ``tool_choice``, ``parallel_tool_calls``, ``functions``,
``function_call``, ``service_tier``, ``store``, ``metadata``, ``modalities``, ``audio``,
``prediction``, ``reasoning_effort``, ``web_search_options``, and for completions ``echo``,
``suffix``, ``best_of``. Any other unknown field is ignored too. Token-id prompts and non-text
message parts are refused (400).

Added to OpenAI's responses (its clients keep fields they do not know): ``fromzero`` in each model of
``/v1/models`` (kind, template, context), and ``sources`` in a chat completion: the chunks the
question was asked with, best first, each ``{rank, source, document, start, end, score, text}``
(character offsets in the document, cosine similarity), or null when nothing was retrieved (no
index, ``rag`` false, an empty question). A stream sends ``sources`` once, in its first chunk, before
any text.

Errors are OpenAI's JSON (:mod:`fromzero.serve.errors`). Bodies over ``max_body_bytes`` get 413
before they are read whole. A client that disconnects cancels its jobs, which leave the batch at the
next step. Each request is logged as one JSON line (logger ``fromzero.serve.access``). At shutdown
the server stops taking requests and the scheduler finishes the accepted ones (then cancels what is
left after 30 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Callable, Sequence

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from fromzero.chat.conversation import conversation_prompt, default_answer_tokens, question_with_context
from fromzero.embeddings.rag import load_retriever
from fromzero.errors import InputError
from fromzero.finetune.instructions import Message
from fromzero.finetune.lora import using_adapter
from fromzero.finetune.tuned import TunedModel, chosen_template, fine_tune_record, is_adapter_folder, load_tuned
from fromzero.generation.config import GenerationConfig
from fromzero.generation.streaming import TextStream
from fromzero.serve import errors
from fromzero.serve.errors import APIError, error_body
from fromzero.serve.schemas import (
    ChatChoice,
    ChatCompletion,
    ChatRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ErrorResponse,
    Health,
    Model,
    ModelInfo,
    ModelList,
    Source,
    Usage,
)

if TYPE_CHECKING:
    from fromzero.embeddings.index import Hit
    from fromzero.generation.batching import Job

BASE = "base"  # the model id of the base model, adapters off
STATIC = Path(__file__).parent / "static"
COMPLETIONS_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
access_log = logging.getLogger("fromzero.serve.access")

ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in [
    (400, "a bad parameter (named in param), or a prompt too long for the model's context"),
    (401, "a missing or wrong API key"), (404, "an unknown model"), (413, "a request body too large"),
    (429, "the queue is full: try again shortly"), (503, "the server is shutting down")]}
STREAMED = {200: {"content": {"text/event-stream": {}}, "description": "JSON, or with stream: server-sent events"}}


@dataclass
class Served:
    """One model id: the adapter it runs (None: the base) and the template its questions are written in."""

    id: str
    adapter: str | None
    tuned: TunedModel  # shares the one model; its template is this id's

    @property
    def info(self) -> ModelInfo:
        template = self.tuned.template
        return ModelInfo(kind="adapter" if self.adapter else "base", template=template.name if template else "none",
                         context=self.tuned.model.config.block_size)


def create_app(
    model: str,
    adapters: Sequence[tuple[str, str]] = (),
    api_key: str | None = None,
    max_batch: int = 8,
    max_queue: int = 64,
    template: str | None = None,
    device: str | None = None,
    template_file: str | None = None,
    max_body_bytes: int = 1 << 20,
    rag: str | Path | None = None,
    rag_k: int = 3,
) -> FastAPI:
    """Load ``model`` with ``adapters`` (``(name, folder)``) and return the app that serves them.

    ``template`` (or ``template_file``) sets the template of every model id; by default each id has
    its own: an adapter the one in its ``finetune.json``, the base the one of ``model``'s record (a
    fully fine-tuned folder), else none. ``rag``: an index folder (``fromzero index build``) whose
    ``rag_k`` best chunks go in front of each chat question; it is loaded and tried first, so a bad
    one fails before the model is even loaded. The scheduler starts now and stops at the app's shutdown.
    """
    from fromzero.devices import resolve_device
    from fromzero.generation.batching import QueueFull, Scheduler
    from fromzero.generation.quantize import quantize

    if any(name == BASE for name, _ in adapters):
        raise InputError(f"--adapter: {BASE!r} is the base model's id; give the adapter another NAME=DIR")
    if rag_k < 1:
        raise InputError(f"--rag-k must be at least 1, got {rag_k}")
    device = resolve_device(device or "auto")
    retriever = load_retriever(rag, rag_k, device) if rag is not None else None
    tuned = load_tuned(model, adapters, template, template_file, device=device)
    quantize(tuned.model, "fp32")  # packed for the fast CPU kernel, as `generate` does (a no-op on a GPU)
    served = _served(tuned, model, template, template_file)
    scheduler = Scheduler(tuned.model, max_batch=max_batch, max_queue=max_queue,
                          activate=lambda adapter: using_adapter(tuned.model, adapter))
    created = int(time.time())
    closing = False

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal closing
        yield
        closing = True
        await asyncio.to_thread(scheduler.close)  # the loop keeps running: finishing jobs still deliver tokens

    app = FastAPI(title="fromzero serve", version="1", lifespan=lifespan,
                  description="OpenAI-compatible API for a fromzero model and its adapters.")
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(AccessLog)
    app.openapi = _openapi_without_422(app)

    def find(model_id: str) -> Served:
        if model_id not in served:
            raise APIError(404, f"the model {model_id!r} does not exist; this server has {', '.join(served)}",
                           param="model", code="model_not_found")
        return served[model_id]

    def submit(request: Request, target: Served, prompts: list[tuple[list[int], GenerationConfig]],
               n: int) -> list[Answer]:
        """One job per answer: ``n`` for each prompt, indexed prompt by prompt as OpenAI does."""
        if closing:
            raise APIError(503, "the server is shutting down", type="server_error", code="shutting_down")
        loop = asyncio.get_running_loop()
        answers: list[Answer] = []
        try:
            for ids, config in prompts:
                for i in range(n):
                    seed = config.seed + i if config.seed is not None else random.randrange(2**31)
                    job = scheduler.submit(ids, replace(config, seed=seed), adapter=target.adapter,
                                           tokenizer=target.tuned.tokenizer, loop=loop)
                    answers.append(Answer(len(answers), job, TextStream(target.tuned.tokenizer, config), len(ids)))
        except QueueFull as error:
            for answer in answers:
                answer.job.cancel()
            raise APIError(429, f"the server is busy ({error}); max_queue is {max_queue}", type="rate_limit_error",
                           code="queue_full", headers={"Retry-After": "1"}) from None
        request.state.log.update(model=target.id, prompt_tokens=sum(len(ids) for ids, _ in prompts),
                                 answers=len(answers))
        return answers

    async def with_context(request: Request, target: Served, messages: list[Message],
                           body: ChatRequest) -> tuple[list[Message], list[Source] | None]:
        """With an index: the last question with the chunks retrieved for it that fit, and those chunks.

        The lookup encodes the question with a model, so it runs in a worker thread: other requests
        go on meanwhile. ``None``: nothing was looked up (no index, ``rag`` false, no question).
        """
        question = messages[-1].content if messages and messages[-1].role == "user" else ""
        if retriever is None or not body.rag or not question.strip():
            return messages, None
        hits = await asyncio.to_thread(retriever.retrieve, question)
        context = target.tuned.model.config.block_size
        room = min(body.max_new_tokens or default_answer_tokens(context), context - 1)
        try:
            asked, used = question_with_context(target.tuned, messages, hits, room)
        except InputError:  # the conversation alone leaves no room: _fit answers (or refuses) it as it is
            asked, used = question, []
        request.state.log.update(sources=len(used))
        return [*messages[:-1], Message("user", asked)], _sources(used)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_key_check(api_key))] if api_key else [])

    @v1.get("/models", response_model=ModelList, responses=ERRORS)
    async def list_models() -> ModelList:
        return ModelList(data=[Model(id=s.id, created=created, fromzero=s.info) for s in served.values()])

    @v1.get("/models/{model_id}", response_model=Model, responses=ERRORS)
    async def get_model(model_id: str) -> Model:
        found = find(model_id)
        return Model(id=found.id, created=created, fromzero=found.info)

    @v1.post("/chat/completions", response_model=ChatCompletion, responses={**ERRORS, **STREAMED})
    async def chat_completions(body: ChatRequest, request: Request):
        target = find(body.model)
        messages = [Message("system" if m.role == "developer" else m.role, m.text) for m in body.messages]
        messages, sources = await with_context(request, target, messages, body)
        context = target.tuned.model.config.block_size
        ids, max_new = _fit(lambda room: conversation_prompt(target.tuned, messages, room).ids,
                            context, body.max_new_tokens or context, "messages")
        config = _config(body, target.tuned, max_new, chat=True)
        answers = submit(request, target, [(ids, config)], body.n)
        reply = Reply("chatcmpl", target.id, answers, body.n, request, sources)
        if body.stream:
            return _sse(reply.chat_chunks(include_usage=bool(body.stream_options and body.stream_options.include_usage)))
        await reply.collect()
        return ChatCompletion(id=reply.id, created=reply.created, model=target.id, usage=reply.usage, sources=sources,
                              choices=[ChatChoice(index=a.index, message={"content": a.text}, finish_reason=a.finish)
                                       for a in answers])

    @v1.post("/completions", response_model=Completion, responses={**ERRORS, **STREAMED})
    async def completions(body: CompletionRequest, request: Request):
        target = find(body.model)
        plain = replace(target.tuned, template=None)  # a completion continues the text as it is
        context = plain.model.config.block_size
        fitted = [_fit(lambda room, text=text: conversation_prompt(plain, [Message("user", text)], room).ids,
                       context, body.max_tokens or COMPLETIONS_MAX_TOKENS, "prompt") for text in body.prompts]
        answers = submit(request, target, [(ids, _config(body, plain, max_new, chat=False)) for ids, max_new in fitted],
                         body.n)
        reply = Reply("cmpl", target.id, answers, body.n, request)
        if body.stream:
            return _sse(reply.completion_chunks(include_usage=bool(body.stream_options and body.stream_options.include_usage)))
        await reply.collect()
        return Completion(id=reply.id, created=reply.created, model=target.id, usage=reply.usage, choices=[
            CompletionChoice(index=a.index, text=a.text, finish_reason=a.finish) for a in answers])

    app.include_router(v1)

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(models=list(served))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.scheduler, app.state.served, app.state.retriever = scheduler, served, retriever
    return app


# ---- models, prompts and settings --------------------------------------------------------------

def _served(tuned: TunedModel, spec: str, template: str | None, template_file: str | None) -> dict[str, Served]:
    """The model ids, base first, each with its own template (see :func:`create_app`)."""
    base_record = None if is_adapter_folder(spec) else tuned.record
    ids = {BASE: Served(BASE, None, replace(tuned, template=chosen_template(template, template_file, base_record)))}
    for name, folder in tuned.adapters.items():
        chosen = chosen_template(template, template_file, fine_tune_record(folder))
        ids[name] = Served(name, name, replace(tuned, template=chosen))
    return ids


def _fit(encode: Callable[[int], list[int]], context: int, requested: int, param: str) -> tuple[list[int], int]:
    """The prompt ids and the answer's length: ``requested``, capped to what the context leaves.

    ``encode(room)`` builds the prompt keeping ``room`` tokens for the answer (a chat history is
    trimmed to fit); when that leaves too little room, the prompt keeps all it can (the last
    message at least) and the answer gets what is left.
    """
    try:
        try:
            ids = encode(min(requested, context - 1))
        except InputError:
            ids = encode(1)
    except InputError as error:
        raise APIError(400, str(error), param=param) from None
    return ids, min(requested, context - len(ids))


def _sources(hits: list[Hit]) -> list[Source]:
    """The hits a question was asked with, as the response lists them (best first, rank 1)."""
    return [Source(rank=rank, source=hit.chunk.source, document=hit.chunk.document, start=hit.chunk.start,
                   end=hit.chunk.end, score=hit.score, text=hit.chunk.text) for rank, hit in enumerate(hits, start=1)]


def _config(body: ChatRequest | CompletionRequest, tuned: TunedModel, max_new: int, chat: bool) -> GenerationConfig:
    """The request's decoding settings, with the end rules ``fromzero generate`` uses for this model."""
    tokenizer, model = tuned.tokenizer, tuned.model
    eos = tokenizer.eot_id if tokenizer.eot_id is not None else model.config.eos_token_id
    templated = chat and tuned.template is not None
    greedy = body.temperature == 0 or body.top_p == 0
    return GenerationConfig(
        max_new_tokens=max_new,
        do_sample=not greedy,
        temperature=body.temperature,
        top_k=body.top_k,
        top_p=body.top_p if not greedy else 1.0,
        min_p=body.min_p,
        repetition_penalty=body.repetition_penalty,
        no_repeat_ngram_size=body.no_repeat_ngram_size,
        stop_strings=body.stop_strings + (tuned.stop_strings if templated else []),
        eos_token_id=tuned.eos_ids if templated else eos,
        seed=body.seed,
    ).validate()


# ---- answers -----------------------------------------------------------------------------------

@dataclass
class Answer:
    """One job's answer as it comes: its text (stop strings cut, no broken characters) and its counts."""

    index: int
    job: Job
    stream: TextStream
    prompt_tokens: int
    text: str = ""
    tokens: int = 0

    async def pieces(self) -> AsyncIterator[str]:
        async for token in self.job:
            self.tokens += 1
            if piece := self.stream.push(token):
                self.text += piece
                yield piece
        if piece := self.stream.finish():
            self.text += piece
            yield piece
        if self.job.finish_reason not in ("stop", "length"):
            raise APIError(503, "the server stopped this answer (it is shutting down)", type="server_error",
                           code="cancelled")

    @property
    def finish(self) -> str:
        return self.job.finish_reason


class Reply:
    """The answers of one request, gathered for a JSON response or sent as server-sent events."""

    def __init__(self, prefix: str, model: str, answers: list[Answer], n: int, request: Request,
                 sources: list[Source] | None = None):
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model, self.answers, self.n, self.request = model, answers, n, request
        self.sources = sources  # the retrieved chunks the question was asked with (chat only)

    @property
    def usage(self) -> Usage:
        prompt = sum(a.prompt_tokens for a in self.answers[::self.n])  # a prompt counts once, whatever n is
        completion = sum(a.tokens for a in self.answers)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    async def collect(self) -> None:
        """Wait for every answer; a client that hangs up meanwhile cancels them."""
        async def drain(answer: Answer) -> None:
            async for _ in answer.pieces():
                pass

        work = asyncio.ensure_future(asyncio.gather(*(drain(a) for a in self.answers)))
        try:
            while not (await asyncio.wait({work}, timeout=0.25))[0]:
                if await self.request.is_disconnected():
                    self.cancel()
            await work
        finally:
            self.cancel()
            self._log()

    def cancel(self) -> None:
        for answer in self.answers:
            if answer.job.finish_reason is None:
                answer.job.cancel()

    async def chat_chunks(self, include_usage: bool) -> AsyncIterator[dict]:
        def chunk(index: int, delta: dict, finish: str | None = None) -> dict:
            return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                    "system_fingerprint": None,
                    "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        for answer in self.answers:
            first = chunk(answer.index, {"role": "assistant", "content": ""})
            if answer.index == 0:  # the sources are known before the answer: the page shows them at once
                first["sources"] = None if self.sources is None else [s.model_dump() for s in self.sources]
            yield first
        async for answer, piece in self._merged():
            yield chunk(answer.index, {"content": piece}) if piece is not None else chunk(answer.index, {}, answer.finish)
        if include_usage:
            yield {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                   "choices": [], "usage": self.usage.model_dump()}

    async def completion_chunks(self, include_usage: bool) -> AsyncIterator[dict]:
        def chunk(index: int, text: str, finish: str | None = None) -> dict:
            return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                    "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}]}

        async for answer, piece in self._merged():
            yield chunk(answer.index, piece) if piece is not None else chunk(answer.index, "", answer.finish)
        if include_usage:
            yield {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                   "choices": [], "usage": self.usage.model_dump()}

    async def _merged(self) -> AsyncIterator[tuple[Answer, str | None]]:
        """Every answer's pieces as they come, interleaved; ``(answer, None)`` when one has finished."""
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(answer: Answer) -> None:
            try:
                async for piece in answer.pieces():
                    queue.put_nowait((answer, piece, None))
                queue.put_nowait((answer, None, None))
            except Exception as error:  # noqa: BLE001 - handed to the reader, who reports it
                queue.put_nowait((answer, None, error))

        tasks = [asyncio.ensure_future(pump(answer)) for answer in self.answers]
        try:
            for _ in self.answers:
                while True:
                    answer, piece, error = await queue.get()
                    if error is not None:
                        raise error
                    yield answer, piece
                    if piece is None:
                        break
        finally:
            for task in tasks:
                task.cancel()
            self.cancel()
            self._log()

    def _log(self) -> None:
        self.request.state.log.update(completion_tokens=sum(a.tokens for a in self.answers),
                                      finish=[a.finish for a in self.answers])


def _sse(events: AsyncIterator[dict]) -> StreamingResponse:
    """Server-sent events as OpenAI sends them: ``data: JSON`` blocks, then ``data: [DONE]``.

    An error after the first event can no longer change the status: it is sent as an event holding
    OpenAI's error object, which the ``openai`` client raises and the chat page shows.
    """
    async def lines() -> AsyncIterator[str]:
        try:
            async for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        except APIError as error:
            yield f"data: {json.dumps(error_body(error.message, error.type, error.param, error.code))}\n\n"
        except Exception:  # a bug: logged, and the client gets a clean end
            logging.getLogger("fromzero.serve").exception("internal error while streaming")
            yield f"data: {json.dumps(error_body('internal server error', 'server_error'))}\n\n"
        yield "data: [DONE]\n\n"

    # no caching, and no buffering by a proxy (nginx) in between: each event must go out at once
    return StreamingResponse(lines(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# ---- around every request ----------------------------------------------------------------------

def _key_check(api_key: str) -> Callable:
    """A dependency that lets a request through only with ``Authorization: Bearer <api_key>``."""
    bearer = HTTPBearer(auto_error=False, description="the key given to fromzero serve --api-key")
    expected = api_key.encode()

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None:
            raise APIError(401, "no API key: send the header 'Authorization: Bearer KEY' with the server's --api-key",
                           code="invalid_api_key")
        # constant time: how long the comparison takes must not tell how much of a guess was right
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise APIError(401, "the API key is wrong", code="invalid_api_key")

    return check


def _openapi_without_422(app: FastAPI) -> Callable[[], dict]:
    """The schema FastAPI writes, less the 422 it documents for bad bodies: this server answers 400."""
    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            for path in schema["paths"].values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema

    return openapi


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before more of it is read.

    The body is read here (at most ``max_bytes``) and handed on whole, so the check also holds for
    a chunked body that declares no length.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the client to disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send) -> None:
        response = errors.error_response(APIError(413, f"the request body is larger than {self.max_bytes} bytes",
                                                  code="body_too_large"))
        await response(scope, receive, send)


class AccessLog:
    """ASGI middleware: one JSON line per request, written when its response has been sent.

    Routes add their own fields (model, tokens, finish reasons) to ``request.state.log``.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]
        fields: dict = {}
        scope.setdefault("state", {})["log"] = fields

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            access_log.info(json.dumps({
                "method": scope["method"], "path": scope["path"], "status": status[0],
                "ms": round(1000 * (time.perf_counter() - start), 1), "client": client[0] if client else None,
                **fields}))
