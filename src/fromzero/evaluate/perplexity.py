"""How surprised a model is by text it never saw: mean next-token loss, and perplexity = exp(loss).

A language model gives every next token a probability p. Its **loss** on a text is the mean of
``-log p`` over the tokens (nats per token); ``exp(loss)`` is the **perplexity**, the number of
equally likely choices the model is, on average, as unsure as. A model that knows nothing spreads
its probability evenly over the vocabulary, so its perplexity is the vocabulary size; a perfect
one would reach 1. Losses (and perplexities) are only comparable between models that share a
tokenizer, because "per token" means something else for characters and for BPE pieces.

The text is cut into non-overlapping windows of the model's context length, scored in batches;
each window's first tokens are predicted with little context, so this is slightly pessimistic
compared with a sliding window, and many times faster.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from fromzero.errors import InputError


@torch.no_grad()
def text_loss(model: torch.nn.Module, ids: Sequence[int] | np.ndarray, block_size: int | None = None,
              batch_size: int = 16) -> float:
    """Mean next-token cross-entropy (nats per token) of ``model`` over the token ids ``ids``.

    Every token after the first is predicted once, from the tokens before it in its window of
    ``block_size`` (default: the model's context length); every token counts the same.
    """
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    if ids.numel() < 2:
        raise InputError("the text needs at least two tokens to measure a next-token loss")
    block = block_size or model.config.block_size
    device = next(model.parameters()).device
    n_full = (ids.numel() - 1) // block  # windows with a whole block of targets; then a shorter last one
    windows = [(ids[i * block:(i + 1) * block], ids[i * block + 1:(i + 1) * block + 1]) for i in range(n_full)]
    rest = ids[n_full * block:]
    batches = [windows[i:i + batch_size] for i in range(0, n_full, batch_size)]
    if rest.numel() >= 2:
        batches.append([(rest[:-1], rest[1:])])
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            x = torch.stack([x for x, _ in batch]).to(device)
            y = torch.stack([y for _, y in batch]).to(device)
            total += float(model(x, targets=y).loss) * y.numel()
            count += y.numel()
    finally:
        model.train(was_training)
    return total / count


def perplexity(loss: float) -> float:
    """``exp(loss)``: the number of equally likely next tokens the model is as unsure as."""
    return math.exp(loss)
