"""Pretraining speed and quality: fromzero's trainer against nanoGPT on the same CPU, same data.

Data: tinyshakespeare, character level (65 symbols), first 90% train, last 10% validation: the
split of nanoGPT's ``data/shakespeare_char/prepare.py``; both trainers read the same token arrays.

Config (nanoGPT's documented CPU run, README "I only have a macbook"): n_layer=4, n_head=4,
n_embd=128, block_size=64, batch_size=12, max_iters=2000, lr 1e-3 warmup 100 cosine to 1e-4 at
2000, beta2 0.99, dropout 0, no biases, eval_iters=20 every 250 iterations.

Runs, one after the other in one process tree:

- ``nanogpt``: nanoGPT's own ``train.py``, unmodified, as a subprocess. A small config file keeps
  each checkpoint it writes at an evaluation (it would overwrite ``ckpt.pt``), so the benchmark can
  compute the loss on the *whole* validation split at every 250 iterations afterwards.
- ``fromzero-fp32``: fromzero's Trainer, same config, same fp32 arithmetic.
- ``fromzero-bf16``: the same with bf16 autocast (skipped on a CPU without native bf16, where torch
  multiplies bf16 at a few GFLOP/s and the run would take hours).
- ``fromzero-default``: the same with ``--dtype auto``, fromzero's default: on a CPU with native bf16
  the trainer times one step both ways on this model and keeps the faster (``fromzero.tuning``; the
  table says which it kept, and the time the choice took is in ``setup_s``).
- ``fromzero-recipe``: fromzero's recommended CPU recipe for this data (bigger batch, higher lr,
  ``--dtype auto``); reported as the training time until its whole-val loss reaches nanoGPT's final one.

Then ``--pairs`` pairs of short runs (``--pair-steps`` steps) of nanoGPT and fromzero's default, back
to back in alternating order: the tokens/s ratio that decides goal (a) is the median pair's, because
whole runs minutes apart drift with a shared host by more than the 20% in question. With
``--background-load busy`` (one core kept busy) or ``torch`` (a 2-thread matmul job) only the pairs run.

Then the floor: the matrix products and attention kernels of one fromzero step, recorded with the very
arguments the step passes them and replayed back to back with nothing between them. Whatever a trainer
does around these kernels, its step cannot take less; nanoGPT's step over this floor is the most any
trainer built on the same kernels can gain. On a CPU without native bf16 both trainers call the same fp32
kernels, so that ratio bounds goal (a) there.

Timing uses time.perf_counter around each optimizer step (CPU steps are synchronous); the
whole-val measurements are excluded from both trainers' times, the 20-batch estimates included.
MFU = (6N + 12 L T C) FLOPs/token x tokens/s / the measured matmul peak of the precision the run
multiplies in (best of a 1024^3 mm in fp32, or in bf16 for a bf16 run).

    flock /tmp/fromzero-bench.lock python benchmarks/train_vs_nanogpt.py --nanogpt-dir /tmp/nanoGPT
    flock /tmp/fromzero-bench.lock python benchmarks/train_vs_nanogpt.py --nanogpt-dir /tmp/nanoGPT --quick
    flock /tmp/fromzero-bench.lock python benchmarks/train_vs_nanogpt.py --nanogpt-dir /tmp/nanoGPT --background-load busy
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle  # only to write the meta.pkl that nanoGPT's train.py reads
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.table import Table
from torch.utils._python_dispatch import TorchDispatchMode

from fromzero.console import console, stdout
from fromzero.files import write_json
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import CharTokenizer
from fromzero.training.config import TrainConfig
from fromzero.training.metrics import flops_per_token, measure_cpu_peak
from fromzero.machine import cpu_has_fast_bf16
from fromzero.training.trainer import Trainer
from fromzero.machine import describe
from timing import BACKGROUND_LOADS, background_load, quick_path, utc_now  # benchmarks/timing.py

ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = ROOT.parent.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
MODEL = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False)
SAME = dict(batch_size=12, max_steps=2000, lr=1e-3, min_lr=1e-4, warmup_steps=100, decay_steps=2000,
            beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0, eval_batches=20, eval_interval=250)
# fromzero's recommended CPU recipe for tinyshakespeare (measured; see RESULTS.md)
RECIPE = dict(batch_size=16, max_steps=1200, lr=3e-3, min_lr=3e-4, warmup_steps=50, decay_steps=1200,
              beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0, eval_batches=20, eval_interval=250)

NANOGPT_HOOK = '''
# Written by fromzero's benchmark: keep every checkpoint under its iteration number
# (train.py overwrites ckpt.pt), so whole-split losses can be computed afterwards.
import torch as _torch
_save = _torch.save
def _keep_each(obj, path, *args, **kwargs):
    _save(obj, path.replace("ckpt.pt", "ckpt_%d.pt" % obj["iter_num"]), *args, **kwargs)
_torch.save = _keep_each
'''


@dataclass
class Run:
    name: str
    ms_per_iter: float = 0.0
    tokens_per_s: float = 0.0
    wall_s: float = 0.0  # training loop time, evaluation estimates included
    curve: dict[int, float] = field(default_factory=dict)  # step -> whole-val loss
    time_to_target_s: float | None = None
    mfu: float = 0.0
    precision: str = "float32"  # what the matmuls ran in
    setup_s: float = 0.0  # building the trainer (for --dtype auto: its timing of both precisions)


def whole_split_loss(loss_fn, tokens: np.ndarray, block_size: int, batch: int = 128) -> float:
    """Mean next-token loss over every non-overlapping window of the split."""
    n = (len(tokens) - 1) // block_size
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, n, batch):
            idx = np.arange(start, min(n, start + batch))[:, None] * block_size + np.arange(block_size + 1)
            window = torch.from_numpy(tokens[idx].astype(np.int64))
            rows = window.shape[0]
            total += float(loss_fn(window[:, :-1].contiguous(), window[:, 1:].contiguous())) * rows
            count += rows
    return total / count


# ------------------------------------------------------------------ nanoGPT
def run_nanogpt(nanogpt: Path, work: Path, steps: int, eval_interval: int, val: np.ndarray | None,
                out_name: str = "nanogpt-out") -> Run:
    """nanoGPT's train.py for ``steps``; with ``val``, the whole-val loss of every checkpoint it wrote."""
    out = work / out_name
    hook = work / "keep_checkpoints.py"
    hook.write_text(NANOGPT_HOOK)
    args = [
        sys.executable, "train.py", "config/train_shakespeare_char.py", str(hook),
        f"--dataset={work / 'shakespeare_char'}", f"--out_dir={out}", "--device=cpu", "--compile=False",
        "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4",
        "--n_head=4", "--n_embd=128", f"--max_iters={steps}", f"--lr_decay_iters={steps}", "--dropout=0.0",
        f"--eval_interval={eval_interval}", "--always_save_checkpoint=True",
    ]
    proc = subprocess.run(args, cwd=nanogpt, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"nanoGPT failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    times = [float(ms) for ms in re.findall(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", proc.stdout, re.M)]
    model_py = importlib.util.spec_from_file_location("nanogpt_model", nanogpt / "model.py")
    module = importlib.util.module_from_spec(model_py)
    model_py.loader.exec_module(module)
    run = Run("nanogpt")
    for ckpt in sorted(out.glob("ckpt_*.pt"), key=lambda p: int(p.stem.split("_")[1])) if val is not None else ():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model = module.GPT(module.GPTConfig(**state["model_args"]))
        model.load_state_dict(state["model"])
        model.eval()
        run.curve[state["iter_num"]] = whole_split_loss(lambda x, y: model(x, y)[1], val, 64)
    # iteration 0 includes the first evaluation; the median is the steady per-step cost
    run.ms_per_iter = statistics.median(times[1:])
    run.wall_s = sum(times) / 1000
    return run


