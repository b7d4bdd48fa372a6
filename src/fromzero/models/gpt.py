"""A GPT (decoder-only Transformer) that runs a 0.1M toy and the real GPT-2 weights alike.

Architecture (GPT-2)::

    input_ids (B, T)
      -> token embedding + positional encoding -> dropout
      -> n_layer x pre-LN Block (attention + feed-forward, residual)      see fromzero.nn
      -> final LayerNorm (ln_f) -> lm_head (tied to the token embedding) -> logits (B, T, V)

Parameter names match Hugging Face's ``GPT2LMHeadModel`` (``transformer.h.0.attn.c_attn.weight``
...), except that we use ``nn.Linear`` where GPT-2 used a transposed ``Conv1D``;
:mod:`fromzero.models.pretrained` transposes when loading and saving.

Forward contract (relied on by generation and training)::

    out = model(input_ids, targets=None, *, attention_mask=None, position_ids=None,
                past_key_values=None, use_cache=False, output_attentions=False)

* ``out.logits`` (B, T, V): next-token scores at every position.
* ``out.loss``: mean cross-entropy of ``logits`` against ``targets`` (B, T), or None. ``targets``
  are already shifted: ``targets[b, t]`` is the token that should follow ``input_ids[b, t]``
  (nanoGPT's convention, not transformers' ``labels``). Positions with -100 are ignored.
* ``attention_mask`` (B, T_past + T): 1 = real token, 0 = padding, covering cached *and* new
  positions, exactly like transformers. Padding goes on the left for generation. Padded keys are
  never attended to; a padded query row attends to itself only, so it stays finite (no NaN) —
  its logits are meaningless and should be ignored.
* ``position_ids`` (B, T): explicit positions. When None and ``attention_mask`` is given, positions
  are derived from the mask the way transformers' ``generate`` does (``cumsum(mask) - 1``, clamped
  at 0), so each row's first real token is position 0 whatever its padding; note that a plain
  transformers forward does *not* do this (it uses 0..T-1), so to compare with one directly,
  pass the same ``position_ids`` to both. Without a mask positions are ``T_past .. T_past+T-1``.
* ``past_key_values``: a :class:`~fromzero.models.kv_cache.KVCache` holding earlier positions, or
  None. With ``use_cache=True`` and no cache, a new one (capacity ``block_size``) is created. The
  cache is updated in place and returned as ``out.past_key_values`` (``seq_len`` counts its
  positions; ``reorder(index)`` selects batch rows for beam search). To bound memory, make one
  with ``KVCache.for_model(model, batch_size, max_len)`` and pass it on the first call.
* ``output_attentions=True``: ``out.attentions`` is a tuple with one (B, n_head, T, T_past + T)
  weight tensor per layer (the explicit attention path; slower).
* ``logits_to_keep=k`` (optional extra, default 0 = all): compute logits for the last ``k``
  positions only, so ``out.logits`` is (B, k, V). Generation's prefill needs just the last one,
  and the output layer is the largest matmul (V x n_embd per position). A bool tensor (B, T)
  instead keeps the positions where it is True, and ``out.logits`` is (N, V), N of them in row
  order: fine-tuning scores only the answer tokens and skips the prompt's. Not with ``targets``.
* Context: ``T_past + T`` must be at most ``block_size``; otherwise :class:`InputError` (crop to
  the last ``block_size`` tokens yourself). The whole policy is in :mod:`fromzero.models.context`.
* Every rule above is checked in one place, :meth:`GPT._check_inputs`, before any work is done.

Fast paths: with no mask and no cache, attention uses SDPA's ``is_causal`` kernel (training);
a one-token decoding step without padding needs no mask at all.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fromzero.errors import InputError
from fromzero.models.config import GPTConfig
from fromzero.models.context import check_context
from fromzero.models.kv_cache import KVCache
from fromzero.models.pretrained import load_pretrained, save_pretrained
from fromzero.nn import Block, LearnedPositionalEmbedding, SinusoidalPositionalEncoding, TokenEmbedding, causal_mask


@dataclass
class GPTOutput:
    """What :meth:`GPT.forward` returns; see the module docstring for each field."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    past_key_values: KVCache | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class GPT(nn.Module):
    """GPT-2-style language model built from :mod:`fromzero.nn` blocks."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        if config.pos_encoding == "learned":
            positions: nn.Module = LearnedPositionalEmbedding(config.block_size, config.n_embd)
        else:
            positions = SinusoidalPositionalEncoding(config.n_embd)
        self.transformer = nn.ModuleDict(
            dict(
                wte=TokenEmbedding(config.vocab_size, config.n_embd),
                wpe=positions,
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(
                    Block(
                        config.n_embd,
                        config.n_head,
                        n_inner=config.n_inner,
                        activation=config.activation,
                        bias=config.bias,
                        dropout=config.dropout,
                        layer_norm_epsilon=config.layer_norm_epsilon,
                        layer_idx=i,
                    )
                    for i in range(config.n_layer)
                ),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.tie_weights()
        self.apply(self._init_weights)
        # GPT-2: each residual branch ends in a c_proj; scaling their init by 1/sqrt(2 * n_layer)
        # keeps the residual stream's variance from growing with depth (2 branches per block).
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=config.initializer_range / math.sqrt(2 * config.n_layer))

    def tie_weights(self) -> None:
        """Share the token embedding with the output layer when ``config.tie_weights`` (GPT-2 does)."""
        if self.config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 initialisation: weights ~ N(0, 0.02), biases 0 (LayerNorms keep 1 and 0)."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)

    def num_params(self, embeddings: bool = True) -> int:
        """Number of parameters (a tied matrix counts once).

        ``embeddings=False`` leaves out the token and learned position embeddings, the count
        scaling laws use; an untied ``lm_head`` is still counted.
        """
        total = sum(p.numel() for p in self.parameters())
        if not embeddings:
            total -= sum(p.numel() for p in self.transformer.wte.parameters())
            total -= sum(p.numel() for p in self.transformer.wpe.parameters())
        return total

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        logits_to_keep: int | torch.Tensor = 0,
    ) -> GPTOutput:
        """Next-token logits for ``input_ids`` (B, T); see the module docstring for the contract."""
        self._check_inputs(input_ids, targets, attention_mask, position_ids, past_key_values, logits_to_keep)
        steps = input_ids.size(1)
        cache = past_key_values
        if cache is None and use_cache:
            cache = KVCache.for_model(self, input_ids.size(0))
        past = 0 if cache is None else cache.seq_len
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # nothing is padded: take the mask-free fast path
        position_ids = self._positions(position_ids, attention_mask, steps, past, input_ids.device)

        try:
            tokens = self.transformer.wte(input_ids)
        except IndexError:
            raise InputError(f"input_ids must lie in 0..{self.config.vocab_size - 1} (vocab_size)") from None
        x = self.transformer.drop(tokens + self.transformer.wpe(position_ids).to(tokens.dtype))

        mask, is_causal = self._attention_mask(attention_mask, steps, past, input_ids.device)
        attentions = []
        for block in self.transformer.h:
            x, weights = block(x, mask=mask, is_causal=is_causal, cache=cache, need_weights=output_attentions)
            if output_attentions:
                attentions.append(weights)
        if cache is not None:
            cache.advance(steps)
        if isinstance(logits_to_keep, torch.Tensor):
            x = x[logits_to_keep]
        elif logits_to_keep:
            x = x[:, -logits_to_keep:]
        logits = self.lm_head(self.transformer.ln_f(x))

        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return GPTOutput(logits, loss, cache, tuple(attentions) if output_attentions else None)

    def _check_inputs(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        cache: KVCache | None,
        logits_to_keep: int | torch.Tensor,
    ) -> None:
        """Raise :class:`InputError` for any input that breaks the forward contract (module docstring).

        Token ids outside the vocabulary are caught by the embedding lookup itself, for free.
        """
        if input_ids.dim() != 2:
            raise InputError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        batch, steps = input_ids.shape
        past = 0 if cache is None else cache.seq_len
        check_context(past + steps, self.config.block_size, f" ({past} cached + {steps} new)")
        if cache is not None and cache.batch_size != batch:
            raise InputError(f"KV cache holds {cache.batch_size} rows but input_ids has {batch}")
        if attention_mask is not None and tuple(attention_mask.shape) != (batch, past + steps):
            raise InputError(
                f"attention_mask must have shape (batch, cached + new) = ({batch}, {past + steps}), "
                f"got {tuple(attention_mask.shape)}"
            )
        if position_ids is not None:
            if position_ids.shape[-1] != steps or position_ids.dim() > 2:
                raise InputError(f"position_ids must have shape (batch, {steps}), got {tuple(position_ids.shape)}")
            if self.config.pos_encoding == "learned" and (
                bool((position_ids < 0).any()) or bool((position_ids >= self.config.block_size).any())
            ):
                raise InputError(f"position_ids must lie in 0..{self.config.block_size - 1} (block_size)")
        if isinstance(logits_to_keep, torch.Tensor) and (
            logits_to_keep.dtype != torch.bool or logits_to_keep.shape != input_ids.shape
        ):
            raise InputError(f"logits_to_keep as a tensor must be bool with the shape of input_ids "
                             f"{tuple(input_ids.shape)}, got {logits_to_keep.dtype} {tuple(logits_to_keep.shape)}")
        if targets is not None:
            if isinstance(logits_to_keep, torch.Tensor) or logits_to_keep:
                raise InputError("logits_to_keep cannot be combined with targets: the loss needs every position")
            if targets.shape != input_ids.shape:
                raise InputError(f"targets must have the shape of input_ids {tuple(input_ids.shape)}, "
                                 f"got {tuple(targets.shape)}")

    @staticmethod
    def _positions(
        position_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        steps: int,
        past: int,
        device: torch.device,
    ) -> torch.Tensor:
        """Position of every new token: given, derived from the padding mask, or past..past+T-1."""
        if position_ids is not None:
            return position_ids
        if attention_mask is None:
            return torch.arange(past, past + steps, device=device)
        # Count real tokens: each row's first real token gets position 0 (like HF generate).
        return (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)[:, past:]

    @staticmethod
    def _attention_mask(
        attention_mask: torch.Tensor | None, steps: int, past: int, device: torch.device
    ) -> tuple[torch.Tensor | None, bool]:
        """Boolean (B, 1, T, T_past+T) mask (True = may attend) and whether SDPA may use ``is_causal``."""
        if attention_mask is None:
            if past == 0:
                return None, steps > 1  # plain causal attention: SDPA's fused kernel
            if steps == 1:
                return None, False  # one new token may see every cached one
            return causal_mask(steps, past + steps, device=device), False
        total = past + steps
        allowed = causal_mask(steps, total, device=device) & attention_mask.bool()[:, None, None, :]
        # A padding query has no real token at or before it; letting it see itself keeps the
        # softmax finite. Its output is never used.
        own_position = torch.arange(total, device=device) == torch.arange(past, total, device=device)[:, None]
        return allowed | own_position, False

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | os.PathLike,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        dropout: float | None = None,
    ) -> GPT:
        """Load a GPT-2-family checkpoint: a directory, or a Hugging Face hub name such as ``gpt2``.

        See :func:`fromzero.models.pretrained.load_pretrained`.
        """
        return load_pretrained(cls, name_or_dir, dtype=dtype, device=device, dropout=dropout)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write config.json + model.safetensors in Hugging Face GPT-2 format (atomically).

        See :func:`fromzero.models.pretrained.save_pretrained`.
        """
        save_pretrained(self, directory)
