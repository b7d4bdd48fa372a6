"""Logits processors: small functions that reshape the next-token scores before a token is chosen.

Each takes ``input_ids`` (B, T), the tokens so far (prompt included), and ``scores`` (B, V), the
model's scores for the next token, and returns new scores. Removing a token means setting its score
to ``-inf``, so softmax gives it probability 0. They follow transformers' logits processors exactly
(same formulas, same tie rules) so that decoding here and there picks the same tokens.

Two families:
- penalties (repetition, no-repeat n-gram) apply to every decoding strategy, greedy included;
- warpers (temperature, top-k, top-p, min-p) only matter when sampling, because they never change
  which token is the most likely one.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from fromzero.generation.config import GenerationConfig

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def temperature(input_ids: torch.Tensor, scores: torch.Tensor, value: float) -> torch.Tensor:
    """Divide scores by the temperature: below 1 sharpens the distribution, above 1 flattens it."""
    return scores / value


def top_k(input_ids: torch.Tensor, scores: torch.Tensor, k: int, min_keep: int = 1) -> torch.Tensor:
    """Keep the k highest scores (and any tied with the k-th); remove the rest."""
    k = min(max(k, min_keep), scores.size(-1))
    kth_best = torch.topk(scores, k).values[..., -1:]
    return scores.masked_fill(scores < kth_best, -float("inf"))


def top_p(input_ids: torch.Tensor, scores: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Nucleus filter: keep the most likely tokens until their probabilities add up to at least p.

    Sorting ascending, a token is removed when the total probability of it and every less likely
    token is still at most ``1 - p``: the tokens left over then carry at least ``p``.
    """
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[..., -min_keep:] = False
    remove = remove_sorted.scatter(1, order, remove_sorted)
    return scores.masked_fill(remove, -float("inf"))


def min_p(input_ids: torch.Tensor, scores: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Remove tokens less likely than ``p`` times the most likely token's probability.

    The cut-off follows the model's confidence: strict when one token dominates, loose when many
    tokens are plausible.
    """
    probs = scores.softmax(dim=-1)
    remove = probs < p * probs.amax(dim=-1, keepdim=True)
    keep = torch.topk(probs, min(min_keep, probs.size(-1)), dim=-1).indices
    remove.scatter_(-1, keep, False)
    return scores.masked_fill(remove, -float("inf"))


def repetition_penalty(input_ids: torch.Tensor, scores: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make every token already present less likely (CTRL paper): once per token, however often seen.

    A positive score is divided by the penalty and a negative one multiplied, so both move down.
    """
    seen = torch.gather(scores, 1, input_ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, input_ids, seen)


def no_repeat_ngram(input_ids: torch.Tensor, scores: torch.Tensor, n: int) -> torch.Tensor:
    """Forbid the token that would complete an n-gram already present in the row.

    The last ``n - 1`` tokens are the start of the n-gram about to be made; every earlier window of
    n tokens that begins with those same ``n - 1`` tokens bans its last token.
    """
    length = input_ids.size(1)
    if length < n:
        return scores
    suffix = input_ids[:, length - n + 1:]                      # (B, n-1)
    windows = input_ids.unfold(dimension=1, size=n, step=1)     # (B, length-n+1, n)
    matches = (windows[..., :-1] == suffix.unsqueeze(1)).all(dim=-1)
    vocab = scores.size(-1)
    banned = torch.zeros(scores.size(0), vocab + 1, dtype=torch.bool, device=scores.device)
    # windows that do not match write into a spare last column, which is then dropped
    banned.scatter_(1, torch.where(matches, windows[..., -1], vocab), True)
    return scores.masked_fill(banned[:, :vocab], -float("inf"))


def build_processors(config: GenerationConfig) -> list[Processor]:
    """The processors ``config`` asks for, in transformers' order: penalties first, then warpers."""
    processors: list[Processor] = []
    if config.repetition_penalty != 1.0:
        processors.append(partial(repetition_penalty, penalty=config.repetition_penalty))
    if config.no_repeat_ngram_size > 0:
        processors.append(partial(no_repeat_ngram, n=config.no_repeat_ngram_size))
    if config.samples:
        # beam sampling must leave at least one non-eos candidate per beam to continue with
        min_keep = max(2, len(config.eos_ids) + 1) if config.num_beams > 1 else 1
        if config.temperature != 1.0:
            processors.append(partial(temperature, value=config.temperature))
        if config.top_k:
            processors.append(partial(top_k, k=config.top_k, min_keep=min_keep))
        if config.top_p < 1.0:
            processors.append(partial(top_p, p=config.top_p, min_keep=min_keep))
        if config.min_p is not None:
            processors.append(partial(min_p, p=config.min_p, min_keep=min_keep))
    return processors


def apply_processors(processors: list[Processor], input_ids: torch.Tensor,
                     scores: torch.Tensor) -> torch.Tensor:
    """Run the processors one after the other.

    Settings can forbid every token (``no_repeat_ngram_size=1`` once each token has been used): then
    that row keeps its unprocessed scores for this step, where sampling from nothing would fail.
    """
    if not processors:  # plain greedy or sampling: nothing to run, nothing forbidden
        return scores
    original = scores
    for processor in processors:
        scores = processor(input_ids, scores)
    blocked = torch.isneginf(scores).all(dim=-1)
    if blocked.any():
        scores = torch.where(blocked[:, None], original, scores)
    return scores
