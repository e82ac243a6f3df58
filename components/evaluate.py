"""evaluate: accuracy, macro-F1, per-class report and confusion matrix of a model on one split, plus the
evaluation bundle (per-digit ROC/PR curves with AUCs, predictions.json, the most confident mistakes, a
reliability diagram) under ``<evaluation>/bundle``. Vertex gets a ``ClassificationMetrics`` with the confusion
matrix and the micro-average ROC curve."""

from typing import Any, NamedTuple

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from expforge.components._adapter import (
    artifact_dir,
    describe,
    log_confusion_matrix,
    log_scalars,
    step_component,
    write_text_artifact,
)

#: What the component reports in ``metrics`` (the names alert rules may use).
COMPONENT_METRICS = ("accuracy", "macro_f1", "n", "macro_roc_auc", "micro_roc_auc", "expected_calibration_error")


class EvaluateOutputs(NamedTuple):
    """Output parameters of ``evaluate``: what a pipeline gates on."""

    accuracy: float
    macro_f1: float


@step_component("evaluate")
def evaluate(
    model: Input[Model],
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    confusion_matrix: Output[ClassificationMetrics],
    report: Output[HTML],
    evaluation: Output[Artifact],
    split: str = "test",
    alerts: list = [],  # noqa: B006 (a KFP default, never mutated)
) -> EvaluateOutputs:
    """Evaluate ``model`` on ``split`` of ``dataset``; accuracy and macro-F1 are also output parameters so a
    pipeline can gate on them (``dsl.If``). ``alerts`` are rules such as ``"accuracy<0.9"``: each one that fires
    sends one alert (expforge.alerts)."""
    from expforge.alerts.publish import raise_alerts
    from expforge.alerts.rules import parse_rules
    from expforge.evaluate.bundle import write_bundle
    from expforge.evaluate.classification import evaluate_model
    from expforge.evaluate.report import render_html_report

    rules = parse_rules(alerts, COMPONENT_METRICS, flag="alerts")
    result = evaluate_model(model.path, artifact_dir(dataset), split=split, output=artifact_dir(evaluation))
    bundle = write_bundle(model.path, artifact_dir(dataset), split=split, output=artifact_dir(evaluation) / "bundle")
    extra: dict[str, Any] = {
        k: bundle[k] for k in ("macro_roc_auc", "micro_roc_auc", "expected_calibration_error") if k in bundle
    }
    accuracy, macro_f1 = result["accuracy"], result["macro_f1"]
    labels, matrix = result["labels"], result["confusion_matrix"]
    # evaluate_model returns dict[str, object]: say which shapes this step relies on
    assert isinstance(accuracy, float) and isinstance(macro_f1, float), "evaluate_model: accuracy/macro_f1 floats"
    assert isinstance(labels, list) and isinstance(matrix, list), "evaluate_model: labels/confusion_matrix lists"
    # Any, not float: write_bundle's AUCs are None when undefined (log_scalars skips what is not a number)
    scalars: dict[str, Any] = {"accuracy": accuracy, "macro_f1": macro_f1, "n": result["n"], **extra}
    log_scalars(metrics, scalars)
    log_confusion_matrix(confusion_matrix, labels, matrix)
    if bundle.get("micro"):
        roc = bundle["micro"]
        confusion_matrix.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    write_text_artifact(report, render_html_report(result, artifact_dir(evaluation)))
    describe(evaluation, {"accuracy": accuracy, "macro_f1": macro_f1, "split": split})
    for alert in raise_alerts(rules, scalars, step="evaluate"):
        print(f"ALERT {alert.rule}: {alert.metric}={alert.value:.4f}", flush=True)  # task log
    return EvaluateOutputs(float(accuracy), float(macro_f1))