def write_nanogpt_data(work: Path, tok: CharTokenizer, train: np.ndarray, val: np.ndarray) -> None:
    data = work / "shakespeare_char"
    data.mkdir()
    train.astype(np.uint16).tofile(data / "train.bin")
    val.astype(np.uint16).tofile(data / "val.bin")
    stoi = {c: i for i, c in enumerate(tok.chars)}
    meta = {"vocab_size": tok.vocab_size, "itos": {i: c for c, i in stoi.items()}, "stoi": stoi}
    with open(data / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)


# ------------------------------------------------------------------ fromzero
def multiplies_in(trainer: Trainer) -> str:
    """The precision a trainer's matrix products run in: ``float32``, or its autocast dtype (``bfloat16``)."""
    return "float32" if trainer.precision.dtype is None else str(trainer.precision.dtype).removeprefix("torch.")


def run_fromzero(name: str, settings: dict, train: np.ndarray, val: np.ndarray, vocab: int, dtype: str,
                 check_every: int | None, target: float | None = None) -> Run:
    """fromzero's Trainer on ``settings``; the whole-val loss every ``check_every`` steps (None: never)."""
    torch.manual_seed(1337)
    config = TrainConfig(**settings, block_size=MODEL["block_size"], dtype=dtype, seed=1337, sample_tokens=0)
    model = GPT(GPTConfig(vocab_size=vocab, activation="gelu", **MODEL))
    start = time.perf_counter()
    trainer = Trainer(model, config, train, val, quiet=True)
    run = Run(name, setup_s=time.perf_counter() - start,
              precision=multiplies_in(trainer))
    step_times, clock = [], 0.0

    def measure(step: int) -> float:
        model.eval()
        with trainer.precision.autocast:
            loss = whole_split_loss(lambda x, y: model(x, targets=y).loss.float(), val, MODEL["block_size"])
        model.train()
        run.curve[step] = loss
        return loss

    with trainer.following_free_cores():  # as `fromzero train` does: threads follow the free cores
        for step in range(config.max_steps):
            start = time.perf_counter()
            if step % config.eval_interval == 0:  # like nanoGPT: 20-batch estimates, timed
                trainer.estimate_loss("train"), trainer.estimate_loss("val")
            step_start = time.perf_counter()
            trainer.train_step(step)
            now = time.perf_counter()
            step_times.append(now - step_start)
            clock += now - start
            done = step + 1
            if check_every is not None and (done % check_every == 0 or done == config.max_steps):
                loss = measure(done)
                if target is not None and run.time_to_target_s is None and loss <= target:
                    run.time_to_target_s = clock
                    break
    run.ms_per_iter = 1000 * statistics.median(step_times)
    run.wall_s = clock
    return run


