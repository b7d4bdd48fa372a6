"""Handlers of ``fromzero numpy-net ...``: train, generate, plot, toy, gradcheck.

A run directory holds the char-MLP (``config.json`` + ``model.safetensors``), its character
vocabulary (``vocab.json``), the data split (``run.json``), ``history.json`` and ``history.png``.
"""

from __future__ import annotations

import json
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
from rich.table import Table
from rich.text import Text

from fromzero.classic.char_mlp import CharMLP, CharMLPConfig, TrainConfig, train_char_mlp
from fromzero.classic.corpus import char_vocab, train_val_text
from fromzero.classic.history import History
from fromzero.classic.plots import plot_history
from fromzero.console import console, progress, stdout
from fromzero.errors import InputError, MissingFileError
from fromzero.files import write_json

VOCAB_FILE, RUN_FILE, HISTORY_FILE, PLOT_FILE = "vocab.json", "run.json", "history.json", "history.png"


def _encode(text: str, vocab: list[str]) -> list[int]:
    index = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted(set(text) - index.keys())
    if unknown:
        raise InputError(f"the model's vocabulary lacks {len(unknown)} characters of the text, e.g. {unknown[0]!r}")
    return [index[ch] for ch in text]


def train(args: Namespace) -> int:
    train_text, val_text = train_val_text(args.data, args.val_fraction, args.seed)
    vocab = char_vocab(train_text, val_text)
    config = CharMLPConfig(len(vocab), args.context, args.embed, args.hidden, args.activation)
    model = CharMLP(config, seed=args.seed, dtype=np.dtype(args.dtype))
    console.print(
        f"char-MLP: {args.context} characters -> {args.embed}-d embeddings -> {args.hidden} {args.activation} "
        f"units -> {len(vocab)} outputs ({model.num_params():,} parameters); "
        f"{len(train_text):,} training characters"
    )
    train_ids = _encode(train_text, vocab)
    val_ids = _encode(val_text, vocab) if val_text else None
    start = time.perf_counter()
    with progress() as bars:
        task = bars.add_task("training", total=None)
        history = train_char_mlp(
            model,
            train_ids,
            val_ids,
            TrainConfig(args.epochs, args.batch_size, args.lr, args.seed),
            on_step=lambda step, total: bars.update(task, completed=step, total=total),
        )
    seconds = time.perf_counter() - start
    out = Path(args.out)
    model.save(out)
    write_json(out / VOCAB_FILE, vocab)
    write_json(out / RUN_FILE, {"data": args.data, "val_fraction": args.val_fraction, "seed": args.seed, "train_seconds": round(seconds, 1)})
    history.save(out / HISTORY_FILE)
    plot_history(history, out / PLOT_FILE, title=f"char-MLP on {args.data}")
    table = Table(title=f"char-MLP training ({seconds:.1f} s)", title_justify="left")
    for name in ("epoch", "train loss", "val loss", "val perplexity", "val accuracy"):
        table.add_column(name, justify="right")
    for record in history.records:
        val = record.get("val_loss")
        table.add_row(
            str(record["epoch"]),
            f"{record['train_loss']:.4f}",
            "-" if val is None else f"{val:.4f}",
            "-" if val is None else f"[bold]{np.exp(val):.3f}[/]",
            "-" if val is None else f"{record['val_accuracy']:.1%}",
        )
    stdout.print(table)
    sample = model.sample(_encode(args.prompt, vocab), 200, 1.0, args.seed)
    stdout.print(Text("sample: ", style="bold") + Text(args.prompt, style="bold cyan") + Text("".join(vocab[i] for i in sample)))
    console.print(f"[green]saved[/] {out} (model, {HISTORY_FILE}, {PLOT_FILE}); next: `fromzero numpy-net generate --model {out}`")
    return 0


def _load(directory: Path) -> tuple[CharMLP, list[str]]:
    if not (directory / VOCAB_FILE).is_file():
        raise MissingFileError(f"no char-MLP run in {directory}; train one with `fromzero numpy-net train --out {directory}`")
    return CharMLP.load(directory), json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8"))


def generate(args: Namespace) -> int:
    model, vocab = _load(Path(args.model))
    ids = model.sample(_encode(args.prompt, vocab), args.length, args.temperature, args.seed)
    stdout.print(Text(args.prompt, style="bold cyan") + Text("".join(vocab[i] for i in ids)))
    return 0


