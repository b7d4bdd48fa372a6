"""What a run reports: a JSONL log, a loss-curve PNG, optional TensorBoard, and MFU.

``metrics.jsonl`` gets one JSON object per line (``{"step": 100, "train_loss": 2.1, ...}``), easy
to read back with pandas or a few lines of Python. ``loss.png`` is redrawn at every evaluation so
you can watch the curves while the run goes on. TensorBoard (``--tensorboard``, an optional
package) gets the same scalars under ``OUT/tensorboard``: ``train/loss``, ``train/lr``,
``train/tokens_per_s`` every ``log_interval`` steps, ``eval/train_loss`` and ``eval/val_loss`` at
every evaluation.

MFU (model FLOPs utilisation) says how much of the hardware's arithmetic the training uses.
A training step costs about ``6 * N`` FLOPs per token for the ``N`` weights (2 for the forward
multiply-adds, 4 for the backward) plus ``12 * n_layer * block_size * n_embd`` for attention
(the PaLM paper's appendix B estimate, also used by nanoGPT). We divide the achieved FLOP/s by the
peak: on CPU the peak is *measured* by timing a large fp32 matrix multiplication (what a well-tuned
BLAS reaches on this machine); on CUDA we assume the datasheet's dense bf16 figure for known GPUs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fromzero.errors import InputError
from fromzero.files import atomic_path

# Dense bf16 tensor-core peaks from NVIDIA datasheets, in FLOP/s.
GPU_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "T4": 65e12}


def flops_per_token(n_params: int, n_layer: int, n_embd: int, block_size: int) -> float:
    """Training FLOPs per token: ``6N`` for the weights plus attention's ``12 L T C``."""
    return 6.0 * n_params + 12.0 * n_layer * block_size * n_embd


def measure_cpu_peak(size: int = 1024, repeats: int = 20) -> float:
    """The best fp32 FLOP/s of a ``size x size`` matrix product, a practical CPU peak.

    Best of ``repeats`` (about 0.2 s in all): other programs busy on the same cores make single
    timings slow, so on a loaded machine the peak is underestimated and MFU overestimated.
    """
    import torch

    numbers = torch.Generator().manual_seed(0)  # its own generator: training's random streams stay put
    a = torch.randn(size, size, generator=numbers)
    b = torch.randn(size, size, generator=numbers)
    torch.mm(a, b)  # warm-up: thread pool start, caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def peak_flops(device: Any) -> float | None:
    """The peak FLOP/s MFU is measured against, or None when unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        return measure_cpu_peak()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_PEAKS.items():
            if key in name:
                return peak
    return None


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records if "loss" in r]
    losses = [r["loss"] for r in records if "loss" in r]
    evals = [r for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
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
    plt.close(fig)


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
