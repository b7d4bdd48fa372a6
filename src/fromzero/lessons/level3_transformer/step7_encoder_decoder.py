"""The original Transformer: an encoder, a decoder and cross-attention, and the GRU it replaced."""

from __future__ import annotations

import torch

from fromzero.lessons.course import Step
from fromzero.nn import CrossAttention
from fromzero.seq2seq.config import Seq2SeqTrainConfig
from fromzero.seq2seq.plots import plot_alignment
from fromzero.seq2seq.tasks import load_task
from fromzero.seq2seq.train import train_seq2seq
from fromzero.seq2seq.translate import Translator

TITLE = "The original Transformer: encoder, decoder, cross-attention"
MODELS = {"transformer": "the Transformer", "gru-attention": "a GRU with attention", "gru": "a plain GRU"}
SHORT, LONG = range(4, 7), range(10, 13)  # source lengths, in letters, scored apart


def run(step: Step) -> None:
    step.say("""
        The Transformer was born to **translate** ("Attention Is All You Need", 2017). A translation model
        reads one sentence and writes another, so it has two halves. The **encoder** reads the whole
        source at once, every word looking at every other (no causal mask). The **decoder** is a GPT that
        writes the target one token at a time, with one more attention in each block: **cross-attention**,
        whose queries come from the target written so far and whose keys and values come from the
        encoder's output. That is where the decoder looks while it writes. Here it is:
    """)
    step.show(CrossAttention.forward)
    step.say("""
        Before 2017 the best translators were recurrent networks (GRUs, LSTMs). The first ones squeezed
        the whole source into the encoder's last state, one vector, and the decoder had to write the
        translation from that alone. Attention (Bahdanau, 2015) let the recurrent decoder look back at
        every source word; the Transformer then dropped the recurrence and kept only attention.

        A task that shows the difference in a minute: write a string **backwards**. The first output
        letter is the *last* input letter, which a one-vector summary struggles to keep; with attention
        the decoder just looks it up. We train the three models with the library's trainer, the same
        number of steps each, and score them on strings they never saw, short ones and long ones.
    """)
    task = load_task("reverse", train_size=step.pick(300, 6000), test_size=300, max_len=12, seed=0)
    short = [pair for pair in task.test if len(pair[0]) in SHORT]
    long = [pair for pair in task.test if len(pair[0]) in LONG]
    translators = {}
    for arch, name in MODELS.items():
        settings = Seq2SeqTrainConfig(task="reverse", arch=arch, train_size=step.pick(300, 6000), test_size=300,
                                      max_chars=12, seed=0, n_layer=2, n_embd=step.pick(32, 128), dropout=0.0,
                                      lr=2e-3, max_steps=step.pick(10, 500), eval_interval=step.pick(10, 250),
                                      out=str(step.output("3.7") / arch))
        result = train_seq2seq(settings, overwrite=True, quiet=True)
        translators[arch] = translator = Translator.load(result.out)
        step.figure(f"{name}: parameters", result.parameters)
        step.figure(f"{name}: training seconds", round(result.wall_seconds, 1))
        for label, pairs in (("4-6", short), ("10-12", long)):
            exact = translator.evaluate(pairs, bleu=False)["exact_match"]
            step.figure(f"{name}: reversed exactly, {label} letters", round(exact, 1), "%")

    step.say("""
        Which source letter did the Transformer look at while writing each output letter? Its last
        decoder layer's cross-attention, averaged over the heads: for reversal the bright cells should
        run along the *anti-diagonal* (first output, last input).
    """)
    text = "attentionall"
    alignment = translators["transformer"].alignment(text)
    rows = min(len(text), len(alignment.target) - 1)  # the rows of the letters written, not of <eos>
    weights = alignment.weights.mean(0)
    on_mirror = float(weights[torch.arange(rows), len(text) - 1 - torch.arange(rows)].mean()) if rows else 0.0
    step.figure(f"the Transformer reverses '{text}' as", "".join(alignment.target[:-1]))
    step.figure("mean attention on the mirrored letter", round(on_mirror, 3))
    path = step.picture("3_7_alignment.png")
    plot_alignment(alignment, path, title=f"reversing '{text}': cross-attention, last layer")
    step.saved(path)
    step.say("""
        The same models learn English to Hindi from the bundled corpus:
        `fromzero seq2seq train --task translate-en-hi --out out/en-hi` (and `--arch gru-attention`,
        `--arch gru`), then `fromzero seq2seq attention --model out/en-hi --text "..." --out align.png`
        to see which English words each Hindi word looked at. benchmarks/RESULTS.md has their BLEU.
    """)
