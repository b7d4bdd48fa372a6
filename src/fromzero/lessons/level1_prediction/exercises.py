"""Level 1 exercises, checked by ``fromzero learn check 1.NAME FILE``."""

from __future__ import annotations

from fromzero.lessons.exercises import Check


def _trigram_probability(text: str, context: str, token: str) -> float:
    from fromzero.classic.ngram import NGramModel

    return NGramModel(order=3, smoothing="none").fit(text).prob(context, token)


def _cases() -> list[tuple]:
    text = "the cat sat on the mat. the cat ate the rat."
    return [(text, "th", "e"), (text, "ca", "t"), (text, "e ", "c"), (text, "at", ".")]


CHECKS = {
    "trigram": Check(
        function="trigram_probability",
        task="write trigram_probability(text, context, token): P(token | the two characters before it), by counting",
        reference=_trigram_probability,
        cases=_cases,
        same=lambda got, expected: abs(float(got) - expected) < 1e-9,
        hints=("count every 3-character window of the text, and every 2-character window that starts one",
               "P = count(context + token) / count(context followed by anything)"),
    ),
}
