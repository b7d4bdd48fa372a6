"""A backend for EleutherAI's lm-evaluation-harness: score fromzero models on its tasks, and on ours.

``lm_eval`` runs hundreds of published benchmarks, and every one of them asks a model only three
kinds of question (its ``LM`` interface):

* ``loglikelihood(context, continuation)``: how likely is the continuation, and is it what greedy
  decoding would write? Multiple-choice tasks compare the choices by it.
* ``loglikelihood_rolling(text)``: the log-likelihood of a whole text, however long; perplexity.
* ``generate_until(context, until=...)``: a greedy answer, cut at the first stop string.

:class:`FromzeroLM` answers them with a fromzero GPT, registered as the model type ``fromzero``::

    import lm_eval
    from fromzero.evaluate.harness import task_manager

    lm_eval.simple_evaluate(model="fromzero", model_args="pretrained=runs/mini,batch_size=8",
                            tasks=["fromzero"], task_manager=task_manager())

``pretrained`` is anything ``fromzero generate --model`` takes (a ``fromzero train`` or ``finetune``
folder, a transformers GPT-2 folder, ``gpt2``); ``adapter=NAME=DIR`` (or ``DIR``) adds a LoRA adapter.
From the shell, ``python -m fromzero.evaluate.harness run --model fromzero ...`` is lm_eval's own
command line with this backend registered and our tasks included (:data:`TASKS_DIR`).

Its numbers are those of lm_eval's Hugging Face backend (``--model hf``) on the same checkpoint,
because every step is done the way that backend does it:

* text to tokens: a context's trailing whitespace moves onto the continuation, and the two are
  encoded together and then split, so the tokens at the boundary are those of the whole text
  (``TemplateLM._encode_pair``, inherited). An empty context, and the first window of a rolling
  text, start from ``<|endoftext|>``, the token GPT-2 saw between documents;
* too long: only the last ``max_length + 1`` tokens are kept (the last one is predicted, not read);
* rolling: lm_eval's own windows (``get_rolling_token_windows`` then ``make_disjoint_window``), so
  every token is predicted exactly once, each window reading as much context as fits;
* generation: greedy; the prompt keeps its last ``max_length - max_gen_toks`` tokens so the new
  ones fit, and the answer is cut before its first stop string (``until``) or end-of-text.

Requests are sorted longest first (lm_eval's ``Collator``), so a batch's first row sets its width
and rows of similar length are padded together. Scoring pads on the right: in a causal model no
real position sees what comes after it. Generation pads on the left, so every row's next token
comes right after its prompt. Only the scored positions go through the output layer (``GPT``'s
``logits_to_keep`` mask): with GPT-2's 50,257 tokens it is the largest matrix product, and a
multiple-choice context is read but never scored. Log-probabilities are taken in float32.

Needs ``lm_eval`` (``pip install lm_eval``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval import utils as lm_utils
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import Collator, handle_stop_sequences, normalize_gen_kwargs
from lm_eval.tasks import TaskManager
from tqdm import tqdm

from fromzero.devices import resolve_device
from fromzero.errors import InputError, MissingFileError
from fromzero.finetune.tuned import NO_TEMPLATE, TunedModel, load_tuned, parse_adapter_specs
from fromzero.generation import GenerationConfig, generate
from fromzero.generation.generate import eval_mode
from fromzero.generation.stopping import finished_text
from fromzero.tokenizers.base import EOT

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
"""The ``fromzero_*`` task YAMLs (tagged ``fromzero``): give it to ``lm_eval --include_path``."""

# lm_eval's default when a task sets no max_gen_toks (its Hugging Face backend's too).
DEFAULT_MAX_GEN_TOKS = 256
MODEL_ARGS = ("pretrained", "adapter", "device", "batch_size", "max_length")
# The generation settings a task may pass; the backend itself sets the rest.
GENERATION_SETTINGS = {field.name for field in dataclasses.fields(GenerationConfig)} - {
    "max_new_tokens", "stop_strings", "eos_token_id", "pad_token_id", "num_return_sequences"}

# A scoring request as TemplateLM hands it on: its two strings (None for a rolling window), then the
# context's ids and the continuation's ids.
Request = tuple[tuple[str, str] | None, list[int], list[int]]


def task_manager(include_defaults: bool = True, metadata: dict[str, Any] | None = None) -> TaskManager:
    """A TaskManager that knows the ``fromzero_*`` tasks; ``include_defaults=False`` leaves out
    lm_eval's own hundreds, which it otherwise indexes first (a few seconds)."""
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=include_defaults, metadata=metadata)


