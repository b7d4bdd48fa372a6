"""Greedy decoding and sampling: pick one next token per row, append it, repeat.

Greedy takes the most likely token (after penalties); sampling draws from the softmax of the
processed scores. Everything else is shared: rows that finish (eos or stop string) are padded with
the fill token while the others go on, and the loop ends early once every row has finished.
"""

from __future__ import annotations

from typing import Iterator

import torch

from fromzero.generation.config import GenerationConfig
from fromzero.generation.engine import StepDecoder
from fromzero.generation.processors import Processor, apply_processors
from fromzero.generation.stopping import StopCondition


def sample_steps(decoder: StepDecoder, logits: torch.Tensor, prompt: torch.Tensor,
                 config: GenerationConfig, processors: list[Processor], stop: StopCondition,
                 generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Continue ``prompt`` (rows, T) from the first next-token ``logits``.

    Yields the sequences so far (prompt + new tokens, a view) after every new token, so callers can
    stream; the last one yielded is the result.
    """
    rows, prompt_len = prompt.shape
    fill = config.fill_id
    sequences = prompt.new_full((rows, prompt_len + config.max_new_tokens), fill if fill is not None else 0)
    sequences[:, :prompt_len] = prompt
    unfinished = torch.ones(rows, dtype=torch.bool, device=prompt.device)
    length = prompt_len
    while True:
        scores = apply_processors(processors, sequences[:, :length], logits)
        if config.samples:
            tokens = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
        else:
            tokens = scores.argmax(dim=-1)
        if stop.active and fill is not None:
            tokens = tokens.masked_fill(~unfinished, fill)
        sequences[:, length] = tokens
        length += 1
        yield sequences[:, :length]
        if stop.active:
            unfinished &= ~stop(sequences[:, :length])
            if not unfinished.any():
                break
        if length == sequences.size(1):
            break
        logits = decoder.step(tokens, sequences[:, :length])
