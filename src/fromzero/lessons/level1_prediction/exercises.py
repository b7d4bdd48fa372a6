"""Level 1 exercises, checked by ``fromzero learn check 1.NAME FILE``."""

from __future__ import annotations

import random

from fromzero.lessons.exercises import Check


def _trigram_probability(text: str, context: str, token: str) -> float:
    from fromzero.classic.ngram import NGramModel

    return NGramModel(order=3, smoothing="none").fit(text).prob(context, token)


def _cases() -> list[tuple]:
    text = "the cat sat on the mat. the cat ate the rat."
    return [(text, "th", "e"), (text, "ca", "t"), (text, "e ", "c"), (text, "at", ".")]


def _apply_temperature(probs: list[float], temperature: float) -> list[float]:
    """The library's temperature: the scores are log p, divided by T, then softmax."""
    import torch

    from fromzero.generation.processors import temperature as divide_by_temperature

    scores = torch.tensor(probs, dtype=torch.float64).log()
    return torch.softmax(divide_by_temperature(None, scores, temperature), dim=-1).tolist()


def _temperature_cases() -> list[tuple]:
    rng = random.Random(1)
    cases = [([0.5, 0.3, 0.15, 0.05], t) for t in (0.5, 1.0, 2.0)] + [([0.7, 0.2, 0.1, 0.0], 0.25)]
    for _ in range(3):
        weights = [rng.random() for _ in range(rng.randint(3, 8))]
        cases.append(([w / sum(weights) for w in weights], rng.choice([0.1, 0.8, 3.0])))
    return cases


def _close(got, expected) -> bool:
    try:
        return len(got) == len(expected) and all(abs(float(g) - e) < 1e-6 for g, e in zip(got, expected))
    except TypeError:
        return False


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
    "temperature": Check(
        function="apply_temperature",
        task="write apply_temperature(probs, temperature): the distribution after temperature T > 0",
        reference=_apply_temperature,
        cases=_temperature_cases,
        same=_close,
        hints=("raise every probability to the power 1 / T, then divide by their sum so they add up to 1",
               "the same thing: scores = log p, divide the scores by T, softmax",
               "a probability of 0 must stay 0; T = 1 must give back the same list"),
    ),
}
