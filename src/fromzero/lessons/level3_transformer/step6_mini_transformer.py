"""The whole mini Transformer: embeddings, four blocks, a final norm, and scores for every next token."""

from __future__ import annotations

import math

import torch

from fromzero.classic.corpus import train_val_text
from fromzero.lessons.course import Step
from fromzero.models import GPT, GPTConfig
from fromzero.models.summary import summarize
from fromzero.tokenizers import CharTokenizer

TITLE = "The whole mini Transformer"
SHAPE = dict(n_layer=4, n_head=4)  # the tiny preset (64 wide, 64 positions) with 4 layers of 4 heads


def run(step: Step) -> None:
    step.say("""
        Put it together: token embedding + learned positions, a stack of blocks, a final LayerNorm, and
        an output layer that scores every token of the vocabulary as the next one. GPT-2 reuses the token
        embedding table as that output layer (*weight tying*), which saves a whole table of parameters.
        This is the library's GPT, the same class that loads the real GPT-2:
    """)
    step.show(GPT.forward)
    train, _ = train_val_text("stories")
    tokenizer = CharTokenizer.train(train)
    config = GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, **SHAPE)
    torch.manual_seed(0)
    model = GPT(config)
    summary = summarize(config)  # what `fromzero model info` prints
    for label, count in summary.components:
        step.figure(f"parameters: {label}", count)
    total = step.figure("parameters in all (counted on the model)", model.num_params())
    assert total == summary.total
    command = (f"fromzero model info tiny --set vocab_size={config.vocab_size} --set n_layer={config.n_layer} "
               f"--set n_head={config.n_head}")
    step.figure("the same count, from the command line", command)
    one_block = sum(p.numel() for p in model.transformer.h[0].parameters())
    step.say(f"""
        *Corrected figure:* the course this one grew from says its mini Transformer has "about 78k"
        parameters; its own code builds 211,392 (a slightly different alphabet and context). No 4-layer,
        64-wide Transformer can have 78k: one block alone has {one_block:,} weights, so four have
        {4 * one_block:,} before a single embedding is counted. Ours has {total:,}.
    """)

    ids = torch.tensor([tokenizer.encode("Once upon a time")])
    with torch.no_grad():
        out = model(ids[:, :-1], targets=ids[:, 1:])
    step.figure("input shape (batch, tokens)", tuple(ids[:, :-1].shape))
    step.figure("output shape (batch, tokens, vocabulary)", tuple(out.logits.shape))
    step.figure("loss of the untrained model", round(float(out.loss), 3), "nats per character")
    step.figure("ln(vocabulary): the loss of guessing uniformly", round(math.log(config.vocab_size), 3))
    step.say("""
        Untrained, the model spreads its bets almost evenly over all characters, so its loss is close to
        ln(vocabulary size). Training (level 4) is the job of pushing that number down.
    """)
