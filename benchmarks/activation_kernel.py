"""GELU in an fp32 CPU training step: torch's kernel against fromzero's C kernel (``activations.c``).

Why this exists: on a CPU without bf16 a training step of nanoGPT's CPU model spent a tenth of its time in
torch's exact GELU (benchmarks/RESULTS.md, Zen 3), and torch's tanh GELU (GPT-2's) is slower still.
fromzero measures both kernels at each training shape and keeps the faster
(:mod:`fromzero.nn.activation_kernel`). This script shows them side by side, twice:

1. the activation alone, forward and backward, at the feed-forward shapes of this repository's benchmarks;
2. whole training steps of nanoGPT's CPU model (random tokens), with the choice forced each way
   (``FROMZERO_ACTIVATION_KERNEL``) in alternating blocks of steps in one process: the step-time ratio is
   what a run gains.

Both in alternating rounds; medians.

    flock /tmp/fromzero-bench.lock python benchmarks/activation_kernel.py
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from fromzero.console import console, stdout
from fromzero.files import write_json
from fromzero.kernels.activations import torch_activation
from fromzero.machine import describe
from fromzero.models import GPT, GPTConfig
from fromzero.nn.activation_kernel import CHOICE, NativeActivation
from fromzero.training import TrainConfig, Trainer
from timing import cpu_name, quick_path, utc_now  # benchmarks/timing.py
from train_vs_nanogpt import MODEL  # nanoGPT's CPU config

ROOT = Path(__file__).resolve().parent
SHAPES = {  # (rows, positions, feed-forward width): where they come from
    "nanoGPT CPU config": (12, 64, 512),
    "fromzero recipe": (16, 64, 512),
    "DistilGPT-2 LoRA SFT": (4, 256, 3072),
}
KINDS = ("gelu", "gelu_new")
KERNELS = ("torch", "native")
VARIABLE = "FROMZERO_" + CHOICE.upper()  # forces the choice


def alone(shape: tuple[int, ...], kind: str, kernel: str):
    """One forward and backward of the activation at ``shape``."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator).requires_grad_()
    grad = torch.randn(shape, generator=generator)
    apply = (lambda: torch_activation(x, kind)) if kernel == "torch" else (lambda: NativeActivation.apply(x, kind))
    return lambda: apply().backward(grad)


def alternate(runs: dict, rounds: int, warm_up: int = 1) -> dict[str, list[float]]:
    """Each run ``warm_up`` times, then ``rounds`` times in turn (the order flipped every round): seconds."""
    for run in runs.values():
        for _ in range(warm_up):
            run()
    seconds = {name: [] for name in runs}
    for round_ in range(rounds):
        for name in (list(runs) if round_ % 2 == 0 else list(runs)[::-1]):
            start = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def training_steps(kind: str, blocks: int, steps: int) -> dict:
    """Median step time of nanoGPT's CPU model with each kernel forced, in alternating blocks of ``steps``."""
    tokens = np.random.default_rng(0).integers(0, 65, 200_000).astype(np.uint16)
    torch.manual_seed(1337)
    config = TrainConfig(batch_size=12, block_size=MODEL["block_size"], max_steps=10_000, lr=1e-3, dtype="float32",
                         seed=1337, sample_tokens=0, eval_interval=100_000)
    trainer = Trainer(GPT(GPTConfig(vocab_size=65, activation=kind, **MODEL)), config, tokens, tokens, quiet=True)
    step = 0

    def block(kernel: str) -> None:
        nonlocal step
        os.environ[VARIABLE] = kernel
        for _ in range(steps):
            trainer.train_step(step)
            step += 1
    saved = os.environ.get(VARIABLE)
    try:
        with trainer.following_free_cores():
            seconds = alternate({kernel: functools.partial(block, kernel) for kernel in KERNELS}, blocks)
    finally:
        if saved is None:
            os.environ.pop(VARIABLE, None)
        else:
            os.environ[VARIABLE] = saved
    ms = {kernel: 1000 * statistics.median(values) / steps for kernel, values in seconds.items()}
    ratios = [native / torch_ for native, torch_ in zip(seconds["native"], seconds["torch"])]
    return {"kind": kind, "ms_per_step": ms, "native_over_torch": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)], "blocks": blocks, "steps_per_block": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds per shape (median)")
    parser.add_argument("--blocks", type=int, default=16, help="alternating blocks of training steps per kernel")
    parser.add_argument("--steps", type=int, default=10, help="training steps per block")
    parser.add_argument("--quick", action="store_true", help="one shape, 2 rounds, 2 blocks of 2 steps: a smoke test")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "activation_kernel.json")
    args = parser.parse_args()
    shapes = dict(list(SHAPES.items())[:1]) if args.quick else SHAPES
    rounds, blocks, steps = (2, 2, 2) if args.quick else (args.rounds, args.blocks, args.steps)
    console.print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads")

    table = Table(title="the activation alone, forward + backward, fp32 (ms, median)")
    for column in ("shape", "(B, T, width)", "activation", "torch", "fromzero C", "C / torch"):
        table.add_column(column, justify="left" if column in ("shape", "activation") else "right")
    alone_results = []
    for name, shape in shapes.items():
        for kind in KINDS:
            # a fresh process runs its first few hundred milliseconds slowly here, whoever runs: warm up long
            seconds = alternate({kernel: alone(shape, kind, kernel) for kernel in KERNELS}, rounds, warm_up=20)
            ms = {kernel: 1000 * statistics.median(values) for kernel, values in seconds.items()}
            alone_results.append({"name": name, "shape": shape, "kind": kind, "ms": ms})
            table.add_row(name, str(shape), kind, f"{ms['torch']:.3f}", f"{ms['native']:.3f}",
                          f"{ms['native'] / ms['torch']:.2f}x")
    stdout.print(table)

    table = Table(title=f"training steps of nanoGPT's CPU model, fp32, {blocks} alternating blocks of {steps} steps")
    for column in ("activation", "torch ms/step", "fromzero C ms/step", "C / torch (median of blocks)", "range"):
        table.add_column(column, justify="left" if column == "activation" else "right")
    step_results = []
    for kind in KINDS:
        result = training_steps(kind, blocks, steps)
        step_results.append(result)
        ms, low_high = result["ms_per_step"], result["ratio_range"]
        table.add_row(kind, f"{ms['torch']:.1f}", f"{ms['native']:.1f}", f"{result['native_over_torch']:.3f}",
                      f"{low_high[0]:.2f}-{low_high[1]:.2f}")
    stdout.print(table)
    out = quick_path(args.out) if args.quick else args.out
    write_json(out, {"date": utc_now(), "machine": describe(), "rounds": rounds, "alone": alone_results,
                     "training_steps": step_results})
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
