"""Level 5 exercises, checked by ``fromzero learn check 5.NAME FILE``."""

from __future__ import annotations

import random

from fromzero.lessons.exercises import Check


def _lora_parameters(d_in: int, d_out: int, r: int, layers: int) -> int:
    """The library's count: add LoRA to a Linear of that shape in each layer and count what trains."""
    from torch import nn

    from fromzero.finetune.lora import LoRAConfig, LoRALinear

    layer = LoRALinear(nn.Linear(d_in, d_out))
    layer.add("default", LoRAConfig(r=r))
    return layers * (layer.lora_A["default"].weight.numel() + layer.lora_B["default"].weight.numel())


def _rank_cases() -> list[tuple]:
    rng = random.Random(5)
    return [(768, 2304, 8, 6), (768, 768, 4, 12)] + [
        (rng.choice([64, 128, 256]), rng.choice([64, 192, 768]), rng.choice([1, 2, 16]), rng.randint(1, 8))
        for _ in range(4)
    ]


CHECKS = {
    "lora_rank": Check(
        function="lora_parameters",
        task="write lora_parameters(d_in, d_out, r, layers): how many weights LoRA trains on one such matrix per layer",
        reference=_lora_parameters,
        cases=_rank_cases,
        same=lambda got, expected: int(got) == expected,
        hints=("A is d_in x r and B is r x d_out", "the frozen W itself does not count"),
    ),
}
