"""How surprised a model is by text it never saw: loss, perplexity, and bits per byte.

A language model gives every next token a probability p. Its **loss** on a text is the mean of
``-log p`` over the tokens (nats per token); ``exp(loss)`` is the **perplexity**, the number of
equally likely choices the model is, on average, as unsure as. A model that knows nothing spreads
its probability evenly over the vocabulary, so its perplexity is the vocabulary size; a perfect
one would reach 1.

"Per token" means something else for characters, words and BPE pieces, so losses are only
comparable between models that share a tokenizer. **Bits per byte** is comparable across all of
them: the total surprise of the text in bits (``sum(-log p) / ln 2``), divided by the text's
length in UTF-8 bytes. Bits per character divides by characters instead.

A text longer than the model's context is scored with a **sliding window** (the recipe in the
transformers perplexity guide): windows of the context length, each starting ``stride`` tokens
after the last; each window scores only the tokens the windows before it did not, so every
token after the first is scored exactly once, from up to ``block - stride`` tokens of context
before the window's new part. A smaller stride gives more context (a lower, fairer loss) and
costs more windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fromzero.errors import InputError


@dataclass(frozen=True)
class Window:
    """Tokens ``begin:end`` go into the model; the predictions of tokens ``first:end`` are scored."""

    begin: int
    end: int
    first: int


def sliding_windows(n_tokens: int, block: int, stride: int) -> list[Window]:
    """The windows that score tokens ``1..n_tokens-1`` once each (token 0 is only ever context)."""
    if n_tokens < 2:
        raise InputError("the text needs at least two tokens to measure a next-token loss")
    if not 1 <= stride < block:
        raise InputError(f"the stride must be between 1 and {block - 1} (the context length - 1), got {stride}")
    windows, scored_until, begin = [], 1, 0
    while scored_until < n_tokens:
        end = min(begin + block, n_tokens)
        windows.append(Window(begin, end, scored_until))
        scored_until, begin = end, begin + stride
    return windows


@torch.no_grad()
def token_nll(model: torch.nn.Module, ids: Sequence[int] | np.ndarray, stride: int | None = None,
              batch_size: int = 8, block_size: int | None = None,
              on_window: Callable[[int, int], None] | None = None) -> tuple[float, int]:
    """Summed next-token loss (nats) of ``model`` over ``ids[1:]``, and how many tokens that is.

    Windows are ``block_size`` long (default: the model's context) and ``stride`` apart (default:
    half the context). Full windows go through the model in batches of ``batch_size``; logits are
    computed only where a token is scored, the costliest layer of a model with a large vocabulary.
    ``on_window(done, total)`` reports progress.
    """
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    block = block_size or model.config.block_size
    windows = sliding_windows(ids.numel(), block, stride or max(1, block // 2))
    groups: list[list[Window]] = []
    for window in windows:  # consecutive windows of one length share a batch
        if groups and len(groups[-1]) < batch_size and groups[-1][0].end - groups[-1][0].begin == window.end - window.begin:
            groups[-1].append(window)
        else:
            groups.append([window])
    device = next(model.parameters()).device
    was_training, total, count, done = model.training, 0.0, 0, 0
    model.eval()
    try:
        for group in groups:
            x = torch.stack([ids[w.begin:w.end] for w in group]).to(device)
            keep = torch.zeros_like(x, dtype=torch.bool)
            for row, w in enumerate(group):  # the logits at position t predict token t + 1
                keep[row, w.first - w.begin - 1:w.end - w.begin - 1] = True
            targets = torch.cat([ids[w.first:w.end] for w in group]).to(device)
            logits = model(x, logits_to_keep=keep).logits.float()
            total += float(F.cross_entropy(logits, targets, reduction="sum"))
            count += targets.numel()
            done += len(group)
            if on_window is not None:
                on_window(done, len(windows))
    finally:
        model.train(was_training)
    return total, count


def text_loss(model: torch.nn.Module, ids: Sequence[int] | np.ndarray, block_size: int | None = None,
              batch_size: int = 16, stride: int | None = None) -> float:
    """Mean next-token loss (nats per token) of ``model`` over the token ids ``ids`` (sliding window)."""
    total, count = token_nll(model, ids, stride, batch_size, block_size)
    return total / count


@dataclass(frozen=True)
class LMScore:
    """The total surprise of a text and the sizes to divide it by; every measure follows from these."""

    nll: float  # summed -log p over the scored tokens, in nats
    tokens: int  # scored tokens
    bytes: int  # UTF-8 bytes of the scored text
    chars: int  # characters of the scored text

    @property
    def loss(self) -> float:
        """Nats per token: the training loss, measured on this text."""
        return self.nll / self.tokens

    @property
    def perplexity(self) -> float:
        return perplexity(self.loss)

    @property
    def bits_per_byte(self) -> float:
        return self.nll / (self.bytes * math.log(2))

    @property
    def bits_per_char(self) -> float:
        return self.nll / (self.chars * math.log(2))

    def as_dict(self) -> dict[str, float | int]:
        return {"loss": self.loss, "perplexity": self.perplexity, "bits_per_byte": self.bits_per_byte,
                "bits_per_char": self.bits_per_char, "tokens": self.tokens, "bytes": self.bytes, "chars": self.chars}


def text_score(nll: float, tokens: int, scored_text: str) -> LMScore:
    """An :class:`LMScore` for ``tokens`` tokens of total loss ``nll`` that spell ``scored_text``."""
    if tokens < 1 or not scored_text:
        raise InputError("nothing was scored: the text is too short for this model")
    return LMScore(nll, tokens, len(scored_text.encode("utf-8")), len(scored_text))


def perplexity(loss: float) -> float:
    """``exp(loss)``: the number of equally likely next tokens the model is as unsure as."""
    return math.exp(loss)
