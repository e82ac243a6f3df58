"""Evaluation commands: ``evaluate`` (metrics, report, confusion matrix, alerts) and ``visualize-samples``.

Each command imports its step when it runs, so listing the commands loads neither scikit-learn nor matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import typer


def register(command: Callable[[str], Callable[[Callable[..., Any]], Callable[..., Any]]], app: typer.Typer) -> None:
    """Add the evaluation commands to the ``expforge`` app."""

    @command("evaluate")
    def evaluate(
        model: Path = typer.Option(..., "--model", help="A model saved by train-sklearn or train-torch."),
        dataset: Path = typer.Option(..., "--dataset", help="Dataset directory."),
        split: str = typer.Option("test", "--split", help="train|val|test"),
        output: Path = typer.Option(Path("runs/evaluation"), "--output", help="Directory for metrics and plots."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output (never an input)."),
        alert: list[str] = typer.Option([], "--alert", help="Alert rule, e.g. 'accuracy<0.9' (expforge alerts list)."),
    ) -> None:
        """Accuracy, macro-F1, per-class report and a confusion-matrix PNG."""
        from expforge.alerts.publish import raise_alerts
        from expforge.alerts.rules import parse_rules
        from expforge.evaluate.classification import evaluate_model

        rules = parse_rules(alert, ("accuracy", "macro_f1", "n"))
        result = evaluate_model(model, dataset, split=split, output=output, overwrite=overwrite)
        typer.echo(f"accuracy={result['accuracy']:.4f} macro_f1={result['macro_f1']:.4f} n={result['n']}")
        typer.echo(f"outputs: {output}")
        values = {key: float(cast(float, result[key])) for key in ("accuracy", "macro_f1", "n")}
        for fired in raise_alerts(rules, values, step="evaluate", link=str(output.resolve())):
            typer.echo(f"ALERT {fired.rule}: {fired.metric}={fired.value:.4f}")

    @command("visualize-samples")
    def visualize_samples(
        dataset: Path = typer.Option(..., "--dataset", help="Dataset directory."),
        output: Path = typer.Option(Path("runs/samples.png"), "--output", help="PNG to write."),
        per_class: int = typer.Option(8, "--per-class", help="Samples per digit."),
        seed: int = typer.Option(0, "--seed"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
    ) -> None:
        """A labelled grid of sample images (rows are digits 0–9)."""
        from expforge.atomic import check_output
        from expforge.viz.samples import visualize_samples as draw

        check_output(output, directory=False, inputs=[dataset], overwrite=overwrite, flag="--output")

        typer.echo(str(draw(dataset, output, per_class=per_class, seed=seed)))
