"""Prefix cache: the time to first token of a chat's later turns, with the prefix cache and without.

A chat client sends the whole conversation with every message, so without a cache each turn runs the
prefill of everything said so far before its first token; with it, the keys and values of the earlier
turns (prompt and answer) are reused and only the new question runs
(:mod:`fromzero.generation.prefix_cache`).

The conversation: the first user message holds a passage of the bundled stories (``--passage-tokens``)
and a question about it; each later turn one short follow-up question. The prompts are the server's
(:func:`fromzero.chat.conversation.conversation_prompt`, chat template), the answers greedy, up to
``--new-tokens`` tokens, fed back as the next turn's history the way an OpenAI client does (their
text). Everything runs through the server's engine, the batching :class:`Scheduler`, on the server's
fp32 packed weights: one scheduler with a 256 MB prefix cache and one without, alternating, the cache
cleared before each conversation. Time to first token = from ``submit`` to the first token read. The
table gives, per turn, the prompt's tokens, those found in the cache and the median TTFT of
``--repeats`` conversations on each side; the answers must be identical on both sides.

The models (``--models``, both by default; or ``--model DIR``): the course's two chat models.
``course`` is the model the course trains from zero (the README's level-5 pretraining command with
``--block-size 512``, ``--batch-size 8`` and ``--train-steps`` steps; kept in
out/bench/prefix-cache-model and reused): 2.3M parameters. ``distilgpt2`` is the shape of the model the
course fine-tunes into a chatbot (DistilGPT-2: 6 layers, 768 wide, GPT-2's tokenizer from
../shared/data/gpt2), with random weights, since nothing is downloaded here: the timing is the
same. A model whose tokenizer lacks the chat template's special tokens gets them, with new
embedding rows (what a chat fine-tune starts from; their values change nothing in the timing).

    flock /tmp/fromzero-bench.lock python benchmarks/prefix_cache.py                     # full run
    flock /tmp/fromzero-bench.lock python benchmarks/prefix_cache.py --model DIR --quick # smoke run
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from timing import cpu_name, quick_path  # benchmarks/timing.py

RESULTS = Path(__file__).resolve().parent / "results" / "prefix_cache.json"
COURSE_MODEL = Path("out/bench/prefix-cache-model")
DISTILGPT2_MODEL = Path("out/bench/prefix-cache-distilgpt2")
SHARED_GPT2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "gpt2"
FOLLOW_UPS = ["Who is the story about?", "What happens at the end?", "Why does it end that way?",
              "What could the story teach a child?", "Which part did you like best?"]
CACHE_MB = 256
GOAL_TURN2_SPEEDUP = 5.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=["course", "distilgpt2"], default=["course", "distilgpt2"],
                        help="which of the course's chat models to time (see above)")
    parser.add_argument("--model", type=Path, help="time this model folder instead")
    parser.add_argument("--train-steps", type=int, default=100, help="training steps of the course model")
    parser.add_argument("--block-size", type=int, default=512, help="context of the course model trained here")
    parser.add_argument("--turns", type=int, default=4, help="turns of the conversation (at most 6)")
    parser.add_argument("--passage-tokens", type=int, default=256, help="story tokens in the first message")
    parser.add_argument("--new-tokens", type=int, default=32, help="greedy answer tokens per turn at most")
    parser.add_argument("--repeats", type=int, default=5, help="conversations per side; medians are reported")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 turns, 16 new tokens, 1 repeat")
    return parser.parse_args()


def train_course_model(folder: Path, steps: int, block_size: int) -> Path:
    """The README's level-5 pretraining command, shorter: a BPE GPT on the bundled corpora."""
    if (folder / "config.json").is_file():
        return folder
    subprocess.run([sys.executable, "-m", "fromzero", "train", "--data", "stories", "education_qa/train",
                    "--text-field", "output", "--tokenizer", "bpe:2048", "--preset", "mini",
                    "--block-size", str(block_size), "--n-embd", "192", "--n-head", "6", "--dropout", "0.1",
                    "--batch-size", "8", "--max-steps", str(steps), "--eval-interval", str(steps),
                    "--out", str(folder), "--quiet", "--overwrite"], check=True)
    return folder


