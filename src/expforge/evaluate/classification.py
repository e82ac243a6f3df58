"""Evaluate a saved classifier on one split: the numbers a pipeline gates on and the files a person reads.

Outputs (written together, atomically, into one directory): ``metrics.json`` (everything returned),
``confusion_matrix.png``, ``classification_report.txt`` (scikit-learn's text report) and ``report.md`` (a
Markdown table, used as a KFP Markdown artifact). Labels are always the ten digits, so matrices from
different runs line up even when a split lacks a digit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from expforge.atomic import check_output, staged_directory
from expforge.data.manifest import check_split, load_arrays

LABELS = list(range(10))
METRICS_JSON = "metrics.json"
CONFUSION_PNG = "confusion_matrix.png"
REPORT_TXT = "classification_report.txt"
REPORT_MD = "report.md"


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the 10×10 confusion matrix (rows: true)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=0)
    per_class = {
        str(label): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(LABELS)
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=LABELS, average="macro", zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=LABELS).tolist(),
        "labels": list(LABELS),
    }


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], title: str, path: Path) -> None:
    """Annotated heatmap PNG. Uses an Agg canvas directly: no pyplot state, no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=np.int64)
    figure = Figure(figsize=(6.4, 5.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="images")
    threshold = counts.max() / 2 if counts.size and counts.max() > 0 else 0.5
    for (row, col), value in np.ndenumerate(counts):
        colour = "white" if value > threshold else "black"
        axes.text(col, row, str(value), ha="center", va="center", fontsize=8, color=colour)
    ticks = list(range(len(counts)))
    axes.set_xticks(ticks, [str(t) for t in ticks])
    axes.set_yticks(ticks, [str(t) for t in ticks])
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, format="png")


def markdown_report(result: dict[str, Any]) -> str:
    """Headline metrics and the per-class table in Markdown."""
    lines = [
        f"# Evaluation on split `{result['split']}`",
        "",
        f"- images: {result['n']}",
        f"- accuracy: **{result['accuracy']:.4f}**",
        f"- macro-F1: **{result['macro_f1']:.4f}**",
        f"- model: `{result['model']}`",
        f"- dataset: `{result['dataset']}`",
        "",
        "| digit | precision | recall | F1 | support |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, stats in result["per_class"].items():
        lines.append(
            f"| {label} | {stats['precision']:.4f} | {stats['recall']:.4f} | {stats['f1']:.4f} | {stats['support']} |"
        )
    return "\n".join(lines) + "\n"


def evaluate_model(
    model: Path | str, dataset: Path | str, *, split: str = "test", output: Path | str, overwrite: bool = False
) -> dict[str, object]:
    """Evaluate the model saved at ``model`` (a scikit-learn bundle or a CNN checkpoint) on ``split`` of
    ``dataset``; write the report files to ``output``.

    Returns the metrics (keys ``accuracy``, ``macro_f1``, ``per_class``, ``confusion_matrix``, ``labels``,
    ``split``, ``n``, plus the ``model`` and ``dataset`` paths). ``output`` is written as a whole, only once
    every file exists; an existing non-empty ``output`` is refused unless ``overwrite``, and one that is or
    holds the model or the dataset always (checked before the model is loaded).
    """
    from sklearn.metrics import classification_report

    from expforge.train.classifier import load_classifier

    check_split(split, where="--split")
    inputs = [model, dataset]
    check_output(output, directory=True, inputs=inputs, overwrite=overwrite, flag="--output")
    classifier = load_classifier(model)
    images, labels, _ = load_arrays(dataset, [split])
    predicted = classifier.predict(images)
    result: dict[str, Any] = {
        **classification_metrics(labels, predicted),
        "split": split,
        "n": int(len(labels)),
        "model": str(model),
        "dataset": str(dataset),
    }
    text_report = classification_report(labels, predicted, labels=LABELS, digits=4, zero_division=0)
    title = f"{Path(dataset).name} / {split}: accuracy {result['accuracy']:.3f} (n={result['n']})"
    with staged_directory(output, overwrite=overwrite, inputs=inputs, flag="--output") as staging:
        (staging / METRICS_JSON).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (staging / REPORT_TXT).write_text(text_report, encoding="utf-8")
        (staging / REPORT_MD).write_text(markdown_report(result), encoding="utf-8")
        plot_confusion_matrix(result["confusion_matrix"], title, staging / CONFUSION_PNG)
    return result
