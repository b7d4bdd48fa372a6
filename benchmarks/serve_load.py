"""Serving under load: many streaming clients against ``fromzero serve``, batched and not, and a plain
transformers ``generate`` behind FastAPI (the seed course's deployment recipe), in the same run.

Loopback only. Each server runs in its own process; the clients run here (asyncio + httpx), each one
sending a request, reading it to the end and sending the next, for ``--seconds``. Per concurrency
level (``--streams``) the table gives the aggregate completion tokens/s (tokens of the requests
started in the window / the time until the last of them finished), the time to first token p50 /
p95 and the errors (any non-200 answer or broken stream).

Sides:
- ``batched``: ``fromzero serve --max-batch 64`` (continuous batching);
- ``unbatched``: ``fromzero serve --max-batch 1`` (the same server, one request at a time);
- ``transformers``: ``GPT2LMHeadModel.generate`` in a FastAPI endpoint, one call per request, no
  streaming (so its "first token" is its whole answer), as a seed-style deployment does it.

Models: a random GPT-2-124M-shaped model (built with transformers, saved, loaded by both; GPT-2's
real BPE files from ../shared/data/gpt2) and, with ``--course-model DIR`` (default
``out/quickstart/dpo`` when it exists), the course's own fine-tuned model (fromzero sides only:
transformers cannot read its tokenizer). Greedy decoding, ``--new-tokens`` per request, ``qa``-style
short questions.

    flock /tmp/fromzero-bench.lock python benchmarks/serve_load.py            # full run
    flock /tmp/fromzero-bench.lock python benchmarks/serve_load.py --quick    # smoke run, tiny model
    flock /tmp/fromzero-bench.lock python benchmarks/serve_load.py --background-load busy  # one core kept busy
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.table import Table
from timing import BACKGROUND_LOADS, background_load, cpu_name, quick_path  # benchmarks/timing.py

from fromzero.console import stdout
from fromzero.files import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "serve_load.json"
SHARED_GPT2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "gpt2"
QUESTIONS = ["What is photosynthesis?", "Why is the sky blue?", "What do plants need to grow?",
             "How does the heart pump blood?", "What is a fraction?", "Why do we have seasons?"]
GOALS = {"errors_at_64": 0, "speedup_at_32": 4.0, "ttft_p95_at_8_course_s": 1.0}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build_gpt2_folder(folder: Path, quick: bool) -> Path:
    """A random GPT-2-shaped model (tiny with --quick) in transformers format, with GPT-2's tokenizer files."""
    import torch
    import transformers

    torch.manual_seed(0)
    shape = dict(n_layer=2, n_head=2, n_embd=64) if quick else {}
    transformers.GPT2LMHeadModel(transformers.GPT2Config(**shape)).eval().save_pretrained(folder)
    shutil.copy(SHARED_GPT2 / "encoder.json", folder / "vocab.json")
    shutil.copy(SHARED_GPT2 / "vocab.bpe", folder / "merges.txt")
    return folder


