"""Per-class ROC and precision-recall curves with their AUCs, and the reliability (calibration) of confidences.

Why one-vs-rest per digit: a ten-class model has no single ROC curve; each digit against the rest shows which
digits the model separates poorly, and the micro average (every image × every class pooled) is the one curve
Vertex's ``ClassificationMetrics`` can hold. Curves are thinned to at most ``MAX_POINTS`` points so the JSON
stays small; the AUCs are computed on the full curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MAX_POINTS = 200
CALIBRATION_BINS = 10


def _thin(*arrays: np.ndarray) -> list[list[float]]:
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int)) if n else np.array([], int)
    return [[round(float(v), 6) for v in a[keep]] for a in arrays]


def roc_pr(labels: np.ndarray, probabilities: np.ndarray, classes: list[int]) -> dict[str, Any]:
    """``{"roc": {digit: {fpr, tpr, auc}}, "pr": {digit: {precision, recall, average_precision}}, "micro": ...}``.

    A digit absent from ``labels`` has no curve (its AUC is undefined) and is listed under ``"missing"``.
    """
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    roc: dict[str, Any] = {}
    pr: dict[str, Any] = {}
    missing = []
    for column, digit in enumerate(classes):
        truth = labels == digit
        if truth.all() or not truth.any():
            missing.append(digit)
            continue
        scores = probabilities[:, column]
        fpr, tpr, _ = roc_curve(truth, scores)
        precision, recall, _ = precision_recall_curve(truth, scores)
        thin_fpr, thin_tpr = _thin(fpr, tpr)
        thin_precision, thin_recall = _thin(precision, recall)
        roc[str(digit)] = {"fpr": thin_fpr, "tpr": thin_tpr, "auc": float(auc(fpr, tpr))}
        pr[str(digit)] = {
            "precision": thin_precision,
            "recall": thin_recall,
            "average_precision": float(average_precision_score(truth, scores)),
        }
    onehot = (labels[:, None] == np.asarray(classes)[None, :]).ravel()
    fpr, tpr, thresholds = roc_curve(onehot, probabilities.ravel())
    thresholds = np.clip(thresholds, 0.0, 1.0)  # the first threshold is +inf by convention
    micro_fpr, micro_tpr, micro_thresholds = _thin(fpr, tpr, thresholds)
    return {
        "roc": roc,
        "pr": pr,
        "missing": missing,
        "macro_roc_auc": float(np.mean([c["auc"] for c in roc.values()])) if roc else None,
        "macro_average_precision": float(np.mean([c["average_precision"] for c in pr.values()])) if pr else None,
        "micro": {"fpr": micro_fpr, "tpr": micro_tpr, "thresholds": micro_thresholds, "auc": float(auc(fpr, tpr))},
    }


def calibration(labels: np.ndarray, predictions: np.ndarray, confidences: np.ndarray) -> dict[str, Any]:
    """Reliability bins: per confidence bin, the mean confidence, the accuracy and the count; plus the
    expected calibration error (the count-weighted gap between them)."""
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    correct = predictions == labels
    bins = []
    error = 0.0
    for b in range(CALIBRATION_BINS):
        inside = which == b
        count = int(inside.sum())
        accuracy = float(correct[inside].mean()) if count else None
        confidence = float(confidences[inside].mean()) if count else None
        if count:
            error += count * abs(accuracy - confidence)  # type: ignore[operator]
        bounds = {"low": float(edges[b]), "high": float(edges[b + 1])}
        bins.append({**bounds, "count": count, "accuracy": accuracy, "confidence": confidence})
    return {"bins": bins, "expected_calibration_error": error / max(1, len(labels))}


def _figure(width: float = 6.4, height: float = 5.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_roc_pr(curves: dict[str, Any], roc_path: Path, pr_path: Path) -> None:
    """One PNG with every digit's ROC curve (AUC in the legend), one with every PR curve (AP in the legend)."""
    from matplotlib import colormaps

    colours = colormaps["tab10"]
    figure = _figure()
    axes = figure.add_subplot()
    for i, (digit, c) in enumerate(curves["roc"].items()):
        axes.plot(c["fpr"], c["tpr"], color=colours(i % 10), lw=1.4, label=f"{digit}  AUC {c['auc']:.3f}")
    axes.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    macro = curves["macro_roc_auc"]
    axes.set_title("ROC per digit (one vs rest)" + (f" · macro AUC {macro:.3f}" if macro is not None else ""))
    axes.legend(fontsize=7, loc="lower right", ncol=2)
    figure.tight_layout()
    figure.savefig(roc_path, format="png")

    figure = _figure()
    axes = figure.add_subplot()
    for i, (digit, c) in enumerate(curves["pr"].items()):
        label = f"{digit}  AP {c['average_precision']:.3f}"
        axes.plot(c["recall"], c["precision"], color=colours(i % 10), lw=1.4, label=label)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_ylim(0, 1.02)
    macro = curves["macro_average_precision"]
    axes.set_title("Precision-recall per digit" + (f" · macro AP {macro:.3f}" if macro is not None else ""))
    axes.legend(fontsize=7, loc="lower left", ncol=2)
    figure.tight_layout()
    figure.savefig(pr_path, format="png")


def plot_calibration(result: dict[str, Any], path: Path) -> None:
    """Reliability diagram (accuracy per confidence bin against the diagonal) over the confidence histogram."""
    figure = _figure(6.4, 6.0)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bins = [b for b in result["bins"] if b["count"]]
    centres = [(b["low"] + b["high"]) / 2 for b in result["bins"]]
    width = 1.0 / len(result["bins"]) * 0.9
    top.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["accuracy"] for b in bins], width=width, color="#2f6fde")
    top.plot([0, 1], [0, 1], color="#999", ls="--", lw=1)
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"Reliability · expected calibration error {result['expected_calibration_error']:.3f}")
    bottom.bar(centres, [b["count"] for b in result["bins"]], width=width, color="#9aa4b2")
    bottom.set_xlabel("confidence of the predicted digit")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    figure.tight_layout()
    figure.savefig(path, format="png")
