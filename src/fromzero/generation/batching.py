"""Continuous batching: many requests share each forward pass, and new ones join at every step.

A server that decodes one request at a time leaves the CPU waiting on memory: a decoding step reads
every weight of the model to produce one token, and reading them for 32 rows costs little more than
for one. So the :class:`Scheduler` keeps a batch of running requests and, between two steps, lets
finished ones leave and waiting ones join ("continuous" batching: nobody waits for the slowest
request of a fixed batch).

How rows of different lengths share one KV cache: the rows are **right-aligned**. Row ``r`` holds its
``n_r`` cached tokens in columns ``P - n_r .. P - 1`` of a cache ``P`` columns long; the columns
before are padding, masked out of attention, and each row's position ids count only its own tokens.
Every step appends one column for all rows. When a request joins (its prompt is run alone first, the
prefill) or the cache is full, the cache is rebuilt as narrow as the longest row allows.

Each request keeps its own settings: logits processors, stop rule and random generator are per row,
and a row's token is drawn exactly as :func:`fromzero.generation.generate` draws it for a batch of
one. So a greedy request gets the same tokens whatever else is in the batch, and a seeded sampled one
is reproducible (up to float rounding of the padded batch, which does not change a token in practice;
tests check both against unbatched ``generate``).

Adapters: requests name the adapter they want (``None``: the base model). Rows are grouped by
adapter and each group gets its own forward pass, with ``activate(name)`` making that adapter the
active one; the base weights are shared, never copied.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, ContextManager, Iterator

import torch

from fromzero.errors import FromzeroError, InputError
from fromzero.generation.config import GenerationConfig
from fromzero.generation.processors import Processor, apply_processors, build_processors
from fromzero.generation.stopping import Decoder, StopCondition
from fromzero.models import KVCache
from fromzero.models.context import check_prompt

_END = object()  # put on a job's queue after its last token


class QueueFull(FromzeroError):
    """More requests are waiting than the scheduler accepts (the server answers 429)."""


class Job:
    """One request: iterate over it (``for`` or ``async for``) to get its new token ids as they come.

    ``finish_reason`` is set when the iteration ends: ``"stop"`` (an end-of-sequence token or a stop
    string), ``"length"`` (``max_new_tokens``, or the model's context is full) or ``"cancelled"``.
    """

    def __init__(self, ids: list[int], config: GenerationConfig, adapter: str | None,
                 tokenizer: Decoder | None, loop: asyncio.AbstractEventLoop | None):
        self.ids = ids
        self.config = config
        self.adapter = adapter
        self.tokens: list[int] = []
        self.finish_reason: str | None = None
        self.error: BaseException | None = None
        self.cancelled = threading.Event()
        self.processors: list[Processor] = build_processors(config)
        self.stop = StopCondition(config, len(ids), tokenizer)
        self.generator = None
        if config.seed is not None and config.samples:
            self.generator = torch.Generator().manual_seed(config.seed)
        self._loop = loop
        self._queue: Any = asyncio.Queue() if loop is not None else queue.Queue()

    def cancel(self) -> None:
        """Stop this request: its row leaves the batch before the next step."""
        self.cancelled.set()

    def _put(self, item: Any) -> None:
        if self._loop is None:
            self._queue.put(item)
            return
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the client's event loop is gone: nobody is listening any more
            self.cancel()

    def _finish(self, reason: str, error: BaseException | None = None) -> None:
        self.finish_reason, self.error = reason, error
        self._put(_END)

    def __iter__(self) -> Iterator[int]:
        while (item := self._queue.get()) is not _END:
            yield item
        if self.error is not None:
            raise self.error

    async def __aiter__(self) -> AsyncIterator[int]:
        while (item := await self._queue.get()) is not _END:
            yield item
        if self.error is not None:
            raise self.error


@dataclass
class _Row:
    """A running job: its tokens so far (prompt + new) and the next-token logits to pick from."""

    job: Job
    sequence: torch.Tensor  # (1, prompt + max_new_tokens), filled up to `length`
    length: int
    logits: torch.Tensor  # (1, V)
    keys: list[torch.Tensor] | None = None  # the prefill's cache, until the row joins the group's cache
    values: list[torch.Tensor] | None = None
    slot: int = -1  # the row's index in its group's cache, once it is there

    @property
    def cached(self) -> int:
        """Tokens whose keys/values are in the cache: all but the newest, which is fed next."""
        return self.length - 1 if self.job.tokens else self.length


@dataclass
class _Group:
    """The rows that use one adapter, right-aligned in one KV cache (see the module docstring)."""

    adapter: str | None
    rows: list[_Row] = field(default_factory=list)
    cache: KVCache | None = None
    mask: torch.Tensor | None = None  # (rows, capacity): 1 where a row has a real token
    stale: bool = True  # rows joined: the cache must be rebuilt before the next forward pass


class Scheduler:
    """Decodes every submitted request on one background thread, batching them step by step.

    ``max_batch`` rows run at once (1: no batching, one request after another); up to ``max_queue``
    more wait, and :meth:`submit` raises :class:`QueueFull` beyond that. ``activate(adapter)`` returns a
    context manager that makes an adapter (or, for None, the base model) active; without it every
    request must use ``adapter=None``.
    """

    def __init__(self, model: torch.nn.Module, *, max_batch: int = 8, max_queue: int = 64,
                 activate: Callable[[str | None], ContextManager] | None = None):
        if max_batch < 1 or max_queue < 0:
            raise InputError(f"max_batch must be >= 1 and max_queue >= 0, got {max_batch} and {max_queue}")
        self.model = model.eval()
        self.max_batch, self.max_queue = max_batch, max_queue
        self.activate = activate or (lambda adapter: contextlib.nullcontext())
        self.block_size = model.config.block_size
        self.device = next(model.parameters()).device
        self.steps = 0  # forward passes run (prefills included)
        self._pending: deque[Job] = deque()
        self._groups: dict[str | None, _Group] = {}
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fromzero-scheduler", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- the callers' side
    def submit(self, ids: list[int], config: GenerationConfig, adapter: str | None = None,
               tokenizer: Decoder | None = None, loop: asyncio.AbstractEventLoop | None = None) -> Job:
        """Queue a request; its tokens are read from the returned :class:`Job`.

        Pass the running event loop as ``loop`` to read the job with ``async for``.
        """
        config = config.validate()
        if config.num_beams > 1 or config.num_return_sequences > 1:
            raise InputError("the scheduler decodes one sequence per request (greedy or sampling): submit "
                             "one request per sequence wanted")
        if not ids:
            raise InputError("the prompt is empty: give at least one token")
        vocab = self.model.config.vocab_size
        if min(ids) < 0 or max(ids) >= vocab:
            raise InputError(f"token ids must be in [0, {vocab}) for this model")
        check_prompt(len(ids), self.block_size, config.max_new_tokens, slides=False)
        job = Job(list(ids), config, adapter, tokenizer, loop)
        with self._wake:
            if self._closed:
                raise InputError("the server is shutting down")
            if len(self._pending) >= self.max_queue + max(0, self.max_batch - self.running):
                raise QueueFull(f"{len(self._pending)} requests are already waiting: try again in a moment")
            self._pending.append(job)
            self._wake.notify()
        return job

    @property
    def running(self) -> int:
        return sum(len(group.rows) for group in self._groups.values())

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new requests, let the accepted ones finish (for at most ``timeout`` seconds, then they are
        cancelled) and stop the thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            for job in self._all_jobs():
                job.cancel()
            self._thread.join()

    def _all_jobs(self) -> list[Job]:
        with self._wake:
            return list(self._pending) + [row.job for group in self._groups.values() for row in group.rows]

    # ---------------------------------------------------------------- the decoding thread
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._pending and not self.running and not self._closed:
                        self._wake.wait()
                    if self._closed and not self.running and not self._pending:
                        return
                    joining = []
                    while self._pending and self.running + len(joining) < self.max_batch:
                        joining.append(self._pending.popleft())
                for job in joining:
                    self._guarded(job, lambda job=job: self._prefill(job))
                for group in list(self._groups.values()):
                    self._step(group)

    def _guarded(self, job: Job, work: Callable[[], None]) -> None:
        """Run one job's work; an unexpected error ends that job (its caller sees it), not the server."""
        try:
            work()
        except Exception as error:  # noqa: BLE001 - reported to the job's reader
            job._finish("error", error)

    def _prefill(self, job: Job) -> None:
        if job.cancelled.is_set():
            job._finish("cancelled")
            return
        n = len(job.ids)
        cache = KVCache.for_model(self.model, 1, n)
        ids = torch.tensor([job.ids], device=self.device)
        with self.activate(job.adapter):
            logits = self.model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float()
        self.steps += 1
        sequence = ids.new_zeros((1, n + job.config.max_new_tokens))
        sequence[0, :n] = ids[0]
        row = _Row(job, sequence, n, logits, keys=cache.keys, values=cache.values)
        group = self._groups.setdefault(job.adapter, _Group(job.adapter))
        with self._wake:
            group.rows.append(row)
        group.stale = True

    def _step(self, group: _Group) -> None:
        """Pick each row's next token, let finished rows go, then run one forward pass for the rest."""
        keep = []
        for index, row in enumerate(group.rows):
            try:
                done = self._pick(row)
            except Exception as error:  # noqa: BLE001
                row.job._finish("error", error)
                done = True
            if not done:
                keep.append(index)
        if len(keep) < len(group.rows):
            with self._wake:
                group.rows = [group.rows[i] for i in keep]
            if not group.stale and group.rows:
                index = torch.tensor(keep, device=self.device)
                group.cache.reorder(index)
                group.mask = group.mask.index_select(0, index)
                for slot, row in enumerate(group.rows):
                    row.slot = slot
        if not group.rows:
            with self._wake:
                self._groups.pop(group.adapter, None)
            return
        try:
            self._forward(group)
        except Exception as error:  # noqa: BLE001 - every row of the pass is lost; the server goes on
            for row in group.rows:
                row.job._finish("error", error)
            with self._wake:
                self._groups.pop(group.adapter, None)

    def _pick(self, row: _Row) -> bool:
        """Choose the row's next token exactly as ``generate`` does for one row; True when it is done."""
        job = row.job
        if job.cancelled.is_set():
            job._finish("cancelled")
            return True
        scores = apply_processors(job.processors, row.sequence[:, :row.length], row.logits)
        if job.config.samples:
            token = torch.multinomial(scores.softmax(dim=-1), 1, generator=job.generator)[0, 0]
        else:
            token = scores[0].argmax()
        row.sequence[0, row.length] = token
        row.length += 1
        job.tokens.append(int(token))
        job._put(int(token))
        if job.stop.active and bool(job.stop(row.sequence[:, :row.length])[0]):
            job._finish("stop")
            return True
        if len(job.tokens) == job.config.max_new_tokens or row.length == self.block_size:
            job._finish("length")
            return True
        return False

    def _forward(self, group: _Group) -> None:
        if group.stale or group.cache.seq_len == group.cache.max_len:
            self._rebuild(group)
        cache, rows = group.cache, group.rows
        width = cache.seq_len + 1
        group.mask[:, width - 1] = 1
        tokens = torch.stack([row.sequence[0, row.length - 1] for row in rows]).unsqueeze(1)
        positions = torch.tensor([[row.length - 1] for row in rows], device=self.device)
        with self.activate(group.adapter):
            logits = self.model(tokens, attention_mask=group.mask[:, :width], position_ids=positions,
                                past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float()
        self.steps += 1
        for row, row_logits in zip(rows, logits.split(1)):
            row.logits = row_logits

    def _rebuild(self, group: _Group) -> None:
        """Lay every row's cached tokens right-aligned in a new cache, as narrow as the longest row."""
        rows = group.rows
        width = max(row.cached for row in rows)
        to_come = max(row.job.config.max_new_tokens - len(row.job.tokens) for row in rows)
        capacity = min(self.block_size, width + to_come + 1)
        cache = KVCache.for_model(self.model, len(rows), capacity)
        for buffer in cache.keys + cache.values:
            buffer.zero_()  # padding is masked out, but 0 x NaN garbage would still be NaN
        mask = torch.zeros(len(rows), capacity, dtype=torch.long, device=self.device)
        old = group.cache
        for i, row in enumerate(rows):
            n = row.cached
            if row.keys is not None:  # joined at this step: its keys/values come from its prefill
                sources, start = (row.keys, row.values), 0
                row.keys = row.values = None
            else:
                sources, start = (old.keys, old.values), old.seq_len - n
            for buffers, source in zip((cache.keys, cache.values), sources):
                for layer, buffer in enumerate(buffers):
                    buffer[i, :, width - n:width] = source[layer][0 if row.slot < 0 else row.slot, :, start:start + n]
            mask[i, width - n:width] = 1
        for i, row in enumerate(rows):
            row.slot = i
        cache.seq_len = width
        group.cache, group.mask, group.stale = cache, mask, False
