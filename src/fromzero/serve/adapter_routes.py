"""``/v1/adapters``: load and unload LoRA adapters while the server runs, without a restart.

``POST /v1/adapters`` with ``{"name": ..., "path": ...}`` loads a PEFT adapter folder (what
``fromzero finetune sft|dpo`` writes) on the server's base model; it answers the new model id as
``/v1/models`` lists it, and from then on requests choose it by ``model``. ``DELETE
/v1/adapters/{name}`` unloads one. Both sit under ``/v1`` and need the server's API key when it
has one: whoever can load an adapter decides what the model says.

**Running requests are not disturbed.** The weights change only between two decoding steps, on the
scheduler's own thread (:meth:`~fromzero.generation.batching.Scheduler.run_between_steps`), so no
forward pass ever sees half an adapter, and requests for other adapters go on decoding around it.

**A bad adapter changes nothing.** Missing files, a pickle ``adapter_model.bin``, an adapter whose
``finetune.json`` names another base model, weights of the wrong shapes: each is a 400 with
OpenAI's error JSON, refused before the model is touched (:func:`~fromzero.finetune.peft_format.load_adapter`
checks everything first). A new version of a loaded name is loaded under a temporary name first and
swapped in only once it loaded, and the prefix cache forgets the old version's keys and values.

**An adapter in use is not changed.** Replacing or unloading an adapter while requests for it wait
or decode is refused with 409 (``adapter_in_use``): their answers were begun with its weights and
must end with them. Try again when they have finished. While an unload is being decided, new
requests for that id already get 404. ``base`` (the adapters off) cannot be unloaded.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Callable, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from fromzero.errors import FromzeroError, InputError
from fromzero.finetune.lora import active_adapter, adapter_names, delete_adapter, rename_adapter, set_adapter
from fromzero.finetune.peft_format import load_adapter
from fromzero.finetune.tuned import TunedModel, fine_tune_record
from fromzero.generation.batching import Scheduler
from fromzero.serve.errors import APIError
from fromzero.serve.feedback_routes import Served
from fromzero.serve.schemas import ErrorResponse, Model

ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in [
    (400, "a bad name, or an adapter this server cannot load (named in param)"), (401, "a missing or wrong API key"),
    (404, "no adapter of that name"), (409, "requests for that adapter are running: try again when they end"),
    (503, "the server is shutting down")]}
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_+:@-]{0,63}")  # a model id that fits in a URL path


class AdapterRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="the model id requests will choose it by (a new name, or a loaded adapter's to "
                      "replace it)")
    path: str = Field(description="the adapter folder on the server's machine (adapter_config.json, "
                      "adapter_model.safetensors, finetune.json), made on the server's base model")


class AdapterDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: Literal[True] = True


class InUse(Exception):
    """Requests for the adapter are waiting or decoding."""


def adapter_router(scheduler: Scheduler, tuned: TunedModel, served: dict[str, Served], reserved: set[str],
                   serve_as: Callable[[str, Path], Served]) -> APIRouter:
    """The routes for the server's model ``tuned`` and its model ids ``served`` (changed in place).

    ``reserved``: ids no adapter may take (``base``, the embeddings model); ``serve_as(name, folder)``
    makes the model id of an adapter folder, with its template.
    """
    router = APIRouter(tags=["adapters"])
    model = tuned.model
    changing = asyncio.Lock()  # one change at a time: each decides on the state the previous one left

    async def between_steps(work: Callable[[], None]) -> None:
        try:
            future = scheduler.run_between_steps(work)
        except InputError:
            raise APIError(503, "the server is shutting down", type="server_error", code="shutting_down") from None
        try:
            await asyncio.wrap_future(future)
        except InUse as error:
            raise APIError(409, str(error), param="name", code="adapter_in_use") from None

    @router.post("/adapters", response_model=Model, responses=ERRORS)
    async def load(body: AdapterRequest, request: Request) -> Model:
        name, folder = body.name, _path(body.path)
        if name in reserved or not NAME.fullmatch(name):
            why = "is taken by another model" if name in reserved else "must be 1-64 letters, digits or _+:@- "
            raise APIError(400, f"the adapter name {name!r} {why}", param="name")
        try:
            target = _checked(folder, name, tuned, serve_as)
        except (FromzeroError, OSError) as error:  # OSError: a path the system refuses (too long ...)
            raise APIError(400, str(error), param="path") from None

        def swap() -> None:
            if scheduler.uses(name):
                raise InUse(f"requests for {name!r} are running; replace it when they have finished")
            active = active_adapter(model) if adapter_names(model) else None
            loading = f"{name}-loading-{uuid.uuid4().hex[:8]}"
            try:
                load_adapter(model, folder, loading)  # checks everything before it touches the model
                if name in adapter_names(model):
                    delete_adapter(model, name)
                rename_adapter(model, loading, name)
            finally:
                if loading in adapter_names(model):
                    delete_adapter(model, loading)
                if active in adapter_names(model):
                    set_adapter(model, active)
            if scheduler.prefix_cache is not None:
                scheduler.prefix_cache.invalidate(name)  # K/V of the version it replaces

        async with changing:
            try:
                await between_steps(swap)
            except (FromzeroError, OSError) as error:
                raise APIError(400, str(error), param="path") from None
            served[name] = target
            tuned.adapters[name] = folder
        request.state.log.update(model=name, adapter="loaded")
        return Model(id=name, created=int(time.time()), fromzero=target.info)

    @router.delete("/adapters/{name}", response_model=AdapterDeleted, responses=ERRORS)
    async def unload(name: str, request: Request) -> AdapterDeleted:
        if name in served and served[name].adapter is None:
            raise APIError(400, f"{name!r} is the base model: it cannot be unloaded", param="name")
        async with changing:
            if name not in served:
                adapters = [s.id for s in served.values() if s.adapter is not None]
                raise APIError(404, f"no adapter named {name!r} is loaded; loaded: {', '.join(adapters) or 'none'}",
                               param="name", code="model_not_found")
            target = served.pop(name)  # new requests for it get 404 from now on

            def remove() -> None:
                if scheduler.uses(name):
                    raise InUse(f"requests for {name!r} are running; unload it when they have finished")
                delete_adapter(model, name)
                if scheduler.prefix_cache is not None:
                    scheduler.prefix_cache.invalidate(name)

            try:
                await between_steps(remove)
            except BaseException:
                served[name] = target
                raise
            tuned.adapters.pop(name, None)
        request.state.log.update(model=name, adapter="unloaded")
        return AdapterDeleted(id=name)

    return router


def _checked(folder: Path, name: str, tuned: TunedModel, serve_as: Callable[[str, Path], Served]) -> Served:
    """The model id the adapter in ``folder`` will be, once what can be checked without the model is fine."""
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder on the server's machine; give the adapter folder that "
                         f"fromzero finetune wrote (its --out)")
    record = fine_tune_record(folder)
    base = (record or {}).get("base_model")
    if base and not _same_model(base, tuned.base):
        raise InputError(f"{folder} was tuned on {base}, but this server runs {tuned.base}: an adapter only fits "
                         f"the base model it was tuned on")
    target = serve_as(name, folder)
    template = target.tuned.template
    needed = template.special_tokens if template else []
    missing = [token for token in needed if token not in tuned.tokenizer.special_tokens]
    if missing:
        raise InputError(f"{folder}'s template {template.name} needs the special tokens {', '.join(missing)}, which "
                         f"this server's tokenizer lacks")
    return target


def _same_model(a: str, b: str) -> bool:
    """Whether two model specs (folders or hub names) name the same model."""
    first, second = _path(a), _path(b)
    if first.is_dir() and second.is_dir():
        return first.resolve() == second.resolve()
    return a == b


def _path(text: str) -> Path:
    """``text`` as a path on the server's machine, ``~`` expanded; ``~name`` of no user is taken as written."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)