def build_distilgpt2(folder: Path) -> Path:
    """A random DistilGPT-2-shaped model in transformers format with GPT-2's tokenizer files."""
    if (folder / "config.json").is_file():
        return folder
    if not (SHARED_GPT2 / "encoder.json").is_file():
        raise SystemExit(f"the distilgpt2 shape needs GPT-2's tokenizer files in {SHARED_GPT2} (see ../shared/data)")
    import torch
    import transformers

    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=6)).eval().save_pretrained(folder)
    shutil.copy(SHARED_GPT2 / "encoder.json", folder / "vocab.json")
    shutil.copy(SHARED_GPT2 / "vocab.bpe", folder / "merges.txt")
    return folder


def chat_model(folder: Path) -> tuple[object, int]:
    """The model and its tokenizer with the chat template, fp32 packed as ``fromzero serve`` runs it,
    and its parameter count (packing turns the Linear weights into buffers: counted before)."""
    from fromzero.finetune.templates import TEMPLATES
    from fromzero.finetune.tuned import TunedModel
    from fromzero.finetune.vocab import add_special_tokens, load_model_tokenizer, resize_token_embeddings
    from fromzero.generation.quantize import quantize
    from fromzero.models import GPT

    template = TEMPLATES["chat"]
    model = GPT.from_pretrained(folder).eval()
    tokenizer = add_special_tokens(load_model_tokenizer(str(folder)), template.special_tokens)
    resize_token_embeddings(model, tokenizer.vocab_size)
    parameters = model.num_params()
    quantize(model, "fp32")
    return TunedModel(model, tokenizer, template, base=str(folder)), parameters


def story_passage(tokenizer, tokens: int) -> str:
    """The first ``tokens`` tokens of the bundled stories, as text."""
    from fromzero.data.bundled import corpus_path

    text = corpus_path("stories").read_text(encoding="utf-8")[:20 * tokens]
    return tokenizer.decode(tokenizer.encode(text)[:tokens]).strip()


def converse(scheduler, tuned, first: str, follow_ups: list[str], new_tokens: int) -> list[dict]:
    """One conversation; per turn its prompt tokens, the tokens found in the cache, the TTFT and the answer."""
    from fromzero.chat.conversation import conversation_prompt
    from fromzero.finetune.instructions import Message
    from fromzero.generation import GenerationConfig

    config = GenerationConfig(max_new_tokens=new_tokens, eos_token_id=tuned.eos_ids, stop_strings=tuned.stop_strings)
    eos = set(tuned.eos_ids)
    messages, turns = [], []
    cache = scheduler.prefix_cache
    for question in [first, *follow_ups]:
        messages.append(Message("user", question))
        prompt = conversation_prompt(tuned, messages, new_tokens)
        if prompt.dropped_turns:
            raise SystemExit("the conversation outgrew the context: use fewer --turns, --passage-tokens or --new-tokens")
        reused = cache.reused if cache else 0
        start = time.perf_counter()
        job = scheduler.submit(prompt.ids, config, tokenizer=tuned.tokenizer)
        tokens = iter(job)
        answer = [next(tokens)]
        ttft = time.perf_counter() - start
        answer += list(tokens)
        turns.append(dict(prompt_tokens=len(prompt.ids), reused_tokens=(cache.reused - reused) if cache else 0,
                          ttft_s=ttft, answer=answer))
        messages.append(Message("assistant", tuned.tokenizer.decode([t for t in answer if t not in eos])))
    return turns


