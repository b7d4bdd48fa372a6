"""Heads: several small attentions side by side, and pictures of where each one looks."""

from __future__ import annotations

import torch

from fromzero.classic.plots import plot_heatmaps
from fromzero.classic.render import show_token
from fromzero.lessons.course import Step
from fromzero.models import GPT
from fromzero.nn import MultiHeadAttention
from fromzero.tokenizers import load_tokenizer
from fromzero.training.config import TrainConfig
from fromzero.training.run import train

TITLE = "Heads and attention heatmaps"
SENTENCE = "the cat sat on the mat."


def run(step: Step) -> None:
    step.say("""
        One attention can only compute one kind of weighted average. **Multi-head attention** cuts each
        token's vector into n_head slices and runs one small attention on each slice, side by side, so one
        head can follow the previous letter while another looks for the start of the word. The heads'
        outputs are put side by side again and mixed by one more matrix (`c_proj`). Here is the layer:
    """)
    step.show(MultiHeadAttention.forward)
    step.say("""
        To see heads doing something, we train a tiny GPT (2 layers, 4 heads, 64 wide) for a short while
        on the stories, with the library's trainer, then ask it for its attention weights on one sentence.
    """)
    out = step.output("3.4")
    settings = TrainConfig(preset="tiny", n_head=4, max_steps=step.pick(5, 600), warmup_steps=step.pick(1, 50),
                           eval_interval=step.pick(5, 200), eval_batches=step.pick(1, 20), sample_tokens=0,
                           out=str(out))
    result = train(settings, overwrite=True, quiet=True)
    step.figure("training steps", result.step)
    step.figure("validation loss", round(result.val_loss, 3), "nats per character")
    model = GPT.from_pretrained(out).eval()
    tokenizer = load_tokenizer(out)
    config = model.config
    step.figure("heads per layer", config.n_head)
    step.figure("numbers per head (head_dim = n_embd / n_head)", config.head_dim)

    ids = torch.tensor([tokenizer.encode(SENTENCE)])
    with torch.no_grad():
        attentions = model(ids, output_attentions=True).attentions  # per layer: (1, heads, T, T)
    labels = [show_token(c) for c in SENTENCE]
    panels = []
    for layer, weights in enumerate(attentions):
        for head in range(config.n_head):
            grid = weights[0, head]
            previous = float(torch.diagonal(grid, offset=-1).mean())  # weight on the token just before
            step.figure(f"layer {layer} head {head}: weight on the previous character", round(previous, 3))
            panels.append((f"layer {layer}, head {head}", grid.numpy()))
    rows_sum = torch.stack([w.sum(-1) for w in attentions])
    step.figure("every row of every head adds up to 1 (largest error)", float((rows_sum - 1).abs().max()))
    path = plot_heatmaps(panels, step.picture("3_4_attention_heads.png"), xlabels=labels, ylabels=labels,
                         xlabel="looks at", ylabel="token", columns=config.n_head)
    step.saved(path)
    step.say("""
        Each square shows one head: row = the token doing the looking, column = the token looked at, bright
        = much weight. Everything above the diagonal is dark: that is the causal mask. After training some
        heads mostly look one character back (a bright line just under the diagonal), others spread out.
        How many parameters do more heads cost? Try to work it out, then check yourself with the exercise
        `fromzero learn check 3.heads ...` (see exercises.md).
    """)
