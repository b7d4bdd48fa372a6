"""``fromzero serve``: a model (and its adapters) behind OpenAI's HTTP API, with a chat page at ``/``.

Any OpenAI client can talk to it: set the client's base URL to ``http://HOST:PORT/v1``.

* ``GET /v1/models``: ``"base"`` (the base model, adapters off), each adapter by name, and the
  embeddings model if there is one.
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
* ``POST /v1/adapters``, ``DELETE /v1/adapters/{name}``: load and unload LoRA adapters while the server
  runs (:mod:`fromzero.serve.adapter_routes`); a loaded one is listed and chosen by ``model`` at once.
* ``POST /v1/feedback``, ``GET /v1/feedback``: ratings, edits and choices from the chat page, stored
  as training data (:mod:`fromzero.serve.feedback_routes`); ``continue_final_message`` (vLLM's field)
  in a chat completion continues the answer the messages end with.
* ``POST /v1/embeddings``, when the server has an encoder (``fromzero serve --embeddings minilm|DIR|gpt:DIR``,
  :func:`fromzero.embeddings.index.load_encoder_spec`; its id is ``minilm``, the folder's name or
  ``gpt:NAME``): one unit-length vector per text of ``input`` (a string or a list), the vectors an
  index stores, computed in a worker thread; ``encoding_format`` ``float`` or ``base64`` (little-endian
  float32); ``dimensions`` only as the encoder's own size (these encoders were not trained to be
  shortened); ``usage.prompt_tokens`` counts the tokens read (a text longer than the encoder's context
  is cut, as sentence-transformers cuts it). Without an encoder: 404.
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
this request). ``max_tokens`` (or ``max_completion_tokens``, which wins when both are given) defaults
to the whole context for chat and to 16 for completions (OpenAI's defaults) and is capped to what the
model's context leaves after the prompt: the answer then ends with ``"length"``. ``stop`` is a string
or a list of up to 4.

Log-probabilities: chat ``logprobs: true`` (with ``top_logprobs`` N <= 20) gives
``choices[i].logprobs.content``, one ``{token, logprob, bytes, top_logprobs: [{token, logprob,
bytes}]}`` per answer token; completions ``logprobs`` N <= 5 give OpenAI's older ``{tokens,
token_logprobs, top_logprobs, text_offset}`` (``top_logprobs``: the N most likely and the chosen
token, null for N = 0; ``text_offset``: where each token's text starts, counted from the answer's
start and running on across a stream's chunks, as vLLM counts). A logprob is ``log_softmax`` of the
model's raw logits at that step, before repetition penalty, temperature, top-k/top-p and the JSON
constraint: what the model thinks, not what the sampler drew from (vLLM's default, ``raw_logprobs``;
OpenAI does not say). The scheduler computes them only for the jobs that ask. There is one entry per
generated token, the end token and a stop string's tokens included (as many as
``usage.completion_tokens``); a stream sends each token's entry with the text it completes, and the
rest (a held-back end) with the finish chunk.

``response_format: {"type": "json_object"}`` (chat) decodes under a grammar
(:mod:`fromzero.generation.json_constraint`): every answer is a JSON object that ``json.loads``
reads, with finish reason ``"stop"``, steered to close within ``max_tokens``; only a ``max_tokens``
too small even for ``{}`` gives an unfinished object and ``"length"``. The object's end is the
answer's end, so the template's end token and stop strings do not apply (``stop`` does).
``json_schema`` is refused (400); ``text`` is the default.

A stream with ``stream_options: {"include_usage": true}`` ends with a chunk whose ``choices`` is
empty and whose ``usage`` is the request's (the non-streamed response's counts); every chunk before
it has ``usage: null``, and without it no chunk has ``usage``, as OpenAI sends them.
``stream_options`` without ``stream`` is refused (400), as OpenAI does.

Accepted and ignored (an OpenAI client may send them; they change nothing here):
``frequency_penalty``, ``presence_penalty``, ``logit_bias``, ``user``, ``tools``, ``tool_choice``,
``parallel_tool_calls``, ``functions``, ``function_call``, ``service_tier``, ``store``, ``metadata``,
``modalities``, ``audio``, ``prediction``, ``reasoning_effort``, ``web_search_options``, and for
completions ``echo``, ``suffix``, ``best_of``, and ``response_format`` (OpenAI's completions have
none); for embeddings ``user``. Any other unknown field is ignored too. Token-id prompts and inputs,
and non-text message parts, are refused (400).

Added to OpenAI's responses (its clients keep fields they do not know): ``fromzero`` in each model of
``/v1/models`` (kind, template, context; for the embeddings model kind ``embeddings``, dimensions,
context), and ``sources`` in a chat completion: the chunks the
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
import base64
import contextlib
import hmac
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, replace
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Callable, Sequence

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from fromzero.chat.conversation import conversation_prompt, default_answer_tokens, question_with_context
from fromzero.chat.feedback import FeedbackStore
from fromzero.embeddings.encoders import GPTMeanPoolEncoder, SentenceEncoder
from fromzero.embeddings.index import load_encoder_spec
from fromzero.embeddings.rag import load_retriever
from fromzero.errors import InputError
from fromzero.finetune.instructions import Message
from fromzero.finetune.lora import using_adapter
from fromzero.finetune.tuned import TunedModel, chosen_template, fine_tune_record, is_adapter_folder, load_tuned
from fromzero.generation.config import GenerationConfig
from fromzero.generation.json_constraint import JSONObjectConstraint, JSONVocabulary, token_bytes
from fromzero.generation.streaming import TextStream
from fromzero.serve import errors
from fromzero.serve.errors import APIError, error_body
from fromzero.serve.adapter_routes import adapter_router
from fromzero.serve.feedback_routes import feedback_router
from fromzero.serve.schemas import (
    ChatChoice,
    ChatCompletion,
    ChatRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Embedding,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    EncoderInfo,
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
    from fromzero.generation.batching import Job, TokenLogprob
    from fromzero.tokenizers import Tokenizer

Encoder = SentenceEncoder | GPTMeanPoolEncoder

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
    feedback_dir: str | Path | None = None,
    prefix_cache_mb: float = 256,
    embeddings: str | None = None,
) -> FastAPI:
    """Load ``model`` with ``adapters`` (``(name, folder)``) and return the app that serves them.

    ``template`` (or ``template_file``) sets the template of every model id; by default each id has
    its own: an adapter the one in its ``finetune.json``, the base the one of ``model``'s record (a
    fully fine-tuned folder), else none. ``rag``: an index folder (``fromzero index build``) whose
    ``rag_k`` best chunks go in front of each chat question; it is loaded and tried first, so a bad
    one fails before the model is even loaded. ``prefix_cache_mb``: memory for the K/V of earlier
    prompts and answers, which a chat's next turn reuses (0: off). ``embeddings``: the encoder that
    answers ``/v1/embeddings`` (``minilm``, a sentence-transformers folder or ``gpt:DIR``), loaded
    before the model too. The scheduler starts now and stops at the app's shutdown.
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
    encoder = load_encoder_spec(embeddings, device) if embeddings is not None else None
    encoder_id = _encoder_id(embeddings) if embeddings is not None else None
    if encoder_id in {BASE, *(name for name, _ in adapters)}:
        raise InputError(f"--embeddings: its id {encoder_id!r} is also a chat model's; rename its folder")
    tuned = load_tuned(model, adapters, template, template_file, device=device)
    # the fastest CPU layout for one client and for a full batch (a no-op on a GPU)
    quantize(tuned.model, "fp32", rows=max_batch, rows_vary=True)
    served = _served(tuned, model, template, template_file)
    scheduler = Scheduler(tuned.model, max_batch=max_batch, max_queue=max_queue, prefix_cache_mb=prefix_cache_mb,
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
        if model_id == encoder_id:
            raise APIError(404, f"{model_id!r} is the embeddings model: it answers /v1/embeddings only; the chat and "
                           f"completion models are {', '.join(served)}", param="model", code="model_not_found")
        if model_id not in served:
            raise APIError(404, f"the model {model_id!r} does not exist; this server has {', '.join(served)}",
                           param="model", code="model_not_found")
        return served[model_id]

    def submit(request: Request, target: Served, prompts: list[tuple[list[int], GenerationConfig]], n: int,
               logprobs: int | None = None, constraint: Callable[[], JSONObjectConstraint] | None = None
               ) -> list[Answer]:
        """One job per answer: ``n`` for each prompt, indexed prompt by prompt as OpenAI does.

        ``logprobs``: how many most likely tokens each token's log-probability comes with (None: none);
        ``constraint`` makes each answer's own constraint.
        """
        if closing:
            raise APIError(503, "the server is shutting down", type="server_error", code="shutting_down")
        if target.id not in served:  # unloaded while this request was being prepared
            raise APIError(404, f"the model {target.id!r} was just unloaded", param="model", code="model_not_found")
        loop = asyncio.get_running_loop()
        answers: list[Answer] = []
        try:
            for ids, config in prompts:
                for i in range(n):
                    seed = config.seed + i if config.seed is not None else random.randrange(2**31)
                    options = {} if logprobs is None else {"logprobs": logprobs}  # only what the request asks for
                    if constraint is not None:
                        options["constraint"] = constraint()
                    job = scheduler.submit(ids, replace(config, seed=seed), adapter=target.adapter,
                                           tokenizer=target.tuned.tokenizer, loop=loop, **options)
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

    vocabularies: dict[int, JSONVocabulary] = {}  # per tokenizer: the base and its adapters share one

    async def json_constraint(target: Served, max_new: int) -> Callable[[], JSONObjectConstraint]:
        """What makes each answer's JSON constraint. The tokenizer's vocabulary is read once, the first time
        (in a worker thread: GPT-2's 50,257 tokens take a moment); one that cannot write JSON is a 400."""
        tokenizer = target.tuned.tokenizer
        if id(tokenizer) not in vocabularies:
            try:
                vocabularies[id(tokenizer)] = await asyncio.to_thread(JSONVocabulary, tokenizer,
                                                                      target.tuned.model.config.vocab_size)
            except InputError as error:
                raise APIError(400, str(error), param="response_format") from None
        vocabulary = vocabularies[id(tokenizer)]
        return lambda: JSONObjectConstraint(vocabulary, max_new)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_key_check(api_key))] if api_key else [])

    @v1.get("/models", response_model=ModelList, responses=ERRORS)
    async def list_models() -> ModelList:
        listed = [Model(id=s.id, created=created, fromzero=s.info) for s in served.values()]
        if encoder is not None:
            listed.append(Model(id=encoder_id, created=created, fromzero=_encoder_info(encoder)))
        return ModelList(data=listed)

    @v1.get("/models/{model_id}", response_model=Model, responses=ERRORS)
    async def get_model(model_id: str) -> Model:
        if encoder is not None and model_id == encoder_id:
            return Model(id=encoder_id, created=created, fromzero=_encoder_info(encoder))
        found = find(model_id)
        return Model(id=found.id, created=created, fromzero=found.info)

    @v1.post("/chat/completions", response_model=ChatCompletion, responses={**ERRORS, **STREAMED})
    async def chat_completions(body: ChatRequest, request: Request):
        target = find(body.model)
        _check_stream_options(body)
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        json_object = _json_object(body)
        messages = [Message("system" if m.role == "developer" else m.role, m.text) for m in body.messages]
        messages, sources = await with_context(request, target, messages, body)
        ids, max_new = _chat_prompt(target, messages, body.max_new_tokens, body.continue_final_message)
        config = _config(body, target.tuned, max_new, chat=True, json_object=json_object)
        constraint = await json_constraint(target, max_new) if json_object else None
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        answers = submit(request, target, [(ids, config)], body.n, logprobs, constraint)
        reply = Reply("chatcmpl", target.id, answers, body.n, request, sources, logprobs)
        if body.stream:
            return _sse(reply.chat_chunks(include_usage=bool(body.stream_options and body.stream_options.include_usage)))
        await reply.collect()
        return ChatCompletion(id=reply.id, created=reply.created, model=target.id, usage=reply.usage, sources=sources,
                              choices=[ChatChoice(index=a.index, message={"content": a.text},
                                                  logprobs=reply.logprobs_of(a), finish_reason=a.finish)
                                       for a in answers])

    @v1.post("/completions", response_model=Completion, responses={**ERRORS, **STREAMED})
    async def completions(body: CompletionRequest, request: Request):
        target = find(body.model)
        _check_stream_options(body)
        plain = replace(target.tuned, template=None)  # a completion continues the text as it is
        context = plain.model.config.block_size
        fitted = [_fit(lambda room, text=text: conversation_prompt(plain, [Message("user", text)], room).ids,
                       context, body.max_tokens or COMPLETIONS_MAX_TOKENS, "prompt") for text in body.prompts]
        answers = submit(request, target, [(ids, _config(body, plain, max_new, chat=False)) for ids, max_new in fitted],
                         body.n, body.logprobs)
        reply = Reply("cmpl", target.id, answers, body.n, request, logprobs=body.logprobs)
        if body.stream:
            return _sse(reply.completion_chunks(include_usage=bool(body.stream_options and body.stream_options.include_usage)))
        await reply.collect()
        return Completion(id=reply.id, created=reply.created, model=target.id, usage=reply.usage, choices=[
            CompletionChoice(index=a.index, text=a.text, logprobs=reply.logprobs_of(a), finish_reason=a.finish)
            for a in answers])

    @v1.post("/embeddings", response_model=EmbeddingList, responses=ERRORS)
    async def create_embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingList:
        if encoder is None:
            raise APIError(404, "this server has no embeddings model: start it with --embeddings minilm (or a "
                           "sentence-transformers folder, or gpt:DIR)", param="model", code="model_not_found")
        if body.model != encoder_id:
            raise APIError(404, f"the embeddings model {body.model!r} does not exist; this server's is "
                           f"{encoder_id!r}", param="model", code="model_not_found")
        if body.dimensions is not None and body.dimensions != encoder.dim:
            raise APIError(400, f"dimensions: {encoder_id}'s vectors have {encoder.dim} numbers and cannot be "
                           f"shortened (it was not trained for it); leave dimensions out", param="dimensions")
        vectors, counts = await asyncio.to_thread(_embed, encoder, body.texts)  # the event loop goes on meanwhile
        request.state.log.update(model=encoder_id, prompt_tokens=sum(counts), inputs=len(counts))
        if body.encoding_format == "base64":  # the little-endian float32 bytes, as OpenAI sends them
            encoded = [base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii") for vector in vectors]
        else:
            encoded = vectors.tolist()
        return EmbeddingList(data=[Embedding(index=i, embedding=vector) for i, vector in enumerate(encoded)],
                             model=encoder_id,
                             usage=EmbeddingUsage(prompt_tokens=sum(counts), total_tokens=sum(counts)))

    v1.include_router(feedback_router(FeedbackStore(feedback_dir), served, model, _chat_prompt))  # default: $FROMZERO_HOME/feedback
    v1.include_router(adapter_router(scheduler, tuned, served, {BASE, *([encoder_id] if encoder_id else [])},
                                     lambda name, folder: _served_adapter(tuned, name, folder, template, template_file)))
    app.include_router(v1)

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(models=[*served, *([encoder_id] if encoder is not None else [])])

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.scheduler, app.state.served, app.state.retriever = scheduler, served, retriever
    app.state.encoder, app.state.encoder_id = encoder, encoder_id
    return app


# ---- models, prompts and settings --------------------------------------------------------------

def _served(tuned: TunedModel, spec: str, template: str | None, template_file: str | None) -> dict[str, Served]:
    """The model ids, base first, each with its own template (see :func:`create_app`)."""
    base_record = None if is_adapter_folder(spec) else tuned.record
    ids = {BASE: Served(BASE, None, replace(tuned, template=chosen_template(template, template_file, base_record)))}
    for name, folder in tuned.adapters.items():
        ids[name] = _served_adapter(tuned, name, folder, template, template_file)
    return ids


def _served_adapter(tuned: TunedModel, name: str, folder: str | Path, template: str | None,
                    template_file: str | None) -> Served:
    """The model id of adapter ``name`` (from ``folder``): its template is its record's unless one is forced."""
    return Served(name, name, replace(tuned, template=chosen_template(template, template_file, fine_tune_record(folder))))


def _chat_prompt(target: Served, messages: list[Message], requested: int | None,
                 continuing: bool = False) -> tuple[list[int], int]:
    """The prompt ids of a chat for ``target`` and its answer's length (``requested``, by default the
    whole context, capped by :func:`_fit`): what the chat route submits and what feedback records."""
    context = target.tuned.model.config.block_size
    return _fit(lambda room: conversation_prompt(target.tuned, messages, room, continuing=continuing).ids,
                context, requested or context, "messages")


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


def _config(body: ChatRequest | CompletionRequest, tuned: TunedModel, max_new: int, chat: bool,
            json_object: bool = False) -> GenerationConfig:
    """The request's decoding settings, with the end rules ``fromzero generate`` uses for this model.

    A JSON object's answer ends where the object does (the constraint ends it): no end token or template
    stop string may cut it first (a character model's end, a blank line, is whitespace JSON allows).
    """
    tokenizer, model = tuned.tokenizer, tuned.model
    eos = tokenizer.eot_id if tokenizer.eot_id is not None else model.config.eos_token_id
    templated = chat and tuned.template is not None and not json_object
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
        eos_token_id=None if json_object else tuned.eos_ids if templated else eos,
        seed=body.seed,
    ).validate()


