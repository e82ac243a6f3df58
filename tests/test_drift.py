"""The drift check on real data: synthetic font digits against real MNIST digits drift, two samples of the same
real digits do not; Evidently computes the tests (L-infinity registered with it); outputs are atomic; bad
thresholds are one-line errors. Also the KFP component function and the CLI, called for real."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kfp import dsl
from typer.testing import CliRunner

from expforge.data.font_discovery import default_font_dirs
from expforge.data.fonts import generate_font_digits
from expforge.data.manifest import write_dataset
from expforge.data.mnist import bootstrap_mnist
from expforge.drift.check import (
    DRIFT_JSON,
    NUMERICAL_TESTS,
    REPORT_HTML,
    check_drift,
    parse_threshold_options,
    resolve_thresholds,
)
from expforge.drift.features import IMAGE_COLUMNS, image_features
from expforge.errors import ExpforgeError

FONT_FILES = ("DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "LiberationMono-Italic.ttf", "FreeSans.ttf", "Lato-Light.ttf")
SAMPLE = 600  # images per side: enough for stable tests, few enough to stay fast


def _fonts() -> list[Path]:
    found: dict[str, Path] = {}
    for directory in default_font_dirs():
        for path in sorted(directory.rglob("*")):
            found.setdefault(path.name, path)
    return [found[name] for name in FONT_FILES if name in found]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 real MNIST digits (the bundled offline sample): 1,050 train, 150 val, 300 test."""
    output = tmp_path_factory.mktemp("drift") / "real"
    bootstrap_mnist(1500, output, source="bundled", seed=0)
    return output


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 augmented digits rendered from a few system fonts."""
    fonts = _fonts()
    if len(fonts) < 2:
        pytest.skip("needs at least two of the usual Debian fonts installed")
    output = tmp_path_factory.mktemp("drift") / "fonts"
    generate_font_digits(600, output, fonts=fonts, seed=0, workers=1)
    return output


@pytest.fixture(scope="module")
def sklearn_model(real: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log-loss linear model trained on the real digits (no embeddings: its probabilities stand in)."""
    from expforge.train.sklearn_trainer import train_sklearn

    path = tmp_path_factory.mktemp("drift") / "model.joblib"
    train_sklearn([real], real, path, model="logreg", epochs=2, seed=0)
    return path


