"""Sampling: the bigram table writes text, one random draw at a time."""

from __future__ import annotations

from collections import Counter

from fromzero.classic.corpus import train_val_text
from fromzero.classic.ngram import NGramModel
from fromzero.classic.plots import plot_bars
from fromzero.classic.render import show_token
from fromzero.lessons.course import Step

TITLE = "Sampling: letting the counts write"


def run(step: Step) -> None:
    step.say("""
        A model that gives a probability to every next character can also **write**: draw the next
        character at random, with each character's chance equal to its probability, add it to the text,
        and draw again. Drawing at random (rather than always taking the likeliest) is what keeps the text
        from repeating itself. Here is the library's sampling loop:
    """)
    train, _ = train_val_text("stories")
    model = NGramModel(order=2, smoothing="none").fit(train[: step.pick(20_000, len(train))])
    step.show(NGramModel.sample)
    sample = model.sample("T", n=300, seed=0)
    step.figure("a bigram sample", "T" + "".join(sample))

    step.say("""
        It looks like words from far away: a bigram model only ever sees **one** character back, so it
        knows that `h` often follows `t` but not which word it is writing. Is the draw fair? Let it write
        a long text and count what followed `t` in it: the shares should come close to the probabilities
        in the table, and closer the longer the text.
    """)
    long_text = model.sample("t", n=step.pick(20_000, 50_000), seed=1)
    after_t = Counter(b for a, b in zip(["t", *long_text], long_text) if a == "t")
    seen = sum(after_t.values())
    step.figure("characters drawn", len(long_text))
    step.figure("times 't' was drawn and then followed", seen)
    followers = model.followers("t", k=6)
    for token, _, probability in followers:
        step.figure(f"P({token!r} | 't') in the table", round(probability, 4))
        step.figure(f"share of {token!r} after 't' in the sample", round(after_t[token] / seen, 4))
    labels = [show_token(token) for token, _, _ in followers]
    path = plot_bars(labels, {"P(next | 't'), the table": [p for _, _, p in followers],
                              "share in the sample": [after_t[t] / seen for t, _, _ in followers]},
                     step.picture("1_2_sampling_after_t.png"), title="what follows 't': the table vs the sample",
                     ylabel="probability")
    step.saved(path)
