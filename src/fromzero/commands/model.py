"""``fromzero model info``: the size of a model, part by part, and the memory it needs."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from fromzero.commands.parsing import HelpFormatter
from fromzero.console import stdout
from fromzero.errors import InputError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser(
        "model",
        help="inspect GPT models (presets or saved checkpoints)",
        description="Inspect GPT models: presets (tiny, mini, gpt2, ...) or model directories.",
        formatter_class=HelpFormatter,
    )
    commands = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    info = commands.add_parser(
        "info",
        help="parameter breakdown, memory and configuration of a model",
        description="Show where a model's parameters are, how much memory its weights take in "
        "fp32/bf16/int8, the KV cache and AdamW training footprint, and its configuration.\n"
        "Only config.json is read, so this is instant even for GPT-2 XL.\n\n"
        "examples:\n  fromzero model info mini\n  fromzero model info gpt2-xl\n"
        "  fromzero model info tiny --set n_layer=6 --set n_embd=128\n  fromzero model info runs/my-model",
        formatter_class=HelpFormatter,
    )
    info.add_argument("model", metavar="DIR|PRESET", help="a preset name, a model directory, or a hub name (gpt2, ...)")
    info.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
        help="override a config field of a preset, e.g. --set vocab_size=65 (repeatable)",
    )
    info.add_argument("--json", action="store_true", help="print the numbers as JSON instead of tables")
    info.set_defaults(func=run_info)


def _parse_overrides(pairs: list[str]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field:
            raise InputError(f"--set expects FIELD=VALUE, got {pair!r}")
        try:
            overrides[field] = json.loads(value)  # numbers, true/false, null
        except json.JSONDecodeError:
            overrides[field] = value  # bare strings such as sinusoidal
    return overrides


def run_info(args: argparse.Namespace) -> int:
    from fromzero.models.config import PRESETS, GPTConfig
    from fromzero.models.pretrained import model_directory, read_config
    from fromzero.models.summary import BYTES_PER_PARAM, TRAINING_BYTES_PER_PARAM, summarize

    overrides = _parse_overrides(args.overrides)
    if args.model in PRESETS:
        try:
            config = GPTConfig.preset(args.model, **overrides)
        except InputError as err:  # the preset exists: the error is in an override
            raise InputError(f"--set: {err}") from None
    elif overrides:
        raise InputError("--set only applies to presets; a saved model's shape is fixed by its weights")
    else:
        try:
            directory = model_directory(args.model)
        except InputError as err:
            raise InputError(f"{err}; presets: {', '.join(PRESETS)}") from None
        config = read_config(directory)
    summary = summarize(config)
    memory = {fmt: summary.weight_bytes(fmt) for fmt in BYTES_PER_PARAM}
    kv_token = summary.kv_cache_bytes_per_token()

    if args.json:
        print(json.dumps({
            "model": args.model,
            "config": config.to_dict(),
            "parameters": {"total": summary.total, "non_embedding": summary.non_embedding,
                           "components": dict(summary.components)},
            "weight_bytes": memory,
            "kv_cache_bytes_per_token_fp32": kv_token,
            "adamw_training_bytes": summary.total * TRAINING_BYTES_PER_PARAM,
        }, indent=2))
        return 0

    params = Table(title=f"{args.model}: {summary.total:,} parameters ({_human(summary.total, '')})")
    params.add_column("component")
    params.add_column("parameters", justify="right")
    params.add_column("share", justify="right")
    for label, count in summary.components:
        params.add_row(label, f"{count:,}", f"{100 * count / summary.total:.1f}%")
    if config.pos_encoding == "sinusoidal":
        params.add_row("position encoding", "sinusoidal, no parameters", "")
    if config.tie_weights:
        params.add_row("output layer", "tied to token embedding", "")
    params.add_row("total without embeddings", f"{summary.non_embedding:,}", "", style="dim")

    mem = Table(title="memory")
    mem.add_column("what")
    mem.add_column("size", justify="right")
    for fmt, size in memory.items():
        mem.add_row(f"weights in {fmt} ({BYTES_PER_PARAM[fmt]} B/param)", _human(size))
    mem.add_row("KV cache per token (fp32, per sequence)", _human(kv_token))
    mem.add_row(f"KV cache at full context ({config.block_size} tokens)", _human(kv_token * config.block_size))
    mem.add_row("training with AdamW in fp32 (16 B/param, before activations)",
                _human(summary.total * TRAINING_BYTES_PER_PARAM))

    table = Table(title="configuration")
    table.add_column("field")
    table.add_column("value")
    for field, value in config.to_dict().items():
        table.add_row(field, str(value))
    table.add_row("head_dim", str(config.head_dim), style="dim")
    table.add_row("transformers-compatible", "yes" if config.hf_compatible else "no", style="dim")
    for part in (params, mem, table):
        stdout.print(part)
    return 0


def _human(count: float, unit: str = "B") -> str:
    """1234567 -> '1.23 M' parameters, or '1.23 MB' with unit 'B' (powers of 1000)."""
    prefixes = ("", "K", "M", "G", "T")
    step = 0
    while abs(count) >= 1000 and step < len(prefixes) - 1:
        count /= 1000
        step += 1
    return f"{count:.3g} {prefixes[step]}{unit}".rstrip()