def plot(args: Namespace) -> int:
    directory = Path(args.model)
    history = History.load(directory / HISTORY_FILE)
    path = plot_history(history, Path(args.output) if args.output else directory / PLOT_FILE, title=f"training of {directory}")
    stdout.print(str(path))
    return 0


def toy(args: Namespace) -> int:
    """One neuron and a two-layer MLP on a logic gate; optionally a GIF of the MLP's boundary."""
    from fromzero.classic.layers import softmax
    from fromzero.classic.mlp import MLP
    from fromzero.classic.mlp import train as train_mlp
    from fromzero.classic.neuron import Neuron, logic_dataset
    from fromzero.classic.plots import animate_decision_boundary, decision_grid

    x, y = logic_dataset(args.gate)
    neuron = Neuron(seed=args.seed)
    neuron_history = neuron.train(x, y, epochs=args.epochs, lr=1.0)
    mlp = MLP([2, args.hidden, 2], args.activation, seed=args.seed)
    frames: list[tuple[int, np.ndarray]] = []

    def snapshot(epoch: int, model: MLP) -> None:
        if args.gif and (epoch == 1 or epoch % max(1, args.epochs // 40) == 0):
            frames.append((epoch, decision_grid(lambda p: softmax(model.forward(p))[:, 1])))

    mlp_history = train_mlp(mlp, x, y.astype(np.int64), lr=args.lr, epochs=args.epochs, batch_size=4, seed=args.seed, on_epoch=snapshot)
    table = Table(title=f"{args.gate.upper()}: one neuron vs a 2-{args.hidden}-2 MLP ({args.activation})", title_justify="left")
    for name in ("x1", "x2", "target", "neuron P(1)", "MLP P(1)"):
        table.add_column(name, justify="right")
    p_neuron, p_mlp = neuron.forward(x), softmax(mlp.forward(x))[:, 1]
    for xi, yi, pn, pm in zip(x, y, p_neuron, p_mlp):
        table.add_row(f"{xi[0]:.0f}", f"{xi[1]:.0f}", f"{yi:.0f}", _judged(pn, yi), _judged(pm, yi))
    stdout.print(table)
    stdout.print(f"accuracy: neuron {neuron_history.last['accuracy']:.0%}, MLP {mlp_history.last['accuracy']:.0%}")
    if args.gate == "xor":
        stdout.print("[dim]one neuron draws a single straight line, and no line separates XOR's classes[/]")
    if args.gif:
        path = animate_decision_boundary(frames, x, y, args.gif)
        console.print(f"[green]saved[/] decision-boundary animation {path}")
    return 0


def _judged(p: float, target: float) -> str:
    """P(1) in green when it is on the right side of 0.5, in red otherwise."""
    style = "green" if (p >= 0.5) == (target == 1) else "bold red"
    return f"[{style}]{p:.3f}[/]"


def gradcheck(args: Namespace) -> int:
    """Every layer's backward pass against central finite differences, in float64."""
    from fromzero.classic.gradcheck import check_layer
    from fromzero.classic.layers import GELU, Embedding, Flatten, Linear, ReLU, Sigmoid, Tanh

    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((4, 5))
    cases = [
        ("Linear(5, 3)", Linear(5, 3, seed=args.seed), x),
        ("Sigmoid", Sigmoid(), x),
        ("Tanh", Tanh(), x),
        ("ReLU", ReLU(), x),
        ("GELU", GELU(), x),
        ("Flatten", Flatten(), rng.standard_normal((2, 3, 4))),
        ("Embedding(7, 3)", Embedding(7, 3, seed=args.seed), rng.integers(0, 7, (4, 2))),
    ]
    table = Table(title="backward pass vs central finite differences (float64)", title_justify="left")
    for name in ("layer", "gradient", "relative error", ""):
        table.add_column(name)
    worst = 0.0
    for name, layer, inputs in cases:
        for which, error in check_layer(layer, inputs, seed=args.seed).items():
            worst = max(worst, error)
            ok = "[green]ok[/]" if error < 1e-6 else "[bold red]WRONG[/]"
            table.add_row(name, which, f"{error:.1e}", ok)
    stdout.print(table)
    return 0 if worst < 1e-6 else 1
