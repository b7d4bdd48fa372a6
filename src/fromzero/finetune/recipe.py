"""The course's level-5 recipe: the settings ``fromzero quickstart``, the README's tour and the level-5 lessons share.

Each function returns the keyword arguments of one stage's config (``TrainConfig`` for the base,
``SFTConfig``, ``DPOConfig``), rooted at an output folder ``out`` (stages write ``out/base``,
``out/sft``, ``out/dpo``). They were chosen by measurement on a 2-core CPU: the whole recipe takes
minutes, and each stage's held-out numbers improve on the one before (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PRETRAIN_STEPS, SFT_EPOCHS, DPO_EPOCHS = 600, 3, 2


def pretrain_settings(out: Path, steps: int = PRETRAIN_STEPS) -> dict[str, Any]:
    """A 2.3M-parameter GPT (4 layers, 6 heads, 192 wide, 256 tokens) with a 2,048-token BPE."""
    return dict(data=["stories", "education_qa/train"], text_field="output", tokenizer="bpe:2048",
                preset="mini", block_size=256, n_embd=192, n_head=6, dropout=0.1, max_steps=steps,
                eval_interval=100, out=str(out / "base"))


def sft_settings(out: Path, epochs: int = SFT_EPOCHS) -> dict[str, Any]:
    """LoRA on every linear layer (a model this small has little to spare), a learning rate to match."""
    return dict(model=str(out / "base"), data="education_qa", epochs=epochs, lr=2e-3, warmup_steps=20,
                lora_targets=("c_attn", "c_proj", "c_fc"), out=str(out / "sft"))


def dpo_settings(out: Path, epochs: int = DPO_EPOCHS) -> dict[str, Any]:
    return dict(model=str(out / "base"), adapter=str(out / "sft"), data="preferences", epochs=epochs, lr=5e-4,
                out=str(out / "dpo"))
