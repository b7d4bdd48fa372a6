"""The fused decoding step against the eager one: the same converted GPT-2, the same tokens, in one run.

A random GPT-2 small (124M) is converted as ``generate`` converts it, with fromzero's gemv kernel forced
for every weight mode (the fused step needs it), and decodes 128 greedy tokens after a 32-token prompt
with ``FROMZERO_FUSED_STEP=1`` (each step one call to C: ``fromzero.generation.fused_step``) and ``=0``
(each step through the model's eager PyTorch forward, between the same gemv products), alternating,
median of ``--repeats``. Workloads: one sequence in fp32, bf16 and int8 weights; beam search with 4 beams
(4 rows per step); fp32 with a LoRA adapter on every attention projection (r=8, what the chat runs
after fine-tuning); and a 0.5M-parameter model of the course's size (preset ``mini``, 112 new tokens: its
context is 128). Every pair must give the same tokens.

    flock /tmp/fromzero-bench.lock python benchmarks/fused_step.py
    flock /tmp/fromzero-bench.lock python benchmarks/fused_step.py --quick   # 16 tokens, 1 repeat
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from pathlib import Path

import torch

from fromzero.files import write_json
from fromzero.machine import describe, free_cores
from timing import decoding_arguments, quick_path, utc_now  # benchmarks/timing.py

RESULTS = Path(__file__).parent / "results" / "fused_step.json"
FORCE = {"fp32": "FROMZERO_LINEAR_KERNEL", "bf16": "FROMZERO_BF16_KERNEL", "int8": "FROMZERO_INT8_KERNEL"}


def workloads(base, prompt_tokens: int):
    """(name, converted model, generation config, prompt) for every case measured."""
    from fromzero.finetune.lora import LoRAConfig, add_adapter
    from fromzero.generation import GenerationConfig, quantize
    from fromzero.models import GPT, GPTConfig

    for name in FORCE.values():
        os.environ[name] = "gemv"
    greedy = GenerationConfig(do_sample=False)
    ids = torch.randint(0, base.config.vocab_size, (1, prompt_tokens), generator=torch.Generator().manual_seed(1))
    for mode in ("fp32", "bf16", "int8"):
        yield f"{mode}, 1 sequence", quantize(copy.deepcopy(base), mode), greedy, ids
    yield "fp32, 4 beams", quantize(copy.deepcopy(base), "fp32", rows=4), GenerationConfig(num_beams=4), ids
    adapted = copy.deepcopy(base)
    add_adapter(adapted, config=LoRAConfig(r=8))
    with torch.no_grad():  # B starts at zero; a trained adapter's is not
        for parameter_name, parameter in adapted.named_parameters():
            if "lora_B" in parameter_name:
                parameter.normal_(0, 0.02)
    yield "fp32, LoRA adapter", quantize(adapted, "fp32").eval(), greedy, ids
    # the course's size: here the eager operations are nearly the whole step
    torch.manual_seed(0)
    mini = GPT(GPTConfig.preset("mini", vocab_size=4096)).eval()
    yield "fp32, course-size model (0.5M)", quantize(mini, "fp32"), greedy, ids[:, :16] % 4096


def main() -> None:
    from rich.table import Table

    from fromzero.console import console, stdout
    from fromzero.generation import generate
    from fromzero.models import GPT, GPTConfig

    args = decoding_arguments(__doc__).parse_args()
    if args.quick:
        args.repeats, args.new_tokens = 1, 16
    torch.manual_seed(0)
    base = GPT(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)).eval()
    machine = describe()
    console.print(f"GPT-2 124M random weights; {machine}; {free_cores()} free cores")
    rows = []
    for name, model, config, ids in workloads(base, args.prompt_tokens):
        config.max_new_tokens = min(args.new_tokens, model.config.block_size - ids.size(1))
        rates: dict[str, list[float]] = {"eager": [], "fused": []}
        outputs = {}
        for _ in range(args.repeats):
            for step, flag in (("eager", "0"), ("fused", "1")):
                os.environ["FROMZERO_FUSED_STEP"] = flag
                start = time.perf_counter()
                outputs[step] = generate(model, ids, config)
                rates[step].append(config.max_new_tokens / (time.perf_counter() - start))
        eager, fused = statistics.median(rates["eager"]), statistics.median(rates["fused"])
        rows.append(dict(workload=name, eager_tok_s=eager, fused_tok_s=fused, speedup=fused / eager,
                         same_tokens=torch.equal(outputs["eager"], outputs["fused"]), runs=rates))
        console.print(f"{name}: eager {eager:.1f}, fused {fused:.1f} tok/s")
    os.environ.pop("FROMZERO_FUSED_STEP")

    table = Table(title=f"GPT-2 124M, prompt {args.prompt_tokens} + {args.new_tokens} tokens, "
                        f"median of {args.repeats}; tokens/s of the returned sequence")
    for column in ("workload", "eager step", "fused step", "speed-up", "same tokens"):
        table.add_column(column, justify="left" if column == "workload" else "right")
    for row in rows:
        table.add_row(row["workload"], f"{row['eager_tok_s']:.1f}", f"{row['fused_tok_s']:.1f}",
                      f"{row['speedup']:.2f}x", str(row["same_tokens"]))
    stdout.print(table)
    path = quick_path(RESULTS) if args.quick else RESULTS
    write_json(path, dict(benchmark="fused_step", date=utc_now(), quick=args.quick, machine=machine,
                          threads=torch.get_num_threads(), prompt_tokens=args.prompt_tokens,
                          new_tokens=args.new_tokens, repeats=args.repeats, results=rows))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
