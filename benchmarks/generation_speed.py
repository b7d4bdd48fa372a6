"""Decoding speed: fromzero ``generate`` vs transformers ``generate`` on the same GPT-2 124M weights.

A random GPT-2 small (124M parameters, fp32) is built with transformers, saved, and loaded into
fromzero, so both run identical weights; fromzero also runs them as ``fromzero generate`` does by
default (``quantize(model, "fp32")``: the same numbers, multiplied by the kernel measured fastest on
this machine: fromzero's own gemv, oneDNN's packed layout, a transposed one or plain ``nn.Linear``).
Each measurement generates 128 new tokens after a 32-token prompt: greedily at batch 1 and batch 8,
and with beam search (4 beams, one prompt; tokens/s counts the tokens of
the returned sequence). The libraries alternate, and the table reports the median tokens/s over
the repeats. The outputs are also checked to be the same tokens.

    flock /tmp/fromzero-bench.lock python benchmarks/generation_speed.py          # full run
    flock /tmp/fromzero-bench.lock python benchmarks/generation_speed.py --quick  # smoke run

At batch 1 decoding is bound by reading every weight once per token (~498 MB in fp32), so the
ceiling is memory bandwidth / 498 MB; the table shows that bound for the bandwidth measured here
with the threads fromzero decodes on (the free cores), and how much of it fromzero reaches.

``--background-load busy torch`` repeats everything while another process keeps the machine busy:
``busy`` a Python loop on one core, ``torch`` a 2-thread matrix-multiply job (as on a laptop where
something else runs). fromzero follows the free cores (``fromzero.machine``); transformers keeps
torch's default thread count, as its users do.

    flock /tmp/fromzero-bench.lock python benchmarks/generation_speed.py --background-load none busy torch
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
from fromzero.machine import describe, free_cores, read_bandwidth
from timing import BACKGROUND_LOADS, background_load, quick_path, utc_now  # benchmarks/timing.py

RESULTS = Path(__file__).parent / "results" / "generation_speed.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run: 16 new tokens, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per library and batch size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="greedy decoding at these batch sizes")
    parser.add_argument("--beams", type=int, default=4, help="beam search with this many beams (0: skip)")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--background-load", nargs="+", choices=list(BACKGROUND_LOADS), default=["none"],
                        help="run everything under each of these loads in turn (see above)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go (default: %(default)s)")
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
    console.print(f"GPT-2 124M random weights ({weight_mb:.0f} MB fp32); {describe()}")

    # (name, batch, beams): greedy at each batch size, then beam search on one prompt
    workloads = [(f"greedy, batch {batch}", batch, 1) for batch in args.batch_sizes]
    if args.beams > 1:
        workloads.append((f"beam search {args.beams}, batch 1", 1, args.beams))
    rows = []
    for load in args.background_load:
        with background_load(load):
            free = free_cores(0.5)
            bandwidth = read_bandwidth(free)  # on the threads fromzero decodes with under this load
            console.print(f"background load {load}: {free} free cores, read bandwidth on {free} thread(s) "
                          f"{bandwidth:.1f} GB/s")
            for workload, batch, beams in workloads:
                # the CLI's default, chosen as `fromzero generate` chooses it when it starts on a machine
                # this busy, for this many rows: the fp32 layout measured fastest (fromzero.generation.quantize)
                fastest = quantize(copy.deepcopy(ours), "fp32", rows=batch * beams)
                layout = type(fastest.lm_head).__name__
                libraries = {"transformers": lambda ids, n, beams: time_hf(hf, ids, n, beams),
                             "fromzero": lambda ids, n, beams: time_ours(ours, ids, n, beams),
                             "fromzero fastest layout": lambda ids, n, beams, model=fastest: time_ours(model, ids, n, beams)}
                rows.append(run_workload(libraries, workload, batch, beams, args, load, free, bandwidth, weight_mb)
                            | dict(layout=layout))
                del fastest, libraries

    table = Table(title=f"GPT-2 124M fp32 decoding, prompt {args.prompt_tokens} + {args.new_tokens} new tokens, "
                        f"median of {args.repeats}")
    for column in ("load", "workload", "transformers tok/s", "fromzero tok/s", "speedup", "layout",
                   "fromzero fastest layout tok/s", "speedup", "% of bound", "same tokens"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["load"], row["workload"], f"{row['transformers_tok_s']:.1f}", f"{row['fromzero_tok_s']:.1f}",
                      f"{row['speedup']:.2f}x", row["layout"], f"{row['fromzero_fastest_tok_s']:.1f}",
                      f"{row['speedup_fastest']:.2f}x",
                      f"{row['bound_fraction']:.0%}" if row["batch"] == 1 and row["beams"] == 1 else "",
                      str(row["same_tokens"]))
    stdout.print(table)
    stdout.print(f"% of bound: batch-1 tokens/s of the fastest layout against bandwidth / weight bytes ({weight_mb:.0f} MB),"
                 " the bandwidth read on as many threads as there were free cores")
    results = quick_path(args.out) if args.quick else args.out
    write_json(results, dict(date=utc_now(),
        benchmark="generation_speed", quick=args.quick, prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens, repeats=args.repeats, threads=torch.get_num_threads(), machine=describe(),
        torch=torch.__version__, transformers=transformers.__version__, weight_mb=weight_mb, results=rows,
    ))
    console.print(f"wrote {results}")


def run_workload(libraries: dict, workload: str, batch: int, beams: int, args: argparse.Namespace, load: str,
                 free: int, bandwidth: float, weight_mb: float) -> dict:
    from fromzero.console import console

    ids = torch.randint(0, 50257, (batch, args.prompt_tokens), generator=torch.Generator().manual_seed(batch))
    for run in libraries.values():
        run(ids, 4, beams)  # warm-up: first calls allocate and pick kernels
    rates: dict[str, list[float]] = {name: [] for name in libraries}
    same = True
    for repeat in range(args.repeats):
        outputs = {}
        for name, run in libraries.items():
            seconds, outputs[name] = run(ids, args.new_tokens, beams)
            rates[name].append(batch * (outputs[name].shape[1] - args.prompt_tokens) / seconds)
        same = same and all(torch.equal(outputs["transformers"], out) for out in outputs.values())
        console.print(f"{load}, {workload} run {repeat + 1}: " + ", ".join(
            f"{name} {rates[name][-1]:.1f} tok/s" for name in libraries) + f", same tokens: {same}")
    medians = {name: statistics.median(values) for name, values in rates.items()}
    bound = bandwidth * 1e3 / weight_mb
    return dict(load=load, free_cores=free, read_bandwidth_gb_s=bandwidth, batch1_bound_tok_s=bound,
                workload=workload, batch=batch, beams=beams, transformers_tok_s=medians["transformers"],
                fromzero_tok_s=medians["fromzero"], fromzero_fastest_tok_s=medians["fromzero fastest layout"],
                speedup=medians["fromzero"] / medians["transformers"],
                speedup_fastest=medians["fromzero fastest layout"] / medians["transformers"],
                bound_fraction=medians["fromzero fastest layout"] / bound, same_tokens=same,
                runs={name: values for name, values in rates.items()})


if __name__ == "__main__":
    main()
