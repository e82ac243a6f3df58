"""``expforge drift-check``: compare two datasets' digits and say whether the drift gate passes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer


def register(command: Callable[[str], Callable[[Any], Any]], app: typer.Typer) -> None:
    """Add the ``drift-check`` command to the ``expforge`` app."""

    @command("drift-check")
    def drift_check(
        reference: Path = typer.Option(..., "--reference", help="Reference dataset directory (known-good)."),
        current: Path = typer.Option(..., "--current", help="Dataset directory to compare with the reference."),
        output: Path = typer.Option(Path("runs/drift"), "--output", help="Directory for drift.json and report.html."),
        model: Path | None = typer.Option(None, "--model", help="Trained model: adds embeddings and predictions."),
        reference_split: str = typer.Option("train", "--reference-split", help="train|val|test"),
        current_split: str = typer.Option("test", "--current-split", help="train|val|test"),
        threshold: list[str] = typer.Option(
            [], "--threshold", help="TEST=VALUE in [0, 1]; tests: js, linf, ks (p-value), psi. Repeatable."
        ),
        max_drift_share: float = typer.Option(0.5, "--max-drift-share", help="Largest share of drifted columns."),
        sample_size: int = typer.Option(2000, "--sample-size", help="Images per side at most (seeded sample)."),
        seed: int = typer.Option(0, "--seed"),
        fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit 1 when the gate does not pass."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output (never an input)."),
        alert: list[str] = typer.Option(
            [], "--alert", help="Alert rule METRIC OP NUMBER, e.g. 'drift_share>0.3' (expforge alerts list)."
        ),
    ) -> None:
        """Evidently drift tests (Jensen–Shannon, L-infinity, KS, PSI) on per-image features; HTML + JSON out."""
        from expforge.alerts.publish import raise_alerts
        from expforge.alerts.rules import parse_rules
        from expforge.drift.check import REPORTED_METRICS, check_drift, parse_threshold_options

        rules = parse_rules(alert, REPORTED_METRICS)

        result = check_drift(
            reference,
            current,
            reference_split=reference_split,
            current_split=current_split,
            model=model,
            thresholds=parse_threshold_options(threshold),
            max_drift_share=max_drift_share,
            sample_size=sample_size,
            seed=seed,
            output=output,
            overwrite=overwrite,
        )
        shares = " ".join(f"{test}={share:.3f}" for test, share in result.share_by_test.items())
        typer.echo(f"drift share by test: {shares}")
        typer.echo(f"drifted features: {', '.join(result.drifted_features) or 'none'}")
        verdict = "passed" if result.gate_passed else "FAILED"
        typer.echo(f"gate {verdict}: drift share {result.drift_share:.3f} vs max {result.max_drift_share:.3f}")
        typer.echo(f"outputs: {output}")
        for fired in raise_alerts(rules, result.reported_metrics(), step="drift-check", link=str(output.resolve())):
            typer.echo(f"ALERT {fired.rule}: {fired.metric}={fired.value:.4f}")
        if fail_on_drift and not result.gate_passed:
            raise typer.Exit(1)