def time_model(folder: Path, args: argparse.Namespace) -> dict:
    """Both sides on one model: the table printed, the figures returned."""
    import torch
    from rich.table import Table

    from fromzero.console import console, stdout
    from fromzero.generation.batching import Scheduler

    tuned, parameters = chat_model(folder)
    config = tuned.model.config
    first = f"Read this story:\n\n{story_passage(tuned.tokenizer, args.passage_tokens)}\n\nWhat is it about?"
    follow_ups = FOLLOW_UPS[:args.turns - 1]
    sides = {"cached": Scheduler(tuned.model, prefix_cache_mb=CACHE_MB), "uncached": Scheduler(tuned.model)}
    console.print(f"{folder}: {parameters / 1e6:.1f}M parameters, {config.n_layer} layers, "
                  f"{config.n_embd} wide, context {config.block_size}; {cpu_name()}, {torch.get_num_threads()} threads")

    runs: dict[str, list[list[dict]]] = {side: [] for side in sides}
    for repeat in range(args.repeats + 1):  # the first conversation warms up (allocations, kernel choices)
        for side in sorted(sides, reverse=repeat % 2 == 1):  # alternate who goes first
            scheduler = sides[side]
            if scheduler.prefix_cache is not None:  # on the decoding thread: after the last answer is kept
                scheduler.run_between_steps(scheduler.prefix_cache.clear).result()
            turns = converse(scheduler, tuned, first, follow_ups, args.new_tokens)
            if repeat:
                runs[side].append(turns)
    for scheduler in sides.values():
        scheduler.close()

    identical = all(a["answer"] == b["answer"] for x, y in zip(runs["cached"], runs["uncached"]) for a, b in zip(x, y))
    rows = []
    for turn in range(args.turns):
        cached = [run[turn] for run in runs["cached"]]
        uncached = statistics.median(run[turn]["ttft_s"] for run in runs["uncached"])
        median = statistics.median(t["ttft_s"] for t in cached)
        rows.append(dict(turn=turn + 1, prompt_tokens=cached[0]["prompt_tokens"], reused_tokens=cached[0]["reused_tokens"],
                         answer_tokens=len(cached[0]["answer"]), ttft_uncached_s=uncached, ttft_cached_s=median,
                         speedup=uncached / median,
                         ttft_runs_s={side: [run[turn]["ttft_s"] for run in runs[side]] for side in runs}))

    table = Table(title=f"{folder.name}: time to first token per turn, median of {args.repeats} conversations "
                        f"(greedy, answers of {args.new_tokens} tokens at most)")
    for column in ("turn", "prompt tokens", "from the cache", "TTFT without (ms)", "TTFT with (ms)", "speedup"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["turn"]), str(row["prompt_tokens"]), str(row["reused_tokens"]),
                      f"{row['ttft_uncached_s'] * 1e3:.1f}", f"{row['ttft_cached_s'] * 1e3:.1f}", f"{row['speedup']:.1f}x")
    stdout.print(table)
    met = rows[1]["speedup"] >= GOAL_TURN2_SPEEDUP and identical
    stdout.print(f"answers identical with and without the cache: {identical}; turn 2 is {rows[1]['speedup']:.1f}x "
                 f"faster to its first token (goal {GOAL_TURN2_SPEEDUP:g}x): {'met' if met else 'NOT met'}")
    return dict(model=str(folder), parameters=parameters, n_layer=config.n_layer, n_embd=config.n_embd,
                block_size=config.block_size, identical=identical, met=met, results=rows)


def main() -> None:
    import torch

    from fromzero.console import console
    from fromzero.files import write_json

    args = parse_args()
    if args.quick:
        args.turns, args.new_tokens, args.repeats = 2, 16, 1
    if not 2 <= args.turns <= len(FOLLOW_UPS) + 1:
        raise SystemExit(f"--turns must be in 2..{len(FOLLOW_UPS) + 1}")
    if args.model:
        folders = {args.model.name: args.model}
    else:
        builders = {"course": lambda: train_course_model(COURSE_MODEL, 2 if args.quick else args.train_steps, args.block_size),
                    "distilgpt2": lambda: build_distilgpt2(DISTILGPT2_MODEL)}
        folders = {name: builders[name]() for name in args.models}
    models = {name: time_model(folder, args) for name, folder in folders.items()}
    results = quick_path(RESULTS) if args.quick else RESULTS
    write_json(results, dict(
        benchmark="prefix_cache", quick=args.quick, cpu=cpu_name(), threads=torch.get_num_threads(),
        torch=torch.__version__, cache_mb=CACHE_MB, turns=args.turns, passage_tokens=args.passage_tokens,
        new_tokens=args.new_tokens, repeats=args.repeats, goal_turn2_speedup=GOAL_TURN2_SPEEDUP, models=models))
    console.print(f"wrote {results}")


if __name__ == "__main__":
    main()
