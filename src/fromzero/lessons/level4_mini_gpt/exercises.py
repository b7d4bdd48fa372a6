"""Level 4 exercises, checked by ``fromzero learn check 4.NAME FILE``."""

from __future__ import annotations

from fromzero.lessons.exercises import Check


def _top_p(scores, p: float):
    """The library's nucleus filter on a (batch, vocabulary) tensor of scores."""
    from fromzero.generation import top_p

    return top_p(None, scores, p)


def _top_p_cases() -> list[tuple]:
    import torch

    generator = torch.Generator().manual_seed(4)
    cases = []
    for vocab, p, spread in ((10, 0.9, 2.0), (10, 0.5, 1.0), (50, 0.95, 3.0), (50, 0.3, 0.5), (5, 0.999, 1.0),
                             (20, 0.01, 2.0)):
        cases.append((torch.randn(2, vocab, generator=generator) * spread, p))
    return cases


def _same_filter(got, expected) -> bool:
    import torch

    got = torch.as_tensor(got, dtype=expected.dtype)
    removed = torch.isinf(expected)
    return (got.shape == expected.shape and torch.equal(torch.isinf(got) & (got < 0), removed)
            and torch.allclose(got[~removed], expected[~removed]))


CHECKS = {
    "top_p": Check(
        function="top_p",
        task="write top_p(scores, p): set to -inf every score outside the nucleus (the likeliest tokens "
             "whose probabilities first add up to at least p), per row of a (batch, vocabulary) tensor",
        reference=_top_p,
        cases=_top_p_cases,
        same=_same_filter,
        hints=("turn scores into probabilities with softmax, then sort them from likeliest to least likely",
               "keep a token if the probability of the tokens likelier than it adds up to less than p: the token "
               "that crosses p is kept too",
               "the likeliest token is always kept; the kept scores are left unchanged, the others become -inf"),
    ),
}
