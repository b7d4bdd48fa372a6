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

Each request keeps its own settings: logits processors, stop rule and random generator are per row
(so are a constraint on what it may write and, when asked, its tokens' log-probabilities: rows that
do not ask pay nothing for them), and a row's token is drawn exactly as
:func:`fromzero.generation.generate` draws it for a batch of one. So a greedy request gets the same
tokens whatever else is in the batch, and a seeded sampled one is reproducible (up to float rounding
of the padded batch, which does not change a token in practice; tests check both against unbatched
``generate``).

Adapters: requests name the adapter they want (``None``: the base model). Rows are grouped by
adapter and each group gets its own forward pass, with ``activate(name)`` making that adapter the
active one; the base weights are shared, never copied. :meth:`Scheduler.run_between_steps` runs a
function on the decoding thread between two steps: how a server loads or removes an adapter while
requests are decoding, with no forward pass ever seeing half of it.

Where the model's Linear layers use fromzero's gemv kernel (``quantize`` measured it fastest for the
batch), a step of up to 4 rows (16 with int8 weights) is one call to C
(:mod:`fromzero.generation.fused_step`; left padding is what right-aligned rows are), the adapter of
the group included.

Prefix cache (``prefix_cache_mb`` > 0): each prefill first looks its prompt up in a
:class:`~fromzero.generation.prefix_cache.PrefixCache`, copies the K/V of the longest prefix found
and runs only the tokens after it; once its first token is picked it offers the prompt's K/V, and a
row that leaves offers its prompt and answer. A chat's next turn (the same conversation, one answer and one question longer)
thus runs little more than its new question.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, ContextManager, Iterator, Protocol

import torch

from fromzero.errors import FromzeroError, InputError
from fromzero.generation.config import GenerationConfig
from fromzero.generation.fused_step import FusedStep, fused_step_for
from fromzero.generation.prefix_cache import PrefixCache, weights_version
from fromzero.generation.processors import Processor, apply_processors, build_processors
from fromzero.generation.stopping import Decoder, StopCondition
from fromzero.machine import threads
from fromzero.models import KVCache
from fromzero.models.context import check_prompt

_END = object()  # put on a job's queue after its last token


_log = logging.getLogger(__name__)


class QueueFull(FromzeroError):
    """More requests are waiting than the scheduler accepts (the server answers 429)."""


class Constraint(Protocol):
    """Limits what a job may write (``response_format`` json_object: :mod:`fromzero.generation.json_constraint`)."""

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        """The (1, V) logits with the tokens not allowed next at ``-inf``."""
        ...

    def push(self, token: int) -> bool:
        """Read the chosen token; True when the answer is complete."""
        ...


@dataclass
class TokenLogprob:
    """A chosen token's log-probability, and the most likely tokens' ``(id, logprob)``, most likely first.

    Both are ``log_softmax`` of the model's raw logits: before penalties, temperature, top-k/top-p and
    constraints, as vLLM reports them. They say what the model thinks, whatever way a token was picked.
    """

    logprob: float
    top: list[tuple[int, float]]