# ------------------------------------------------------------------ speed in alternating pairs
def speed_rounds(nanogpt: Path, work: Path, train: np.ndarray, val: np.ndarray, vocab: int, count: int,
                 steps: int) -> list[dict]:
    """ms/iter of nanoGPT and of fromzero's default, in ``count`` pairs of short runs taken back to back.

    Why: whole runs taken one after the other drift with the host. On this shared machine the very same
    fp32 arithmetic measured 0.99x and 1.28x nanoGPT minutes apart. A pair of short runs shares the
    host's mood; the order alternates (ABBA) so a trend favours neither side, and the median pair decides.
    """
    settings = {**SAME, "max_steps": steps, "decay_steps": steps, "eval_interval": steps}
    pairs = []
    for k in range(count):
        sides = {}
        order = ("nanogpt", "fromzero") if k % 2 == 0 else ("fromzero", "nanogpt")
        for side in order:
            if side == "nanogpt":
                sides[side] = run_nanogpt(nanogpt, work, steps, steps, None, out_name=f"round-{k}")
            else:
                sides[side] = run_fromzero("fromzero-default", settings, train, val, vocab, "auto", None)
        nano, ours = sides["nanogpt"].ms_per_iter, sides["fromzero"].ms_per_iter
        pairs.append({"nanogpt_ms": nano, "fromzero_ms": ours, "ratio": nano / ours,
                      "fromzero_precision": sides["fromzero"].precision})
        console.print(f"  pair {k + 1}/{count}: nanoGPT {nano:.1f} ms/iter, fromzero default {ours:.1f} "
                      f"({sides['fromzero'].precision}): {nano / ours:.2f}x")
    return pairs


