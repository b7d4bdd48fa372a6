"""Which weight layout makes batch-1 CPU decoding fastest? The 49 matmuls of one GPT-2 124M step.

A decode step at batch 1 is almost all matrix-vector products (the 48 block projections and the
output layer). ``nn.Linear`` stores W as (out, in) and computes x @ W^T; transformers' Conv1D
stores W as (in, out) and calls ``addmm``. Same arithmetic, different memory walk: this script
times both on the shapes of one step, so a change of the model's layout is decided by a number.

    python benchmarks/matmul_layout.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

# (in, out) of the matmuls of one GPT-2 small decode step: 12 x (c_attn, attn c_proj, c_fc, mlp c_proj) + lm_head
SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768)] * 12 + [(768, 50257)]


def time_step(layout: str, batch: int, repeats: int) -> float:
    """Median milliseconds for the 49 matmuls of one step in the given layout."""
    torch.manual_seed(0)
    weights = [torch.randn(o, i) if layout == "linear" else torch.randn(i, o) for i, o in SHAPES]
    biases = [torch.randn(o) for _, o in SHAPES]
    inputs = {i: torch.randn(batch, i) for i, _ in SHAPES}
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            for (i, _), w, b in zip(SHAPES, weights, biases):
                if layout == "linear":
                    torch.nn.functional.linear(inputs[i], w, b)
                else:
                    torch.addmm(b, inputs[i], w)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 15")
    args = parser.parse_args()
    repeats = 3 if args.quick else 15
    rows = []
    for batch in (1, 8):
        linear = time_step("linear", batch, repeats)
        addmm = time_step("addmm", batch, repeats)
        rows.append({"batch": batch, "linear_out_in_ms": linear, "addmm_in_out_ms": addmm,
                     "speedup": linear / addmm})
    table = Table(title=f"49 matmuls of one GPT-2 124M decode step, fp32, {torch.get_num_threads()} threads")
    for column in ("batch", "F.linear, W (out, in) ms", "addmm, W (in, out) ms", "linear / addmm"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["batch"]), f"{row['linear_out_in_ms']:.1f}", f"{row['addmm_in_out_ms']:.1f}",
                      f"{row['speedup']:.2f}x")
    Console().print(table)
    out = Path(__file__).parent / "results" / ("matmul_layout_quick.json" if args.quick else "matmul_layout.json")
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows},
                              indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