@register_model("fromzero")
class FromzeroLM(TemplateLM):
    """lm_eval's ``LM`` for a fromzero model; see the module docstring for what each method does.

    ``pretrained`` is a folder or hub name (loaded with :func:`~fromzero.finetune.tuned.load_tuned`,
    with ``adapter``), or a :class:`~fromzero.finetune.tuned.TunedModel` already loaded, which is moved
    to ``device`` if one is given. ``max_length`` (default: the model's context, ``block_size``) is the
    most tokens one forward pass reads.
    """

    def __init__(self, pretrained: str | TunedModel, adapter: str | None = None, device: str | None = None,
                 batch_size: int | str = 1, max_length: int | str | None = None) -> None:
        super().__init__()
        if isinstance(pretrained, TunedModel):
            if adapter is not None:
                raise InputError("adapter= needs pretrained=DIR; load a model with its adapters with "
                                 "fromzero.finetune.tuned.load_tuned(spec, adapters=...)")
            self.tuned = pretrained
            if device is not None:
                self.tuned.model.to(resolve_device(device))
        else:
            self.tuned = load_model(str(pretrained), adapter, resolve_device(device or "auto"))
        self.model = self.tuned.model
        self.tokenizer = self.tuned.tokenizer
        self._device = next(self.model.parameters()).device
        self._batch_size = positive_int("batch_size", batch_size)
        context = self.model.config.block_size
        self._max_length = context if max_length is None else positive_int("max_length", max_length)
        if self._max_length > context:
            raise InputError(f"max_length={self._max_length} is longer than the model's context of {context} tokens")

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None
                            ) -> FromzeroLM:
        """What ``simple_evaluate(model="fromzero", model_args={...})`` calls; a misspelt argument is named.

        ``additional_config`` holds simple_evaluate's own ``batch_size`` and ``device`` (lm_eval's
        ``--batch_size``, ``--device``); ``model_args`` win, since the command line always sends a device.
        """
        given = {key: value for key, value in (additional_config or {}).items() if value is not None}
        args = {**given, **arg_dict}
        unknown = sorted(set(args) - set(MODEL_ARGS))
        if unknown:
            raise InputError(f"unknown model_args {', '.join(unknown)} for the fromzero model; "
                             f"it takes {', '.join(MODEL_ARGS)}")
        return cls(**args)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict[str, Any] | None = None
                               ) -> FromzeroLM:
        """What ``model_args="pretrained=DIR,batch_size=8"`` becomes."""
        return cls.create_from_arg_obj(lm_utils.simple_parse_args_string(arg_string), additional_config)

    @property
    def eot_token_id(self) -> int:
        """``<|endoftext|>``: what an empty context and a rolling text start from (lm_eval's prefix token)."""
        if self.tokenizer.eot_id is None:
            raise InputError(f"lm_eval starts empty contexts and rolling (perplexity) texts from {EOT}, which the "
                             f"model's {self.tokenizer.kind} tokenizer lacks: use a model with a BPE tokenizer")
        return self.tokenizer.eot_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return DEFAULT_MAX_GEN_TOKS

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Our tokenizer's ids. It adds no special tokens, as GPT-2's never does; text that spells one
        (``<|endoftext|>``) is refused, as everywhere in fromzero, where Hugging Face's would read the token."""
        return self.tokenizer.encode(string)

    # ------------------------------------------------------------------ scoring
    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False
                              ) -> list[tuple[float, bool]]:
        """``(log-likelihood, is greedy)`` of each continuation after its context, in the order given."""
        order = Collator(requests, sort_fn=lambda request: (-len(request[1]) - len(request[2]),
                                                            tuple(request[1] + request[2])))
        results = []
        with tqdm(total=len(requests), disable=disable_tqdm, desc="fromzero loglikelihood") as bar:
            for chunk in order.get_batched(n=self.batch_size):
                scores = self._score_batch([(context, continuation) for _, context, continuation in chunk])
                for (strings, _, _), answer in zip(chunk, scores):
                    if strings is not None:  # a rolling window is cached as its whole text, by the caller
                        self.cache_hook.add_partial("loglikelihood", strings, answer)
                results.extend(scores)
                bar.update(len(chunk))
        return order.get_original(results)

    def _score_batch(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """One forward pass over right-padded rows; only the continuation positions get logits."""
        rows = []
        for context, continuation in pairs:
            if len(continuation) > self.max_length:
                raise InputError(f"a continuation of {len(continuation)} tokens is longer than max_length "
                                 f"{self.max_length}: it cannot be scored in one pass")
            rows.append((context + continuation)[-(self.max_length + 1):-1])  # the last token is only predicted
        ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        scored = torch.zeros_like(ids, dtype=torch.bool)
        for i, (row, (_, continuation)) in enumerate(zip(rows, pairs)):
            ids[i, :len(row)] = torch.tensor(row)
            scored[i, len(row) - len(continuation):len(row)] = True  # these positions predict the continuation
        targets = torch.tensor([token for _, continuation in pairs for token in continuation], device=self.device)
        with torch.inference_mode(), eval_mode(self.model):
            logits = self.model(ids.to(self.device), logits_to_keep=scored.to(self.device)).logits  # (N, V)
        logprobs = F.log_softmax(logits, dim=-1, dtype=torch.float32)
        token_scores = logprobs.gather(1, targets[:, None]).squeeze(1)
        greedy = logprobs.argmax(dim=-1) == targets
        lengths = [len(continuation) for _, continuation in pairs]
        return [(float(score.sum()), bool(hits.all()))
                for score, hits in zip(token_scores.split(lengths), greedy.split(lengths))]

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        """The log-likelihood of each whole text: the sum over lm_eval's disjoint windows of it."""
        windows: list[Request] = []
        owners = []
        for index, (text,) in enumerate(request.args for request in requests):
            for context, continuation in map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(text), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, context, continuation))
                owners.append(index)
        totals = [0.0] * len(requests)
        for index, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows, disable_tqdm)):
            totals[index] += logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Each request's answer, batched with the requests that share its generation settings."""
        order = Collator([request.args for request in requests],
                         sort_fn=lambda args: (-len(self.tok_encode(args[0])), args[0]),
                         group_by="gen_kwargs", group_fn=lambda args: args[1])
        answers = []
        with tqdm(total=len(requests), disable=disable_tqdm, desc="fromzero generate_until") as bar:
            for chunk in order.get_batched(n=self.batch_size):
                contexts, settings = zip(*chunk)
                texts = self._generate_batch(list(contexts), self._generation_config(settings[0]))
                for context, gen_kwargs, text in zip(contexts, settings, texts):
                    self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
                answers.extend(texts)
                bar.update(len(chunk))
        return order.get_original(answers)

    def _generation_config(self, gen_kwargs: dict[str, Any]) -> GenerationConfig:
        """A task's ``generation_kwargs`` as our settings: ``until`` (plus end-of-text) stops, ``max_gen_toks``
        bounds the answer, and anything else must be a :class:`GenerationConfig` field (``do_sample`` ...)."""
        settings = dict(normalize_gen_kwargs(gen_kwargs, self.max_gen_toks))
        eot = self.tokenizer.eot_id
        until = handle_stop_sequences(settings.pop("until"), eos=None if eot is None else EOT)
        max_new_tokens = settings.pop("max_gen_toks")
        unknown = sorted(set(settings) - GENERATION_SETTINGS)
        if unknown:
            raise InputError(f"unknown generation_kwargs {', '.join(unknown)} for the fromzero model; "
                             f"it takes until, max_gen_toks, {', '.join(sorted(GENERATION_SETTINGS))}")
        return GenerationConfig(max_new_tokens=max_new_tokens, stop_strings=[stop for stop in until if stop],
                                eos_token_id=eot, **settings).validate()

    def _generate_batch(self, contexts: list[str], config: GenerationConfig) -> list[str]:
        """Left-padded prompts, each its last tokens that leave room for the answer, continued together."""
        room = self.max_length - config.max_new_tokens
        if room < 1:
            raise InputError(f"max_gen_toks={config.max_new_tokens} leaves no room for a prompt in max_length "
                             f"{self.max_length}: ask for fewer new tokens (gen_kwargs max_gen_toks=N)")
        prompts = [self.tok_encode(context)[-room:] or [self.prefix_token_id] for context in contexts]
        width = max(map(len, prompts))
        ids = torch.zeros(len(prompts), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, prompt in enumerate(prompts):
            ids[i, width - len(prompt):] = torch.tensor(prompt)
            mask[i, width - len(prompt):] = 1
        out = generate(self.model, ids.to(self.device), config, mask.to(self.device), tokenizer=self.tokenizer)
        return [finished_text(self.tokenizer, row[width:], config) for row in out.tolist()]


def load_model(pretrained: str, adapter: str | None, device: str) -> TunedModel:
    """The model of ``pretrained`` with ``adapter`` on it; the tasks' text goes to it as it is (no template)."""
    try:
        return load_tuned(pretrained, parse_adapter_specs([adapter] if adapter else []), template=NO_TEMPLATE,
                          device=device)
    except MissingFileError as error:  # a model_args mistake: one line, as every other one
        raise InputError(str(error)) from None


def positive_int(name: str, value: int | str) -> int:
    """``value`` (lm_eval's command line gives strings) as an integer >= 1, else a clear error."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) >= 1:
        return int(value)
    raise InputError(f"{name} must be a whole number >= 1, got {value!r}"
                     + (" (the fromzero model does not search for a batch size)" if name == "batch_size" else ""))


if __name__ == "__main__":  # lm_eval's command line, with this backend registered and our tasks included
    import sys

    from lm_eval.__main__ import cli_evaluate

    if "--include_path" not in sys.argv:
        sys.argv += ["--include_path", str(TASKS_DIR)]
    cli_evaluate()
