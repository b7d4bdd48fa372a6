"""The alignment picture: which source tokens the decoder looked at while writing each target token.

Bahdanau et al. (2015) first drew these: for a well-trained model the bright cells run along a
(sometimes bent) diagonal, because the translation of a word is written while looking at that word.
Hindi puts the verb last where English puts it second, so its alignment is visibly not a diagonal.

Matplotlib draws a glyph only if some installed font has it: Hindi labels need a Devanagari font
(Debian: ``apt install fonts-noto-core``). Without one the labels show as boxes, and
:func:`plot_alignment` says so; the picture itself is right either way.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from fromzero.errors import InputError
from fromzero.files import atomic_path
from fromzero.seq2seq.translate import Alignment

# the first of these that is installed draws what DejaVu Sans (matplotlib's default) cannot
DEVANAGARI_FONTS = ("Noto Sans Devanagari", "Noto Sans", "Lohit Devanagari", "Mangal", "Nirmala UI",
                    "Kohinoor Devanagari", "Gargi")


def plot_alignment(alignment: Alignment, path: str | Path, head: int | None = None, title: str = "") -> list[str]:
    """Write the heatmap (the mean over heads, or one ``head``) as a PNG; return warnings for the user."""
    from matplotlib import font_manager
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_head = alignment.weights.size(0)
    if head is not None and not 0 <= head < n_head:
        raise InputError(f"--head must be between 0 and {n_head - 1}, got {head}")
    weights = alignment.weights.mean(0) if head is None else alignment.weights[head]
    installed = {font.name for font in font_manager.fontManager.ttflist}
    fonts = ["DejaVu Sans", *(name for name in DEVANAGARI_FONTS if name in installed)]
    notes = []
    labels = alignment.source + alignment.target
    if any("\u0900" <= char <= "\u097f" for label in labels for char in label) and len(fonts) == 1:
        notes.append("no Devanagari font is installed, so Hindi labels show as boxes: install one "
                     "(Debian/Ubuntu: apt install fonts-noto-core) and plot again")

    width = 2.5 + 0.45 * len(alignment.source)
    height = 2.0 + 0.35 * len(alignment.target)
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(weights.numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    axes.set_xticks(range(len(alignment.source)), alignment.source, rotation=60, ha="right", fontfamily=fonts)
    axes.set_yticks(range(len(alignment.target)), alignment.target, fontfamily=fonts)
    axes.set_xlabel("source tokens (what the encoder read)")
    axes.set_ylabel("target tokens (what the decoder wrote)")
    axes.set_title(title or ("cross-attention, mean of the heads" if head is None else f"cross-attention, head {head}"))
    figure.colorbar(image, ax=axes, fraction=0.05)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from")  # said once, in ``notes``
        figure.savefig(tmp, format="png", dpi=110)
    return notes
