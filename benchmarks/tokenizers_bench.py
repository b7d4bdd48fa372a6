"""Tokenizer speed: encoding with GPT-2's vocabulary, and training a BPE vocabulary.

Encode (GPT-2 vocabulary, tinyshakespeare, MB/s of UTF-8 input, median of --repeats runs):
  fromzero fast path (tiktoken core) vs tiktoken's stock ``get_encoding("gpt2")`` vs Hugging Face
  ``tokenizers`` (GPT-2's backend tokenizer; one call on the whole text, and ``encode_batch`` on
  lines, which may use both cores; see ``split_lines``); fromzero's pure-Python encoder (fresh instance = cold cache)
  vs the textbook encoder of ``fromzero.tokenizers.naive`` (minbpe style: per chunk, re-scan pairs,
  merge the earliest learned, no cache).
  Every encoder's ids are checked equal to tiktoken's on the text it encoded.

Train (byte-level BPE, GPT-4 split pattern, ``<|endoftext|>`` special, vocab 4096 and 16384) on
tinyshakespeare and on a ~5 MB mix (tinyshakespeare + Python stdlib sources + licence texts):
  fromzero ``BPETokenizer.train`` vs HF ``BpeTrainer`` (Split(regex) + ByteLevel, same alphabet),
  both given the same list of lines
  vs ``naive.train``, which re-counts all pairs of the corpus before every merge, timed for
  --naive-merges merges and extrapolated linearly (its later merges get slightly cheaper as the
  corpus shrinks, so the extrapolation somewhat overstates it).

Run: flock /tmp/fromzero-bench.lock python benchmarks/tokenizers_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import os
import platform
import shutil
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Callable

import regex
from rich.table import Table

from fromzero.console import console, stdout
from fromzero.files import write_json
from fromzero.tokenizers import BPETokenizer, naive
from fromzero.tokenizers.merge import bpe_merge
from fromzero.tokenizers.patterns import GPT2_PATTERN, GPT4_PATTERN
from timing import quick_path, timed  # benchmarks/timing.py

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "tokenizers_bench.json"
SHARED = Path(os.environ.get("FROMZERO_SHARED", ROOT.parent / "shared")) / "data"


def tiktoken_gpt2(gpt2_dir: Path):
    """tiktoken's stock GPT-2 encoding, fed the local files through its download cache."""
    import tiktoken

    cache = tempfile.mkdtemp(prefix="tiktoken-cache-")
    base = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(gpt2_dir / name, os.path.join(cache, hashlib.sha1((base + name).encode()).hexdigest()))
    os.environ["TIKTOKEN_CACHE_DIR"] = cache
    return tiktoken.get_encoding("gpt2")


def naive_gpt2(ranks: dict[bytes, int]) -> Callable[[str], list[int]]:
    """An encoder that runs ``naive.encode`` with GPT-2's merges and returns GPT-2's ids.

    naive.py numbers the 256 bytes by their value and merged tokens by their id; GPT-2 gives the
    single bytes other ids (its merged tokens keep theirs), so bytes are renumbered on the way out.
    """
    def naive_id(token: bytes) -> int:
        return token[0] if len(token) == 1 else ranks[token]

    merges: dict[tuple[int, int], int] = {}  # (left, right) -> merged id, in merge order: GPT-2's vocab.bpe
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1:
            left, right = bpe_merge(token, ranks, max_rank=rank)
            merges[(naive_id(left), naive_id(right))] = rank
    byte_id = [ranks[bytes([b])] for b in range(256)]
    return lambda text: [byte_id[i] if i < 256 else i for i in naive.encode(text, merges, GPT2_PATTERN)]


def naive_train_seconds_per_merge(text: str, n_merges: int) -> float:
    """``naive.train`` (re-count every pair of the whole corpus, merge the top one): seconds per merge."""
    start = time.perf_counter()
    naive.train(text, 256 + n_merges, GPT4_PATTERN)
    return (time.perf_counter() - start) / n_merges


def hf_train(lines: list[str], vocab_size: int) -> int:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(GPT4_PATTERN), "isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return tok.get_vocab_size()


def split_lines(text: str) -> list[str]:
    """Cut at each single newline between two non-spaces: no regex chunk spans such a cut (and a
    piece's final newline is a chunk of its own either way), so encoding or counting the pieces
    separately gives exactly the ids of the whole text."""
    return regex.split(r"(?<=\S\n)(?=\S)", text)


def big_text(shakespeare: str, size: int) -> str:
    """~``size`` characters of varied real text: Shakespeare, Python sources, licence texts."""
    parts = [shakespeare]
    parts += [Path(p).read_text(encoding="utf-8", errors="replace") for p in sorted(glob.glob("/usr/share/common-licenses/*")) if os.path.isfile(p)]
    parts += [Path(p).read_text(encoding="utf-8", errors="replace") for p in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))]
    return "".join(parts)[:size]


