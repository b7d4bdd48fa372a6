"""Attention by hand: three words, vectors of two numbers, every step computed and then checked."""

from __future__ import annotations

import math

import torch

from fromzero.lessons.course import Step
from fromzero.nn import scaled_dot_product_attention

TITLE = "Attention by hand"
WORDS = ("the", "cat", "sat")
# Small made-up vectors (2 numbers each) so every product can be followed on paper.
QUERIES = ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0))
KEYS = ((1.0, 0.0), (0.0, 2.0), (1.0, 1.0))
VALUES = ((1.0, 0.0), (0.0, 1.0), (0.5, 0.5))


def run(step: Step) -> None:
    step.say("""
        **Attention** lets each word collect information from the other words. Every word makes three
        vectors: a **query** (what am I looking for?), a **key** (what do I offer?) and a **value** (what
        I pass on). Word i scores every word j by the dot product query_i · key_j, divided by sqrt(d)
        (d = numbers per vector); **softmax** turns the scores into weights that add up to 1; word i's
        output is the weighted sum of the values. Here with d = 2, by hand, in plain Python:
    """)
    d = len(QUERIES[0])
    scores = [[sum(q * k for q, k in zip(query, key)) / math.sqrt(d) for key in KEYS] for query in QUERIES]
    weights = []
    for row in scores:
        exps = [math.exp(s) for s in row]  # softmax: make positive, then divide by the total
        weights.append([e / sum(exps) for e in exps])
    outputs = [[sum(w * value[c] for w, value in zip(row, VALUES)) for c in range(d)] for row in weights]

    i = WORDS.index("sat")
    step.figure("'sat' scores 'cat'", f"({QUERIES[i][0]} x {KEYS[1][0]} + {QUERIES[i][1]} x {KEYS[1][1]}) / "
                f"sqrt({d}) = {scores[i][1]:.4f}")
    for j, word in enumerate(WORDS):
        step.figure(f"score of 'sat' for '{word}'", round(scores[i][j], 4))
    exps = [math.exp(s) for s in scores[i]]
    step.figure("exp of those scores", [round(e, 4) for e in exps])
    step.figure("their sum", round(sum(exps), 4))
    for j, word in enumerate(WORDS):
        step.figure(f"weight of '{word}' for 'sat' (softmax)", round(weights[i][j], 4))
    step.figure("the weights of 'sat' add up to", round(sum(weights[i]), 6))
    for word, output in zip(WORDS, outputs):
        step.figure(f"output of '{word}'", [round(v, 4) for v in output])

    step.say("Now the library's attention on the same numbers; it must give the same result:")
    step.show(scaled_dot_product_attention)
    q, k, v = (torch.tensor(m, dtype=torch.float64) for m in (QUERIES, KEYS, VALUES))
    library_out, library_weights = scaled_dot_product_attention(q, k, v)
    step.figure("largest difference in the weights, by hand vs library",
                float((library_weights - torch.tensor(weights, dtype=torch.float64)).abs().max()))
    step.figure("largest difference in the outputs, by hand vs library",
                float((library_out - torch.tensor(outputs, dtype=torch.float64)).abs().max()))

    step.say("""
        **Why divide by sqrt(d)?** A dot product of two random vectors of d numbers has a spread (variance)
        of about d. Real models use d = 64 or more, so the scores would be large, softmax would put almost
        all the weight on one word, and learning would stall. Dividing by sqrt(d) brings the variance
        back to about 1, whatever d is. Measured on 10,000 random pairs:
    """)
    generator = torch.Generator().manual_seed(0)
    for size in (2, 64, 512):
        a, b = torch.randn(2, 10_000, size, generator=generator)
        dots = (a * b).sum(-1)
        step.figure(f"d = {size}: variance of the dot products", round(float(dots.var()), 2),
                    f"-> divided by sqrt(d): {float((dots / math.sqrt(size)).var()):.2f}")
