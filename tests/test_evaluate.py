"""Evaluation of a saved model: metrics that agree with each other, the report files, and atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from expforge.data.manifest import load_arrays, write_dataset
from expforge.data.mnist import bootstrap_mnist
from expforge.errors import ExpforgeError
from expforge.evaluate.classification import classification_metrics, evaluate_model
from expforge.train.sklearn_trainer import load_model, predict, train_sklearn

EXPECTED_FILES = ["classification_report.txt", "confusion_matrix.png", "metrics.json", "report.md"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A logreg model trained for a few epochs on 600 real bundled digits, and that dataset."""
    root = tmp_path_factory.mktemp("evaluate")
    dataset = root / "mnist"
    bootstrap_mnist(600, dataset, source="bundled", seed=1)
    model = train_sklearn([dataset], dataset, root / "model.skops", epochs=4).model_path
    return model, dataset


def test_metrics_files_and_consistency(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, dataset = trained
    result = evaluate_model(model, dataset, split="test", output=tmp_path / "eval")
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == EXPECTED_FILES
    assert result["split"] == "test" and result["n"] == 120 and result["labels"] == list(range(10))

    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 120
    assert result["accuracy"] == pytest.approx(np.trace(matrix) / 120)
    assert result["accuracy"] > 0.7
    per_class = result["per_class"]
    assert list(per_class) == [str(d) for d in range(10)]
    assert [per_class[str(d)]["support"] for d in range(10)] == matrix.sum(axis=1).tolist()
    assert result["macro_f1"] == pytest.approx(np.mean([s["f1"] for s in per_class.values()]))

    # The numbers are the model's own predictions on that split.
    images, labels, _ = load_arrays(dataset, ["test"])
    assert result["accuracy"] == pytest.approx(np.mean(predict(load_model(model), images) == labels))

    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written == json.loads(json.dumps(result))
    with Image.open(tmp_path / "eval" / "confusion_matrix.png") as png:
        assert png.format == "PNG" and png.width > 300 and png.height > 300
    markdown = (tmp_path / "eval" / "report.md").read_text()
    assert "| digit | precision | recall | F1 | support |" in markdown and f"{result['accuracy']:.4f}" in markdown
    assert "macro avg" in (tmp_path / "eval" / "classification_report.txt").read_text()


def test_a_digit_missing_from_the_split_still_gives_ten_labels() -> None:
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 2])
    metrics = classification_metrics(y_true, y_pred)
    assert len(metrics["confusion_matrix"]) == 10 and metrics["per_class"]["9"]["support"] == 0
    assert metrics["accuracy"] == pytest.approx(0.8)


def test_bad_inputs_fail_and_leave_existing_output_untouched(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, dataset = trained
    output = tmp_path / "eval"
    output.mkdir()
    (output / "keep.txt").write_text("previous run")

    with pytest.raises(ExpforgeError, match="--split: unknown split 'dev'"):
        evaluate_model(model, dataset, split="dev", output=output)
    with pytest.raises(ExpforgeError, match="already exists and is not empty; pass --overwrite"):
        evaluate_model(model, dataset, output=output)
    corrupt = tmp_path / "corrupt.joblib"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(ExpforgeError, match="not an expforge model"):
        evaluate_model(corrupt, dataset, output=output, overwrite=True)
    bad = tmp_path / "bad"
    write_dataset(bad, [(np.zeros((28, 28), dtype=np.uint8), 12, "test", {})])
    with pytest.raises(ExpforgeError, match="has label 12; expected 0–9"):
        evaluate_model(model, bad, output=output, overwrite=True)

    assert [p.name for p in output.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "corrupt.joblib", "eval"]  # no staging left
