"""Decoding an encoder–decoder: the same greedy, sampling and beam search as for a GPT.

A GPT continues its prompt; a translation model starts every output from a lone BOS token and
reads the source through cross-attention. Only the *prefill* differs: the source is encoded once
(``model.start_decoding``), and from then on each step feeds the newest target token and gets the
next-token scores, exactly the ``step``/``select`` interface that :mod:`~fromzero.generation.sampling`
and :mod:`~fromzero.generation.beam_search` drive (:class:`~fromzero.generation.engine.StepDecoder`).
So every decoding setting of :class:`GenerationConfig` (beams, length penalty, sampling, repetition
penalties) means here what it means for a GPT, and no strategy exists twice.
"""

from __future__ import annotations

from typing import Protocol

import torch

from fromzero.errors import InputError
from fromzero.generation.config import GenerationConfig
from fromzero.generation.engine import StepDecoder
from fromzero.generation.generate import copies_for_sampling, decode, eval_mode, sampling_generator
from fromzero.generation.stopping import StopCondition
from fromzero.machine import threads


class EncoderDecoder(Protocol):
    """A model that can encode a source batch and decode from it step by step."""

    config: object  # with block_size (the longest target) and tgt_vocab_size

    def start_decoding(self, src: torch.Tensor, max_len: int) -> StepDecoder: ...


class _FromBOS:
    """The encoded source as a :class:`StepDecoder`, threads following the free cores like a GPT's decoding."""

    def __init__(self, decoding: StepDecoder):
        self.decoding = decoding

    def step(self, tokens: torch.Tensor, sequences: torch.Tensor | None = None) -> torch.Tensor:
        threads.follow()
        return self.decoding.step(tokens)

    def select(self, rows: torch.Tensor) -> None:
        self.decoding.select(rows)


def generate_from_source(model: EncoderDecoder, src: torch.Tensor, config: GenerationConfig, *, bos_id: int
                         ) -> torch.Tensor:
    """Target ids for each source row of ``src`` (B, S), right-padded with the model's pad id.

    Returns (B * num_return_sequences, 1 + new) ids starting with ``bos_id``; ``config.eos_token_id``
    ends a row (set it: without it every row runs to ``max_new_tokens``).
    """
    config = config.validate()
    if not isinstance(src, torch.Tensor) or src.dim() != 2 or src.numel() == 0:
        raise InputError(f"src must be a (batch, length) tensor of token ids, got "
                         f"{tuple(src.shape) if isinstance(src, torch.Tensor) else type(src).__name__}")
    longest = model.config.block_size
    if config.max_new_tokens + 1 > longest:
        raise InputError(f"max_new_tokens {config.max_new_tokens} + the BOS token is more than the model's "
                         f"longest target ({longest} tokens): lower max_new_tokens")
    with torch.inference_mode(), eval_mode(model), threads.following(src.device):
        decoder = _FromBOS(model.start_decoding(src, config.max_new_tokens + 1))
        prompt = src.new_full((src.size(0), 1), bos_id)
        logits, prompt = copies_for_sampling(decoder, decoder.step(prompt[:, 0]), prompt, config)
        stop = StopCondition(config, 1)
        result = decode(decoder, logits, prompt, config, stop, sampling_generator(config, src.device))
    return result.clone()
