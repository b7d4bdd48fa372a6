"""Attention's forward and backward under CPU bf16 autocast: in bf16 (as torch has it) or in fp32.

Why this exists: torch's bf16 flash-attention backward on CPUs is slow for short heads, and in a bf16
training step of nanoGPT's CPU model it alone cost more than bf16 saved on every matrix product.
fromzero therefore measures the two at each training shape (:mod:`fromzero.nn.attention_kernel`).
This script shows the two side by side over the shapes of this repository's benchmarks, through the
library's own ``attend`` with the choice forced (``FROMZERO_ATTENTION_PRECISION``), so the fp32 figures
include casting q, k, v up and the result back down. Both are taken in alternating rounds; medians.

    flock /tmp/fromzero-bench.lock python benchmarks/attention_precision.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from rich.table import Table

from fromzero.console import console, stdout
from fromzero.files import write_json
from fromzero.machine import describe
from fromzero.nn.attention_kernel import CHOICE, attend
from timing import cpu_name, quick_path, utc_now  # benchmarks/timing.py

ROOT = Path(__file__).resolve().parent
# (batch, heads, positions, head dim): where they come from
SHAPES = {
    "nanoGPT CPU config": (12, 4, 64, 32),
    "fromzero recipe": (16, 4, 64, 32),
    "course preset mini, 16 rows": (16, 4, 128, 32),
    "DistilGPT-2 LoRA SFT": (4, 12, 256, 64),
    "GPT-2, 1024 positions": (4, 12, 1024, 64),
}
CHOICES = ("autocast", "float32")


def step(shape: tuple[int, ...], precision: str):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(shape, generator=generator).bfloat16().requires_grad_() for _ in range(3))

    def run() -> None:
        os.environ["FROMZERO_" + CHOICE.upper()] = precision
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = attend(q, k, v, is_causal=True)
        y.float().sum().backward()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per shape (median)")
    parser.add_argument("--quick", action="store_true", help="the two short shapes, 2 rounds: a smoke test")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "attention_precision.json")
    args = parser.parse_args()
    shapes = dict(list(SHAPES.items())[:2]) if args.quick else SHAPES
    rounds = 2 if args.quick else args.rounds
    console.print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads")

    table = Table(title="causal attention, forward + backward, under bf16 autocast (ms, median)")
    for column in ("shape", "(B, H, T, D)", "bf16", "fp32", "bf16 / fp32"):
        table.add_column(column, justify="left" if column == "shape" else "right")
    results = []
    for name, shape in shapes.items():
        runs = {precision: step(shape, precision) for precision in CHOICES}
        for run in runs.values():
            run()  # warm-up
        seconds = {precision: [] for precision in CHOICES}
        for _ in range(rounds):
            for precision, run in runs.items():
                start = time.perf_counter()
                run()
                seconds[precision].append(time.perf_counter() - start)
        ms = {precision: 1000 * statistics.median(values) for precision, values in seconds.items()}
        results.append({"name": name, "shape": shape, "ms": ms})
        table.add_row(name, str(shape), f"{ms['autocast']:.2f}", f"{ms['float32']:.2f}",
                      f"{ms['autocast'] / ms['float32']:.2f}x")
    stdout.print(table)
    out = quick_path(args.out) if args.quick else args.out
    write_json(out, {"date": utc_now(), "machine": describe(),
                     "rounds": rounds, "results": results})
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
