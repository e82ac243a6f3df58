"""``expforge adapt``: adapt a font-trained digit CNN to unlabeled real digits (AdaBN, then self-training).

stdout is one JSON summary: the chosen candidate and every candidate's accuracy on the real val split.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer


def register(command: Callable[[str], Callable[[Any], Any]], app: typer.Typer) -> None:
    """Declare this area's commands on the ``expforge`` app."""
    del app  # plain commands only

    @command("adapt")
    def adapt(
        model: Path = typer.Option(..., "--model", help="Source checkpoint (digit-cnn, e.g. from train-torch)."),
        unlabeled: Path = typer.Option(..., "--unlabeled", help="Real dataset whose images (not labels) adapt."),
        output: Path = typer.Option(..., "--output", help="Adapted checkpoint to write."),
        val: Path | None = typer.Option(
            None, "--val", help="Dataset whose val split selects the candidate (default: --unlabeled)."
        ),
        unlabeled_split: str = typer.Option("train", "--unlabeled-split", help="Split of --unlabeled to adapt on."),
        method: list[str] = typer.Option(
            ["adabn", "self-train"], "--method", help="adabn and/or self-train (repeatable)."
        ),
        rounds: int = typer.Option(3, "--rounds", help="Self-training rounds (each one a candidate)."),
        epochs_per_round: int = typer.Option(1, "--epochs-per-round", help="Passes over the confident digits."),
        threshold: float = typer.Option(0.9, "--threshold", help="Softmax confidence a pseudo-label needs."),
        lr: float = typer.Option(3e-4, "--lr", help="Self-training learning rate (AdamW)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the self-training order and augmentation."),
        device: str = typer.Option("auto", "--device", help="auto|cpu|cuda[:N]."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output (never the model)."),
    ) -> None:
        """Adapt --model to the unlabeled real digits; keep the candidate with the best real-val accuracy."""
        from expforge.adapt.core import adapt_digit_cnn
        from expforge.adapt.methods import SelfTrainSettings

        settings = SelfTrainSettings(
            rounds=rounds, epochs_per_round=epochs_per_round, threshold=threshold, lr=lr, seed=seed
        )
        result = adapt_digit_cnn(
            model,
            unlabeled,
            val or unlabeled,
            output,
            methods=method,
            unlabeled_split=unlabeled_split,
            settings=settings,
            device=device,
            overwrite=overwrite,
        )
        typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