@pytest.fixture(scope="module")
def cnn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN checkpoint (seeded initial weights): its penultimate layer gives the embeddings."""
    import torch

    from expforge.train.checkpoint import save_checkpoint
    from expforge.train.digit_cnn import KIND, CNNSpec, build_model

    torch.manual_seed(0)
    spec = CNNSpec(width=4, depth=2, hidden=16)
    path = tmp_path_factory.mktemp("drift") / "cnn.pt"
    save_checkpoint(path, kind=KIND, architecture=spec.architecture(), model=build_model(spec).state_dict())
    return path


# --- features ----------------------------------------------------------------------------------------------------


def test_image_features_measure_what_they_name() -> None:
    blank = np.zeros((28, 28), dtype=np.uint8)
    ring = blank.copy()
    ring[8:20, 10:18] = 255
    ring[11:17, 13:15] = 0  # a 12×8 box with a 6×2 hole: one component, one hole
    bars = blank.copy()
    bars[4:24, 5:8] = 200  # two separate 3-pixel-wide bars, intensity 200
    bars[4:24, 20:23] = 200
    features = image_features(np.stack([blank, ring, bars]))
    assert set(features) == set(IMAGE_COLUMNS)
    assert features["ink_fraction"].tolist() == pytest.approx([0, (96 - 12) / 784, 120 / 784])
    assert features["bbox_height"].tolist() == [0, 12, 20]
    assert features["bbox_width"].tolist() == [0, 8, 18]
    assert features["components"].tolist() == [0, 1, 2]
    assert features["holes"].tolist() == [0, 1, 0]
    assert features["ink_intensity"].tolist() == pytest.approx([0, 1.0, 200 / 255])
    assert features["centroid_row"].tolist() == pytest.approx([13.5, 13.5, 13.5])
    assert features["centroid_col"][2] == pytest.approx((6 + 21) / 2)
    assert features["stroke_width"][2] == pytest.approx(3.0, abs=0.4)  # 3-pixel bars
    histogram = np.stack([features[f"hist_{k}"] for k in range(8)], axis=1)
    assert histogram.sum(axis=1) == pytest.approx([1, 1, 1])
    assert histogram[2, 6] == pytest.approx(120 / 784)  # 200 falls in [192, 224)
    with pytest.raises(ExpforgeError, match="expected N×28×28 uint8"):
        image_features(np.zeros((2, 28, 27), dtype=np.uint8))


# --- the check ---------------------------------------------------------------------------------------------------


def test_synthetic_against_real_drifts_with_model_embeddings(
    real: Path, synthetic: Path, cnn_model: Path, tmp_path: Path
) -> None:
    output = tmp_path / "drift"
    result = check_drift(
        real,
        synthetic,
        reference_split="train",
        current_split="train",
        model=cnn_model,
        sample_size=SAMPLE,
        output=output,
    )
    assert not result.gate_passed
    assert result.drift_share == max(result.share_by_test.values()) > result.max_drift_share == 0.5
    assert set(result.share_by_test) == set(NUMERICAL_TESTS)
    # Fonts are crisper and more uniform than pen strokes: the intensity histogram moves under every test.
    assert all(result.features["hist_1"][test]["drifted"] for test in NUMERICAL_TESTS)
    assert result.model == {"path": str(cnn_model), "vectors": "embedding", "components": 4}
    assert result.columns["categorical"] == ["predicted_class"]
    assert set(result.features["predicted_class"]) == {"jensenshannon", "linf"}
    assert any(result.features[f"embed_pc{i}"]["ks"]["drifted"] for i in range(1, 5))
    assert result.reference["sampled"] == SAMPLE and result.current["sampled"] == SAMPLE

    written = json.loads((output / DRIFT_JSON).read_text())
    assert written == json.loads(json.dumps(result.to_dict()))
    html = (output / REPORT_HTML).read_text()
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500].lower()
    assert "L-infinity distance" in html and "embed_pc1" in html
    assert sorted(p.name for p in output.iterdir()) == [DRIFT_JSON, REPORT_HTML]


def test_two_samples_of_the_same_digits_pass_the_gate(real: Path, sklearn_model: Path, tmp_path: Path) -> None:
    """Real train against real test (a stratified split of one source): no test flags half the features."""
    result = check_drift(real, real, model=sklearn_model, sample_size=SAMPLE)
    assert result.gate_passed, result.share_by_test
    assert result.drift_share < 0.3
    assert result.model is not None and result.model["vectors"] == "probabilities"
    assert result.features["predicted_class"]["linf"]["score"] < 0.1
    # identical inputs: every distance is zero, every p-value one
    same = check_drift(real, real, reference_split="test", current_split="test", sample_size=SAMPLE)
    assert same.drift_share == 0 and same.drifted_features == []
    assert all(same.features[c]["linf"]["score"] == 0 for c in IMAGE_COLUMNS)
    assert all(same.features[c]["ks"]["score"] == pytest.approx(1.0) for c in IMAGE_COLUMNS)


def test_thresholds_decide_the_flags(real: Path, synthetic: Path) -> None:
    """Thresholds no score can cross (a Jensen–Shannon distance stays below 1, a p-value is never below 0) flag
    nothing, while PSI, unbounded, still does; ``max_drift_share`` 1 lets any drift through the gate."""
    lenient = {"js": 1.0, "ks": 0.0, "psi": 1.0}
    result = check_drift(real, synthetic, current_split="train", thresholds=lenient, sample_size=200, max_drift_share=1)
    assert result.thresholds == {"jensenshannon": 1.0, "linf": 0.1, "ks": 0.0, "psi": 1.0}
    assert result.share_by_test["jensenshannon"] == 0 and result.share_by_test["ks"] == 0
    assert result.share_by_test["psi"] > 0 and result.share_by_test["linf"] > 0
    assert result.gate_passed and result.drift_share == max(result.share_by_test.values())
    strict = check_drift(real, synthetic, current_split="train", sample_size=200, max_drift_share=0)
    assert not strict.gate_passed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thresholds": {"js": 1.5}}, r"drift threshold jensenshannon \(js_threshold\): 1.5 is outside \[0, 1\]"),
        ({"thresholds": {"ks": -0.01}}, r"drift threshold ks \(ks_pvalue\): -0.01 is outside \[0, 1\]"),
        ({"thresholds": {"psi": float("nan")}}, r"drift threshold psi \(psi_threshold\): nan is outside \[0, 1\]"),
        ({"thresholds": {"linf": 2}}, r"drift threshold linf \(linf_threshold\): 2 is outside \[0, 1\]"),
        ({"thresholds": {"chi2": 0.1}}, r"drift threshold 'chi2': unknown test"),
        ({"max_drift_share": 1.01}, r"max_drift_share: 1.01 is outside \[0, 1\]"),
        ({"sample_size": 1}, r"sample_size: 1; expected an integer ≥ 2"),
        ({"current_split": "holdout"}, r"current_split: unknown split 'holdout'"),
    ],
)
def test_bad_parameters_fail_with_one_line_and_keep_the_old_output(
    real: Path, tmp_path: Path, kwargs: dict, message: str
) -> None:
    output = tmp_path / "drift"
    output.mkdir()
    (output / DRIFT_JSON).write_text("{}")
    with pytest.raises(ExpforgeError, match=message) as raised:
        check_drift(real, real, output=output, **kwargs)
    assert "\n" not in str(raised.value)
    assert (output / DRIFT_JSON).read_text() == "{}" and len(list(tmp_path.iterdir())) == 1


def test_missing_model_or_dataset_is_named(real: Path, tmp_path: Path) -> None:
    with pytest.raises(ExpforgeError, match=r"nope\.joblib: model file not found"):
        check_drift(real, real, model=tmp_path / "nope.joblib", sample_size=50)
    with pytest.raises(ExpforgeError, match="labels.csv: not found"):
        check_drift(real, tmp_path, sample_size=50)
    assert list(tmp_path.iterdir()) == []


def test_threshold_options_parse_and_validate() -> None:
    assert parse_threshold_options(["js=0.2", "psi=0.25"]) == {
        "jensenshannon": 0.2,
        "linf": 0.1,
        "ks": 0.05,
        "psi": 0.25,
    }
    assert resolve_thresholds(None) == {"jensenshannon": 0.1, "linf": 0.1, "ks": 0.05, "psi": 0.2}
    with pytest.raises(ExpforgeError, match="expected TEST=VALUE"):
        parse_threshold_options(["js"])
    with pytest.raises(ExpforgeError, match="'high' is not a number"):
        parse_threshold_options(["js=high"])


def test_constant_columns_and_tiny_sets_do_not_break_the_tests(tmp_path: Path) -> None:
    """Blank images make most features constant; Evidently still answers and nothing is NaN in the JSON."""
    blank = np.zeros((28, 28), dtype=np.uint8)
    items = [(blank, i % 10, "train", {}) for i in range(20)] + [(blank, i % 10, "test", {}) for i in range(20)]
    write_dataset(tmp_path / "blank", items)
    result = check_drift(tmp_path / "blank", tmp_path / "blank", sample_size=20)
    assert result.gate_passed and result.drift_share == 0
    json.dumps(result.to_dict(), allow_nan=False)


def test_report_scores_are_the_checks_scores(real: Path, synthetic: Path) -> None:
    """The HTML report's ValueDrift metrics and drift.json come from the same Evidently tests: same numbers."""
    import pandas as pd

    from expforge.data.manifest import load_arrays
    from expforge.drift.check import DEFAULT_THRESHOLDS, evidently_report, run_stattests

    columns = ["hist_1", "bbox_height", "holes"]
    reference = pd.DataFrame(image_features(load_arrays(real, ["test"])[0])).loc[:, columns]
    current = pd.DataFrame(image_features(load_arrays(synthetic, ["train"])[0][:300])).loc[:, columns]
    current["kind"], reference["kind"] = "font", np.where(np.arange(len(reference)) % 4 == 0, "font", "pen")
    scores = run_stattests(reference, current, columns, ["kind"], DEFAULT_THRESHOLDS)
    snapshot = evidently_report(reference, current, columns, ["kind"], DEFAULT_THRESHOLDS)
    values = {m["config"]["column"]: m["value"] for m in snapshot.dict()["metrics"]}
    assert values == pytest.approx({c: scores[c]["jensenshannon"]["score"] for c in columns} | {"kind": 0.75})
    assert scores["kind"]["linf"] == {"score": pytest.approx(0.75), "threshold": 0.1, "drifted": True}


