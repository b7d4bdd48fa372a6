"""The losses of fine-tuning, as pure functions of logits and log-probabilities.

**SFT.** :func:`sft_loss` is the causal language-model loss on the labelled tokens only: the
logits at position ``t`` are scored against ``labels[t + 1]`` and positions labelled -100 (the
prompt, the padding: :mod:`fromzero.finetune.batches`) add nothing, neither to the loss nor to
any gradient. It is the mean over all labelled tokens of the batch, exactly what transformers'
``GPT2LMHeadModel(..., labels=labels).loss`` computes.

**DPO** (Rafailov et al., 2023, "Direct Preference Optimization"). Given a prompt with a
preferred answer ``y_w`` and a worse one ``y_l``, the policy being tuned ``pi`` and a frozen
reference ``ref`` (the model before DPO), each answer gets an implicit *reward*::

    r(y) = beta * (log pi(y | x) - log ref(y | x))        (log-probs summed over the answer's tokens)

and the loss pushes the chosen answer's reward above the rejected one's::

    sigmoid:  -log sigmoid(r(y_w) - r(y_l))

``beta`` says how far the policy may move from the reference: small beta, weak pull back. IPO
(Azar et al., 2023, "A General Theoretical Paradigm to Understand Learning from Human
Preferences", eq. 17) regresses the log-ratio gap to a fixed target instead, which does not
reward making the gap ever larger::

    ipo:      ((h(y_w) - h(y_l)) - 1 / (2 * beta)) ** 2,     h(y) = (log pi(y|x) - log ref(y|x)) / len(y)

with each log-ratio averaged over its answer's tokens, as ``trl`` does (its authors confirmed this
normalisation with the IPO authors), so IPO needs the answer lengths. Both losses are those of
``trl``'s ``DPOTrainer`` on the same log-probs (the tests check it), and so are the rewards, which
are always the summed form above. The rewards are reported, detached, with their margin and
accuracy (the share of pairs whose chosen answer has the higher reward): on held-out pairs, these
are what tells whether preference tuning works.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from fromzero.errors import InputError
from fromzero.finetune.batches import IGNORE_INDEX

LOSS_TYPES = ("sigmoid", "ipo")


def _shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of positions 0..T-2 and the labels they predict, 1..T-1. Float32 logits for an exact loss."""
    if logits.shape[:-1] != labels.shape:
        raise InputError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match")
    return logits[:, :-1].float(), labels[:, 1:]


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of ``logits`` (B, T, V) over the ``labels`` (B, T) that are not -100."""
    logits, targets = _shifted(logits, labels)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)


def sft_model_loss(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``sft_loss`` of ``model`` on a batch, with logits computed only where a label is scored.

    The output layer (V x n_embd per position) is the largest matmul of a small GPT, and in
    instruction data the prompt is often half of every row: skipping its positions saves that work
    in the forward and the backward pass. Equal to ``sft_loss(model(input_ids).logits, labels)``.
    """
    targets = labels[:, 1:]
    scored = targets != IGNORE_INDEX
    keep = F.pad(scored, (0, 1))  # position t predicts the label at t + 1
    logits = model(input_ids, logits_to_keep=keep).logits
    return F.cross_entropy(logits, targets[scored])


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log p(labels[t + 1] | ...)`` at each position (B, T - 1), 0 where the label is -100."""
    logits, targets = _shifted(logits, labels)
    losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    return -losses.view(targets.shape)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The log-probability of each row's labelled tokens (the answer), summed: (B,)."""
    return token_logprobs(logits, labels).sum(dim=-1)


def answer_lengths(labels: torch.Tensor) -> torch.Tensor:
    """How many tokens of each row are scored (labels after the first that are not -100): (B,)."""
    return (labels[:, 1:] != IGNORE_INDEX).sum(dim=-1)


class DPOOutput(NamedTuple):
    """The mean DPO loss of a batch and each pair's rewards (detached)."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor

    @property
    def margins(self) -> torch.Tensor:
        return reward_margins(self.chosen_rewards, self.rejected_rewards)

    @property
    def accuracy(self) -> torch.Tensor:
        return preference_accuracy(self.chosen_rewards, self.rejected_rewards)


def reward_margins(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """How far each chosen answer's reward is above its rejected one's."""
    return chosen_rewards - rejected_rewards


def preference_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """The share of pairs whose chosen answer has the higher reward (a tie counts as wrong, as in trl)."""
    return (chosen_rewards > rejected_rewards).float().mean()


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> DPOOutput:
    """DPO (``"sigmoid"``) or IPO (``"ipo"``) loss from summed answer log-probs (B,) each; see the module docstring.

    IPO needs ``chosen_lengths`` and ``rejected_lengths``, the answers' token counts (:func:`answer_lengths`).
    """
    if beta <= 0:
        raise InputError(f"--beta must be positive, got {beta}")
    if loss_type not in LOSS_TYPES:
        raise InputError(f"unknown DPO loss {loss_type!r}; --loss is one of {', '.join(LOSS_TYPES)}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    else:
        if chosen_lengths is None or rejected_lengths is None:
            raise InputError("the IPO loss averages over the answers' tokens: give chosen_lengths and rejected_lengths")
        gap = chosen_logratios / chosen_lengths.clamp(min=1) - rejected_logratios / rejected_lengths.clamp(min=1)
        losses = (gap - 1 / (2 * beta)) ** 2
    return DPOOutput(losses.mean(), beta * chosen_logratios.detach(), beta * rejected_logratios.detach())
