"""Batch-1 decoding against llama.cpp, what a CPU user picks for speed: fromzero, llama.cpp and transformers
on the same GPT-2 124M-shaped weights, in one run.

A random GPT-2 small is built with transformers and saved; llama.cpp gets the same checkpoint converted
with its own ``convert_hf_to_gguf.py`` to f32, bf16 and q8_0; fromzero loads it and decodes with
``generate``'s defaults in fp32 (the layout measured fastest here), bf16 and int8 weights. Each side
generates 128 greedy tokens after the same 32-token prompt, on as many threads as there are free
cores (fromzero follows them itself; llama.cpp gets ``n_threads``), sides alternating, median of
``--repeats``. llama.cpp in f32 and fromzero in fp32 must give transformers' tokens.

llama.cpp comes from the ``llama-cpp-python`` package, built from its sdist for this CPU:

    CMAKE_ARGS="-DGGML_NATIVE=ON" pip install --no-binary llama-cpp-python llama-cpp-python

and its converter from the llama.cpp sources in that sdist (``--llama-cpp-src DIR``; by default the
sdist is fetched with ``pip download`` into out/bench/llama-cpp-src). Without either, the script says
why and exits with status 0 (nothing to compare), so a machine without a compiler skips it.

    flock /tmp/fromzero-bench.lock python benchmarks/llamacpp_compare.py
    flock /tmp/fromzero-bench.lock python benchmarks/llamacpp_compare.py --quick   # 16 tokens, 1 repeat

Weight repacking: llama.cpp copies weights into layouts of its own at load time (its CPU "extra buffer
types"; AMX tiles on a Xeon that has them). On a Sapphire Rapids Xeon, q8_0 with AMX repacking crashed
(issue 17), so ``--repack auto`` (the default) turns repacking off for q8_0 on a CPU with AMX, as
llama.cpp's own ``--no-repack`` does, and keeps llama.cpp's default everywhere else; ``on``/``off``
force it. The results record what each precision ran with.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch

from fromzero.files import write_json
from fromzero.machine import cpu_flags, describe, free_cores, read_bandwidth
from timing import decoding_arguments, quick_path, utc_now  # benchmarks/timing.py

RESULTS = Path(__file__).parent / "results" / "llamacpp_compare.json"
WORK = Path("out/bench/llamacpp")
SOURCE = Path("out/bench/llama-cpp-src")
GGUF_TYPES = ("f32", "bf16", "q8_0")
PAIRS = {"f32": "fp32", "bf16": "bf16", "q8_0": "int8"}  # llama.cpp type -> fromzero --weights


def parse_args() -> argparse.Namespace:
    parser = decoding_arguments(__doc__)
    parser.add_argument("--llama-cpp-src", type=Path, help="llama.cpp sources with convert_hf_to_gguf.py and gguf-py")
    parser.add_argument("--repack", choices=("auto", "on", "off"), default="auto",
                        help="llama.cpp's weight repacking (auto: off for q8_0 on a CPU with AMX, where it crashed; "
                             "see above)")
    return parser.parse_args()


def repacks(kind: str, setting: str) -> bool:
    """Whether llama.cpp repacks the weights of ``kind`` at load time under ``--repack setting``."""
    if setting != "auto":
        return setting == "on"
    return not (kind == "q8_0" and any(flag.startswith("amx") for flag in cpu_flags()))


def skip(reason: str) -> None:
    print(f"llama.cpp comparison skipped: {reason}")
    sys.exit(0)


def llama_cpp_sources(given: Path | None) -> Path:
    """A llama.cpp tree holding convert_hf_to_gguf.py: the one given, or the one vendored in llama-cpp-python's sdist."""
    if given is not None:
        if not (given / "convert_hf_to_gguf.py").is_file():
            skip(f"{given} has no convert_hf_to_gguf.py")
        return given
    found = list(SOURCE.glob("llama_cpp_python-*/vendor/llama.cpp"))
    if not found:
        SOURCE.mkdir(parents=True, exist_ok=True)
        fetched = subprocess.run([sys.executable, "-m", "pip", "download", "llama-cpp-python", "--no-deps",
                                  "--no-binary", ":all:", "-d", str(SOURCE), "-q"], capture_output=True, text=True)
        archives = list(SOURCE.glob("llama_cpp_python-*.tar.gz"))
        if fetched.returncode or not archives:
            skip("could not fetch llama-cpp-python's sdist for its converter: " + fetched.stderr.strip()[-300:])
        with tarfile.open(archives[0]) as archive:
            archive.extractall(SOURCE, filter="data")
        found = list(SOURCE.glob("llama_cpp_python-*/vendor/llama.cpp"))
    return found[0]