# --- the component and the CLI -----------------------------------------------------------------------------------


def test_component_outputs_gate_metrics_and_html(
    real: Path,
    synthetic: Path,
    sklearn_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from expforge.alerts.publish import read_alerts
    from expforge.components.drift_check import drift_check

    monkeypatch.setenv("EXPFORGE_ALERTS_ROOT", str(tmp_path / "runs"))
    monkeypatch.setenv("EXPFORGE_RUN_ID", "run-1")
    monkeypatch.setenv("EXPFORGE_TASK_KEY", "drift-check")

    def artifact(kind: type, name: str, path: Path) -> dsl.Artifact:
        return kind(name=name, uri=str(path))

    report = artifact(dsl.HTML, "report", tmp_path / "out" / "report.html")
    metrics = artifact(dsl.Metrics, "metrics", tmp_path / "out" / "metrics")
    drift = artifact(dsl.Artifact, "drift", tmp_path / "out" / "drift")
    outputs = drift_check.python_func(
        reference=artifact(dsl.Dataset, "reference", real),
        current=artifact(dsl.Dataset, "current", synthetic),
        report=report,
        metrics=metrics,
        drift=drift,
        model=artifact(dsl.Model, "model", sklearn_model),
        current_split="train",
        sample_size=300,
        alerts=["drift_share>0.5", "gate_passed==1"],
    )
    assert outputs.gate_passed is False and outputs.drift_share > 0.5
    (alert,) = read_alerts(tmp_path / "runs")  # only the drift-share rule fires
    assert alert["rule"] == "drift_share>0.5" and alert["value"] == pytest.approx(outputs.drift_share)
    assert alert["run"] == "run-1" and alert["task"] == "drift-check"
    assert metrics.metadata["gate_passed"] == 0.0
    assert metrics.metadata["drift_share"] == pytest.approx(outputs.drift_share)
    assert {f"drift_share_{t}" for t in NUMERICAL_TESTS} <= set(metrics.metadata)
    assert drift.metadata["gate_passed"] is False and "hist_1" in drift.metadata["drifted_features"]
    assert Path(report.path).read_bytes() == (Path(drift.path) / REPORT_HTML).read_bytes()

    with pytest.raises(SystemExit) as exited:
        drift_check.python_func(
            reference=artifact(dsl.Dataset, "reference", real),
            current=artifact(dsl.Dataset, "current", real),
            report=report,
            metrics=artifact(dsl.Metrics, "metrics", tmp_path / "m2"),
            drift=drift,
            psi_threshold=3.0,
        )
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "expforge: error: drift threshold psi (psi_threshold): 3.0 is outside [0, 1]"
    )
    assert (Path(drift.path) / DRIFT_JSON).is_file()  # the earlier output is still there


