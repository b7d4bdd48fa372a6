"""When does a row stop? When its last token is an end-of-sequence id, or its text shows a stop string.

Stop strings are matched on the decoded text of the *generated* tokens only (never the prompt), so
they work whatever way the tokenizer happened to split them: "\\nUser:" may arrive as one token or
as four. A row is checked after every new token, so the first match is always caught.

:func:`finished_text` is the other side: what a stopped row *reads as* (no eos token, no padding,
nothing from the stop string on), for everything that prints or returns generated text.
"""

from __future__ import annotations

from itertools import takewhile
from typing import Protocol, Sequence

import torch

from fromzero.errors import InputError
from fromzero.generation.config import GenerationConfig


class Decoder(Protocol):
    def decode(self, ids: list[int]) -> str: ...


class StopCondition:
    """Callable: ``(sequences (N, L)) -> bool (N,)``, True where the newest token ends the row."""

    def __init__(self, config: GenerationConfig, prompt_len: int, tokenizer: Decoder | None = None):
        if config.stop_strings and tokenizer is None:
            raise InputError("stop_strings need a tokenizer to read the generated text: "
                             "pass tokenizer=... to generate()")
        self.eos = config.eos_ids
        self.stop_strings = list(config.stop_strings)
        self.prompt_len = prompt_len
        self.tokenizer = tokenizer

    @property
    def active(self) -> bool:
        """False when nothing but the length limit can stop a row (the check can then be skipped)."""
        return bool(self.eos or self.stop_strings)

    def __call__(self, sequences: torch.Tensor) -> torch.Tensor:
        hit = torch.zeros(sequences.size(0), dtype=torch.bool, device=sequences.device)
        if self.eos:
            eos = torch.tensor(self.eos, device=sequences.device)
            hit |= torch.isin(sequences[:, -1], eos)
        if self.stop_strings:
            for row, ids in enumerate(sequences[:, self.prompt_len:].tolist()):
                text = self.tokenizer.decode(ids)
                hit[row] |= any(stop in text for stop in self.stop_strings)
        return hit


def stop_index(text: str, stop_strings: Sequence[str]) -> int | None:
    """Index where the first stop string starts in ``text``, or None."""
    found = [i for i in (text.find(stop) for stop in stop_strings) if i >= 0]
    return min(found) if found else None


def finished_text(tokenizer: Decoder, new_ids: Sequence[int], config: GenerationConfig) -> str:
    """The text of a generated row (its new tokens only): up to its first eos token, which is not
    text, and cut before its first stop string. Padding comes after eos, or after the stop string,
    or is -1 where beam search had no token to pad with; none of it is read."""
    eos = set(config.eos_ids)
    text = tokenizer.decode(list(takewhile(lambda i: i not in eos and i >= 0, new_ids)))
    return text[:stop_index(text, config.stop_strings)]