def _check_stream_options(body: ChatRequest | CompletionRequest) -> None:
    if body.stream_options is not None and not body.stream:
        raise APIError(400, "stream_options is only allowed with stream: true", param="stream_options")


def _json_object(body: ChatRequest) -> bool:
    """True when the answer must be a JSON object; a format this server cannot keep is a 400."""
    kind = body.response_format.type if body.response_format else "text"
    if kind == "json_schema":
        raise APIError(400, 'response_format json_schema is not supported: use {"type": "json_object"} (the answer '
                       'is a JSON object, with no schema) or {"type": "text"}', param="response_format.type")
    if kind == "json_object" and body.continue_final_message:
        raise APIError(400, "response_format json_object writes a new answer: it cannot continue_final_message",
                       param="response_format")
    return kind == "json_object"


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
    reported: int = 0  # tokens whose log-probabilities were sent
    offset: int = 0  # characters of the token texts sent with them (a completion's text_offset)

    async def pieces(self) -> AsyncIterator[tuple[str, int]]:
        """The text as it comes, each piece with the number of tokens read when it was made."""
        async for token in self.job:
            self.tokens += 1
            if piece := self.stream.push(token):
                self.text += piece
                yield piece, self.tokens
        if piece := self.stream.finish():
            self.text += piece
            yield piece, self.tokens
        if self.job.finish_reason not in ("stop", "length"):
            raise APIError(503, "the server stopped this answer (it is shutting down)", type="server_error",
                           code="cancelled")

    @property
    def finish(self) -> str:
        return self.job.finish_reason