class Job:
    """One request: iterate over it (``for`` or ``async for``) to get its new token ids as they come.

    ``finish_reason`` is set when the iteration ends: ``"stop"`` (an end-of-sequence token, a stop
    string, or the ``constraint`` is complete), ``"length"`` (``max_new_tokens``, or the model's
    context is full) or ``"cancelled"``. With ``logprobs`` (the number of most likely tokens wanted
    besides the chosen one), ``token_logprobs[i]`` is set before ``tokens[i]`` is handed out.
    """

    def __init__(self, ids: list[int], config: GenerationConfig, adapter: str | None,
                 tokenizer: Decoder | None, loop: asyncio.AbstractEventLoop | None,
                 logprobs: int | None = None, constraint: Constraint | None = None):
        self.ids = ids
        self.config = config
        self.adapter = adapter
        self.logprobs = logprobs
        self.constraint = constraint
        self.tokens: list[int] = []
        self.token_logprobs: list[TokenLogprob] = []
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
    request must use ``adapter=None``. ``prefix_cache_mb`` > 0 keeps the K/V of finished prompts and
    answers in a :class:`~fromzero.generation.prefix_cache.PrefixCache` of that many MB (``prefix_cache``):
    a prompt that starts like an earlier one runs only its new tokens (see the module docstring).
    """

    def __init__(self, model: torch.nn.Module, *, max_batch: int = 8, max_queue: int = 64,
                 activate: Callable[[str | None], ContextManager] | None = None, prefix_cache_mb: float = 0):
        if max_batch < 1 or max_queue < 0:
            raise InputError(f"max_batch must be >= 1 and max_queue >= 0, got {max_batch} and {max_queue}")
        if prefix_cache_mb < 0:
            raise InputError(f"the prefix cache's size must be >= 0 MB (0: off), got {prefix_cache_mb}")
        self.prefix_cache = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb > 0 else None
        self._weights = weights_version(model)  # the weights the cached K/V were computed with
        self.model = model.eval()
        self.max_batch, self.max_queue = max_batch, max_queue
        self.activate = activate or (lambda adapter: contextlib.nullcontext())
        self.block_size = model.config.block_size
        self.device = next(model.parameters()).device
        self.steps = 0  # forward passes run (prefills included)
        self._pending: deque[Job] = deque()
        self._groups: dict[str | None, _Group] = {}
        self._wake = threading.Condition()
        self._calls: list[tuple[Callable[[], Any], Future]] = []  # run_between_steps, in order
        self._fused: dict[str | None, FusedStep | None] = {}  # per adapter; see _fused_step
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fromzero-scheduler", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- the callers' side
    def submit(self, ids: list[int], config: GenerationConfig, adapter: str | None = None,
               tokenizer: Decoder | None = None, loop: asyncio.AbstractEventLoop | None = None,
               logprobs: int | None = None, constraint: Constraint | None = None) -> Job:
        """Queue a request; its tokens are read from the returned :class:`Job`.

        Pass the running event loop as ``loop`` to read the job with ``async for``. ``logprobs``: keep
        each token's log-probability and the ``logprobs`` most likely (0: the chosen token's only);
        only such jobs pay for it. ``constraint``: what limits the answer's tokens (its own per job).
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
        job = Job(list(ids), config, adapter, tokenizer, loop, logprobs, constraint)
        with self._wake:
            if self._closed:
                raise InputError("the server is shutting down")
            if len(self._pending) >= self.max_queue + max(0, self.max_batch - self.running):
                raise QueueFull(f"{len(self._pending)} requests are already waiting: try again in a moment")
            self._pending.append(job)
            self._wake.notify()
        return job

    def run_between_steps(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the decoding thread before the next step, when no forward pass is under way; the
        returned future gets its result or error. A server changes weights this way (loading or removing an
        adapter) without disturbing the requests being decoded. ``fn`` runs outside inference mode (it may
        create parameters) and before waiting jobs join, so :meth:`uses` sees every accepted job."""
        future: Future = Future()
        with self._wake:
            if self._closed:
                raise InputError("the server is shutting down")
            self._calls.append((fn, future))
            self._wake.notify()
        return future

    def uses(self, adapter: str | None) -> bool:
        """Whether a waiting or running job asks for ``adapter``."""
        return any(job.adapter == adapter for job in self._all_jobs())

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
        with torch.inference_mode(), threads.following(self.device):
            while True:
                with self._wake:
                    while not self._pending and not self.running and not self._closed and not self._calls:
                        self._wake.wait()
                    calls, self._calls = self._calls, []
                for fn, future in calls:
                    _call(fn, future)
                if calls:
                    self._fused.clear()  # an adapter may have come or gone: its fused step is built again
                with self._wake:
                    if self._closed and not self.running and not self._pending and not self._calls:
                        return
                    joining = []
                    while self._pending and self.running + len(joining) < self.max_batch:
                        joining.append(self._pending.popleft())
                if joining or self._groups:
                    threads.follow()  # as many threads as free cores: a busy core would stall every step
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
        start = self._reuse_prefix(job, cache)
        with self.activate(job.adapter):
            logits = self.model(ids[:, start:], past_key_values=cache, use_cache=True,
                                logits_to_keep=1).logits[:, -1].float()
        self.steps += 1
        sequence = ids.new_zeros((1, n + job.config.max_new_tokens))
        sequence[0, :n] = ids[0]
        row = _Row(job, sequence, n, logits, keys=cache.keys, values=cache.values)
        group = self._groups.setdefault(job.adapter, _Group(job.adapter))
        with self._wake:
            group.rows.append(row)
        group.stale = True

    def _reuse_prefix(self, job: Job, cache: KVCache) -> int:
        """Copy the K/V of the longest cached prefix of the job's prompt into ``cache``; return its length.

        The last prompt token is always run (its logits are the first pick), and the tokens after the
        prefix start at its length: positions are absolute, exactly as in one pass over the whole prompt.
        """
        if self.prefix_cache is None:
            return 0
        version = weights_version(self.model)
        if version != self._weights:
            self.prefix_cache.clear()
            self._weights = version
        start, pieces = self.prefix_cache.lookup(job.adapter, job.ids[:-1])
        at = 0
        for kv in pieces:
            columns = slice(at, at + kv.size(-2))
            for layer, (keys, values) in enumerate(zip(cache.keys, cache.values)):
                keys[0, :, columns] = kv[0, layer]
                values[0, :, columns] = kv[1, layer]
            at = columns.stop
        cache.seq_len = start
        return start

    def _remember(self, group: _Group, keep: list[int]) -> None:
        """Offer the prefix cache the K/V of the prompts that joined at this step and of the rows leaving
        the group (prompt and answer): the next turn of a chat starts with this whole exchange.

        Called once the step's tokens are picked, so a new prompt's first token is on its way before
        its K/V are copied. A joining row still holds its prefill's cache; a leaving row's cached tokens
        sit right-aligned in the group's cache, in its slot (also while the cache is stale: it is only
        rebuilt at the next forward pass). A row that joined at this step has no answer K/V yet.
        """
        if self.prefix_cache is None:
            return
        kept = set(keep)
        for index, row in enumerate(group.rows):
            if row.keys is not None:
                self.prefix_cache.insert(group.adapter, row.job.ids, [k[0] for k in row.keys], [v[0] for v in row.values])
            elif index not in kept and group.cache is not None:
                cache = group.cache
                columns = slice(cache.seq_len - row.cached, cache.seq_len)
                self.prefix_cache.insert(group.adapter, row.sequence[0, :row.cached].tolist(),
                                         [k[row.slot, :, columns] for k in cache.keys],
                                         [v[row.slot, :, columns] for v in cache.values])

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
        try:
            self._remember(group, keep)
        except Exception:  # noqa: BLE001 - the cache only saves time: serving goes on without it
            _log.exception("the prefix cache failed to keep prompts or answers; it is emptied")
            self.prefix_cache.clear()
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
        logits = row.logits if job.constraint is None else job.constraint.mask(row.logits)
        scores = apply_processors(job.processors, row.sequence[:, :row.length], logits)
        if job.config.samples:
            token = torch.multinomial(scores.softmax(dim=-1), 1, generator=job.generator)[0, 0]
        else:
            token = scores[0].argmax()
        row.sequence[0, row.length] = token
        row.length += 1
        if job.logprobs is not None:
            job.token_logprobs.append(_token_logprob(row.logits[0], int(token), job.logprobs))
        job.tokens.append(int(token))
        job._put(int(token))
        if job.stop.active and bool(job.stop(row.sequence[:, :row.length])[0]):
            job._finish("stop")
            return True
        if job.constraint is not None and job.constraint.push(int(token)):
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
        fused = self._fused_step(group.adapter)
        if fused is not None and len(rows) <= fused.max_rows:
            # right-aligned rows: each one's real columns start after its zeros in the mask
            starts = (group.mask[:, :width] == 0).sum(-1)
            logits = fused(tokens.view(-1), cache, positions.view(-1), starts)
        else:
            with self.activate(group.adapter):
                logits = self.model(tokens, attention_mask=group.mask[:, :width], position_ids=positions,
                                    past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float()
        self.steps += 1
        for row, row_logits in zip(rows, logits.split(1)):
            row.logits = row_logits

    def _fused_step(self, adapter: str | None) -> FusedStep | None:
        """The model's whole step in one call to C with ``adapter`` active, where the model allows it
        (:mod:`fromzero.generation.fused_step`); built once per adapter, again after a between-steps call."""
        if adapter not in self._fused:
            with self.activate(adapter):
                self._fused[adapter] = fused_step_for(self.model)
        return self._fused[adapter]

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


def _call(fn: Callable[[], Any], future: Future) -> None:
    """Run ``fn`` for :meth:`Scheduler.run_between_steps`: its result or error goes to ``future``."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        with torch.inference_mode(False):
            result = fn()
    except Exception as error:  # noqa: BLE001 - handed to the caller, who waits on the future
        future.set_exception(error)
    else:
        future.set_result(result)


def _token_logprob(logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    """``token``'s log-probability under the (V,) raw ``logits``, and the ``top`` most likely tokens'."""
    logprobs = logits.float().log_softmax(dim=-1)
    values, ids = logprobs.topk(top) if top else (logprobs[:0], logprobs[:0].long())
    return TokenLogprob(float(logprobs[token]), list(zip(ids.tolist(), values.tolist())))
