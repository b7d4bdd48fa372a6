"""Perplexity over 100k tokens: ``fromzero evaluate --suite lm``'s scorer against the transformers recipe.

The model is GPT-2-124M-shaped (12 layers, 12 heads, n_embd 768, vocab 50257, context 1024) with
random weights: transformers builds it from a fixed seed and saves it with GPT-2's real
tokenizer files (``../shared/data/gpt2``), and both sides load that folder. The text is the start
of tinyshakespeare (``../shared/data/tinyshakespeare``), tokenized once by GPT-2's tokenizer:
``<|endoftext|>`` and then the first ``--tokens`` tokens, the exact sequence fromzero scores
(it reads the end-of-text token first and predicts every token of the text).

Sides, alternating, each timed from token ids to perplexity (``time.perf_counter``), median of
``--rounds``:

- ``fromzero``: :func:`fromzero.evaluate.perplexity.token_nll`, what the lm suite runs: windows of
  1024 every ``--stride`` tokens, full windows in batches of 8, logits only where a token is scored.
- ``fromzero-bf16``: the same under bf16 autocast (``fromzero evaluate --dtype bfloat16``), on CPUs
  with native bf16 instructions only: faster, and its perplexity differs (the table says by how much).
- ``transformers``: the loop of the transformers perplexity guide
  (https://huggingface.co/docs/transformers/perplexity): one window at a time,
  ``model(input_ids, labels=target_ids).loss`` with the already-scored part of each window set
  to -100, weighted by the tokens each window scores.

The fp32 sides must give the same perplexity (relative difference below 1e-4), which shows they do
the same work; the table gives seconds, tokens/s and the ratios to the recipe.

    flock /tmp/fromzero-bench.lock python benchmarks/evaluate_speed.py           # full run
    flock /tmp/fromzero-bench.lock python benchmarks/evaluate_speed.py --quick   # smoke run, tiny model
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from timing import cpu_name, quick_path  # benchmarks/timing.py

RESULTS = Path(__file__).resolve().parent / "results" / "evaluate_speed.json"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHAPES = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024),
    "quick": dict(n_layer=2, n_head=2, n_embd=64, n_positions=128),
}
GOAL_SPEEDUP = 1.5  # issue 12: >= 1.5x the transformers recipe, same number


def transformers_recipe(model, ids, stride: int) -> float:
    import torch

    max_length = model.config.n_positions
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, ids.numel(), stride):
        end = min(begin + max_length, ids.numel())
        trg_len = end - prev_end
        input_ids = ids[begin:end].unsqueeze(0)
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss
        scored = int((target_ids[:, 1:] != -100).sum())
        nll_sum += float(loss) * scored
        n_tokens += scored
        prev_end = end
        if end == ids.numel():
            break
    return math.exp(nll_sum / n_tokens)


def build(folder: Path, shape: str):
    """The random model and GPT-2's tokenizer files in ``folder``; returns fromzero's tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from fromzero.tokenizers.bpe import BPETokenizer

    encoder, merges = SHARED / "gpt2" / "encoder.json", SHARED / "gpt2" / "vocab.bpe"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=50257, **SHAPES[shape])).eval().save_pretrained(folder)
    GPT2TokenizerFast(vocab_file=str(encoder), merges_file=str(merges)).save_pretrained(folder)
    tokenizer = BPETokenizer.from_files(encoder, merges)
    tokenizer.save(folder)
    return tokenizer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=100_000, help="tokens of text to score")
    parser.add_argument("--stride", type=int, default=512, help="sliding-window step (the guide uses 512)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each side, alternating")
    parser.add_argument("--quick", action="store_true", help="a tiny model and 4k tokens: checks the script runs")
    args = parser.parse_args()
    if not (SHARED / "gpt2").is_dir():
        sys.exit(f"needs GPT-2's tokenizer files and tinyshakespeare in {SHARED} (see ../shared/data/README.md)")
    import torch
    from transformers import GPT2LMHeadModel

    from fromzero.evaluate.perplexity import token_nll
    from fromzero.models import GPT
    from fromzero.machine import cpu_has_fast_bf16

    shape, tokens, stride = ("quick", 4_000, 64) if args.quick else ("gpt2", args.tokens, args.stride)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokenizer = build(folder, shape)
        text = (SHARED / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
        ids = tokenizer.encode(text[: tokens * 8])[:tokens]
        if len(ids) < tokens:
            sys.exit(f"tinyshakespeare gives only {len(ids):,} tokens")
        sequence = torch.tensor([tokenizer.special_tokens["<|endoftext|>"], *ids])
        ours = GPT.from_pretrained(folder).eval()
        theirs = GPT2LMHeadModel.from_pretrained(folder).eval()

        def fromzero_side() -> float:
            nll, count = token_nll(ours, sequence, stride=stride)
            return math.exp(nll / count)

        def bf16_side() -> float:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fromzero_side()

        sides = {"fromzero": fromzero_side, "transformers": lambda: transformers_recipe(theirs, sequence, stride)}
        if cpu_has_fast_bf16():
            sides["fromzero-bf16"] = bf16_side
        times: dict[str, list[float]] = {name: [] for name in sides}
        perplexities: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, run in sides.items():
                start = time.perf_counter()
                perplexities[name] = run()
                times[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(values) for name, values in times.items()}
    differences = {name: abs(perplexities[name] / perplexities["transformers"] - 1) for name in sides}
    speedups = {name: seconds["transformers"] / seconds[name] for name in sides}
    difference, speedup = differences["fromzero"], speedups["fromzero"]
    print(f"{cpu_name()}, torch {torch.__version__}, {shape}-shaped model, {tokens:,} tokens, stride {stride}, "
          f"median of {args.rounds}")
    print(f"{'side':<15}{'seconds':>10}{'tokens/s':>11}{'vs recipe':>11}{'perplexity':>14}{'rel. diff':>11}")
    for name in sides:
        print(f"{name:<15}{seconds[name]:>10.2f}{tokens / seconds[name]:>11.0f}{speedups[name]:>10.2f}x"
              f"{perplexities[name]:>14.4f}{differences[name]:>11.1e}")
    print(f"fromzero fp32 is {speedup:.2f}x the recipe's speed (goal {GOAL_SPEEDUP}x) at a relative difference "
          f"of {difference:.1e}")
    record = {"cpu": cpu_name(), "torch": torch.__version__, "shape": shape, "tokens": tokens, "stride": stride,
              "rounds": args.rounds, "seconds": seconds, "all_seconds": times, "perplexity": perplexities,
              "relative_difference": differences, "speedup": speedups, "date": time.strftime("%Y-%m-%d")}
    out = quick_path(RESULTS) if args.quick else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if difference < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