class Reply:
    """The answers of one request, gathered for a JSON response or sent as server-sent events.

    ``logprobs``: None when the request asked for no log-probabilities, else how many most likely
    tokens each answer token lists.
    """

    def __init__(self, prefix: str, model: str, answers: list[Answer], n: int, request: Request,
                 sources: list[Source] | None = None, logprobs: int | None = None):
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.chat = prefix == "chatcmpl"
        self.created = int(time.time())
        self.model, self.answers, self.n, self.request = model, answers, n, request
        self.sources = sources  # the retrieved chunks the question was asked with (chat only)
        self.logprobs = logprobs

    @property
    def usage(self) -> Usage:
        prompt = sum(a.prompt_tokens for a in self.answers[::self.n])  # a prompt counts once, whatever n is
        completion = sum(a.tokens for a in self.answers)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    def logprobs_of(self, answer: Answer, upto: int | None = None) -> dict | None:
        """The log-probabilities of the answer's tokens not sent yet, up to token ``upto`` (default: all), in
        the endpoint's shape; None when none were asked for or none are left."""
        upto = answer.tokens if upto is None else upto
        if self.logprobs is None or upto == answer.reported:
            return None
        tokenizer, job = answer.stream.tokenizer, answer.job
        tokens, entries = job.tokens[answer.reported:upto], job.token_logprobs[answer.reported:upto]
        answer.reported = upto
        if self.chat:
            return {"content": [{**_token_logprob(tokenizer, token, entry.logprob),
                                 "top_logprobs": [_token_logprob(tokenizer, *top) for top in entry.top]}
                                for token, entry in zip(tokens, entries)], "refusal": None}
        texts = [tokenizer.decode([token]) for token in tokens]
        offsets = list(accumulate((len(text) for text in texts[:-1]), initial=answer.offset))
        answer.offset += sum(len(text) for text in texts)
        top = [_top_dict(tokenizer, token, entry) for token, entry in zip(tokens, entries)] if self.logprobs else None
        return {"tokens": texts, "token_logprobs": [entry.logprob for entry in entries], "top_logprobs": top,
                "text_offset": offsets}

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
        def chunk(index: int, delta: dict, finish: str | None = None, logprobs: dict | None = None) -> dict:
            return self._event("chat.completion.chunk", include_usage, system_fingerprint=None, choices=[
                {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}])

        for answer in self.answers:
            first = chunk(answer.index, {"role": "assistant", "content": ""})
            if answer.index == 0:  # the sources are known before the answer: the page shows them at once
                first["sources"] = None if self.sources is None else [s.model_dump() for s in self.sources]
            yield first
        async for answer, piece, upto in self._merged():
            logprobs = self.logprobs_of(answer, upto)
            if piece is not None:
                yield chunk(answer.index, {"content": piece}, logprobs=logprobs)
            else:
                yield chunk(answer.index, {}, answer.finish, logprobs)
        if include_usage:
            yield self._event("chat.completion.chunk", False, system_fingerprint=None, choices=[],
                              usage=self.usage.model_dump())

    async def completion_chunks(self, include_usage: bool) -> AsyncIterator[dict]:
        async for answer, piece, upto in self._merged():
            yield self._event("text_completion", include_usage, choices=[
                {"index": answer.index, "text": piece or "", "logprobs": self.logprobs_of(answer, upto),
                 "finish_reason": None if piece is not None else answer.finish}])
        if include_usage:
            yield self._event("text_completion", False, choices=[], usage=self.usage.model_dump())

    def _event(self, kind: str, usage_null: bool, **fields) -> dict:
        """One chunk of a stream. With ``include_usage`` every chunk but the last (the counts) has
        ``usage: null``, as OpenAI sends them."""
        event = {"id": self.id, "object": kind, "created": self.created, "model": self.model, **fields}
        if usage_null:
            event["usage"] = None
        return event

    async def _merged(self) -> AsyncIterator[tuple[Answer, str | None, int]]:
        """Every answer's pieces as they come, interleaved, each with the tokens it covers up to;
        ``(answer, None, tokens)`` when one has finished."""
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(answer: Answer) -> None:
            try:
                async for piece, upto in answer.pieces():
                    queue.put_nowait((answer, piece, upto, None))
                queue.put_nowait((answer, None, answer.tokens, None))
            except Exception as error:  # noqa: BLE001 - handed to the reader, who reports it
                queue.put_nowait((answer, None, answer.tokens, error))

        tasks = [asyncio.ensure_future(pump(answer)) for answer in self.answers]
        try:
            for _ in self.answers:
                while True:
                    answer, piece, upto, error = await queue.get()
                    if error is not None:
                        raise error
                    yield answer, piece, upto
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


