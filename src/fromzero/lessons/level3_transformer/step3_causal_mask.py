"""The causal mask: when predicting the next word, no peeking at the words that come after."""

from __future__ import annotations

import torch

from fromzero.lessons.course import Step
from fromzero.nn import MultiHeadAttention, causal_mask, scaled_dot_product_attention

TITLE = "The causal mask"


def run(step: Step) -> None:
    step.say("""
        A GPT learns by predicting each next token from the ones before it, for every position of a text
        at once. If position 2 could look at position 3, it would simply read the answer. The **causal
        mask** forbids it: before the softmax, every score of a later position is set to minus infinity,
        and exp(-infinity) = 0, so those weights are exactly zero. The mask is a triangle (1 = may look):
    """)
    step.show(causal_mask)
    size = 5
    mask = causal_mask(size)
    for row in range(size):
        step.figure(f"position {row} may look at", "".join("1" if m else "." for m in mask[row].tolist()))

    generator = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, size, 8, generator=generator)
    _, free = scaled_dot_product_attention(q, k, v)
    _, masked = scaled_dot_product_attention(q, k, v, mask)
    step.figure("weight on later positions, no mask", round(float(free[~mask].sum()), 4))
    step.figure("weight on later positions, with the mask", float(masked[~mask].sum()))
    step.figure("every row of weights still adds up to", round(float(masked.sum(-1).mean()), 6))

    step.say("""
        The proof that nothing leaks: give a real attention layer (the library's, with 2 heads) a
        sequence, then change only the **last** token and run it again. With the mask, the outputs of all
        earlier positions stay exactly the same; without it, every position changes.
    """)
    torch.manual_seed(0)
    layer = MultiHeadAttention(n_embd=16, n_head=2).eval()
    x = torch.randn(1, size, 16)
    changed = x.clone()
    changed[0, -1] = torch.randn(16)
    with torch.no_grad():
        before, _ = layer(x, is_causal=True)
        after, _ = layer(changed, is_causal=True)
        open_before, _ = layer(x)
        open_after, _ = layer(changed)
        explicit, _ = layer(x, is_causal=True, need_weights=True)
    step.figure("masked: largest change at the earlier positions", float((after - before)[0, :-1].abs().max()))
    step.figure("masked: change at the last position", round(float((after - before)[0, -1].abs().max()), 4))
    step.figure("no mask: largest change at the earlier positions",
                round(float((open_after - open_before)[0, :-1].abs().max()), 4))
    step.say("""
        The layer has two ways of computing the same thing: a fast fused kernel (PyTorch's
        `scaled_dot_product_attention` with `is_causal=True`, used for training) and the explicit formula
        above, which also returns the weights (used for pictures). They agree:
    """)
    step.figure("fast kernel vs explicit formula, largest difference", float((before - explicit).abs().max()))
