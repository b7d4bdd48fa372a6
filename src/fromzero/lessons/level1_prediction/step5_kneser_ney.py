"""Kneser-Ney in one picture: how often a character occurs versus how many characters it follows."""

from __future__ import annotations

from collections import Counter

from fromzero.classic.corpus import char_vocab, train_val_text
from fromzero.classic.ngram import NGramModel
from fromzero.classic.plots import plot_bars
from fromzero.classic.render import show_token
from fromzero.lessons.course import Step

TITLE = "Kneser-Ney in one picture"


def run(step: Step) -> None:
    step.say("""
        Kneser-Ney smoothing has two ideas.

        1. **Discount**: take a fixed amount D off every count that was seen, and give what was taken to a
           shorter context. Pairs seen once are the least reliable, so D is set from how many n-grams were
           seen exactly once (n1) and exactly twice (n2): D = n1 / (n1 + 2 n2).
        2. **Continuation counts**: when the shorter context has to guess, it should not ask "how often
           does this character occur?" but "after how many *different* characters has it occurred?".
           A character that is frequent only because it follows one particular character is a poor
           guess for a new context.

        Here is the recursion, from the longest context down to a uniform guess:
    """)
    step.show(NGramModel._kn)
    train, val = train_val_text("stories")
    if step.quick:
        train, val = train[:20_000], val[:4_000]
    vocab = char_vocab(train, val)
    model = NGramModel(order=3, smoothing="kneser-ney").fit(train, vocab=vocab)
    for m in (2, 3):
        counts = Counter(c for nexts in model.raw[m].table.values() for c in nexts.values())
        n1, n2 = counts[1], counts[2]
        step.figure(f"{m}-grams seen once (n1) / twice (n2)", f"{n1:,} / {n2:,}")
        step.figure(f"D for {m}-grams = n1 / (n1 + 2 n2)", round(model.discounts[("raw", m)], 4))
        assert abs(model.discounts[("raw", m)] - n1 / (n1 + 2 * n2)) < 1e-12

    step.say("""
        The picture: for the most common characters, their share of the text (how a plain unigram model
        would guess) next to their share of continuation counts (how Kneser-Ney's lowest order guesses).
    """)
    frequency = model.raw[1].table[()]
    continuation = model.continuation[1].table[()]
    total, total_continuation = sum(frequency.values()), sum(continuation.values())
    common = sorted(frequency, key=lambda ch: -frequency[ch])[:12]
    share = {ch: frequency[ch] / total for ch in common}
    cont_share = {ch: continuation.get(ch, 0) / total_continuation for ch in common}
    path = plot_bars([show_token(ch) for ch in common],
                     {"share of the text": [share[ch] for ch in common],
                      "share of continuation counts": [cont_share[ch] for ch in common]},
                     step.picture("1_5_kneser_ney.png"), title="how often vs after how many different characters",
                     ylabel="share")
    step.saved(path)
    loser = max(common, key=lambda ch: share[ch] / cont_share[ch])
    winner = max(common, key=lambda ch: cont_share[ch] / share[ch])
    step.figure(f"{loser!r}: share of the text", round(share[loser], 4))
    step.figure(f"{loser!r}: share of continuation counts", round(cont_share[loser], 4))
    step.figure(f"{loser!r}: different characters it follows", continuation[loser])
    step.figure(f"{winner!r}: share of the text", round(share[winner], 4))
    step.figure(f"{winner!r}: share of continuation counts", round(cont_share[winner], 4))
    step.figure(f"{winner!r}: different characters it follows", continuation[winner])
    step.say(f"""
        {loser!r} makes up {share[loser]:.1%} of the text, but it follows only {continuation[loser]} different
        characters, so Kneser-Ney's fallback gives it {cont_share[loser]:.1%}. {winner!r} is rarer
        ({share[winner]:.1%}) but follows {continuation[winner]} different characters: a better bet after a
        context never seen before.
    """)

    step.say("What the two ideas buy, on the validation text:")
    for n in (3, 5):
        for name, smoothing in (("add-one", "add-k"), ("Kneser-Ney", "kneser-ney")):
            perplexity = NGramModel(order=n, smoothing=smoothing).fit(train, vocab=vocab).perplexity(val)
            step.figure(f"{n}-gram, {name}", round(perplexity, 3), "perplexity per character")
