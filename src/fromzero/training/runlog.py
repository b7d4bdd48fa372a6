"""What a run reports: progress bar, metrics.jsonl, loss.png, optional TensorBoard, samples.

``metrics.jsonl`` gets one JSON object per line (``{"step": 100, "train_loss": 2.1, ...}``), easy
to read back with pandas or a few lines of Python. ``loss.png`` is redrawn at every evaluation so
you can watch the curves while the run goes on. TensorBoard (``--tensorboard``, an optional
package) gets the same scalars under ``OUT/tensorboard``: ``train/loss``, ``train/lr``,
``train/tokens_per_s`` every ``log_interval`` steps, ``eval/train_loss`` and ``eval/val_loss`` at
every evaluation.

Only rank 0 reports; the other processes of a DDP run get a :class:`RunLog` that does nothing, so
the training loop calls it the same way everywhere.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable

import torch
from matplotlib.figure import Figure
from rich.markup import escape

from fromzero.console import progress
from fromzero.errors import InputError
from fromzero.files import atomic_path
from fromzero.training.config import TrainConfig

TRAIN_SCALARS = ("loss", "lr", "tokens_per_s")


class MetricsLog:
    """Appends records to ``metrics.jsonl``; keeps them in memory for plotting."""

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        self.records: list[dict] = []
        if resume_step is not None and self.path.is_file():
            # Keep what happened up to the checkpoint; a killed run may have logged further.
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if record.get("step", 0) <= resume_step:
                    self.records.append(record)
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")
        self._file = open(self.path, "a", encoding="utf-8")

    def log(self, record: dict) -> None:
        self.records.append(record)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def plot_losses(records: list[dict], path: str | Path, title: str = "training") -> None:
    """Draw train loss (every logged step) and the evaluated train/val losses to a PNG."""
    steps = [r["step"] for r in records if "loss" in r]
    losses = [r["loss"] for r in records if "loss" in r]
    evals = [r for r in records if "val_loss" in r]
    fig = Figure(figsize=(7, 4))  # no pyplot: no global state, no GUI backend
    ax = fig.subplots()
    if steps:
        ax.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=1, label="train (batch)")
    if evals:
        ax.plot([r["step"] for r in evals], [r["train_loss"] for r in evals], "o-",
                color="tab:blue", label="train (estimate)")
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-",
                color="tab:orange", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def require_tensorboard() -> type:
    """PyTorch's ``SummaryWriter`` class; a one-line :class:`InputError` when TensorBoard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise InputError(f"--tensorboard needs the tensorboard package ({err}): pip install tensorboard") from None
    return SummaryWriter


def tensorboard_writer(log_dir: str | Path, resume_step: int | None = None) -> Any:
    """A TensorBoard ``SummaryWriter`` writing event files into ``log_dir``.

    On resume, TensorBoard is told to hide what a killed run logged after ``resume_step`` (the
    checkpoint), as :class:`MetricsLog` drops those lines, so the curves continue seamlessly.
    """
    summary_writer = require_tensorboard()
    purge_step = resume_step + 1 if resume_step else None
    # flush every few seconds (the default is 2 minutes) so a TensorBoard watching a run keeps up
    return summary_writer(log_dir=str(log_dir), purge_step=purge_step, flush_secs=5)


class RunLog:
    """The reports of one :meth:`~fromzero.training.trainer.Trainer.fit`; use as a context manager.

    ``out_dir`` None writes no files; ``quiet`` shows no progress bar, losses or samples;
    ``is_main`` False (DDP ranks other than 0) reports nothing at all. Files and TensorBoard are
    flushed and closed however the loop ends.
    """

    def __init__(
        self,
        config: TrainConfig,
        out_dir: Path | None,
        start_step: int,
        *,
        is_main: bool = True,
        quiet: bool = False,
        sampler: Callable[[torch.nn.Module], str] | None = None,
    ):
        self.config = config
        self.out_dir = out_dir if is_main else None
        self.start_step = start_step
        self.show = is_main and not quiet
        self.sampler = sampler
        self.metrics: MetricsLog | None = None
        self.tboard: Any = None

    @property
    def active(self) -> bool:
        """Whether anything reads the records (speed and MFU need not be measured otherwise)."""
        return self.show or self.out_dir is not None

    def __enter__(self) -> RunLog:
        with contextlib.ExitStack() as opened:  # closes what was opened if opening the next fails
            if self.out_dir is not None:
                self.metrics = MetricsLog(self.out_dir / "metrics.jsonl", resume_step=self.start_step)
                opened.callback(self.metrics.close)
                if self.config.tensorboard:
                    self.tboard = tensorboard_writer(self.out_dir / "tensorboard", resume_step=self.start_step)
                    opened.callback(self.tboard.close)
            self.bar = opened.enter_context(progress(disable=not self.show))
            self.task = self.bar.add_task("training", total=self.config.max_steps, completed=self.start_step)
            self._close = opened.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close.close()

    def advance(self) -> None:
        self.bar.advance(self.task)

    def train(self, record: dict) -> None:
        """A training-step record: step, loss, lr, tokens_per_s, tokens, elapsed_s (and mfu)."""
        self.bar.update(self.task, description=_describe(record))
        if self.metrics:
            self.metrics.log(record)
        if self.tboard:
            for key in TRAIN_SCALARS:
                self.tboard.add_scalar(f"train/{key}", record[key], record["step"])

    def evaluation(self, step: int, train_loss: float, val_loss: float, best: bool,
                   extra: dict[str, float] | None = None) -> None:
        """The train/val loss estimates, and ``extra`` held-out metrics (name: value) if the run has any."""
        extra = extra or {}
        if self.metrics:
            self.metrics.log({"step": step, "train_loss": train_loss, "val_loss": val_loss, **extra})
            plot_losses(self.metrics.records, self.out_dir / "loss.png", title=f"training ({self.out_dir.name})")
        if self.tboard:
            self.tboard.add_scalar("eval/train_loss", train_loss, step)
            self.tboard.add_scalar("eval/val_loss", val_loss, step)
            for name, value in extra.items():
                self.tboard.add_scalar(f"eval/{name}", value, step)
        if self.show:
            star = " [green](best)[/]" if best else ""
            more = "".join(f", {name.replace('_', ' ')} {value:.4f}" for name, value in extra.items())
            self.bar.console.print(f"step {step}: train loss {train_loss:.4f}, val loss {val_loss:.4f}{more}{star}")

    def sample(self, model: torch.nn.Module) -> None:
        """Print a sample of ``model``'s writing, without moving training's random streams."""
        if not self.show or self.sampler is None:
            return
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            model.eval()
            text = self.sampler(model)
            model.train()
        self.bar.console.print(f"[dim]{escape(text)}[/]", highlight=False)


def _describe(record: dict) -> str:
    parts = [f"loss {record['loss']:.3f}", f"lr {record['lr']:.2e}", f"{record['tokens_per_s']:,.0f} tok/s"]
    if "mfu" in record:
        parts.append(f"MFU {100 * record['mfu']:.0f}%")
    return " | ".join(parts)
