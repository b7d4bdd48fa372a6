"""Pictures of vectors: words or sentences as labelled points in 2-D, and a similarity heatmap.

Vectors have 100 or 384 numbers; a picture has two. **PCA** keeps the two directions along which
the points spread most (the top right-singular vectors of the centred matrix): distances along
them are real distances, so it is honest but may hide clusters. **t-SNE** (scikit-learn) instead
keeps each point's nearest neighbours near it, which draws clusters clearly but says nothing
about the distances between them. Its ``perplexity`` (about how many neighbours count) must be
below the number of points, and its fast Barnes–Hut method only draws 2 or 3 dimensions: here a
perplexity too large for the points is lowered to fit, and more components use the exact method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fromzero.errors import InputError


def pca(vectors: np.ndarray, components: int = 2) -> np.ndarray:
    """The points projected on their ``components`` directions of largest variance (signs fixed)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise InputError(f"PCA needs at least two vectors in a (points, dim) matrix, got shape {x.shape}")
    if not 1 <= components <= min(x.shape):
        raise InputError(f"PCA can give 1 to {min(x.shape)} components for {x.shape[0]} points of {x.shape[1]} "
                         f"numbers, not {components}")
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:components]
    axes *= np.sign(axes[np.arange(components), np.abs(axes).argmax(axis=1)])[:, None]  # one sign per run
    return centred @ axes.T


def tsne(vectors: np.ndarray, components: int = 2, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """scikit-learn's t-SNE, with a perplexity that fits the points and the method the components need."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise InputError("t-SNE needs scikit-learn: pip install scikit-learn (or use PCA)") from None
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise InputError(f"t-SNE needs at least three vectors in a (points, dim) matrix, got shape {x.shape}")
    fitted = min(perplexity, (len(x) - 1) / 3)  # must be < points; sklearn's own rule of thumb: a third
    method = "barnes_hut" if components < 4 else "exact"
    model = TSNE(components, perplexity=fitted, method=method, random_state=seed, init="pca")
    return model.fit_transform(x)


def plot_points(points: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Labelled 2-D points as a PNG (written whole or not at all)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fromzero.files import atomic_path

    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise InputError(f"need one 2-D point per label: {points.shape} points, {len(labels)} labels")
    figure = Figure(figsize=(7, 6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.scatter(points[:, 0], points[:, 1], s=18)
    for (x, y), label in zip(points, labels):
        axes.annotate(label, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=9)
    axes.set_title(title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of rows."""
    x = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InputError("a zero vector has no direction: its cosine similarity is undefined")
    unit = x / norms
    return unit @ unit.T


def plot_similarity(vectors: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "cosine similarity") -> Path:
    """A heatmap of the cosine similarity of every pair, each cell written in."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fromzero.files import atomic_path

    similarity = cosine_matrix(vectors)
    if len(labels) != len(similarity):
        raise InputError(f"need one label per vector: {len(similarity)} vectors, {len(labels)} labels")
    size = 1.5 + 0.55 * len(labels)
    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(similarity, vmin=-1, vmax=1, cmap="RdBu_r")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            axes.text(j, i, f"{similarity[i, j]:.2f}", ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=axes)
    axes.set_title(title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)
