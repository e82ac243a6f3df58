"""A trainer's per-epoch curves as one small PNG: train/val loss beside train/val accuracy.

Why a picture as well as the history CSV and the tracked series: it is what a person opening a run's artifacts
(the dashboard's task panel, a bucket listing, a notebook) looks at first, and it needs no plotting step. Both
trainers' epoch records (:class:`~expforge.train.sklearn_trainer.EpochMetrics` and its torch extension) carry
the four values drawn here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from expforge.atomic import staged_file
from expforge.errors import ExpforgeError

CURVES_PNG = "curves.png"
SIZE_INCHES = (8.0, 3.2)
DPI = 100
"""The PNG is ``SIZE_INCHES × DPI`` pixels: 800 × 320, legible in a task panel and a few kilobytes."""

_PANELS = (("loss", ("train_loss", "val_loss")), ("accuracy", ("train_accuracy", "val_accuracy")))


def _values(history: Sequence[Any], name: str) -> list[float]:
    values = []
    for epoch in history:
        value = getattr(epoch, name, None)
        values.append(math.nan if value is None else float(value))
    return values


def plot_epoch_curves(history: Sequence[Any], path: Path | str, *, title: str = "") -> Path:
    """Draw ``history`` (epoch records with ``epoch``, ``train_loss``, ``val_loss``, ``train_accuracy``,
    ``val_accuracy``) to ``path``, written atomically; an empty history is an error (nothing to draw)."""
    if not history:
        raise ExpforgeError(f"{path}: no epochs to plot (the training history is empty)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [int(epoch.epoch) for epoch in history]
    figure = Figure(figsize=SIZE_INCHES, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for ax, (label, names) in zip(axes, _PANELS, strict=True):
        for name, style in zip(names, ("-", "--"), strict=True):
            ax.plot(epochs, _values(history, name), style, marker="o", markersize=3, label=name.split("_")[0])
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    output = Path(path)
    with staged_file(output) as staging:
        figure.savefig(staging, format="png")
    return output


def write_epoch_curves(history: Sequence[Any], directory: Path | str) -> Path:
    """:data:`CURVES_PNG` in ``directory``: both trainers' components put it in their ``tensorboard`` output, the
    one directory they write, which the dashboard lists and previews images of (a new output would change
    every compiled pipeline)."""
    return plot_epoch_curves(history, Path(directory) / CURVES_PNG)
