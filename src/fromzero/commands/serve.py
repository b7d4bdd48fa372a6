"""``fromzero serve``: an OpenAI-compatible HTTP server for a model and its adapters, with a chat page.

The app itself is :mod:`fromzero.serve.app`; this module parses the flags, sets up the logs and runs
uvicorn. FastAPI, uvicorn and torch are imported only when the server starts, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os
from argparse import Namespace

from fromzero.commands.parsing import HelpFormatter, add_device_flag
from fromzero.console import console
from fromzero.errors import InputError

API_KEY_ENV = "FROMZERO_API_KEY"

DESCRIPTION = f"""\
Serve --model over OpenAI's API (any OpenAI client works: base URL http://HOST:PORT/v1), with a chat
page at http://HOST:PORT/ and the API's documentation at /docs.

Model ids: "base" is the base model with every adapter off; each --adapter NAME=DIR is the id NAME.
They share one copy of the base weights, and concurrent requests share forward passes (continuous
batching: up to --max-batch answers are decoded together, --max-queue more wait; beyond that the
server answers 429). A tuned adapter is asked in the template it was tuned with (its finetune.json).
A prompt that starts like an earlier one (the next turn of a chat, a shared system prompt) reuses the
keys and values computed for it, kept in --prefix-cache-mb of memory: its first token comes sooner.

With --rag IDX (an index from `fromzero index build`) every chat completion answers from your
documents: the --rag-k chunks closest to the last user message go in front of it (the template and
cutting of `fromzero chat --rag`), and the response lists them in an extra field "sources" (a
stream, in its first chunk); the chat page shows them under the answer. A request with
"rag": false skips the lookup. /v1/completions are left as they are: the prompt is continued as sent.

With --embeddings minilm (or a sentence-transformers folder, or gpt:DIR) the server also answers
/v1/embeddings, as OpenAI's API does: one unit-length vector per input text.

The page's 👍/👎, edits and "this one is better" choices (POST /v1/feedback) are stored in
--feedback-dir; `fromzero feedback export` turns them into data for `fromzero finetune sft|dpo`.

Without --api-key (or ${API_KEY_ENV}) anyone who can reach the port can use the model: the default
host 127.0.0.1 is this machine only. Ctrl-C stops taking requests and finishes those under way.

Examples:
  fromzero serve --model out/level5/base --adapter sft=out/level5/sft --adapter dpo=out/level5/dpo
  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{{"model": "sft", "messages": [{{"role": "user", "content": "What is photosynthesis?"}}]}}'
  curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
    -d '{{"model": "base", "prompt": "Once upon a time", "max_tokens": 40, "temperature": 0}}'
  fromzero serve --model out/level5/dpo --rag out/index --rag-k 2
  fromzero serve --model out/level5/dpo --embeddings minilm
"""


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API, with a chat page",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="model folder, or gpt2 / distilgpt2; a folder written by "
                   "`fromzero finetune` (an adapter too) brings its base model and template")
    p.add_argument("--adapter", action="append", default=None, metavar="NAME=DIR",
                   help="a LoRA adapter of the same base, served as the model id NAME; may be repeated")
    p.add_argument("--template", default=None, metavar="NAME",
                   help="qa, alpaca, chat or none, for every model id; default: each adapter's own (finetune.json)")
    p.add_argument("--template-file", default=None, metavar="FILE", help="your own template, for every model id")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every network interface)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--api-key", default=None, help=f"require 'Authorization: Bearer KEY' on /v1 (default: ${API_KEY_ENV})")
    p.add_argument("--max-batch", type=int, default=8,
                   help="answers decoded together at most (1: no batching); on a CPU where one answer and a full "
                        "batch want different kernels, the layers keep both where the memory allows a second copy)")
    p.add_argument("--max-queue", type=int, default=64, help="answers that may wait for a place in the batch")
    p.add_argument("--rag", default=None, metavar="IDX",
                   help="answer chat completions from your documents: the chunks of this index (`fromzero index "
                   "build`) closest to each question go in front of it, and are listed in the response's sources "
                   "(not /v1/completions)")
    p.add_argument("--rag-k", type=int, default=3, help="how many chunks --rag retrieves per question")
    p.add_argument("--embeddings", default=None, metavar="ENCODER",
                   help="answer /v1/embeddings with this encoder: minilm, a sentence-transformers folder, or gpt:DIR "
                   "(a GPT's mean-pooled states); its model id is minilm, the folder's name, or gpt:NAME")
    p.add_argument("--feedback-dir", default=None, metavar="DIR",
                   help="folder of the ratings, edits and choices sent to /v1/feedback (default: $FROMZERO_HOME/feedback)")
    p.add_argument("--prefix-cache-mb", type=float, default=256, metavar="MB",
                   help="memory (MB) for the keys/values of earlier prompts and answers: a chat's next turn, or "
                   "any prompt starting like an earlier one, runs only its new tokens (least recently used "
                   "go first; 0: off)")
    add_device_flag(p)
    p.set_defaults(func=run)


def run(args: Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise InputError('fromzero serve needs the serve extra: pip install "fromzero[serve]"') from None
    from fromzero.chat.feedback import FeedbackStore
    from fromzero.finetune.tuned import parse_adapter_specs
    from fromzero.serve.app import create_app

    if args.max_batch < 1 or args.max_queue < 0:
        raise InputError(f"--max-batch must be >= 1 and --max-queue >= 0, got {args.max_batch} and {args.max_queue}")
    if args.prefix_cache_mb < 0:
        raise InputError(f"--prefix-cache-mb must be >= 0 (0: off), got {args.prefix_cache_mb:g}")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be in 0-65535, got {args.port}")
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    with console.status(f"loading {args.model}" + (f" and the index {args.rag}" if args.rag else "")):
        app = create_app(args.model, parse_adapter_specs(args.adapter or []), api_key=api_key, max_batch=args.max_batch,
                         max_queue=args.max_queue, template=args.template, template_file=args.template_file,
                         device=args.device, rag=args.rag, rag_k=args.rag_k, feedback_dir=args.feedback_dir,
                         prefix_cache_mb=args.prefix_cache_mb, embeddings=args.embeddings)
    models = ", ".join(entry.id for entry in app.state.served.values())
    url = f"http://{args.host}:{args.port}"
    console.print(f"[bold]serving[/] {models} at {url}/v1 (chat page: {url}/, API docs: {url}/docs)"
                  + ("" if api_key else " [yellow]without an API key[/]"))
    if app.state.encoder is not None:
        console.print(f"/v1/embeddings: {app.state.encoder_id} ({app.state.encoder.dim} numbers per vector)")
    if app.state.retriever is not None:
        console.print(f"chat completions answer from {args.rag} ({len(app.state.retriever.index.chunks):,} chunks, "
                      f"{args.rag_k} per question)")
    console.print(f"[dim]ratings and edits from the page go to {FeedbackStore(args.feedback_dir).path}[/]")
    _log_to_stderr()
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info",
                timeout_graceful_shutdown=30)
    return 0


def _log_to_stderr() -> None:
    """Each request as one JSON line on stderr (uvicorn's own access log is off: this one says more)."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("fromzero.serve.access", "fromzero.serve"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
