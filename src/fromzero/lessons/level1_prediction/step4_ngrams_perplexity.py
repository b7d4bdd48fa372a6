"""Longer contexts, and perplexity: one number that says how well a model predicts unseen text."""

from __future__ import annotations

import math

from fromzero.classic.corpus import char_vocab, train_val_text
from fromzero.classic.ngram import NGramModel
from fromzero.classic.plots import plot_lines
from fromzero.lessons.course import Step

TITLE = "N-grams and perplexity"


def run(step: Step) -> None:
    step.say("""
        A bigram sees one character back. An **n-gram** model sees n - 1: after `th` an `e` is far
        likelier than after `h` alone. To know whether that helps we need a score, and it must be measured
        on text the model has **not** read (validation stories), or a model that memorised its training
        text would look perfect.

        The score is **perplexity**: the average of -log P(each true next character), exponentiated.
        A perplexity of 5 means the model is, on average, as unsure as if it chose among 5 equally likely
        characters. Lower is better; guessing uniformly among V characters gives exactly V.
    """)
    train, val = train_val_text("stories")
    if step.quick:
        train, val = train[:20_000], val[:4_000]
    vocab = char_vocab(train, val)
    step.figure("training characters", len(train))
    step.figure("validation characters", len(val))
    step.figure("vocabulary", len(vocab), "characters")

    model = NGramModel(order=3, smoothing="kneser-ney").fit(train, vocab=vocab)
    word = val[:12]
    probabilities = [model.prob(word[max(0, i - 2):i], ch) for i, ch in enumerate(word)]
    step.say(f"By hand first: the trigram model's probability of each character of {word!r} given the two before it:")
    for ch, p in zip(word, probabilities):
        step.figure(f"P({ch!r})", round(p, 4))
    by_hand = math.exp(-sum(math.log(p) for p in probabilities) / len(probabilities))
    step.figure("perplexity by hand: exp(-mean log P)", round(by_hand, 4))
    step.figure("perplexity from the library", round(model.perplexity(word), 4))
    step.show(NGramModel.evaluate)

    step.say("""
        Without smoothing, a pair never seen in training gets probability 0, and one zero makes the
        perplexity infinite: -log 0 is infinite.
    """)
    plain = NGramModel(order=2, smoothing="none").fit(train, vocab=vocab)
    step.figure("unsmoothed bigram on validation", plain.evaluate(val).explain())

    step.say("""
        **Add-one** smoothing pretends every pair was seen once more than it was. **Kneser-Ney** (next
        step) subtracts a little from every seen count and hands it to a shorter context. Here is
        perplexity against the order n for both:
    """)
    orders = list(range(1, step.pick(4, 7) + 1))
    scores: dict[str, list[float]] = {"add-one": [], "Kneser-Ney": []}
    for name, smoothing in (("add-one", "add-k"), ("Kneser-Ney", "kneser-ney")):
        for n in orders:
            perplexity = NGramModel(order=n, smoothing=smoothing).fit(train, vocab=vocab).perplexity(val)
            scores[name].append(perplexity)
            step.figure(f"{name}, {n}-gram", round(perplexity, 3), "perplexity per character")
    best = min(range(len(orders)), key=lambda i: scores["Kneser-Ney"][i])
    step.figure("best order (Kneser-Ney)", orders[best])
    path = plot_lines(orders, scores, step.picture("1_4_perplexity_by_order.png"),
                      title="validation perplexity per character", xlabel="n (context = n - 1 characters)",
                      ylabel="perplexity")
    step.saved(path)
    step.say("""
        Longer contexts help at first. Then most long contexts of the validation text were never seen in
        training: add-one answers them with a nearly uniform guess and gets *worse*, while Kneser-Ney falls
        back on the shorter context and keeps improving, slowly. Counting runs out of data: that is the
        problem neural networks solve (level 2).
    """)
