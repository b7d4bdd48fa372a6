"""How close decoding comes to the machine's limit: the bytes a step reads against the memory bandwidth.

At batch 1 a decoding step does little arithmetic per byte: it multiplies one vector by every weight
matrix and attends over the keys and values cached so far. So its speed limit is not the CPU's
FLOP/s but how fast memory delivers those bytes: tokens/s <= bandwidth / bytes read per token. The
honest utilisation figure for decoding is therefore bytes read per second over the measured read
bandwidth (what MFU is for training, where arithmetic is the limit).

What a step reads: every weight the forward pass multiplies by (in the layout it is stored in:
packed fp32, bf16 or int8 plus its scales), but only one row of the token and position embedding
tables (unless the output layer is tied to the token table: then the whole table is read, as the
head), plus the cached keys and values of the context so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def weight_bytes_per_token(model: nn.Module) -> int:
    """Bytes of parameters and buffers one decoding step reads (embedding tables: a row each)."""
    tables = [module.weight for module in model.modules() if isinstance(module, nn.Embedding)]
    head = getattr(model, "lm_head", None)
    head_weight = getattr(head, "weight", None) if isinstance(head, nn.Linear) else None
    seen, total = set(), 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) in seen:  # a tied weight is one tensor in two places
            continue
        seen.add(id(tensor))
        is_table = any(tensor is table for table in tables)
        if is_table and not (head_weight is not None and head_weight is tensor):
            total += tensor[0].nelement() * tensor.element_size()  # one row looked up per token
        else:
            total += tensor.nelement() * tensor.element_size()
    return total


def cache_bytes_per_token(model: nn.Module, context: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of cached keys and values one step reads with ``context`` tokens cached (one row)."""
    config = model.config
    return 2 * config.n_layer * context * config.n_embd * torch.empty((), dtype=dtype).element_size()


@dataclass
class DecodeReading:
    """One generation's speed and how much of the memory bandwidth it used."""

    new_tokens: int
    seconds: float
    rows: int
    bytes_per_step: float  # weights + the average cached context, all rows
    bandwidth_gb_s: float

    @property
    def tokens_per_second(self) -> float:
        return self.rows * self.new_tokens / self.seconds

    @property
    def read_gb_s(self) -> float:
        return self.new_tokens * self.bytes_per_step / self.seconds / 1e9

    @property
    def utilisation(self) -> float:
        return self.read_gb_s / self.bandwidth_gb_s

    def __str__(self) -> str:
        return (f"{self.rows * self.new_tokens} new tokens in {self.seconds:.2f} s: {self.tokens_per_second:.1f} tokens/s "
                f"(prompt included); each step read {self.bytes_per_step / 1e6:.0f} MB of weights and cache, "
                f"{self.read_gb_s:.1f} GB/s: {self.utilisation:.0%} of the {self.bandwidth_gb_s:.1f} GB/s "
                f"this machine reads right now")


def decode_reading(model: nn.Module, rows: int, prompt_tokens: int, new_tokens: int, seconds: float,
                   bandwidth_gb_s: float) -> DecodeReading:
    """The reading of a generation of ``new_tokens`` after ``prompt_tokens``, ``rows`` at a time."""
    dtype = next(model.parameters()).dtype
    average_context = prompt_tokens + new_tokens / 2
    step = weight_bytes_per_token(model) + rows * cache_bytes_per_token(model, int(average_context), dtype)
    return DecodeReading(new_tokens, seconds, rows, step, bandwidth_gb_s)
