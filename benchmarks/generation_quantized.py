"""Lighter weights for CPU decoding: fp32 vs bf16 vs weight-only int8 — speed and quality cost.

Speed: a GPT-2 124M-shaped model (random weights; speed does not depend on their values)
generates 128 tokens greedily after a 32-token prompt at batch 1 and 8, in each weight mode; the
modes alternate and the table reports medians. The batch-1 fp32 bound (read bandwidth / 498 MB of
weights per token) is printed for comparison: lighter weights can beat it.

Quality: the perplexity each mode gives on held-out text. There is no pretrained model offline, so
by default a small character-level GPT is trained here on the first 90% of tinyshakespeare for
--train-steps steps and evaluated on the last 10%. With --model DIR (e.g. a downloaded gpt2) that
model is evaluated instead, with its own tokenizer.

    flock /tmp/fromzero-bench.lock python benchmarks/generation_quantized.py [--quick] [--model DIR]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from pathlib import Path

import torch

from fromzero.files import write_json
from fromzero.machine import read_bandwidth
from timing import quick_path  # benchmarks/timing.py

RESULTS = Path(__file__).parent / "results" / "generation_quantized.json"
TINYSHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"
MODES = ("fp32", "bf16", "int8")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run: 16 new tokens, 1 repeat, 60 train steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=600)
    parser.add_argument("--text", type=Path, default=TINYSHAKESPEARE, help="text for training/evaluation")
    parser.add_argument("--model", default=None, help="evaluate this model folder instead of training one")
    return parser.parse_args()


def decode_speed(repeats: int, new_tokens: int) -> list[dict]:
    from fromzero.generation import GenerationConfig, generate
    from fromzero.generation.quantize import quantize
    from fromzero.models import GPT, GPTConfig

    torch.manual_seed(0)
    base = GPT(GPTConfig.preset("gpt2", dropout=0.0)).eval()
    rows = []
    for batch in (1, 8):
        # converted for this many rows, as `fromzero generate` and the server do: the kernel measured
        # fastest for one sequence is not the one for eight
        models = {mode: quantize(copy.deepcopy(base), mode, rows=batch) for mode in MODES}
        ids = torch.randint(0, 50257, (batch, 32), generator=torch.Generator().manual_seed(batch))
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        for model in models.values():
            generate(model, ids, GenerationConfig(max_new_tokens=4))  # warm-up
        for _ in range(repeats):
            for mode, model in models.items():
                start = time.perf_counter()
                generate(model, ids, GenerationConfig(max_new_tokens=new_tokens))
                rates[mode].append(batch * new_tokens / (time.perf_counter() - start))
        for mode in MODES:
            rows.append(dict(batch=batch, mode=mode, tok_s=statistics.median(rates[mode]), runs=rates[mode],
                             kernel=type(models[mode].lm_head).__name__))
    return rows


def train_char_model(text: str, steps: int):
    """A ~0.8M-parameter character GPT trained briefly: small but with meaningful perplexity."""
    from fromzero.models import GPT, GPTConfig
    from fromzero.tokenizers import CharTokenizer

    tokenizer = CharTokenizer.train(text)
    data = torch.tensor(tokenizer.encode(text))
    split = int(0.9 * len(data))
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("mini", vocab_size=tokenizer.vocab_size, dropout=0.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    block, batch = model.config.block_size, 32
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        starts = torch.randint(0, split - block - 1, (batch,), generator=generator)
        x = torch.stack([data[s:s + block] for s in starts])
        y = torch.stack([data[s + 1:s + block + 1] for s in starts])
        loss = model(x, y).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval(), data[split:]


def perplexity(model, data: torch.Tensor, block: int, max_windows: int = 64) -> float:
    """exp(mean next-token cross-entropy) over non-overlapping windows of the held-out data."""
    windows = min(max_windows, (len(data) - 1) // block)
    x = torch.stack([data[i * block:(i + 1) * block] for i in range(windows)])
    y = torch.stack([data[i * block + 1:(i + 1) * block + 1] for i in range(windows)])
    with torch.inference_mode():
        losses = [model(x[i:i + 8], y[i:i + 8]).loss.float() for i in range(0, windows, 8)]
    return math.exp(float(torch.stack(losses).mean()))


def quality(args: argparse.Namespace) -> dict:
    from fromzero.generation.quantize import quantize

    text = args.text.read_text(encoding="utf-8")
    if args.model:
        from fromzero.models import GPT
        from fromzero.tokenizers import load_tokenizer

        model = GPT.from_pretrained(args.model)
        tokenizer = load_tokenizer(args.model)
        data = torch.tensor(tokenizer.encode(text[int(0.9 * len(text)):]))
        block, source = min(model.config.block_size, 256), args.model
    else:
        model, data = train_char_model(text, args.train_steps)
        block, source = model.config.block_size, f"char GPT 'mini' trained {args.train_steps} steps here"
    result = dict(source=source, params=model.num_params())
    for mode in MODES:
        result[f"ppl_{mode}"] = perplexity(quantize(copy.deepcopy(model), mode), data, block)
    return result


def main() -> None:
    from rich.table import Table

    from fromzero.console import console, stdout

    args = parse_args()
    if args.quick:
        args.repeats, args.new_tokens, args.train_steps = 1, 16, 60
    bound = read_bandwidth() * 1e3 / 497.8
    console.print("measuring decoding speed ...")
    speed = decode_speed(args.repeats, args.new_tokens)
    console.print("measuring perplexity ...")
    scores = quality(args)

    table = Table(title=f"GPT-2 124M greedy decoding, 32 + {args.new_tokens} tokens, median of {args.repeats}")
    for column in ("batch", "weights", "kernel (measured)", "tok/s", "vs fp32"):
        table.add_column(column, justify="right")
    fp32 = {row["batch"]: row["tok_s"] for row in speed if row["mode"] == "fp32"}
    for row in speed:
        table.add_row(str(row["batch"]), row["mode"], row["kernel"], f"{row['tok_s']:.1f}",
                      f"{row['tok_s'] / fp32[row['batch']]:.2f}x")
    stdout.print(table)
    stdout.print(f"batch-1 fp32 bound (bandwidth / 498 MB): {bound:.1f} tok/s")
    stdout.print(f"perplexity ({scores['source']}, {scores['params'] / 1e6:.2f}M params): "
                 + ", ".join(f"{mode} {scores[f'ppl_{mode}']:.4f}" for mode in MODES))
    results = quick_path(RESULTS) if args.quick else RESULTS
    write_json(results, dict(benchmark="generation_quantized", quick=args.quick, new_tokens=args.new_tokens,
                             repeats=args.repeats, threads=torch.get_num_threads(), torch=torch.__version__,
                             batch1_fp32_bound_tok_s=bound, speed=speed, quality=scores))
    console.print(f"wrote {results}")


if __name__ == "__main__":
    main()
