"""drift-check: do the current digits look like the reference ones? Evidently tests on per-image features."""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from expforge.components._adapter import artifact_dir, describe, log_scalars, step_component


class DriftOutputs(NamedTuple):
    """Output parameters of ``drift-check``: the gate a pipeline branches on (``dsl.If``) and its measure."""

    gate_passed: bool
    drift_share: float


@step_component("drift-check")
def drift_check(
    reference: Input[Dataset],
    current: Input[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    drift: Output[Artifact],
    model: Input[Model] = None,
    reference_split: str = "train",
    current_split: str = "test",
    js_threshold: float = 0.1,
    linf_threshold: float = 0.1,
    ks_pvalue: float = 0.05,
    psi_threshold: float = 0.2,
    max_drift_share: float = 0.5,
    sample_size: int = 2000,
    seed: int = 0,
    alerts: list = [],  # noqa: B006 (a KFP default, never mutated)
) -> DriftOutputs:
    """Compare ``current_split`` of ``current`` with ``reference_split`` of ``reference`` (Jensen–Shannon,
    L-infinity, KS, PSI on intensity/ink features, plus the model's embeddings and predictions when ``model`` is
    given). ``drift`` holds drift.json and report.html; ``report`` is the same HTML for the Vertex UI.
    ``alerts`` are rules such as ``"drift_share>0.3"``: each one that fires sends one alert (expforge.alerts)."""
    import shutil

    from expforge.alerts.publish import raise_alerts
    from expforge.alerts.rules import parse_rules
    from expforge.drift.check import REPORT_HTML, REPORTED_METRICS, check_drift

    rules = parse_rules(alerts, REPORTED_METRICS, flag="alerts")

    thresholds = {"jensenshannon": js_threshold, "linf": linf_threshold, "ks": ks_pvalue, "psi": psi_threshold}
    result = check_drift(
        artifact_dir(reference),
        artifact_dir(current),
        reference_split=reference_split,
        current_split=current_split,
        model=model.path if model is not None else None,
        thresholds=thresholds,
        max_drift_share=max_drift_share,
        sample_size=sample_size,
        seed=seed,
        output=artifact_dir(drift),
    )
    shutil.copyfile(artifact_dir(drift) / REPORT_HTML, report.path)
    log_scalars(metrics, result.reported_metrics())
    describe(
        drift,
        {"gate_passed": result.gate_passed, "drift_share": result.drift_share},
        drifted_features=result.drifted_features,
        thresholds=result.thresholds,
        max_drift_share=result.max_drift_share,
    )
    for alert in raise_alerts(rules, result.reported_metrics(), step="drift-check"):
        print(f"ALERT {alert.rule}: {alert.metric}={alert.value:.4f}", flush=True)  # task log
    return DriftOutputs(bool(result.gate_passed), float(result.drift_share))
