"""Counting bigrams: which character follows which, and the probabilities that come out of it."""

from __future__ import annotations

from fromzero.classic.corpus import train_val_text
from fromzero.classic.ngram import NGramModel
from fromzero.lessons.course import Step

TITLE = "Counting bigrams"


def run(step: Step) -> None:
    step.say("""
        A language model answers one question: **what comes next?** The simplest way to answer it is to
        count. Read the stories letter by letter and keep a tally of which character followed which:
        that table of *bigram* counts is already a language model.
    """)
    train, _ = train_val_text("stories")
    text = train[: step.pick(20_000, len(train))]
    step.figure("characters read", len(text))
    step.show(NGramModel.fit)
    model = NGramModel(order=2, smoothing="none").fit(text)
    step.figure("distinct characters", len(model.vocab))
    pair, count = model.top_bigrams(1)[0]
    step.figure("most common pair", f"{pair[0]!r} then {pair[1]!r}, {count:,} times")

    step.say("""
        Turning counts into probabilities is one division: P(next | current) = count(current, next) /
        count(current). Here is what follows the letter **t**:
    """)
    for token, seen, probability in model.followers("t", k=5):
        step.figure(f"P({token!r} | 't')", round(probability, 4), f"(seen {seen:,} times)")
    total = sum(p for _, _, p in model.followers("t", k=len(model.vocab)))
    step.figure("the probabilities after 't' sum to", round(total, 6))
