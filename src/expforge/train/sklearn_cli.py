"""``expforge train-sklearn`` and ``expforge convert-model``: the scikit-learn trainer from the command line.

Beside the step library like ``train-torch`` (:mod:`expforge.train.torch_cli`), registered by the top-level app
through ``CLI_MODULES``; bad input is one line and exit 2 through the ``command`` decorator it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer


def register(command: Callable[[str], Callable[[Callable[..., Any]], Callable[..., Any]]], app: typer.Typer) -> None:
    """Add ``train-sklearn`` and ``convert-model`` to the ``expforge`` app."""
    del app  # single commands: registered through ``command``

    @command("train-sklearn")
    def train_sklearn(
        train: list[Path] = typer.Option(..., "--train", help="Training dataset(s), in curriculum order."),
        val: Path = typer.Option(..., "--val", help="Dataset whose val split validates each epoch."),
        model_out: Path = typer.Option(
            Path("runs/model.skops"), "--model-out", help="Where to save the model (skops)."
        ),
        model: str = typer.Option("logreg", "--model", help="logreg|svm|perceptron"),
        epochs: int = typer.Option(10, "--epochs", help="Epochs (per dataset with --schedule sequential)."),
        train_fraction: list[float] = typer.Option([], "--train-fraction", help="Per --train: fraction of its rows."),
        schedule: str = typer.Option("mixed", "--schedule", help="mixed (shuffle all) | sequential (in order)."),
        seed: int = typer.Option(0, "--seed"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --model-out file."),
    ) -> None:
        """Multi-epoch SGD (partial_fit) with train/val loss per epoch."""
        from expforge.train.sklearn_trainer import train_sklearn as train_model

        result = train_model(
            train,
            val,
            model_out,
            model=model,
            epochs=epochs,
            seed=seed,
            train_fractions=train_fraction or None,
            curriculum=schedule,
            overwrite=overwrite,
        )
        for epoch in result.history:
            typer.echo(
                f"epoch {epoch.epoch:>3} [{epoch.phase}] train_loss={epoch.train_loss:.4f}"
                f" val_loss={epoch.val_loss:.4f} train_acc={epoch.train_accuracy:.4f} val_acc={epoch.val_accuracy:.4f}"
            )
        typer.echo(f"model: {result.model_path}")

    @command("convert-model")
    def convert_model(
        source: Path = typer.Argument(..., help="An old joblib model bundle written by train-sklearn."),
        output: Path = typer.Option(..., "--output", help="The skops model file to write."),
        trust_pickle: bool = typer.Option(
            False, "--trust-pickle", help="Required: reading the old file unpickles it, which runs any code it holds."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
    ) -> None:
        """Convert a trusted old joblib model to the skops format that evaluate, drift-check and the registry load."""
        from expforge.train.sklearn_trainer import convert_pickled_model

        typer.echo(f"model: {convert_pickled_model(source, output, trust_pickle=trust_pickle, overwrite=overwrite)}")
