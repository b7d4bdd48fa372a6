"""Perplexity: how many characters the model is, on average, as unsure as, on stories it never read."""

from __future__ import annotations

import math

from fromzero.classic.ngram import NGramModel
from fromzero.classic.plots import plot_bars
from fromzero.data.shards import load_shards
from fromzero.evaluate.perplexity import perplexity, sliding_windows, text_loss
from fromzero.lessons.course import Step
from fromzero.models import GPT
from fromzero.tokenizers import load_tokenizer

TITLE = "Perplexity: the mini GPT against the n-grams"
NEEDS = ("4.2",)


def run(step: Step) -> None:
    step.say("""
        The **loss** is the mean of -ln p(true next character). **Perplexity** = e^loss turns it into a
        count: a perplexity of 5 means the model is as unsure as if it chose among 5 equally likely
        characters each time. A model that knows nothing chooses among the whole vocabulary; a perfect
        one would reach 1. We measure it on the held-out stories of step 4.2, which it never trained on,
        and compare it with the counting models of level 1 on exactly the same text.

        The stories are longer than the model's context, so the text is read through a **sliding window**:
        windows of the context length, half a context apart, each scoring only the characters the
        windows before it did not, so every character is predicted once and with plenty of context.
    """)
    step.show(sliding_windows)
    step.show(text_loss)
    out = step.output("4.2")
    model = GPT.from_pretrained(out).eval()
    tokenizer = load_tokenizer(out)
    shards = load_shards(out / "data")
    val = shards.val[: step.pick(3_000, len(shards.val))]
    loss = text_loss(model, val)
    step.figure("held-out characters", len(val))
    step.figure("mini GPT: loss", round(loss, 3), "nats per character")
    step.figure("mini GPT: perplexity", round(perplexity(loss), 2))
    step.figure("mini GPT: bits per character", round(loss / math.log(2), 3))
    step.figure("knowing nothing: perplexity = vocabulary", tokenizer.vocab_size)

    step.say("The n-gram models of level 1, trained on the same training characters:")
    train_text = tokenizer.decode(shards.train[: step.pick(30_000, len(shards.train))].tolist())
    val_text = tokenizer.decode(val.tolist())
    scores = {"uniform": float(tokenizer.vocab_size)}
    for order in (2, 3, 5):
        ngram = NGramModel(order=order, smoothing="kneser-ney").fit(train_text)
        scores[f"{order}-gram"] = ngram.perplexity(val_text)
        step.figure(f"{order}-gram (Kneser-Ney): perplexity", round(scores[f"{order}-gram"], 2))
    scores["mini GPT"] = perplexity(loss)
    path = plot_bars(list(scores), {"perplexity": list(scores.values())}, step.picture("4_4_perplexity.png"),
                     title="perplexity on held-out stories (lower is better)", ylabel="perplexity per character")
    step.saved(path)
    best = min(scores, key=scores.get)
    step.figure("lowest perplexity", best)
    step.say(f"""
        The GPT looks back {model.config.block_size} characters and learns what matters; an n-gram only sees its last few
        characters and must have seen the exact sequence before. (After only the few steps of `--quick`
        the GPT has barely started and the counting models still win.) Perplexities compare only between
        models with the same tokens: per character here, per BPE token elsewhere.
    """)
