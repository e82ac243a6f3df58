"""The most confident mistakes: the wrong predictions the model was surest of, as one labelled image grid.

Why these: a confusion matrix says how often 4 is taken for 9; the images the model got wrong with 99 %
confidence say why (a label error, a font that draws 4 closed, a blot).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GALLERY_SIZE = 24
COLUMNS = 8


def most_confident_mistakes(
    labels: np.ndarray, predictions: np.ndarray, confidences: np.ndarray, limit: int = GALLERY_SIZE
) -> list[int]:
    """Indices of wrong predictions, most confident first (ties by index, so the gallery is reproducible)."""
    wrong = np.flatnonzero(predictions != labels)
    order = sorted(wrong.tolist(), key=lambda i: (-float(confidences[i]), i))
    return order[:limit]


def plot_gallery(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    confidences: np.ndarray,
    chosen: list[int],
    path: Path,
) -> None:
    """A grid of the ``chosen`` images titled ``true → predicted (confidence)``; a note when there are none."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(1, -(-len(chosen) // COLUMNS))
    figure = Figure(figsize=(COLUMNS * 1.2, rows * 1.45 + 0.5), dpi=100)
    FigureCanvasAgg(figure)
    figure.suptitle(f"Most confident mistakes ({len(chosen)} shown): true → predicted (confidence)", fontsize=10)
    if not chosen:
        figure.text(0.5, 0.5, "no mistakes on this split", ha="center", va="center")
    for slot, index in enumerate(chosen):
        axes = figure.add_subplot(rows, COLUMNS, slot + 1)
        axes.imshow(images[index], cmap="gray_r", vmin=0, vmax=255)
        title = f"{labels[index]} → {predictions[index]} ({confidences[index]:.2f})"
        axes.set_title(title, fontsize=8, color="#b42318")
        axes.axis("off")
    figure.tight_layout()
    figure.savefig(path, format="png")
