"""The KV-cache engine: run the prompt through the model once, then feed one new token per step.

Without a cache every step would re-run the whole sequence, so producing n tokens would cost
O(n^2) work; with it, the keys and values of past tokens are kept and each step only computes the
newest position. The engine also carries the bookkeeping that left-padded batches need: the
attention mask grows by one column per step (new tokens are always real), and each row's position
ids count only its real tokens, so a padded prompt is numbered exactly as the unpadded one.

A model only knows ``block_size`` positions. To go on writing past that (a character model with
a 128-token context would otherwise stop after a sentence), the engine slides its window, as
nanoGPT's sampler does: when the cache is full it drops the oldest quarter of the window and runs
the remaining tokens through the model again, then goes on one token per step.
"""

from __future__ import annotations

from typing import Protocol

import torch

from fromzero.generation.fused_step import fused_step_for
from fromzero.machine import threads
from fromzero.models import KVCache


class StepDecoder(Protocol):
    """What the decoding strategies drive: :class:`CachedDecoder` for a GPT, the decoding of an
    encoded source for an encoder–decoder (:mod:`fromzero.generation.seq2seq`)."""

    def step(self, tokens: torch.Tensor, sequences: torch.Tensor | None = None) -> torch.Tensor:
        """Append ``tokens`` (rows,); return the next-token logits (rows, V)."""
        ...

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and repeat) the given rows."""
        ...


class CachedDecoder:
    """Feeds a GPT-style model step by step; every call returns next-token logits of shape (rows, V).

    ``attention_mask`` (B, T) marks real tokens with 1 and left padding with 0. When there is no
    padding the model is given no mask at all, so it can use its plain causal fast path.
    """

    def __init__(self, model: torch.nn.Module, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None, max_new_tokens: int):
        self.model = model
        self.input_ids = input_ids
        rows, prompt_len = input_ids.shape
        self.length = prompt_len
        self.padded = attention_mask is not None and not bool(attention_mask.all())
        # the cache and the mask are allocated once, at their final size: a step writes one
        # more position into each instead of growing them
        self.capacity = min(prompt_len + max_new_tokens, model.config.block_size)
        self.cache = KVCache.for_model(model, rows, self.capacity)
        self.mask = torch.ones(rows, self.capacity, dtype=torch.long, device=input_ids.device)
        if self.padded:
            self.mask[:, :prompt_len] = attention_mask
        # a step is one call to C where the model allows; padding must then be on the left, where each
        # row's real tokens start at a column of their own
        self.fused = fused_step_for(model)
        self.starts = None
        if self.padded and self.fused is not None:
            self.starts = (attention_mask == 0).sum(-1)
            left = torch.arange(prompt_len, device=input_ids.device) >= self.starts[:, None]
            if not torch.equal(attention_mask.bool(), left):
                self.fused = None

    def prefill(self) -> torch.Tensor:
        """Run the prompt; return the logits for the first new token."""
        mask = self.mask[:, :self.length]
        # a row's first real token is position 0 (padding gets a dummy position; it is masked)
        positions = (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 1)
        self.next_position = mask.sum(-1, keepdim=True)
        return self._forward(self.input_ids, positions)

    def step(self, tokens: torch.Tensor, sequences: torch.Tensor | None = None) -> torch.Tensor:
        """Append ``tokens`` (rows,) to every row; return the logits for the token after them.

        ``sequences`` (rows, length), the text so far ending with ``tokens``, is needed only when
        the window is full and must slide (unpadded greedy or sampling; see the module docstring).
        """
        if self.length == self.capacity:
            return self._slide(sequences)
        self.length += 1
        positions = self.next_position
        self.next_position = positions + 1
        if self.fused is not None and tokens.numel() <= self.fused.max_rows:
            threads.follow()
            if self.padded:
                return self.fused(tokens, self.cache, positions.view(-1), self.starts)
            return self.fused(tokens, self.cache)
        return self._forward(tokens.unsqueeze(1), positions)

    def _slide(self, sequences: torch.Tensor | None) -> torch.Tensor:
        if sequences is None or self.padded:
            raise RuntimeError("the context window is full; only unpadded greedy/sampling may slide it")
        keep = self.capacity - self.capacity // 4
        self.cache.seq_len = 0  # forget every position; the kept tokens are re-encoded from 0
        self.length = keep
        return self._forward(sequences[:, -keep:], None)

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and repeat) the given rows: beams that survive, or copies of a prompt."""
        self.cache.reorder(rows)
        self.mask = self.mask.index_select(0, rows)
        if self.starts is not None:
            self.starts = self.starts.index_select(0, rows)
        self.next_position = self.next_position.index_select(0, rows)

    @torch.no_grad()  # also when called from a streaming generator, outside generate's inference mode
    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        threads.follow()  # as many threads as free cores (inside threads.following()): see fromzero.machine
        # without padding the model's own defaults (no mask, positions past..past+T-1) are the
        # right ones and let it take its fastest path
        output = self.model(
            input_ids,
            attention_mask=self.mask[:, :self.length] if self.padded else None,
            position_ids=positions if self.padded else None,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,  # only the last position's scores are used: skip the rest of the output layer
        )
        return output.logits[:, -1, :].float()
