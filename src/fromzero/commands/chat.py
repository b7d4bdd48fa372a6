"""``fromzero chat``: talk to a model in the terminal (or through a pipe), change its knobs as you go."""

from __future__ import annotations

import argparse
import sys
from argparse import Namespace
from pathlib import Path

from fromzero.commands.parsing import HelpFormatter, add_device_flag, add_nucleus_flags, sampling_seed
from fromzero.console import console
from fromzero.errors import InputError

DESCRIPTION = """\
Chat with a model: type a question, the answer is streamed back. --model is a folder written by
`fromzero finetune` (an adapter folder brings its base model and template), any model folder, or
gpt2 / distilgpt2. The template comes from the folder's finetune.json unless --template says
otherwise; --template none is plain continuation (the course's level-4 interactive generator:
each line is a prompt, the model continues it).

The chat template keeps the conversation and drops its oldest turns when the context fills (it
says so); the qa and alpaca templates, and plain continuation, answer each line on its own.

Commands (case-insensitive; type help in the session):
  help, quit | exit | q, clear, settings, reset (forget the history),
  temp V (0.01-2.0), topk K|off, topp P|off, tokens N, system TEXT,
  compare [QUESTION] (base model with the adapters off next to the tuned one),
  adapter NAME (switch), save FILE (FILE.json and FILE.md),
  good, bad (rate the last answer), edit (type a better one), better 1|2 (after compare):
  stored in --feedback-dir as training data (`fromzero feedback export --format sft|dpo`).
Ctrl-C stops the answer being written; Ctrl-D (end of input) ends the session.

With --guard, questions with words from simple lists (fromzero/chat/guard.py) are politely
refused and logged, and unsure answers get a note. It is a teaching example, not a safety
guarantee.

Piped input works too: one question (or command) a line, answers on stdout, notes on stderr.

Examples:
  fromzero chat --model out/level5/dpo
  fromzero chat --model out/level5/base --adapter sft=out/level5/sft --adapter dpo=out/level5/dpo
  fromzero chat --model out/mini-stories --template none --temperature 0.6
  echo "What is photosynthesis?" | fromzero chat --model out/level5/dpo --temperature 0
"""


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("chat", help="chat with a model in the terminal (commands: temp, compare, adapter, ...)",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="a `fromzero finetune` folder (adapter or model), any model "
                   "folder, or gpt2 / distilgpt2")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR",
                   help="a LoRA adapter of --model's base, loaded under NAME (switch with `adapter NAME`); "
                   "may be repeated; the first is active")
    p.add_argument("--template", default=None, metavar="NAME",
                   help="qa, alpaca, chat or none (plain continuation); default: the one in finetune.json, "
                   "none for other models")
    p.add_argument("--template-file", default=None, metavar="FILE", help="your own template (see finetune sft)")
    p.add_argument("--system", default=None, metavar="TEXT", help="system prompt (chat template only)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="tokens per answer at most (default: 200, or half the model's context if that is less)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature, 0-2: lower = safer, higher = more surprising, 0 = greedy")
    add_nucleus_flags(p)
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (default: a fresh one, printed); answer n uses seed + n, so the same "
                   "questions with the same seed give the same answers")
    add_device_flag(p)
    p.add_argument("--guard", action="store_true",
                   help="refuse off-topic or inappropriate questions, note unsure answers, log refusals "
                   "(simple word lists: not a safety guarantee)")
    p.add_argument("--guard-log", default=None, metavar="FILE",
                   help="JSONL file the guard appends refusals to (turns the guard on; default with --guard: "
                   "$FROMZERO_HOME/chat/refusals.jsonl)")
    p.add_argument("--rag", default=None, metavar="IDX",
                   help="answer from your documents: put the chunks of this index (`fromzero index build`) closest "
                   "to each question in front of it, and list their sources after the answer")
    p.add_argument("--rag-k", type=int, default=3, help="how many chunks --rag retrieves per question")
    p.add_argument("--feedback-dir", default=None, metavar="DIR",
                   help="folder where good, bad, edit and better store their records (default: $FROMZERO_HOME/feedback)")
    p.set_defaults(func=run)


def run(args: Namespace) -> int:
    from fromzero.chat.conversation import default_answer_tokens
    from fromzero.chat.feedback import FeedbackStore
    from fromzero.chat.guard import Guard
    from fromzero.chat.repl import Session, Settings
    from fromzero.devices import resolve_device
    from fromzero.finetune.tuned import load_tuned, parse_adapter_specs
    from fromzero.generation.quantize import quantize
    from fromzero.paths import fromzero_home

    _check_flags(args)
    adapters = parse_adapter_specs(args.adapter)
    device = resolve_device(args.device)
    with console.status(f"loading {args.model}"):
        tuned = load_tuned(args.model, adapters, args.template, args.template_file, device=device)
    quantize(tuned.model, "fp32")  # the fastest CPU layout for one conversation (a no-op on a GPU); adapters keep working
    context = tuned.model.config.block_size
    tokens = args.max_new_tokens if args.max_new_tokens is not None else default_answer_tokens(context)
    if not 1 <= tokens < context:
        raise InputError(f"--max-new-tokens must be between 1 and {context - 1} for this model (its context is "
                         f"{context} tokens, the question included), got {tokens}")
    seed = sampling_seed(args.seed) if args.temperature > 0 else (args.seed or 0)
    settings = Settings(max_new_tokens=tokens, temperature=args.temperature, top_k=args.top_k or None,
                        top_p=args.top_p if args.top_p < 1 else None, system=args.system, seed=seed)
    guard = None
    if args.guard or args.guard_log:
        guard = Guard(log_path=args.guard_log or fromzero_home() / "chat" / "refusals.jsonl")
    retriever = None
    if args.rag:
        from fromzero.embeddings.rag import load_retriever

        if args.rag_k < 1:
            raise InputError(f"--rag-k must be at least 1, got {args.rag_k}")
        with console.status(f"loading the index {args.rag}"):
            retriever = load_retriever(Path(args.rag), args.rag_k, device)
    interactive = sys.stdin.isatty()
    what = f"template {tuned.template.name}" if tuned.template else "plain continuation"
    if tuned.adapters:
        what += f", adapters {', '.join(tuned.adapters)}"
    if retriever is not None:
        what += f"; answers from {args.rag} ({len(retriever.index.chunks):,} chunks)"
    console.print(f"[dim]{args.model}: {tuned.model.num_params() / 1e6:.1f}M parameters, context {context} tokens, "
                  f"{what}" + (f"; guard on, refusals logged to {guard.log_path}" if guard else "") + "[/]")
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        console.print("[dim]type help for the commands, quit (or Ctrl-D) to leave[/]")
    return Session(tuned, settings, guard, name=args.model, interactive=interactive, retriever=retriever,
                   feedback=FeedbackStore(args.feedback_dir)).run()


def _check_flags(args: Namespace) -> None:
    """The sampling flags, checked before the model is loaded."""
    if not 0 <= args.temperature <= 2:
        raise InputError(f"--temperature must be between 0 (greedy) and 2, got {args.temperature}")
    if args.top_k < 0:
        raise InputError(f"--top-k must be 0 (off) or more, got {args.top_k}")
    if not 0 < args.top_p <= 1:
        raise InputError(f"--top-p must be in (0, 1] (1 = off), got {args.top_p}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
