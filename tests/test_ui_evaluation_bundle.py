"""The evaluation bundle the dashboard shows: predictions, per-digit ROC/PR with AUCs, mistakes, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from expforge.data.manifest import load_arrays
from expforge.data.mnist import bootstrap_mnist
from expforge.errors import ExpforgeError
from expforge.evaluate.bundle import write_bundle
from expforge.evaluate.curves import calibration, roc_pr
from expforge.evaluate.gallery import most_confident_mistakes
from expforge.train.classifier import load_classifier
from expforge.train.sklearn_trainer import train_sklearn


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bundle")
    dataset = root / "mnist"
    bootstrap_mnist(600, dataset, source="bundled", seed=2)
    return train_sklearn([dataset], dataset, root / "model.skops", epochs=3).model_path, dataset


def test_bundle_files_agree_with_the_model(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, dataset = trained
    out = tmp_path / "bundle"
    summary = write_bundle(model, dataset, split="test", output=out)
    images, labels, rows = load_arrays(dataset, ["test"])
    probabilities = load_classifier(model).predict_proba(images)

    predictions = json.loads((out / "predictions.json").read_text())
    assert [p["path"] for p in predictions] == [r.path for r in rows]
    assert [p["label"] for p in predictions] == labels.tolist()
    assert [p["prediction"] for p in predictions] == probabilities.argmax(axis=1).tolist()
    assert [p["confidence"] for p in predictions] == pytest.approx(probabilities.max(axis=1).tolist(), abs=1e-6)
    assert summary["mistakes"] == sum(p["label"] != p["prediction"] for p in predictions)

    curves = json.loads((out / "curves.json").read_text())
    assert set(curves["roc"]) == {str(d) for d in range(10)}  # 120 test images hold every digit
    for digit, curve in curves["roc"].items():
        assert curve["fpr"][0] == 0.0 and curve["tpr"][-1] == 1.0
        assert 0.5 < curve["auc"] <= 1.0, digit  # a trained model separates each digit better than chance
    from sklearn.metrics import roc_auc_score

    assert curves["roc"]["3"]["auc"] == pytest.approx(roc_auc_score(labels == 3, probabilities[:, 3]))
    assert curves["macro_roc_auc"] == pytest.approx(np.mean([c["auc"] for c in curves["roc"].values()]))
    bins = curves["calibration"]["bins"]
    assert sum(b["count"] for b in bins) == len(labels)
    for name in ("roc_curves.png", "pr_curves.png", "calibration.png", "mistakes.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 300
    # the gallery is the most confident wrong predictions, in that order
    confidence = probabilities.max(axis=1)
    wrong = [p["index"] for p in predictions if p["label"] != p["prediction"]]
    assert summary["gallery"] == sorted(wrong, key=lambda i: (-confidence[i], i))[:24]


def test_curve_helpers_on_known_inputs() -> None:
    labels = np.array([0, 0, 1, 1])
    perfect = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    curves = roc_pr(labels, perfect, [0, 1])
    assert curves["roc"]["0"]["auc"] == 1.0 and curves["pr"]["1"]["average_precision"] == 1.0
    reversed_scores = perfect[:, ::-1]
    assert roc_pr(labels, reversed_scores, [0, 1])["roc"]["0"]["auc"] == 0.0
    three = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    assert roc_pr(np.array([0, 1, 1]), three, [0, 1, 2])["missing"] == [2]  # no image of 2: no curve
    predictions = np.array([0, 1, 1, 1])
    confidences = np.array([0.95, 0.95, 0.55, 0.55])
    result = calibration(labels, predictions, confidences)
    top = result["bins"][-1]
    assert top["count"] == 2 and top["accuracy"] == 0.5 and top["confidence"] == pytest.approx(0.95)
    assert result["expected_calibration_error"] == pytest.approx((2 * 0.45 + 2 * 0.45) / 4)
    assert most_confident_mistakes(labels, predictions, confidences) == [1]


def test_bad_split_writes_nothing(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, dataset = trained
    with pytest.raises(ExpforgeError, match="--split"):
        write_bundle(model, dataset, split="holdout", output=tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