def _token_logprob(tokenizer: Tokenizer, token: int, logprob: float) -> dict:
    """A token in a chat completion's logprobs: its text, log-probability and bytes."""
    return {"token": tokenizer.decode([token]), "logprob": logprob, "bytes": list(token_bytes(tokenizer, token))}


def _top_dict(tokenizer: Tokenizer, token: int, entry: TokenLogprob) -> dict[str, float]:
    """A completion's ``top_logprobs`` at one step: the most likely tokens, and the chosen one (OpenAI: up to
    ``logprobs`` + 1 entries). Two tokens with the same text keep the likelier's value."""
    top: dict[str, float] = {}
    for other, logprob in [*entry.top, (token, entry.logprob)]:
        top.setdefault(tokenizer.decode([other]), logprob)
    return top


# ---- embeddings --------------------------------------------------------------------------------

def _embed(encoder: Encoder, texts: list[str]) -> tuple[np.ndarray, list[int]]:
    """Unit-length vectors of ``texts`` (as an index stores them), and the tokens the encoder read of each."""
    vectors = np.atleast_2d(encoder.encode(texts, normalize=True))
    if isinstance(encoder, SentenceEncoder):
        counts = encoder.batch(texts)[1].sum(dim=1).tolist()
    else:  # a GPT reads its first block_size tokens
        counts = [min(len(encoder.tokenizer.encode(text)), encoder.model.config.block_size) for text in texts]
    return vectors, counts


def _encoder_id(spec: str) -> str:
    """The embeddings model's id: ``minilm``, a folder's name, or ``gpt:`` and a GPT folder's (or hub) name."""
    if spec.startswith("gpt:"):
        return "gpt:" + Path(spec[4:]).name
    return spec if spec == "minilm" else Path(spec).name


def _encoder_info(encoder: Encoder) -> EncoderInfo:
    context = encoder.max_length if isinstance(encoder, SentenceEncoder) else encoder.model.config.block_size
    return EncoderInfo(dimensions=encoder.dim, context=context)


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
