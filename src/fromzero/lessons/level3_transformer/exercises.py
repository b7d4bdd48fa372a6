"""Level 3 exercises, checked by ``fromzero learn check 3.NAME FILE``."""

from __future__ import annotations

from fromzero.lessons.exercises import Check


def _attention_parameters(n_embd: int, n_head: int) -> int:
    """The library's count: build the layer and count its weights and biases."""
    from fromzero.nn import MultiHeadAttention

    return sum(p.numel() for p in MultiHeadAttention(n_embd, n_head).parameters())


def _heads_cases() -> list[tuple]:
    return [(64, 1), (64, 4), (64, 16), (128, 8), (768, 12), (96, 3)]


CHECKS = {
    "heads": Check(
        function="attention_parameters",
        task="write attention_parameters(n_embd, n_head): how many parameters one multi-head attention layer has",
        reference=_attention_parameters,
        cases=_heads_cases,
        same=lambda got, expected: int(got) == expected,
        hints=("c_attn maps n_embd inputs to 3 x n_embd outputs (query, key and value), with a bias per output",
               "c_proj maps n_embd back to n_embd, with a bias",
               "each head works on an n_embd / n_head slice: does cutting a matrix into slices add weights?"),
    ),
}
