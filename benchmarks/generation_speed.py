"""Decoding speed: fromzero ``generate`` vs transformers ``generate`` on the same GPT-2 124M weights.

A random GPT-2 small (124M parameters, fp32) is built with transformers, saved, and loaded into
fromzero, so both run identical weights; fromzero also runs them packed for oneDNN, as
``fromzero generate`` does by default (``quantize(model, "fp32")``: the same numbers, multiplied by
a faster CPU kernel). Each measurement generates 128 new tokens after a 32-token prompt: greedily
at batch 1 and batch 8, and with beam search (4 beams, one prompt; tokens/s counts the tokens of
the returned sequence). The libraries alternate, and the table reports the median tokens/s over
the repeats. The outputs are also checked to be the same tokens.

    flock /tmp/fromzero-bench.lock python benchmarks/generation_speed.py          # full run
    flock /tmp/fromzero-bench.lock python benchmarks/generation_speed.py --quick  # smoke run

At batch 1 decoding is bound by reading every weight once per token (~498 MB in fp32), so the
ceiling is memory bandwidth / 498 MB; the table shows that bound for a bandwidth measured here.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fromzero.files import write_json
from fromzero.generation.quantize import quantize
from timing import quick_path  # benchmarks/timing.py

RESULTS = Path(__file__).parent / "results" / "generation_speed.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run: 16 new tokens, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per library and batch size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="greedy decoding at these batch sizes")
    parser.add_argument("--beams", type=int, default=4, help="beam search with this many beams (0: skip)")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    return parser.parse_args()


def build_models(directory: Path):
    """A random GPT-2 small in transformers and the same weights in fromzero."""
    import transformers

    from fromzero.models import GPT

    torch.manual_seed(0)
    # no eos: every run generates exactly --new-tokens tokens
    config = transformers.GPT2Config(bos_token_id=None, eos_token_id=None)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(directory)
    ours = GPT.from_pretrained(directory).eval()
    return hf, ours


def read_bandwidth_gbs(size_mb: int = 512, repeats: int = 5) -> float:
    """Memory read bandwidth (GB/s): the best of a few full sums over a buffer larger than caches."""
    buffer = torch.ones(size_mb * 2**20 // 4)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        buffer.sum()
        best = min(best, time.perf_counter() - start)
    return buffer.numel() * 4 / best / 1e9


def time_hf(hf, ids: torch.Tensor, new_tokens: int, beams: int) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    with torch.inference_mode():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                          min_new_tokens=None, do_sample=False, num_beams=beams, pad_token_id=0)
    return time.perf_counter() - start, out


def time_ours(model, ids: torch.Tensor, new_tokens: int, beams: int) -> tuple[float, torch.Tensor]:
    from fromzero.generation import GenerationConfig, generate

    start = time.perf_counter()
    out = generate(model, ids, GenerationConfig(max_new_tokens=new_tokens, num_beams=beams))
    return time.perf_counter() - start, out


def main() -> None:
    from rich.table import Table

    import transformers

    from fromzero.console import console, stdout

    args = parse_args()
    if args.quick:
        args.repeats, args.new_tokens = 1, 16
    with tempfile.TemporaryDirectory() as tmp:
        hf, ours = build_models(Path(tmp))
    weight_mb = sum(p.numel() * p.element_size() for p in ours.parameters()) / 1e6
    bandwidth = read_bandwidth_gbs()
    console.print(f"GPT-2 124M random weights ({weight_mb:.0f} MB fp32), threads={torch.get_num_threads()}, "
                  f"read bandwidth {bandwidth:.1f} GB/s")

    # the CLI's default: the same fp32 weights packed for oneDNN (fromzero.generation.quantize)
    packed = quantize(copy.deepcopy(ours), "fp32")
    libraries = {"transformers": lambda ids, n, beams: time_hf(hf, ids, n, beams),
                 "fromzero": lambda ids, n, beams: time_ours(ours, ids, n, beams),
                 "fromzero fp32 packed": lambda ids, n, beams: time_ours(packed, ids, n, beams)}
    # (name, batch, beams): greedy at each batch size, then beam search on one prompt
    workloads = [(f"greedy, batch {batch}", batch, 1) for batch in args.batch_sizes]
    if args.beams > 1:
        workloads.append((f"beam search {args.beams}, batch 1", 1, args.beams))
    rows = []
    for workload, batch, beams in workloads:
        ids = torch.randint(0, 50257, (batch, args.prompt_tokens), generator=torch.Generator().manual_seed(batch))
        for run in libraries.values():
            run(ids, 4, beams)  # warm-up: first calls allocate and pick kernels
        rates: dict[str, list[float]] = {name: [] for name in libraries}
        bandwidths = []  # other machines on the host share its memory bus: sample it every repeat
        same = True
        for repeat in range(args.repeats):
            bandwidths.append(read_bandwidth_gbs(repeats=3))
            outputs = {}
            for name, run in libraries.items():
                seconds, outputs[name] = run(ids, args.new_tokens, beams)
                rates[name].append(batch * (outputs[name].shape[1] - args.prompt_tokens) / seconds)
            same = same and all(torch.equal(outputs["transformers"], out) for out in outputs.values())
            console.print(f"{workload} run {repeat + 1} ({bandwidths[-1]:.0f} GB/s): " + ", ".join(
                f"{name} {rates[name][-1]:.1f} tok/s" for name in libraries) + f", same tokens: {same}")
        medians = {name: statistics.median(values) for name, values in rates.items()}
        rows.append(dict(workload=workload, batch=batch, beams=beams, transformers_tok_s=medians["transformers"],
                         fromzero_tok_s=medians["fromzero"], fromzero_fp32_packed_tok_s=medians["fromzero fp32 packed"],
                         speedup=medians["fromzero"] / medians["transformers"],
                         speedup_fp32_packed=medians["fromzero fp32 packed"] / medians["transformers"],
                         same_tokens=same, runs={name: values for name, values in rates.items()},
                         read_bandwidth_gb_s=bandwidths))

    bound = bandwidth * 1e3 / weight_mb
    table = Table(title=f"GPT-2 124M fp32 decoding, prompt {args.prompt_tokens} + {args.new_tokens} new tokens, "
                        f"median of {args.repeats}")
    for column in ("workload", "read GB/s", "transformers tok/s", "fromzero tok/s", "speedup",
                   "fromzero fp32 packed tok/s", "speedup", "same tokens"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["workload"], f"{min(row['read_bandwidth_gb_s']):.0f}-{max(row['read_bandwidth_gb_s']):.0f}",
                      f"{row['transformers_tok_s']:.1f}", f"{row['fromzero_tok_s']:.1f}",
                      f"{row['speedup']:.2f}x", f"{row['fromzero_fp32_packed_tok_s']:.1f}",
                      f"{row['speedup_fp32_packed']:.2f}x", str(row["same_tokens"]))
    stdout.print(table)
    stdout.print(f"batch-1 fp32 bound (bandwidth / weight bytes): {bound:.1f} tok/s")
    results = quick_path(RESULTS) if args.quick else RESULTS
    write_json(results, dict(
        benchmark="generation_speed", quick=args.quick, prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens, repeats=args.repeats, threads=torch.get_num_threads(),
        torch=torch.__version__, transformers=transformers.__version__, weight_mb=weight_mb,
        read_bandwidth_gb_s=bandwidth, batch1_bound_tok_s=bound, results=rows,
    ))
    console.print(f"wrote {results}")


if __name__ == "__main__":
    main()
