"""Temperature: one number that makes the next-character distribution sharper or flatter."""

from __future__ import annotations

import math

import numpy as np

from fromzero.classic.corpus import train_val_text
from fromzero.classic.layers import softmax
from fromzero.classic.ngram import NGramModel
from fromzero.classic.plots import plot_bars
from fromzero.classic.render import show_token
from fromzero.lessons.course import Step

TITLE = "Temperature: sharper or flatter"
TEMPERATURES = (0.5, 1.0, 2.0)


def run(step: Step) -> None:
    step.say("""
        Neural networks do not output probabilities directly: they output *scores* (logits), any real
        numbers, and **softmax** turns them into probabilities: exponentiate each score (so all are
        positive), then divide by their sum (so they add up to 1). A worked example with three scores:
    """)
    step.show(softmax)
    logits = np.array([2.0, 1.0, 0.1])
    for score, p in zip(logits, softmax(logits)):
        step.figure(f"softmax: score {score}", round(float(p), 4))

    step.say("""
        **Temperature** T divides the scores before softmax. T < 1 stretches the gaps between scores, so
        the likeliest choice gets even likelier (at T -> 0 it always wins: *greedy*); T > 1 shrinks them,
        so rare choices get a chance. A counting model has probabilities p, not scores; its scores are
        log p, so dividing by T is the same as raising every p to the power 1/T and renormalising,
        which is what the n-gram sampler does. Computed both ways for what follows `t`:
    """)
    train, _ = train_val_text("stories")
    model = NGramModel(order=4, smoothing="kneser-ney").fit(train[: step.pick(20_000, len(train))])
    distribution = model.distribution("t")
    tokens, probs = list(distribution), np.array(list(distribution.values()))
    powered = probs ** (1 / 0.5) / np.sum(probs ** (1 / 0.5))
    step.figure("largest difference, p^(1/T) vs softmax(log p / T), T = 0.5",
                float(np.max(np.abs(powered - softmax(np.log(probs) / 0.5)))))
    top = np.argsort(-probs)[:8]
    shaped = {}
    for t in TEMPERATURES:
        shaped[t] = softmax(np.log(probs) / t)
        step.figure(f"T = {t}: P({tokens[top[0]]!r} | 't')", round(float(shaped[t][top[0]]), 4))
        entropy = -float(np.sum(shaped[t] * np.log(shaped[t])))
        step.figure(f"T = {t}: as unsure as a choice among", round(math.exp(entropy), 2), "characters")
    path = plot_bars([show_token(tokens[i]) for i in top], {f"T = {t}": list(shaped[t][top]) for t in TEMPERATURES},
                     step.picture("1_3_temperature.png"), title="what follows 't' at three temperatures",
                     ylabel="probability")
    step.saved(path)

    step.say("Now let a 4-gram model write at several temperatures, each from the same prompt and seed:")
    for t in (0.0, 0.5, 1.0, 1.5):
        text = "".join(model.sample("Once upon a time", n=step.pick(80, 160), temperature=t, seed=0))
        step.figure(f"T = {t}", "Once upon a time" + text)
    step.say("""
        At T = 0 the model always takes its favourite and soon goes round in a loop; at T = 1.5 rare
        characters creep in and the words fall apart. Most chatbots sample at T between 0.7 and 1.
    """)
