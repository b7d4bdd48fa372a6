"""``fromzero numpy-net train|generate|plot|toy|gradcheck``: the level-2 NumPy networks.

A run directory holds the char-MLP (``config.json`` + ``model.safetensors``), its character
vocabulary (``vocab.json``), the data split (``run.json``), ``history.json`` and ``history.png``.
"""

from __future__ import annotations

import argparse
import time
from argparse import Namespace
from pathlib import Path

from rich.table import Table
from rich.text import Text

from fromzero.classic.runs import RUN_FILE, VOCAB_FILE, encode_chars, load_char_mlp_run
from fromzero.commands.parsing import HelpFormatter, add_split_flags, sampling_seed
from fromzero.console import console, progress, stdout
from fromzero.errors import InputError
from fromzero.files import write_json

HISTORY_FILE, PLOT_FILE = "history.json", "history.png"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    fmt = HelpFormatter
    net = subparsers.add_parser(
        "numpy-net",
        help="level 2: neural networks in NumPy with hand-written backprop",
        description="A neuron, an MLP and a character-level MLP language model, every gradient written by hand.",
        formatter_class=fmt,
    )
    commands = net.add_subparsers(dest="net_command", metavar="ACTION", required=True)

    p = commands.add_parser("train", help="train the character-level MLP language model", formatter_class=fmt,
                            description="k previous characters -> embeddings -> hidden layer -> softmax (Bengio et al. 2003).\n"
                            "Saves the model, history.json and a loss-curve PNG.")
    add_split_flags(p)
    p.add_argument("--context", type=int, default=6, help="k: previous characters the model sees")
    p.add_argument("--embed", type=int, default=32, help="size of each character's embedding")
    p.add_argument("--hidden", type=int, default=512, help="hidden units")
    p.add_argument("--activation", default="tanh", help="sigmoid, tanh, relu or gelu")
    p.add_argument("--epochs", type=int, default=5, help="passes over the training text")
    p.add_argument("--batch-size", type=int, default=128, help="windows per Adam step")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (decays linearly to 10%%)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="float64 is exact but slower")
    p.add_argument("--prompt", default="", help="start of the sample printed after training")
    p.add_argument("--out", default="runs/numpy-net", help="folder to save the model in")
    p.set_defaults(func=train)

    p = commands.add_parser("generate", help="sample text from a saved char-MLP", formatter_class=fmt,
                            description="Sample characters from a saved char-MLP.\n"
                            "Each run draws a fresh seed and prints it (pass --seed N to repeat a sample); "
                            "training commands use a fixed seed unless given --seed.")
    p.add_argument("--model", default="runs/numpy-net", help="folder written by `fromzero numpy-net train`")
    p.add_argument("--prompt", default="", help="text to continue")
    p.add_argument("--length", type=int, default=300, help="number of characters to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="<1 sharper, >1 flatter, 0 = always the likeliest")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling (default: a fresh one, printed)")
    p.set_defaults(func=generate)

    p = commands.add_parser("plot", help="redraw the loss curves of a training run", formatter_class=fmt)
    p.add_argument("--model", default="runs/numpy-net", help="folder holding history.json")
    p.add_argument("--output", default=None, help="PNG to write (default: history.png in the model folder)")
    p.set_defaults(func=plot)

    p = commands.add_parser("toy", help="one neuron vs a 2-layer MLP on AND / OR / XOR", formatter_class=fmt,
                            description="Why XOR needs a hidden layer; --gif animates the MLP's decision boundary.")
    p.add_argument("--gate", choices=("and", "or", "xor"), default="xor", help="logic gate to learn")
    p.add_argument("--hidden", type=int, default=4, help="hidden units of the MLP")
    p.add_argument("--activation", default="tanh", help="sigmoid, tanh, relu or gelu")
    p.add_argument("--epochs", type=int, default=400, help="training epochs (full batch of 4)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate of the MLP")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.add_argument("--gif", default=None, help="write a decision-boundary animation to this .gif")
    p.set_defaults(func=toy)

    p = commands.add_parser("gradcheck", help="check every layer's backward pass numerically", formatter_class=fmt)
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.set_defaults(func=gradcheck)


def _check_train_flags(args: Namespace) -> None:
    """Refuse impossible numbers by their flag, before the corpus is read or anything is written."""
    from fromzero.classic.layers import activation

    for name in ("epochs", "batch_size", "context", "embed", "hidden"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise InputError(f"--lr must be positive, got {args.lr}")
    activation(args.activation)  # an unknown name is an error that lists the known ones
    if Path(args.out).is_file():
        raise InputError(f"--out {args.out} is a file; give a folder to save the model in")


def train(args: Namespace) -> int:
    import numpy as np

    from fromzero.classic.char_mlp import CharMLP, CharMLPConfig, TrainConfig, train_char_mlp
    from fromzero.classic.corpus import char_vocab, train_val_text
    from fromzero.classic.plots import plot_history

    _check_train_flags(args)
    train_text, val_text = train_val_text(args.data, args.val_fraction, args.seed, args.text_field)
    vocab = char_vocab(train_text, val_text)
    prompt = encode_chars(args.prompt, vocab)
    config = CharMLPConfig(len(vocab), args.context, args.embed, args.hidden, args.activation)
    model = CharMLP(config, seed=args.seed, dtype=np.dtype(args.dtype))
    console.print(
        f"char-MLP: {args.context} characters -> {args.embed}-d embeddings -> {args.hidden} {args.activation} "
        f"units -> {len(vocab)} outputs ({model.num_params():,} parameters); "
        f"{len(train_text):,} training characters"
    )
    train_ids = encode_chars(train_text, vocab)
    val_ids = encode_chars(val_text, vocab) if val_text else None
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
    sample = model.sample(prompt, 200, 1.0, args.seed)
    out = Path(args.out)
    model.save(out)
    write_json(out / VOCAB_FILE, vocab)
    run = {"data": args.data, "text_field": args.text_field, "val_fraction": args.val_fraction, "seed": args.seed}
    write_json(out / RUN_FILE, {**run, "train_seconds": round(seconds, 1)})
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
    stdout.print(Text("sample: ", style="bold") + Text(args.prompt, style="bold cyan") + Text("".join(vocab[i] for i in sample)))
    console.print(f"[green]saved[/] {out} (model, {HISTORY_FILE}, {PLOT_FILE}); next: `fromzero numpy-net generate --model {out}`")
    return 0


def generate(args: Namespace) -> int:
    model, vocab = load_char_mlp_run(Path(args.model))
    prompt = encode_chars(args.prompt, vocab)
    seed = sampling_seed(args.seed) if args.temperature > 0 else None  # temperature 0 draws nothing
    ids = model.sample(prompt, args.length, args.temperature, seed)
    stdout.print(Text(args.prompt, style="bold cyan") + Text("".join(vocab[i] for i in ids)))
    return 0


def plot(args: Namespace) -> int:
    from fromzero.classic.history import History
    from fromzero.classic.plots import plot_history

    directory = Path(args.model)
    history = History.load(directory / HISTORY_FILE)
    path = plot_history(history, Path(args.output) if args.output else directory / PLOT_FILE, title=f"training of {directory}")
    stdout.print(str(path))
    return 0


def toy(args: Namespace) -> int:
    """One neuron and a two-layer MLP on a logic gate; optionally a GIF of the MLP's boundary."""
    import numpy as np

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
    import numpy as np

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
