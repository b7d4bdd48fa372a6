"""Which matrix kernel makes CPU decoding fastest? The 49 matmuls of one GPT-2 124M decode step.

A decode step is almost all matrix products of a few rows (1 per sequence) with every weight
matrix: the 48 block projections and the output layer. This script times those 49 products through
every kernel ``fromzero.generation.quantize`` can choose, for each weight mode:

- fp32: ``gemv`` (fromzero's own C kernel, ``fromzero.kernels``), ``packed`` (oneDNN on a prepacked
  weight), ``transposed`` (``addmm`` on an (in, out) weight, transformers' Conv1D layout; MKL) and
  ``plain`` (``F.linear``, what ``nn.Linear`` does; MKL);
- bf16 weights: ``gemv`` (fp32 activations) and ``packed`` (oneDNN, bf16 activations);
- int8 weights: ``gemv`` (fp32 activations) and ``torch`` (``torch._weight_int8pack_mm``, bf16 activations);

and reports the read bandwidth each reaches (weight bytes / time). At batch 1 that bandwidth is
the whole story: decoding cannot go faster than the memory bus delivers the weights. Which kernel
wins depends on the CPU, the thread count (``--threads``) and the rows: what ``quantize`` measures
on the model's own shapes before it picks one.

    flock /tmp/fromzero-bench.lock python benchmarks/matmul_kernels.py [--quick] [--threads N] [--batches 1 4 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from fromzero.files import write_json
from fromzero.generation.quantize import KERNELS, convert_linear, kernel_names
from fromzero.machine import describe, read_bandwidth
from timing import quick_path, timed  # benchmarks/timing.py

RESULTS = Path(__file__).parent / "results" / "matmul_kernels.json"
# (in, out) of the matmuls of one GPT-2 small decode step: 12 x (c_attn, attn c_proj, c_fc, mlp c_proj) + lm_head
SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768)] * 12 + [(768, 50257)]
BYTES_PER_WEIGHT = {"fp32": 4, "bf16": 2, "int8": 1}


def step_function(mode: str, kernel: str, batch: int):
    """A function running the 49 matmuls of one step with ``kernel`` for ``mode``, on fixed random data."""
    generator = torch.Generator().manual_seed(0)
    bf16_model = mode == "bf16" and kernel != "gemv"  # oneDNN's bf16 path runs the whole model in bf16
    layers = []
    for i, o in SHAPES:
        linear = torch.nn.Linear(i, o, device="meta")
        linear.weight = torch.nn.Parameter(torch.randn(o, i, generator=generator) / i**0.5, requires_grad=False)
        linear.bias = torch.nn.Parameter(torch.randn(o, generator=generator), requires_grad=False)
        layers.append(convert_linear(linear, KERNELS[mode][kernel], torch.bfloat16 if bf16_model else None))
    inputs = {i: torch.randn(batch, i, generator=generator).to(torch.bfloat16 if bf16_model else torch.float32)
              for i, _ in SHAPES}

    def step():
        for (i, _), layer in zip(SHAPES, layers):
            layer(inputs[i])
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 15")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own count)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="rows multiplied at once")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 15
    widths = {i for i, _ in SHAPES}
    bandwidth = read_bandwidth()
    rows = []
    with torch.inference_mode():
        for mode in KERNELS:
            weight_bytes = sum(i * o for i, o in SHAPES) * BYTES_PER_WEIGHT[mode]
            for batch in args.batches:
                row = {"mode": mode, "batch": batch, "weight_bytes": weight_bytes}
                for kernel in kernel_names(mode, widths):
                    step = step_function(mode, kernel, batch)
                    step()  # warm-up: first calls pick kernels and compile fromzero's
                    _, seconds = timed(step, repeats)
                    row[kernel] = {"ms": seconds * 1000, "read_gb_s": weight_bytes / seconds / 1e9}
                rows.append(row)
    table = Table(title=f"49 matmuls of one GPT-2 124M decode step, {torch.get_num_threads()} threads, median of "
                        f"{repeats}; memory reads {bandwidth:.1f} GB/s (a sum)")
    for column in ("weights", "batch", "kernel: ms (GB/s of weights)", "fastest"):
        table.add_column(column)
    for row in rows:
        kernels = {k: v for k, v in row.items() if isinstance(v, dict)}
        fastest = min(kernels, key=lambda k: kernels[k]["ms"])
        table.add_row(row["mode"], str(row["batch"]),
                      ", ".join(f"{k} {v['ms']:.1f} ({v['read_gb_s']:.0f})" for k, v in kernels.items()), fastest)
    Console().print(table)
    out = RESULTS
    if args.threads:
        out = out.with_name(f"{out.stem}_{args.threads}thread{'s' if args.threads > 1 else ''}.json")
    if args.quick:  # last, so the name ends in _quick.json, which git ignores
        out = quick_path(out)
    write_json(out, {"machine": describe(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                     "read_gb_s": bandwidth, "repeats": repeats, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
