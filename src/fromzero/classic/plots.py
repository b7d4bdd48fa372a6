"""Pictures of training, drawn headless with matplotlib's Agg renderer (no display needed).

Figures are made with ``matplotlib.figure.Figure`` and an Agg canvas rather than ``pyplot``,
so drawing here neither needs a display nor changes the backend of a notebook that imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from fromzero.classic.history import History
from fromzero.errors import InputError
from fromzero.files import atomic_path


def _figure(**kwargs) -> Figure:
    """A figure drawn by Agg, whatever backend matplotlib is set to."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def plot_history(history: History, path: str | Path, title: str = "training") -> Path:
    """Loss curves (every ``*loss`` metric) and, if recorded, accuracy, saved as a PNG."""
    names = sorted({k for r in history.records for k in r if k != "epoch"})
    losses = [n for n in names if n.endswith("loss")]
    accuracies = [n for n in names if n.endswith("accuracy")]
    panels = [p for p in (losses, accuracies) if p]
    if not panels:
        raise InputError("the training history holds no loss or accuracy to plot")
    fig = _figure(figsize=(5.5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, group, label in zip(axes[0], panels, ("loss", "accuracy")):
        for name in group:
            epochs = [r["epoch"] for r in history.records if r.get(name) is not None]
            ax.plot(epochs, history.series(name), marker="o" if len(epochs) < 30 else None, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def decision_grid(predict: Callable[[np.ndarray], np.ndarray], lo: float = -0.5, hi: float = 1.5, n: int = 60) -> np.ndarray:
    """P(class 1) of a 2-D classifier on an ``n x n`` grid over [lo, hi]^2 (one animation frame)."""
    axis = np.linspace(lo, hi, n)
    xx, yy = np.meshgrid(axis, axis)
    return predict(np.stack([xx.ravel(), yy.ravel()], axis=1)).reshape(n, n)


def animate_decision_boundary(
    frames: list[tuple[int, np.ndarray]],
    x: np.ndarray,
    y: np.ndarray,
    path: str | Path,
    lo: float = -0.5,
    hi: float = 1.5,
    fps: int = 8,
) -> Path:
    """A looping GIF of how the decision boundary moves; ``frames`` are ``(epoch, decision_grid)``."""
    fig = _figure(figsize=(5, 4.6))
    ax = fig.subplots()
    image = ax.imshow(frames[0][1], origin="lower", extent=(lo, hi, lo, hi), cmap="RdBu", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="P(class 1)")
    for label, marker, colour in ((0, "o", "white"), (1, "s", "black")):
        points = x[y == label]
        ax.scatter(points[:, 0], points[:, 1], marker=marker, c=colour, edgecolors="black", s=120, label=f"class {label}")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    fig.tight_layout()
    pictures = []
    for epoch, grid in frames:
        image.set_data(grid)
        ax.set_title(f"epoch {epoch}")
        fig.canvas.draw()
        pictures.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB"))
    path = Path(path)
    with atomic_path(path) as tmp:
        pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=1000 // fps, loop=0)
    return path


def _save_png(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def plot_bars(labels: list[str], series: dict[str, list[float]], path: str | Path, title: str = "", ylabel: str = "") -> Path:
    """Bars side by side for each label, one colour per series: two distributions compared at a glance."""
    fig = _figure(figsize=(min(12.0, max(5.5, 0.3 * len(labels) * len(series) + 2)), 4))
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(labels)) + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save_png(fig, path)


def plot_lines(x: list[float], series: dict[str, list[float]], path: str | Path, title: str = "",
               xlabel: str = "", ylabel: str = "") -> Path:
    """One line per series over the same x values (e.g. perplexity against n-gram order)."""
    fig = _figure(figsize=(5.5, 4))
    ax = fig.subplots()
    for name, values in series.items():
        ax.plot(x, values, marker="o", label=name)
    ax.set_xticks(x)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save_png(fig, path)


def plot_decision_boundaries(panels: list[tuple[str, np.ndarray, np.ndarray]], x: np.ndarray, path: str | Path,
                             lo: float = -0.5, hi: float = 1.5) -> Path:
    """Still pictures side by side: each panel is ``(title, decision_grid, targets of x)``."""
    fig = _figure(figsize=(4 * len(panels), 4))
    for ax, (title, grid, y) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        ax.imshow(grid, origin="lower", extent=(lo, hi, lo, hi), cmap="RdBu", vmin=0, vmax=1)
        if grid.min() < 0.49 and grid.max() > 0.51:  # the line where it changes its mind, if it has one
            axis = np.linspace(lo, hi, grid.shape[0])
            ax.contour(axis, axis, grid, levels=[0.5], colors="black")
        for label, marker, colour in ((0, "o", "white"), (1, "s", "black")):
            points = x[y == label]
            ax.scatter(points[:, 0], points[:, 1], marker=marker, c=colour, edgecolors="black", s=120)
        ax.set_title(title)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    fig.tight_layout()
    return _save_png(fig, path)


def plot_heatmaps(panels: list[tuple[str, np.ndarray]], path: str | Path, xlabels: list[str] | None = None,
                  ylabels: list[str] | None = None, xlabel: str = "", ylabel: str = "", columns: int = 4,
                  cmap: str = "viridis") -> Path:
    """Matrices side by side as coloured grids, each ``(title, 2-D array)``: attention weights per head,
    position tables. Labels name the rows and columns (the tokens) when given."""
    rows = -(-len(panels) // columns)
    width = min(columns, len(panels))
    fig = _figure(figsize=(3.6 * width, 3.4 * rows))
    axes = fig.subplots(rows, width, squeeze=False).ravel()
    for ax, (title, matrix) in zip(axes, panels):
        image = ax.imshow(matrix, cmap=cmap, aspect="auto", interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        if xlabels is not None:
            ax.set_xticks(range(len(xlabels)), xlabels, fontsize=7)
        if ylabels is not None:
            ax.set_yticks(range(len(ylabels)), ylabels, fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    for ax in axes[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return _save_png(fig, path)
