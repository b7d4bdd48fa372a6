"""The KV cache: why generating token 100 does not recompute tokens 1..99.

When a GPT generates, step ``t`` attends from the new token to all earlier ones. The keys and
values of earlier tokens never change (causal attention: a token's K and V depend only on tokens
at or before it), so we compute them once and keep them. Each step then only runs the model on
the new token(s): ``O(T)`` work per step instead of ``O(T^2)``.

:class:`KVCache` preallocates, for every layer, a key and a value buffer of shape
``(batch, n_head, max_len, head_dim)`` and writes each step's keys/values *in place* at
positions ``seq_len .. seq_len + T`` (no ``torch.cat``, no reallocation per step). Attention reads
the views ``buffer[:, :, :seq_len + T]``.

Usage (what :class:`fromzero.models.GPT` does; generation code only calls the model)::

    out = model(prompt_ids, use_cache=True)           # creates a cache, fills positions 0..T-1
    cache = out.past_key_values                       # cache.seq_len == T
    out = model(next_ids, past_key_values=cache)      # appends 1 position; same object, updated
    cache.reorder(beam_index)                          # beam search: keep/duplicate batch rows

The model calls :meth:`update` once per layer and :meth:`advance` once per forward, so
``seq_len`` always counts the positions all layers hold. The cache is mutated in place and the
model returns the same object.
"""

from __future__ import annotations

import torch

from fromzero.errors import InputError
from fromzero.models.context import check_context


class KVCache:
    """Preallocated per-layer key/value buffers for incremental decoding.

    ``seq_len``: positions filled so far (cached tokens, padding included).
    ``max_len``: capacity; defaults to the model's ``block_size``.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        head_dim: int,
        max_len: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (batch_size, n_head, max_len, head_dim)
        # torch.empty: buffers are only touched where positions are written.
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.max_len = max_len
        self.seq_len = 0

    @classmethod
    def for_model(
        cls,
        model: torch.nn.Module,
        batch_size: int,
        max_len: int | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> KVCache:
        """An empty cache shaped for ``model`` (a :class:`fromzero.models.GPT`).

        ``max_len`` (default ``block_size``) bounds prompt + generated tokens; a smaller value
        saves memory. dtype/device default to those of the token embedding (the activations'
        dtype, also when the Linear layers have been quantized).
        """
        config = model.config
        max_len = config.block_size if max_len is None else max_len
        if max_len < 1:
            raise InputError(f"KV cache max_len must be at least 1, got {max_len}")
        check_context(max_len, config.block_size, " for a KV cache (max_len)")
        weight = model.transformer.wte.weight
        return cls(
            config.n_layer,
            batch_size,
            config.n_head,
            config.head_dim,
            max_len,
            dtype=dtype or weight.dtype,
            device=device or weight.device,
        )

    @property
    def batch_size(self) -> int:
        return self.keys[0].size(0)

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``key``/``value`` (batch, n_head, T, head_dim) at ``seq_len``; return views of all positions."""
        start = self.seq_len
        end = start + key.size(-2)
        if end > self.max_len:
            raise InputError(
                f"KV cache is full: {start} cached + {key.size(-2)} new positions > max_len {self.max_len}"
            )
        self.keys[layer][:, :, start:end] = key
        self.values[layer][:, :, start:end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, steps: int) -> None:
        """Mark ``steps`` more positions as filled (called once per forward, after every layer)."""
        self.seq_len += steps

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (LongTensor), in that order; rows may repeat or the batch size change.

        Beam search calls this after each step so every beam continues from its parent's cache.
        """
        index = index.to(self.keys[0].device)
        filled = self.seq_len
        for buffers in (self.keys, self.values):
            for layer, buffer in enumerate(buffers):
                rows = buffer[:, :, :filled].index_select(0, index)
                if index.numel() != buffer.size(0):
                    buffers[layer] = buffer = buffer.new_empty((index.numel(), *buffer.shape[1:]))
                buffer[:, :, :filled] = rows
