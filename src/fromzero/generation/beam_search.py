"""Beam search: keep the ``num_beams`` most likely partial sequences instead of just one.

At each step every beam proposes every token; the candidates are ranked by their total
log-probability and the best ones go on. A candidate that ends (eos, stop string, length limit)
leaves the race and enters the list of finished hypotheses, scored by
``total log-prob / generated_length ** length_penalty`` (so length_penalty > 0 favours longer
answers). This follows transformers' beam search step for step (the same candidate counts, the
same early-stopping rules and the same tie-breaking) so both return the same sequences.

Shapes: B prompts, K beams, C = K * max(2, 1 + number of eos ids) candidates per prompt (enough
that K unfinished ones remain even if many candidates end at once), L = prompt + max_new_tokens.
"""

from __future__ import annotations

import torch

from fromzero.generation.config import GenerationConfig
from fromzero.generation.engine import StepDecoder
from fromzero.generation.processors import Processor, apply_processors
from fromzero.generation.stopping import StopCondition

NEVER = -1.0e9  # the score of an impossible beam (finite, so sums stay comparable)


def beam_search(decoder: StepDecoder, logits: torch.Tensor, prompt: torch.Tensor,
                config: GenerationConfig, processors: list[Processor], stop: StopCondition,
                generator: torch.Generator | None) -> torch.Tensor:
    """Return the ``num_return_sequences`` best finished sequences per prompt, (B * n, T + new)."""
    batch, prompt_len = prompt.shape
    beams = config.num_beams
    max_len = prompt_len + config.max_new_tokens
    candidates = beams * max(2, 1 + len(config.eos_ids))
    fill = config.fill_id if config.fill_id is not None else -1
    device = prompt.device

    # every beam starts as the prompt; only beam 0 is "alive" so the first step does not pick
    # the same token K times
    running = prompt.new_full((batch, beams, max_len), fill)
    running[:, :, :prompt_len] = prompt[:, None, :]
    running_scores = torch.zeros(batch, beams, device=device)
    running_scores[:, 1:] = NEVER
    finished = running.clone()
    finished_scores = torch.full((batch, beams), NEVER, device=device)
    finished_lengths = torch.zeros(batch, beams, dtype=torch.long, device=device)
    is_finished = torch.zeros(batch, beams, dtype=torch.bool, device=device)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    top_beams = torch.arange(candidates, device=device) < beams
    row_offset = torch.arange(batch, device=device)[:, None] * beams

    # the prompt was run once per prompt; copy its cache into the K beams
    decoder.select(torch.arange(batch, device=device).repeat_interleave(beams))
    logits = logits.repeat_interleave(beams, dim=0)
    length = prompt_len
    while True:
        # 1. score every (beam, token) continuation by the beam's total log-probability
        log_probs = logits.log_softmax(dim=-1)
        log_probs = apply_processors(processors, running[:, :, :length].flatten(0, 1), log_probs)
        vocab = log_probs.size(-1)
        totals = (log_probs.view(batch, beams, vocab) + running_scores[..., None]).view(batch, -1)

        # 2. keep the C best (or C sampled) continuations
        if config.samples:
            picked = torch.multinomial(totals.softmax(dim=-1), candidates, generator=generator)
            cand_scores, order = totals.gather(1, picked).sort(dim=-1, descending=True)
            picked = picked.gather(1, order)
        else:
            cand_scores, picked = totals.topk(candidates)
        parent = picked // vocab
        cand = running.gather(1, parent[..., None].expand(-1, -1, max_len))
        cand[:, :, length] = picked % vocab
        ends = stop(cand[:, :, :length + 1].flatten(0, 1)).view(batch, candidates)
        if length + 1 == max_len:
            ends[:] = True

        # 3. the K best candidates that did not end keep running
        alive_scores = cand_scores + ends.float() * NEVER
        keep = alive_scores.topk(beams).indices
        running = cand.gather(1, keep[..., None].expand(-1, -1, max_len))
        running_scores = alive_scores.gather(1, keep)
        parent = parent.gather(1, keep)

        # 4. among the top K candidates, those that ended may enter the finished list
        new_len = length + 1 - prompt_len
        final_scores = cand_scores / new_len ** config.length_penalty
        full = is_finished.all(dim=-1, keepdim=True) & (config.early_stopping is True)
        final_scores = final_scores + full.float() * NEVER
        final_scores = final_scores + (~improvable).float() * NEVER
        just_finished = ends & top_beams
        final_scores = final_scores + (~just_finished).float() * NEVER
        merged = torch.cat((finished_scores, final_scores), dim=1)
        best = merged.topk(beams).indices
        finished_scores = merged.gather(1, best)
        finished = torch.cat((finished, cand), dim=1).gather(1, best[..., None].expand(-1, -1, max_len))
        finished_lengths = torch.cat((finished_lengths, torch.full_like(cand_scores, new_len).long()),
                                     dim=1).gather(1, best)
        is_finished = torch.cat((is_finished, just_finished), dim=1).gather(1, best)

        # 5. stop when no running beam can beat the finished ones any more
        length += 1
        improvable = improvable & _can_improve(running_scores, finished_scores, is_finished,
                                               length - prompt_len, config)
        all_full = bool(is_finished.all()) and config.early_stopping is True
        if not improvable.any() or all_full or bool(ends.all()):
            break
        decoder.select((parent + row_offset).flatten())
        logits = decoder.step(running[:, :, length - 1].flatten())

    n = config.num_return_sequences
    out_len = prompt_len + int(finished_lengths[:, :n].max())
    return finished[:, :n, :out_len].flatten(0, 1)


def _can_improve(running_scores: torch.Tensor, finished_scores: torch.Tensor,
                 is_finished: torch.Tensor, generated: int, config: GenerationConfig) -> torch.Tensor:
    """Per prompt: might the best running beam still beat the worst finished one?

    early_stopping=False judges the best beam at its current length (a heuristic: its score only
    falls as it grows when length_penalty is not large); "never" assumes it could reach the
    longest allowed length, which is exact for length_penalty > 0.
    """
    if config.early_stopping == "never" and config.length_penalty > 0:
        generated = config.max_new_tokens
    best_running = running_scores[:, :1] / generated ** config.length_penalty
    worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True).values, NEVER)
    return (best_running > worst_finished).any(dim=-1, keepdim=True)
