"""The evaluation bundle a person reads next to the headline numbers (what the digit-classifier demo showed).

``<output>/`` (one directory, staged and renamed into place so it never exists half-written):

* ``predictions.json`` — every image of the split: ``index``, ``path``, ``label``, ``prediction``, ``confidence``;
* ``curves.json`` — per-digit ROC and precision-recall curves with AUC / average precision, the micro-average ROC
  (what Vertex's ``ClassificationMetrics`` shows) and the calibration bins;
* ``roc_curves.png``, ``pr_curves.png``, ``calibration.png`` (reliability diagram), ``mistakes.png`` (the most
  confident mistakes).

Models without probabilities (hinge-loss SVM, perceptron) get predictions with confidence 1.0, the gallery in
index order, and no curves (``curves.json`` says why).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from expforge.atomic import staged_directory
from expforge.data.manifest import check_split, load_arrays
from expforge.evaluate import curves as curves_module
from expforge.evaluate import gallery

LABELS = list(range(10))
PREDICTIONS_JSON = "predictions.json"
CURVES_JSON = "curves.json"
ROC_PNG = "roc_curves.png"
PR_PNG = "pr_curves.png"
CALIBRATION_PNG = "calibration.png"
MISTAKES_PNG = "mistakes.png"


def write_bundle(model: Path | str, dataset: Path | str, *, split: str = "test", output: Path | str) -> dict[str, Any]:
    """Predict ``split`` of ``dataset`` with ``model`` and write the bundle to ``output``; returns the summary
    (AUCs, calibration error, mistake count) that also goes into ``curves.json``."""
    from expforge.train.classifier import load_classifier

    check_split(split, where="--split")
    classifier = load_classifier(model)
    images, labels, rows = load_arrays(dataset, [split])
    probabilities = classifier.predict_proba(images)
    if probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        predictions = probabilities.argmax(axis=1)
        confidences = probabilities.max(axis=1)
    else:
        predictions = np.asarray(classifier.predict(images))
        confidences = np.ones(len(labels))
    chosen = gallery.most_confident_mistakes(labels, predictions, confidences)
    summary: dict[str, Any] = {
        "split": split,
        "n": int(len(labels)),
        "mistakes": int((predictions != labels).sum()),
        "has_probabilities": probabilities is not None,
        "gallery": [int(i) for i in chosen],
    }
    curves: dict[str, Any] = {"reason": "the model gives no class probabilities"}
    if probabilities is not None and len(labels):
        curves = curves_module.roc_pr(labels, probabilities, LABELS)
        summary["calibration"] = curves_module.calibration(labels, predictions, confidences)
        summary["macro_roc_auc"] = curves["macro_roc_auc"]
        summary["micro_roc_auc"] = curves["micro"]["auc"]
        summary["macro_average_precision"] = curves["macro_average_precision"]
        summary["expected_calibration_error"] = summary["calibration"]["expected_calibration_error"]
    predictions_rows = [
        {
            "index": i,
            "path": row.path,
            "label": int(labels[i]),
            "prediction": int(predictions[i]),
            "confidence": round(float(confidences[i]), 6),
        }
        for i, row in enumerate(rows)
    ]
    with staged_directory(output) as staging:
        (staging / PREDICTIONS_JSON).write_text(json.dumps(predictions_rows, indent=0) + "\n", encoding="utf-8")
        (staging / CURVES_JSON).write_text(json.dumps({**summary, **curves}, indent=1) + "\n", encoding="utf-8")
        if probabilities is not None and len(labels):
            curves_module.plot_roc_pr(curves, staging / ROC_PNG, staging / PR_PNG)
            curves_module.plot_calibration(summary["calibration"], staging / CALIBRATION_PNG)
        gallery.plot_gallery(images, labels, predictions, confidences, chosen, staging / MISTAKES_PNG)
    return {**summary, "micro": curves.get("micro")}