def start_server(side: str, model: Path, port: int) -> subprocess.Popen:
    if side == "transformers":
        command = [sys.executable, __file__, "--transformers-server", str(model), "--port", str(port)]
    else:
        command = [sys.executable, "-m", "fromzero", "serve", "--model", str(model), "--port", str(port),
                   "--max-batch", "64" if side == "batched" else "1", "--max-queue", "256"]
    # the server's log goes to a file: a pipe nobody reads fills up and blocks the server
    log = tempfile.NamedTemporaryFile("w+", prefix=f"serve_load_{side}_", suffix=".log", delete=False)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True)
    deadline = time.monotonic() + 120
    import httpx

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{side} server exited: {Path(log.name).read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{side} server did not start in 120 s")


async def one_request(client, url: str, side: str, question: str, new_tokens: int) -> tuple[float, int]:
    """(seconds to the first token, completion tokens) of one request; raises on any error."""
    start = time.perf_counter()
    if side == "transformers":
        response = await client.post(url + "/v1/completions", json={"prompt": question, "max_tokens": new_tokens})
        response.raise_for_status()
        return time.perf_counter() - start, response.json()["usage"]["completion_tokens"]
    body = {"model": "base", "messages": [{"role": "user", "content": question}], "max_tokens": new_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    first, chunks, usage = None, 0, None
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]["completion_tokens"]
            if any(choice.get("delta", {}).get("content") for choice in chunk.get("choices", [])):
                chunks += 1
                first = first or time.perf_counter() - start
    if first is None and not usage:
        raise RuntimeError("the stream ended without a token")
    return first if first is not None else time.perf_counter() - start, usage if usage is not None else chunks


async def load(url: str, side: str, streams: int, seconds: float, new_tokens: int) -> dict:
    import httpx

    ttfts, tokens, errors, first_error = [], 0, 0, None
    start = time.perf_counter()
    end = start + seconds
    finished = start

    async def client_loop(index: int, client) -> None:
        nonlocal tokens, errors, finished, first_error
        turn = 0
        while time.perf_counter() < end:
            try:
                ttft, count = await one_request(client, url, side, QUESTIONS[(index + turn) % len(QUESTIONS)],
                                                new_tokens)
                ttfts.append(ttft)
                tokens += count
            except Exception as error:  # noqa: BLE001 - counted, the table shows it
                errors += 1
                first_error = first_error or f"{type(error).__name__}: {error}"
            finished = max(finished, time.perf_counter())
            turn += 1

    limits = httpx.Limits(max_connections=streams + 4, max_keepalive_connections=streams + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:
        await asyncio.gather(*(client_loop(i, client) for i in range(streams)))
    elapsed = finished - start
    return {"streams": streams, "requests": len(ttfts), "errors": errors, "first_error": first_error, "tokens": tokens,
            "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
            "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
            "ttft_p95_s": statistics.quantiles(ttfts, n=20)[-1] if len(ttfts) >= 2 else (ttfts or [None])[0]}


def run_side(side: str, model: Path, levels: list[int], seconds: float, new_tokens: int) -> list[dict]:
    port = free_port()
    process = start_server(side, model, port)
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(load(url, side, 1, min(seconds, 3), new_tokens))  # warm up
        rows = []
        for streams in levels:
            rows.append(asyncio.run(load(url, side, streams, seconds, new_tokens)))
            stdout.print(f"  {side:<12} {streams:>3} streams: {rows[-1]['tokens_per_s']:8.1f} tok/s, "
                         f"{rows[-1]['errors']} errors {rows[-1]['first_error'] or ''}")
        return rows
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def transformers_server(folder: str, port: int) -> None:
    """The peer: transformers ``generate`` in a FastAPI endpoint, one call per request."""
    import torch
    import transformers
    import uvicorn
    from fastapi import FastAPI

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/completions")
    def complete(body: dict) -> dict:
        ids = tokenizer(body["prompt"], return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=body.get("max_tokens", 16), do_sample=False,
                                 pad_token_id=tokenizer.eos_token_id)
        new = out[0, ids["input_ids"].shape[1]:]
        return {"choices": [{"index": 0, "text": tokenizer.decode(new), "finish_reason": "length"}],
                "usage": {"completion_tokens": int(new.numel())}}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, 2 s per level, 1 and 4 streams")
    parser.add_argument("--streams", type=int, nargs="+", help="concurrency levels (default 1 8 32 64)")
    parser.add_argument("--seconds", type=float, help="load time per level (default 20)")
    parser.add_argument("--new-tokens", type=int, default=64, help="max_tokens of every request")
    parser.add_argument("--course-model", type=Path, help="the course model (default out/quickstart/dpo if there)")
    parser.add_argument("--sides", nargs="+", default=["batched", "unbatched", "transformers"])
    parser.add_argument("--models", nargs="+", default=["gpt2", "course"], choices=["gpt2", "course"],
                        help="which models to load (course: only when its folder exists)")
    parser.add_argument("--background-load", choices=list(BACKGROUND_LOADS), default="none",
                        help="another process loading the machine throughout (servers start under it too): 'busy' "
                             "keeps one core busy (a Python loop), 'torch' runs a 2-thread matmul job (default: none)")
    parser.add_argument("--out", type=Path, help=f"JSON results (default {RESULTS})")
    parser.add_argument("--transformers-server", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.transformers_server:
        transformers_server(args.transformers_server, args.port)
        return 0
    levels = args.streams or ([1, 4] if args.quick else [1, 8, 32, 64])
    seconds = args.seconds or (2.0 if args.quick else 20.0)
    course = args.course_model or (Path("out/quickstart/dpo") if Path("out/quickstart/dpo").is_dir() else None)
    results: dict = {"cpu": cpu_name(), "quick": args.quick, "seconds": seconds, "new_tokens": args.new_tokens,
                     "levels": levels, "background_load": args.background_load, "models": {}}
    with tempfile.TemporaryDirectory() as work, background_load(args.background_load):
        models = {}
        if "gpt2" in args.models:
            models["gpt2-124M-random" if not args.quick else "gpt2-tiny-random"] = build_gpt2_folder(Path(work), args.quick)
        if course is not None and not args.quick and "course" in args.models:
            models["course"] = course
        for name, folder in models.items():
            stdout.print(f"[bold]{name}[/] ({folder})")
            sides = [s for s in args.sides if s != "transformers" or name != "course"]
            results["models"][name] = {side: run_side(side, folder, levels, seconds, args.new_tokens) for side in sides}
    load = "" if args.background_load == "none" else f", background load {args.background_load!r}"
    table = Table(title=f"streaming clients on loopback, {seconds:g} s per level{load} ({cpu_name()})")
    for column in ("model", "side", "streams", "tok/s", "TTFT p50 s", "TTFT p95 s", "errors", "vs unbatched"):
        table.add_column(column, justify="right" if column not in ("model", "side") else "left")
    for name, sides in results["models"].items():
        for side, rows in sides.items():
            for row, plain in zip(rows, sides.get("unbatched", rows)):
                ratio = row["tokens_per_s"] / plain["tokens_per_s"] if plain["tokens_per_s"] else float("nan")
                row["vs_unbatched"] = ratio
                table.add_row(name, side, str(row["streams"]), f"{row['tokens_per_s']:.1f}",
                              f"{row['ttft_p50_s'] or 0:.3f}", f"{row['ttft_p95_s'] or 0:.3f}", str(row["errors"]),
                              f"{ratio:.2f}x")
    stdout.print(table)
    out = args.out or (quick_path(RESULTS) if args.quick else RESULTS)
    write_json(out, results)
    stdout.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