# ------------------------------------------------------------------ the floor: a step's own kernels
aten = torch.ops.aten
FLOOR_KERNELS = {  # what a step cannot skip: the products of its layers and its attention, in torch's kernels
    "matrix products": (aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default),
    "attention": (aten._scaled_dot_product_flash_attention_for_cpu.default,
                  aten._scaled_dot_product_flash_attention_for_cpu_backward.default),
}


class _KernelCalls(TorchDispatchMode):
    """Records every :data:`FLOOR_KERNELS` call of a step with its very arguments (kept alive to replay them:
    the same values, shapes, strides and memory, so a replay takes the same paths through the kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any, tuple, dict]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for kind, kernels in FLOOR_KERNELS.items():
            if func in kernels:
                self.calls.append((kind, func, args, kwargs))
        return func(*args, **kwargs)


def kernel_floor(step: Callable[[], Any], repeats: int = 30) -> dict:
    """The time of a step's matrix products and attention kernels alone, replayed back to back.

    Why: a trainer can only be faster than another by what it does *besides* the kernels both call.
    On a CPU without native bf16 both multiply the same fp32 matrices; this says how much of the step
    that is, so how far above nanoGPT any eager trainer on torch's kernels can get.
    """
    recorder = _KernelCalls()
    with recorder:
        step()
    by_kind = {kind: [] for kind in FLOOR_KERNELS}
    for _ in range(repeats):
        spent = dict.fromkeys(FLOOR_KERNELS, 0.0)
        for kind, func, args, kwargs in recorder.calls:  # each kernel is out of place: its inputs stay as they are
            start = time.perf_counter()
            func(*args, **kwargs)
            spent[kind] += time.perf_counter() - start
        for kind, seconds in spent.items():
            by_kind[kind].append(seconds)
    ms = {kind: 1000 * statistics.median(seconds) for kind, seconds in by_kind.items()}
    calls = {kind: sum(call[0] == kind for call in recorder.calls) for kind in FLOOR_KERNELS}
    return {"ms": sum(ms.values()), "ms_by_kind": ms, "calls": calls}


def step_floor(train: np.ndarray, val: np.ndarray, vocab: int) -> dict:
    """:func:`kernel_floor` of fromzero's default step on nanoGPT's config (after a few warm-up steps)."""
    torch.manual_seed(1337)
    config = TrainConfig(**SAME, block_size=MODEL["block_size"], dtype="auto", seed=1337, sample_tokens=0)
    trainer = Trainer(GPT(GPTConfig(vocab_size=vocab, activation="gelu", **MODEL)), config, train, val, quiet=True)
    with trainer.following_free_cores():
        for step in range(5):
            trainer.train_step(step)
        floor = kernel_floor(lambda: trainer.train_step(5))
    floor["precision"] = multiplies_in(trainer)
    return floor


# ------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt-dir", required=True, type=Path, help="a checkout of karpathy/nanoGPT")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="tinyshakespeare input.txt")
    parser.add_argument("--quick", action="store_true", help="200 iterations, a smoke test of the benchmark")
    parser.add_argument("--no-recipe", action="store_true", help="skip the recipe run (goal b)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="pairs of short runs (nanoGPT, fromzero default) timed back to back (default 3; 0: none)")
    parser.add_argument("--pair-steps", type=int, default=300, help="steps of each short run (default 300)")
    parser.add_argument("--background-load", choices=list(BACKGROUND_LOADS), default="none",
                        help="run only the pairs, with another process loading the machine: 'busy' keeps one core "
                             "busy (a Python loop), 'torch' runs a 2-thread matmul job (default: none)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "train_vs_nanogpt.json")
    args = parser.parse_args()
    if args.pair_steps <= SAME["warmup_steps"]:  # nanoGPT's schedule divides by (decay - warmup) steps
        parser.error(f"--pair-steps must be above the {SAME['warmup_steps']} warm-up steps")
    if args.quick:
        args.pair_steps = min(args.pair_steps, 150)
    if not (args.nanogpt_dir / "train.py").is_file():
        raise SystemExit(f"{args.nanogpt_dir} has no train.py; fetch karpathy/nanoGPT there first")

    text = args.data.read_text(encoding="utf-8")
    tok = CharTokenizer.train(text)
    ids = np.asarray(tok.encode(text), dtype=np.uint16)
    cut = int(len(ids) * 0.9)
    train, val = ids[:cut], ids[cut:]
    steps = 200 if args.quick else 2000
    interval = 100 if args.quick else 250
    same = {**SAME, "max_steps": steps, "decay_steps": steps, "eval_interval": interval}
    recipe = dict(RECIPE)
    if args.quick:
        recipe.update(max_steps=200, decay_steps=200, eval_interval=interval)

    peak = measure_cpu_peak(size=1024, repeats=10)
    peaks = {"float32": peak, "bfloat16": measure_cpu_peak(size=1024, repeats=10, dtype=torch.bfloat16)}
    n_params = GPT(GPTConfig(vocab_size=tok.vocab_size, activation="gelu", **MODEL)).num_params()
    flops = flops_per_token(n_params, MODEL["n_layer"], MODEL["n_embd"], MODEL["block_size"])
    console.print(f"matmul peak fp32 {peak / 1e9:.0f}, bf16 {peaks['bfloat16'] / 1e9:.0f} GFLOP/s; model {n_params:,} parameters; "
                  f"{flops / 1e6:.2f} MFLOP/token; torch {torch.__version__}, {torch.get_num_threads()} threads")

    if args.background_load != "none":
        return under_load(args, tok, train, val)

    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_nanogpt_data(work, tok, train, val)
        console.print("nanoGPT ...")
        runs["nanogpt"] = run_nanogpt(args.nanogpt_dir.resolve(), work, steps, interval, val)
        console.print(f"{args.pairs} pairs of {args.pair_steps}-step runs, nanoGPT and fromzero default back to back ...")
        pairs = speed_rounds(args.nanogpt_dir.resolve(), work, train, val, tok.vocab_size, args.pairs, args.pair_steps)
    floor = step_floor(train, val, tok.vocab_size)
    if pairs:
        floor["nanogpt_ms"] = statistics.median(pair["nanogpt_ms"] for pair in pairs)
        floor["ceiling_ratio"] = floor["nanogpt_ms"] / floor["ms"]
    console.print("fromzero fp32 ...")
    runs["fromzero-fp32"] = run_fromzero("fromzero-fp32", same, train, val, tok.vocab_size, "float32", interval)
    if cpu_has_fast_bf16():
        console.print("fromzero bf16 ...")
        runs["fromzero-bf16"] = run_fromzero("fromzero-bf16", same, train, val, tok.vocab_size, "bfloat16", interval)
    else:  # torch multiplies bf16 at a few GFLOP/s there: the forced run would take hours
        console.print(f"fromzero bf16: skipped, this CPU has no native bf16 (matmul peak {peaks['bfloat16'] / 1e9:.0f} "
                      f"GFLOP/s against {peak / 1e9:.0f} in fp32)")
    console.print("fromzero default (--dtype auto) ...")
    runs["fromzero-default"] = run_fromzero("fromzero-default", same, train, val, tok.vocab_size, "auto", interval)
    target = runs["nanogpt"].curve[max(runs["nanogpt"].curve)]
    if not args.no_recipe:
        console.print(f"fromzero recipe (target whole-val loss {target:.4f}) ...")
        runs["fromzero-recipe"] = run_fromzero("fromzero-recipe", recipe, train, val, tok.vocab_size,
                                               "auto", check_every=25, target=target)

    for name, run in runs.items():
        rows = (recipe if name == "fromzero-recipe" else same)["batch_size"]
        run.tokens_per_s = rows * MODEL["block_size"] / (run.ms_per_iter / 1000)
        run.mfu = flops * run.tokens_per_s / peaks[run.precision]
    report(runs, pairs, target, args, peaks, floor)


def pairs_summary(pairs: list[dict]) -> str:
    ratios = [pair["ratio"] for pair in pairs]
    return (f"fromzero default vs nanoGPT, median {statistics.median(ratios):.2f}x "
            f"(pairs: {', '.join(f'{r:.2f}x' for r in ratios)})")


def under_load(args, tok: CharTokenizer, train: np.ndarray, val: np.ndarray) -> None:
    """Only the pairs, with ``--background-load`` running: the loss curves do not depend on the load."""
    steps = args.pair_steps
    console.print(f"{args.pairs} pairs of {steps}-step runs under background load {args.background_load!r} ...")
    with tempfile.TemporaryDirectory() as tmp, background_load(args.background_load):
        work = Path(tmp)
        write_nanogpt_data(work, tok, train, val)
        pairs = speed_rounds(args.nanogpt_dir.resolve(), work, train, val, tok.vocab_size, args.pairs, steps)
    stdout.print(f"under load {args.background_load!r}: {pairs_summary(pairs)}")
    out = args.out.with_name(f"{args.out.stem}_{args.background_load}.json")
    write_json(quick_path(out) if args.quick else out, {
        "date": utc_now(), "machine": describe(), "quick": args.quick,
        "background_load": args.background_load, "pair_steps": steps, "pairs": pairs,
        "pairs_median_ratio": statistics.median(pair["ratio"] for pair in pairs)})
    console.print(f"wrote {quick_path(out) if args.quick else out}")


def report(runs: dict[str, Run], pairs: list[dict], target: float, args, peaks: dict[str, float], floor: dict) -> None:
    base = runs["nanogpt"]
    table = Table(title="pretraining on tinyshakespeare (char), 2 CPU cores")
    table.add_column("run", no_wrap=True)
    for column in ("precision", "ms/iter", "tokens/s", "vs nanoGPT", "MFU", "loop wall s", "final whole-val"):
        table.add_column(column, justify="right")
    for run in runs.values():
        table.add_row(run.name, run.precision, f"{run.ms_per_iter:.1f}", f"{run.tokens_per_s:,.0f}",
                      f"{run.tokens_per_s / base.tokens_per_s:.2f}x", f"{100 * run.mfu:.0f}%", f"{run.wall_s:.1f}",
                      f"{run.curve[max(run.curve)]:.4f}")
    stdout.print(table)
    curves = Table(title="whole-val-split loss by iteration")
    curves.add_column("iter", justify="right")
    names = [n for n in runs if n != "fromzero-recipe"]
    for name in names:
        curves.add_column(name, justify="right")
    for step in sorted(base.curve):
        curves.add_row(str(step), *(f"{runs[n].curve.get(step, float('nan')):.4f}" for n in names))
    stdout.print(curves)
    if pairs:
        stdout.print(f"tokens/s, {len(pairs)} pairs of short runs back to back: {pairs_summary(pairs)}")
    kinds = ", ".join(f"{floor['calls'][kind]} {kind} {ms:.1f} ms" for kind, ms in floor["ms_by_kind"].items())
    stdout.print(f"the kernels of fromzero's step ({floor['precision']}) alone, replayed back to back: {floor['ms']:.1f} ms "
                 f"({kinds})" + (f"; nanoGPT's step in the pairs: {floor['nanogpt_ms']:.1f} ms, so a step that ran only "
                                 f"these kernels would be {floor['ceiling_ratio']:.2f}x nanoGPT" if pairs else ""))
    if "fromzero-recipe" in runs:
        r = runs["fromzero-recipe"]
        ratio = (r.time_to_target_s / base.wall_s) if r.time_to_target_s else None
        stdout.print(f"recipe: whole-val {target:.4f} reached in "
                     f"{r.time_to_target_s if r.time_to_target_s else float('nan'):.1f} s "
                     f"({'%.2f' % ratio if ratio else 'not reached'} x nanoGPT's {base.wall_s:.1f} s)")
    result = {
        "date": utc_now(),
        "machine": describe(),
        "quick": args.quick,
        "matmul_peak_gflops": {name: value / 1e9 for name, value in peaks.items()},
        "target_whole_val_loss": target,
        "recipe": RECIPE,
        "runs": {name: run.__dict__ for name, run in runs.items()},
        "pairs": pairs,
        "pairs_median_ratio": statistics.median(pair["ratio"] for pair in pairs) if pairs else None,
        "kernel_floor": floor,
    }
    out = quick_path(args.out) if args.quick else args.out
    write_json(out, result)
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