def test_cli_reports_the_gate(real: Path, tmp_path: Path) -> None:
    from expforge.cli import app

    runner = CliRunner()
    args = ["drift-check", "--reference", str(real), "--current", str(real), "--output", str(tmp_path / "d")]
    result = runner.invoke(app, [*args, "--threshold", "js=0.2", "--sample-size", "300", "--fail-on-drift"])
    assert result.exit_code == 0, result.output
    assert "gate passed" in result.output and "jensenshannon=" in result.output
    assert json.loads((tmp_path / "d" / DRIFT_JSON).read_text())["thresholds"]["jensenshannon"] == 0.2

    bad = runner.invoke(app, [*args, "--threshold", "linf=7"])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines()[-1] == (
        "expforge: error: drift threshold linf (linf_threshold): 7.0 is outside [0, 1]"
    )


# --- through the compiled YAML --------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_gate_decides_registration_in_a_compiled_pipeline(
    real: Path, synthetic: Path, sklearn_model: Path, tmp_path: Path
) -> None:
    """Two gates in one pipeline, run by the local runner (subprocess backend) from the compiled YAML: real vs
    real passes and its model is registered; fonts vs real fails and ``dsl.If`` skips the registration."""
    from kfp import compiler

    from expforge.components.drift_check import drift_check
    from expforge.components.register_model import register_model
    from expforge.evaluate.classification import evaluate_model
    from expforge.local_runner.api import run_pipeline
    from expforge.registry.local import LocalRegistry

    evaluation_dir = tmp_path / "evaluation"
    evaluate_model(sklearn_model, real, split="test", output=evaluation_dir)

    @dsl.pipeline(name="drift-gate")
    def drift_gate():  # noqa: ANN202 - KFP reads annotations as types; this module has postponed ones
        datasets = {
            name: dsl.importer(artifact_uri=str(path), artifact_class=dsl.Dataset, reimport=False)
            for name, path in (("real", real), ("fonts", synthetic))
        }
        model = dsl.importer(artifact_uri=str(sklearn_model), artifact_class=dsl.Model, reimport=False)
        scored = dsl.importer(artifact_uri=str(evaluation_dir), artifact_class=dsl.Artifact, reimport=False)
        for current, split, model_name in (("real", "test", "passes"), ("fonts", "train", "drifts")):
            gate = drift_check(
                reference=datasets["real"].output,
                current=datasets[current].output,
                model=model.output,
                current_split=split,
                sample_size=300,
            )
            with dsl.If(gate.outputs["gate_passed"] == True):  # noqa: E712 (a KFP condition)
                register_model(model=model.output, evaluation=scored.output, model_name=model_name)

    spec = tmp_path / "drift-gate.yaml"
    compiler.Compiler().compile(drift_gate, str(spec))
    result = run_pipeline(spec, {}, backend="subprocess", root=tmp_path / "runs", tracking="off")
    assert result.state == "SUCCEEDED", json.dumps(result.record.get("tasks"), indent=1)[:3000]
    registry = LocalRegistry(tmp_path / "runs" / "registry")
    assert registry.list_models() == ["passes"]
    version = registry.get("passes", "champion")
    assert version.evaluation == json.loads((evaluation_dir / "metrics.json").read_text())
    reports = [t for name, t in result.tasks.items() if name.startswith("drift-check")]
    assert len(reports) == 2 and all(Path(t["artifacts"]["report"][0]).stat().st_size > 10_000 for t in reports)
