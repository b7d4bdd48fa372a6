"""``fromzero generate``: continue a prompt with a trained model or GPT-2, from the command line.

The generated text goes to stdout (so it can be piped); model loading and notes go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from argparse import Namespace

from fromzero.commands.parsing import HelpFormatter, add_device_flag, add_nucleus_flags, sampling_seed
from fromzero.console import console
from fromzero.errors import InputError

DESCRIPTION = """\
Continue --prompt with a model: a folder written by training or save_pretrained (it holds the
tokenizer too), or a GPT-2-family name (gpt2, distilgpt2, gpt2-medium...; downloaded once, which
needs the hf extra: pip install "fromzero[hf]").

Decoding: by default the next token is SAMPLED with temperature 0.8 from the 50 most likely
(--top-k 50). --greedy (or --temperature 0) always takes the most likely token instead, and
--num-beams B > 1 runs (deterministic) beam search. Like every sampling command of fromzero,
generate draws a fresh seed and prints it; pass --seed to repeat a run exactly.

Prompt: without --prompt (or with "") the model starts a new document, from what it saw between
documents in training: <|endoftext|> for BPE models (like GPT-2's unconditional samples), the
blank lines between stories for the character model. That start is not printed.

Context: a model sees at most its context (1024 tokens for GPT-2, 128 characters for the course's
mini GPT). Of a longer prompt the model reads only the end (its beginning is dropped, with a
warning); the output still shows the whole prompt. Sampling and greedy decoding may write past the
context: the window then slides and the oldest tokens are forgotten. Beam search needs prompt +
--max-new-tokens to fit the context.

Examples:
  fromzero generate --model out/mini-stories
  fromzero generate --model out/mini-stories --prompt "The dragon" --greedy --repetition-penalty 1.3
  fromzero generate --model gpt2 --prompt "Once upon a time" --max-new-tokens 40 --stream
  fromzero generate --model distilgpt2 --prompt "Paris is" --num-beams 4 --num-return-sequences 2
"""


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="continue a prompt with a model (sampling, greedy, beam search)",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="model folder, or gpt2 / distilgpt2 / another GPT-2 hub name; "
                   "a folder written by `fromzero finetune` (an adapter too) brings its base model and template")
    p.add_argument("--prompt", default=None, help="text to continue (default, or \"\": start a new document); for a "
                   "fine-tuned model, the question, written into its template")
    p.add_argument("--adapter", default=None, metavar="DIR",
                   help="a LoRA adapter folder (`fromzero finetune sft`) to apply to --model")
    p.add_argument("--template", default=None, metavar="NAME",
                   help="qa, alpaca, chat or none (plain continuation); default: the template the model was "
                   "fine-tuned with (finetune.json), none for other models")
    p.add_argument("--template-file", default=None, metavar="FILE", help="your own template (see finetune sft)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate at most")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature: lower = safer, higher = more surprising, 0 = greedy")
    add_nucleus_flags(p)
    p.add_argument("--min-p", type=float, default=None,
                   help="drop tokens less likely than MIN_P x the most likely one's probability")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="> 1 discourages tokens already in the text (1.2-1.5 is typical; 1 = off)")
    p.add_argument("--no-repeat-ngram-size", type=int, default=0,
                   help="never repeat an n-gram of this many tokens (0 = off)")
    p.add_argument("--num-beams", type=int, default=1, help="beam search width (1 = no beam search)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam search: > 0 favours longer sequences, < 0 shorter ones")
    p.add_argument("--num-return-sequences", type=int, default=1,
                   help="how many continuations to print (samples, or the best beams)")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop when this text is generated; may be repeated")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed for sampling (default: a fresh one, printed, so the run can be repeated)")
    p.add_argument("--greedy", action="store_true", help="no sampling: always take the most likely token")
    p.add_argument("--weights", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="weights for inference: fp32 (full precision), or bf16 / int8, which decode faster on CPU "
                        "and slightly less exactly (int8 is the smallest and fastest for one sequence, bf16 for beams; "
                        "CPU only for int8); each is multiplied by the kernel measured fastest on this CPU (fromzero's "
                        "own, compiled at first use, which also runs each step in one call to C; or torch's: see "
                        "fromzero doctor)")
    add_device_flag(p)
    p.add_argument("--stream", action="store_true", help="print the text as it is generated")
    p.add_argument("--stats", action="store_true",
                   help="afterwards, print tokens/s, how much of the memory bandwidth decoding used (the bytes "
                        "of weights and cached keys/values each step reads, against a bandwidth measured then), "
                        "and whether each step ran fused in C or why not")
    p.set_defaults(func=run)


def run(args: Namespace) -> int:
    from fromzero.devices import resolve_device
    from fromzero.generation.config import GenerationConfig
    from fromzero.generation.prompts import fit_prompt
    from fromzero.generation.quantize import quantize
    from fromzero.generation.streaming import check_streamable

    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        do_sample=not args.greedy and args.num_beams == 1,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        num_return_sequences=args.num_return_sequences,
        stop_strings=args.stop,
        seed=args.seed,
    )
    if args.stream:
        check_streamable(config)  # before the model is loaded, and before anything is printed
    else:
        config.validate()
    device = resolve_device(args.device)
    with console.status(f"loading {args.model}"):
        tuned = _load(args)
    model, tokenizer = tuned.model, tuned.tokenizer
    context = model.config.block_size
    console.print(f"[dim]{args.model}: {model.num_params() / 1e6:.1f}M parameters, context {context} tokens"
                  + (f", template {tuned.template.name}" if tuned.template else "") + "[/]")
    quantize(model.to(device), args.weights, rows=args.num_beams * args.num_return_sequences)  # rows decoded at once
    if config.samples:
        config.seed = sampling_seed(config.seed)
    eos = tokenizer.eot_id if tokenizer.eot_id is not None else model.config.eos_token_id
    config.eos_token_id = tuned.eos_ids if tuned.template else eos
    config.pad_token_id = eos if eos is not None else (tuned.eos_ids or [None])[0]
    if tuned.template:
        prompt = _question(tuned, args.prompt, config)
    else:
        prompt = fit_prompt(tokenizer, args.prompt or "", context, config)
    if prompt.dropped:
        reserved = context - len(prompt.ids)  # room kept for the new tokens (beam search)
        console.print(f"[yellow]warning:[/] the prompt has {len(prompt.ids) + prompt.dropped} tokens; keeping its "
                      f"last {len(prompt.ids)} to fit the model's context of {context}"
                      + (f" with {reserved} new tokens" if reserved else ""))
    start = time.perf_counter()
    printer = _print_stream if args.stream else _print_all
    new_tokens = printer(model, tokenizer, prompt, config)
    if args.stats:
        _print_stats(model, prompt, config, new_tokens, time.perf_counter() - start)
    return 0


def _print_stats(model, prompt, config, new_tokens: int, seconds: float) -> None:
    from fromzero.generation.fused_step import fused_step_for, why_not
    from fromzero.generation.throughput import decode_reading
    from fromzero.machine import free_cores, read_bandwidth

    rows = config.num_beams * config.num_return_sequences
    bandwidth = read_bandwidth(free_cores(0.1))
    console.print(f"[dim]{decode_reading(model, rows, len(prompt.ids), new_tokens, seconds, bandwidth)}[/]")
    fused = fused_step_for(model)
    if fused is not None and rows <= fused.max_rows:
        console.print("[dim]each step was one call to C (the fused step; FROMZERO_FUSED_STEP=0 turns it off)[/]")
    else:
        reason = why_not(model) or (f"{rows} rows at once, more than its {fused.max_rows}" if fused else "the model is training")
        console.print(f"[dim]steps ran in eager PyTorch: {reason}[/]")


def _load(args: Namespace):
    """The model with its adapter merged in (one adapter: merged weights decode fastest) and its template."""
    from fromzero.finetune.lora import merge_and_unload
    from fromzero.finetune.tuned import load_tuned

    adapters = [("adapter", args.adapter)] if args.adapter else []
    tuned = load_tuned(args.model, adapters, args.template, args.template_file)
    if tuned.adapters:
        merge_and_unload(tuned.model)
    return tuned


def _question(tuned, question: str | None, config):
    """The prompt of a fine-tuned model: the question in its template; the answer is printed alone."""
    from fromzero.chat.conversation import conversation_prompt
    from fromzero.finetune.instructions import Message
    from fromzero.generation.prompts import Prompt

    if not question:
        raise InputError(f"give the question with --prompt: this model was fine-tuned to answer in the "
                         f"{tuned.template.name} template (--template none continues text instead)")
    config.stop_strings = [*config.stop_strings, *tuned.stop_strings]
    ids = conversation_prompt(tuned, [Message("user", question)], config.max_new_tokens).ids
    return Prompt(ids, text="", dropped=0)


def _print_all(model, tokenizer, prompt, config) -> int:
    import torch

    from fromzero.generation.generate import generate
    from fromzero.generation.stopping import finished_text

    device = next(model.parameters()).device
    output = generate(model, torch.tensor([prompt.ids], device=device), config, tokenizer=tokenizer)
    for i, row in enumerate(output.tolist()):
        if len(output) > 1:
            print(f"--- {i + 1} ---")
        print(prompt.text + finished_text(tokenizer, row[len(prompt.ids):], config), flush=True)
    return output.size(1) - len(prompt.ids)  # the steps decoded (rows that stopped early are padded)


def _print_stream(model, tokenizer, prompt, config) -> int:
    from fromzero.generation.streaming import stream

    pieces = stream(model, tokenizer, prompt.ids, config)  # checks everything before anything is printed
    sys.stdout.write(prompt.text)
    sys.stdout.flush()
    text = []
    for piece in pieces:
        text.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return max(1, len(tokenizer.encode("".join(text))))  # the steps decoded, as near as the text tells
