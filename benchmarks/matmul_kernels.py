"""Which matrix kernel makes CPU decoding fastest? The 49 matmuls of one GPT-2 124M decode step.

A decode step is almost all matrix products of a few rows (1 per sequence) with every weight
matrix: the 48 block projections and the output layer. This script times those 49 products, with
the same fp32 numbers, three ways:

- ``F.linear``: what ``nn.Linear`` does; W stored as (out, in), torch sends it to MKL (the "plain" layout
  of ``fromzero.generation.quantize``).
- ``addmm``: W stored as (in, out), transformers' Conv1D layout; also MKL: the library's
  ``TransposedLinear`` (the "transposed" layout).
- oneDNN packed: W reordered once into oneDNN's blocked layout, multiplied by oneDNN: the
  ``PackedLinear`` layers (the "packed" layout).

and reports the read bandwidth each reaches (weight bytes / time). At batch 1 that bandwidth is
the whole story: decoding cannot go faster than the memory bus delivers the weights. Which layout
wins depends on the CPU and the thread count (``--threads``): what ``quantize`` measures on the
model's own shapes before it picks one.

    flock /tmp/fromzero-bench.lock python benchmarks/matmul_kernels.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from fromzero.files import write_json
from fromzero.generation.quantize import PackedLinear, TransposedLinear, onednn_packing_works
from fromzero.machine import describe
from timing import quick_path, timed  # benchmarks/timing.py

RESULTS = Path(__file__).parent / "results" / "matmul_kernels.json"
# (in, out) of the matmuls of one GPT-2 small decode step: 12 x (c_attn, attn c_proj, c_fc, mlp c_proj) + lm_head
SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768)] * 12 + [(768, 50257)]
KERNELS = ("F.linear", "addmm", "oneDNN packed")


def step_function(kernel: str, batch: int):
    """A function running the 49 matmuls of one step with ``kernel``, on fixed random data."""
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(o, i, generator=generator) for i, o in SHAPES]  # (out, in), as nn.Linear
    biases = [torch.randn(o, generator=generator) for _, o in SHAPES]
    inputs = {i: torch.randn(batch, i, generator=generator) for i, _ in SHAPES}
    layers = []
    for (i, o), w, b in zip(SHAPES, weights, biases):
        linear = torch.nn.Linear(i, o, device="meta")
        linear.weight, linear.bias = torch.nn.Parameter(w), torch.nn.Parameter(b)
        layers.append(LAYOUTS[kernel](linear))

    def step():
        for (i, _), layer in zip(SHAPES, layers):
            layer(inputs[i])
    return step


# the library's layers, as quantize(model, "fp32") builds them for each layout
LAYOUTS = {"F.linear": lambda linear: linear, "addmm": TransposedLinear, "oneDNN packed": PackedLinear}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 15")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own count)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not onednn_packing_works():
        raise SystemExit("this torch build has no oneDNN: there is no packed kernel to compare")
    repeats = 3 if args.quick else 15
    weight_bytes = sum(i * o * 4 for i, o in SHAPES)
    rows = []
    with torch.inference_mode():
        for batch in (1, 8):
            row = {"batch": batch}
            for kernel in KERNELS:
                step = step_function(kernel, batch)
                step()  # warm-up: first calls pick and JIT-compile kernels
                _, seconds = timed(step, repeats)
                row[kernel] = {"ms": seconds * 1000, "read_gb_s": weight_bytes / seconds / 1e9}
            row["packed_vs_linear"] = row["F.linear"]["ms"] / row["oneDNN packed"]["ms"]
            row["packed_vs_addmm"] = row["addmm"]["ms"] / row["oneDNN packed"]["ms"]
            rows.append(row)
    table = Table(title=f"49 matmuls of one GPT-2 124M decode step, fp32 ({weight_bytes / 1e6:.0f} MB of weights), "
                        f"{torch.get_num_threads()} threads, median of {repeats}")
    table.add_column("batch", justify="right")
    for kernel in KERNELS:
        table.add_column(f"{kernel} ms (GB/s)", justify="right")
    table.add_column("packed vs F.linear", justify="right")
    table.add_column("packed vs addmm", justify="right")
    for row in rows:
        table.add_row(str(row["batch"]),
                      *(f"{row[k]['ms']:.1f} ({row[k]['read_gb_s']:.0f})" for k in KERNELS),
                      f"{row['packed_vs_linear']:.2f}x", f"{row['packed_vs_addmm']:.2f}x")
    Console().print(table)
    out = quick_path(RESULTS) if args.quick else RESULTS
    if args.threads:
        out = out.with_name(f"{out.stem}_{args.threads}thread{'s' if args.threads > 1 else ''}.json")
    write_json(out, {"machine": describe(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                     "weight_bytes": weight_bytes, "repeats": repeats, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
