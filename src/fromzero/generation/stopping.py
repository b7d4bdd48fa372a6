"""When does a row stop? When its last token is an end-of-sequence id, or its text shows a stop string.

Stop strings are matched on the decoded text of the *generated* tokens only (never the prompt), so
they work whatever way the tokenizer happened to split them: "\\nUser:" may arrive as one token or
as four. A row is checked after every new token, so the first match is always caught.
"""

from __future__ import annotations

from typing import Protocol

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