def build_checkpoint(folder: Path) -> Path:
    """A random GPT-2 124M in transformers format (no eos: every run makes all its tokens)."""
    import transformers

    if (folder / "model.safetensors").is_file():
        return folder
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(bos_token_id=None, eos_token_id=None)).eval().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["n_ctx"] = config["n_positions"]  # the converter reads n_ctx, which transformers 5 no longer writes
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "gpt2"  # the converter wants a tokenizer
    (folder / "vocab.json").write_bytes((shared / "encoder.json").read_bytes())
    (folder / "merges.txt").write_bytes((shared / "vocab.bpe").read_bytes())
    return folder


def convert(source: Path | None, checkpoint: Path, kind: str) -> Path:
    target = checkpoint.parent / f"gpt2-{kind}.gguf"
    if not target.is_file():
        env = dict(os.environ, PYTHONPATH=str(source / "gguf-py"))
        done = subprocess.run([sys.executable, str(source / "convert_hf_to_gguf.py"), str(checkpoint),
                               "--outtype", kind, "--outfile", str(target)], env=env, capture_output=True, text=True)
        if done.returncode:
            skip(f"convert_hf_to_gguf.py --outtype {kind} failed: {done.stderr.strip()[-400:]}")
    return target


def llama_runner(path: Path, threads: int, new_tokens: int, repack: bool):
    import llama_cpp.llama_cpp as bindings
    from llama_cpp import Llama

    default_params = bindings.llama_model_default_params

    def without_repacking():  # Llama() takes its model parameters from here and has no argument for this one
        params = default_params()
        params.use_extra_bufts = False  # what llama.cpp's --no-repack sets
        return params

    if not repack:
        bindings.llama_model_default_params = without_repacking
    try:
        llm = Llama(model_path=str(path), n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    finally:
        bindings.llama_model_default_params = default_params

    def run(prompt: list[int]) -> list[int]:
        tokens = []
        for token in llm.generate(prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            tokens.append(token)
            if len(tokens) == new_tokens:
                break
        return tokens
    return run


def fromzero_runner(checkpoint: Path, weights: str, new_tokens: int):
    from fromzero.generation import GenerationConfig, generate, quantize
    from fromzero.models import GPT

    model = quantize(GPT.from_pretrained(checkpoint), weights)
    config = GenerationConfig(max_new_tokens=new_tokens)

    def run(prompt: list[int]) -> list[int]:
        return generate(model, torch.tensor([prompt]), config)[0, len(prompt):].tolist()
    return run, type(model.lm_head).__name__


def main() -> None:
    from rich.table import Table

    import transformers

    from fromzero.console import console, stdout

    args = parse_args()
    if args.quick:
        args.repeats, args.new_tokens = 1, 16
    try:
        import llama_cpp
    except ImportError:
        skip('llama-cpp-python is not installed: CMAKE_ARGS="-DGGML_NATIVE=ON" pip install --no-binary '
             "llama-cpp-python llama-cpp-python")
    checkpoint = build_checkpoint(WORK / "gpt2-random")
    converted = all((checkpoint.parent / f"gpt2-{kind}.gguf").is_file() for kind in GGUF_TYPES)
    source = None if converted else llama_cpp_sources(args.llama_cpp_src)  # the converter, only if needed
    ggufs = {kind: convert(source, checkpoint, kind) for kind in GGUF_TYPES}
    threads = free_cores(0.5)
    bandwidth = read_bandwidth(threads)
    console.print(f"{describe()}; {threads} free cores, read {bandwidth:.1f} GB/s on them; llama-cpp-python "
                  f"{llama_cpp.__version__}")

    prompt = torch.randint(0, 50257, (args.prompt_tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    hf = transformers.GPT2LMHeadModel.from_pretrained(checkpoint).eval()
    with torch.inference_mode():
        ids = torch.tensor([prompt])
        reference = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                                do_sample=False, pad_token_id=0)[0, len(prompt):].tolist()

    sides, layouts = {}, {}
    for kind in GGUF_TYPES:
        sides[f"llama.cpp {kind}"] = llama_runner(ggufs[kind], threads, args.new_tokens, repacks(kind, args.repack))
        sides[f"fromzero {PAIRS[kind]}"], layouts[PAIRS[kind]] = fromzero_runner(checkpoint, PAIRS[kind], args.new_tokens)
    sides["transformers fp32"] = lambda p: hf.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                                       max_new_tokens=args.new_tokens, do_sample=False,
                                                       pad_token_id=0)[0, len(p):].tolist()
    rates: dict[str, list[float]] = {name: [] for name in sides}
    tokens: dict[str, list[int]] = {}
    with torch.inference_mode():
        for run in sides.values():
            run(prompt[:8])  # warm-up
        for repeat in range(args.repeats):
            for name, run in (sides.items() if repeat % 2 == 0 else reversed(sides.items())):
                start = time.perf_counter()
                tokens[name] = run(prompt)
                rates[name].append(len(tokens[name]) / (time.perf_counter() - start))
            console.print(f"run {repeat + 1}: " + ", ".join(f"{name} {rates[name][-1]:.1f}" for name in sides))

    weight_mb = 497.8  # GPT-2 124M in fp32: every weight read once per token
    bytes_per_token = {"fp32": weight_mb, "bf16": weight_mb / 2, "int8": weight_mb / 4}
    rows = []
    for kind in GGUF_TYPES:
        ours, theirs = f"fromzero {PAIRS[kind]}", f"llama.cpp {kind}"
        mine, other = statistics.median(rates[ours]), statistics.median(rates[theirs])
        rows.append(dict(precision=kind, llama_cpp_tok_s=other, fromzero_tok_s=mine, ratio=mine / other,
                         llama_cpp_repacked=repacks(kind, args.repack),
                         fromzero_layout=layouts[PAIRS[kind]],
                         bound_tok_s=bandwidth * 1e3 / bytes_per_token[PAIRS[kind]],
                         llama_cpp_same_tokens_as_transformers=tokens[theirs] == reference,
                         fromzero_same_tokens_as_transformers=tokens[ours] == reference,
                         runs={ours: rates[ours], theirs: rates[theirs]}))
    transformers_rate = statistics.median(rates["transformers fp32"])

    table = Table(title=f"GPT-2 124M, batch 1, prompt {args.prompt_tokens} + {args.new_tokens} greedy tokens, "
                        f"{threads} threads, median of {args.repeats}")
    for column in ("precision", "llama.cpp tok/s", "fromzero tok/s", "fromzero / llama.cpp", "bound tok/s",
                   "same tokens as transformers (llama.cpp, fromzero)"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["precision"], f"{row['llama_cpp_tok_s']:.1f}", f"{row['fromzero_tok_s']:.1f}",
                      f"{row['ratio']:.2f}x", f"{row['bound_tok_s']:.0f}",
                      f"{row['llama_cpp_same_tokens_as_transformers']}, {row['fromzero_same_tokens_as_transformers']}")
    stdout.print(table)
    stdout.print(f"transformers fp32: {transformers_rate:.1f} tok/s; bound = read bandwidth / weight bytes per token")
    results = quick_path(RESULTS) if args.quick else RESULTS
    write_json(results, dict(benchmark="llamacpp_compare", date=utc_now(), quick=args.quick, machine=describe(),
                             threads=threads, read_bandwidth_gb_s=bandwidth, llama_cpp_python=llama_cpp.__version__,
                             transformers=transformers.__version__, prompt_tokens=args.prompt_tokens,
                             new_tokens=args.new_tokens, repeats=args.repeats, transformers_tok_s=transformers_rate,
                             results=rows))
    console.print(f"wrote {results}")


if __name__ == "__main__":
    main()