def bench_encode(args, shakespeare: str) -> list[dict]:
    gpt2_dir = args.gpt2_dir
    from transformers import GPT2TokenizerFast

    reference = tiktoken_gpt2(gpt2_dir)
    fast = BPETokenizer.from_files(gpt2_dir / "encoder.json", gpt2_dir / "vocab.bpe", fast=True)
    hf = GPT2TokenizerFast(vocab=str(gpt2_dir / "encoder.json"), merges=str(gpt2_dir / "vocab.bpe")).backend_tokenizer
    slow_text = shakespeare[: args.slow_chars]
    lines = split_lines(shakespeare)
    naive_encode = naive_gpt2(fast.ranks)

    def python_cold(text):
        tok = BPETokenizer(fast.ranks, GPT2_PATTERN, fast.special_tokens, fast=False)
        return tok.encode(text)

    candidates = [
        ("fromzero fast path (tiktoken core)", shakespeare, lambda t: fast.encode(t)),
        ("tiktoken get_encoding('gpt2')", shakespeare, lambda t: reference.encode(t)),
        ("HF tokenizers, one call", shakespeare, lambda t: hf.encode(t).ids),
        ("HF tokenizers, encode_batch(lines)", shakespeare,
         lambda t: [i for e in hf.encode_batch(lines) for i in e.ids]),
        ("fromzero pure Python (cold cache)", shakespeare, python_cold),
        ("plain merge loop (no cache)", slow_text, naive_encode),
    ]
    rows = []
    for name, text, fn in candidates:
        repeats = 1 if "merge loop" in name else args.repeats
        ids, seconds = timed(lambda: fn(text), repeats)
        assert ids == reference.encode(text), f"{name} disagrees with tiktoken"
        mb = len(text.encode("utf-8")) / 1e6
        rows.append({"encoder": name, "megabytes": round(mb, 3), "seconds": seconds, "mb_per_s": mb / seconds, "repeats": repeats})
        console.print(f"  {name}: {mb / seconds:.2f} MB/s")
    tiktoken_rate = rows[1]["mb_per_s"]
    for row in rows:
        row["vs_tiktoken"] = row["mb_per_s"] / tiktoken_rate
    return rows


def bench_train(args, shakespeare: str) -> list[dict]:
    corpora = {"shakespeare": shakespeare}
    if not args.quick:
        corpora["mix 5MB"] = big_text(shakespeare, args.big_chars)
    rows = []
    for corpus_name, text in corpora.items():
        lines = split_lines(text)
        mb = len(text.encode("utf-8")) / 1e6
        naive_merges = args.naive_merges if corpus_name == "shakespeare" else max(5, args.naive_merges // 4)
        per_merge = naive_train_seconds_per_merge(text, naive_merges)
        for vocab_size in args.vocab_sizes:
            ours, ours_s = timed(lambda: BPETokenizer.train(lines, vocab_size, pattern="gpt4"), args.train_repeats)
            hf_size, hf_s = timed(lambda: hf_train(lines, vocab_size), args.train_repeats)
            naive_s = per_merge * (vocab_size - 257)
            row = {"corpus": corpus_name, "megabytes": round(mb, 2), "vocab_size": vocab_size, "fromzero_s": ours_s,
                   "hf_tokenizers_s": hf_s, "naive_s_extrapolated": naive_s, "naive_merges_timed": naive_merges,
                   "fromzero_vocab": ours.vocab_size, "hf_vocab": hf_size,
                   "fromzero_vs_hf": ours_s / hf_s, "speedup_vs_naive": naive_s / ours_s}
            rows.append(row)
            console.print(f"  {corpus_name} vocab {vocab_size}: fromzero {ours_s:.2f}s, HF {hf_s:.2f}s, naive ~{naive_s:.0f}s")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, small slices, tinyshakespeare only")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats of each encoder")
    parser.add_argument("--train-repeats", type=int, default=3, help="timing repeats of each trainer")
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--naive-merges", type=int, default=200, help="merges timed for the naive trainer (on ~5 MB: a quarter)")
    parser.add_argument("--slow-chars", type=int, default=200_000, help="characters given to naive.py's encoder")
    parser.add_argument("--big-chars", type=int, default=5_000_000, help="size of the mixed training text")
    parser.add_argument("--gpt2-dir", type=Path, default=SHARED / "gpt2")
    parser.add_argument("--text", type=Path, default=SHARED / "tinyshakespeare" / "input.txt")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.train_repeats, args.naive_merges, args.slow_chars = 1, 1, 5, 20_000
        args.vocab_sizes = [1024]
    shakespeare = args.text.read_text(encoding="utf-8")

    console.print("[bold]encode throughput[/]")
    encode_rows = bench_encode(args, shakespeare)
    console.print("[bold]training time[/]")
    train_rows = bench_train(args, shakespeare)

    table = Table(title="Encode, GPT-2 vocabulary, tinyshakespeare")
    for col in ("encoder", "MB", "MB/s", "x tiktoken"):
        table.add_column(col, justify="left" if col == "encoder" else "right")
    for r in encode_rows:
        table.add_row(r["encoder"], f"{r['megabytes']:.2f}", f"{r['mb_per_s']:.2f}", f"{r['vs_tiktoken']:.2f}")
    stdout.print(table)
    table = Table(title="BPE training, GPT-4 pattern")
    for col in ("corpus", "vocab", "fromzero s", "HF tokenizers s", "naive s (extrap.)", "x HF", "x faster than naive"):
        table.add_column(col, justify="left" if col == "corpus" else "right", no_wrap=col == "corpus")
    for r in train_rows:
        table.add_row(r["corpus"], str(r["vocab_size"]), f"{r['fromzero_s']:.2f}", f"{r['hf_tokenizers_s']:.2f}",
                      f"{r['naive_s_extrapolated']:.0f}", f"{r['fromzero_vs_hf']:.2f}", f"{r['speedup_vs_naive']:.0f}")
    stdout.print(table)

    import tiktoken
    import tokenizers

    results = quick_path(RESULTS) if args.quick else RESULTS
    write_json(results, {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "tiktoken": tiktoken.__version__, "tokenizers": tokenizers.__version__},
        "encode": encode_rows,
        "train": train_rows,
    })
    console.print(f"wrote {results.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
