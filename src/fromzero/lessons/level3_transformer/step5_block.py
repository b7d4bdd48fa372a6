"""The block: attention, then a small network per token, each wrapped in a norm and a shortcut."""

from __future__ import annotations

import torch

from fromzero.lessons.course import Step
from fromzero.nn import Block, FeedForward

TITLE = "The Transformer block"
WIDTH, HEADS = 64, 4


def run(step: Step) -> None:
    step.say("""
        A Transformer is a stack of identical **blocks**. Each block does two things to every token's
        vector: **attention** (gather information from the earlier tokens) and a **feed-forward** network
        (think about it, each token on its own: widen to 4 x n_embd, GELU, narrow back). Before each, a
        **LayerNorm** rescales the vector; after each, the result is *added* to what came in (a
        **residual** connection), so a block only has to learn a correction, and gradients flow straight
        through deep stacks.
    """)
    step.show(Block.forward)
    step.show(FeedForward.forward)
    torch.manual_seed(0)
    block = Block(WIDTH, HEADS).eval()
    parts = {name: sum(p.numel() for p in module.parameters())
             for name, module in (("ln_1", block.ln_1), ("attention", block.attn), ("ln_2", block.ln_2),
                                  ("feed-forward", block.mlp))}
    for name, count in parts.items():
        step.figure(f"parameters: {name}", count)
    counted = sum(p.numel() for p in block.parameters())
    step.figure("parameters of one block (counted)", counted)
    e = WIDTH
    by_hand = (4 * e * e + 4 * e) + (8 * e * e + 5 * e) + 4 * e  # attention + feed-forward + two LayerNorms
    step.figure("by hand: (4e² + 4e) + (8e² + 5e) + 4e = 12e² + 13e, e = 64", by_hand)
    assert by_hand == counted

    x = torch.randn(1, 6, WIDTH)
    with torch.no_grad():
        y, _ = block(x, is_causal=True)
    step.figure("shape in", tuple(x.shape))
    step.figure("shape out", tuple(y.shape))
    step.say("""
        The shape does not change, which is why blocks can be stacked as deep as you like. And the
        residual really is a shortcut: switch off the last layer of both branches (set their weights to
        zero) and the block hands its input through unchanged.
    """)
    with torch.no_grad():
        for layer in (block.attn.c_proj, block.mlp.c_proj):
            layer.weight.zero_()
            layer.bias.zero_()
        passed, _ = block(x, is_causal=True)
    step.figure("branches off: largest difference between input and output", float((passed - x).abs().max()))
