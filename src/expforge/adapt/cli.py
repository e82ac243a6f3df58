"""``expforge adapt``: adapt a font-trained digit CNN to unlabeled real digits (AdaBN, then self-training);
``expforge fine-tune``: fine-tune it on the real train labels (the epoch chosen on real val).

stdout is one JSON summary each: the chosen candidate (or epoch) and the accuracies on the real val split.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from expforge.adapt.fine_tune import FineTuneSettings
from expforge.adapt.methods import SelfTrainSettings

_D = SelfTrainSettings()  # the CLI's defaults are the library's
_F = FineTuneSettings()


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
        rounds: int = typer.Option(_D.rounds, "--rounds", help="Self-training rounds (each one a candidate)."),
        epochs_per_round: int = typer.Option(
            _D.epochs_per_round, "--epochs-per-round", help="Passes over the confident digits."
        ),
        threshold: float = typer.Option(_D.threshold, "--threshold", help="Teacher confidence a pseudo-label needs."),
        lr: float = typer.Option(_D.lr, "--lr", help="Self-training learning rate (AdamW)."),
        ema: float = typer.Option(_D.ema, "--ema", help="Mean-teacher decay per step (0: the student labels)."),
        diversity: float = typer.Option(
            _D.diversity, "--diversity", help="Weight of the information-maximisation term (0: off)."
        ),
        strong: bool = typer.Option(
            _D.strong, "--strong/--weak", help="Strong views (warp, stroke, erasing) or the trainer's mild warp."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the self-training order and augmentation."),
        device: str = typer.Option("auto", "--device", help="auto|cpu|cuda[:N]."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output (never the model)."),
    ) -> None:
        """Adapt --model to the unlabeled real digits; keep the candidate with the best real-val accuracy."""
        from expforge.adapt.core import adapt_digit_cnn

        settings = SelfTrainSettings(
            rounds=rounds,
            epochs_per_round=epochs_per_round,
            threshold=threshold,
            lr=lr,
            seed=seed,
            ema=ema,
            diversity=diversity,
            strong=strong,
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

    @command("fine-tune")
    def fine_tune(
        model: Path = typer.Option(..., "--model", help="Checkpoint to fine-tune (digit-cnn: trained or adapted)."),
        labelled: Path = typer.Option(..., "--labelled", help="Real dataset: train labels train, val selects."),
        output: Path = typer.Option(..., "--output", help="Fine-tuned checkpoint to write."),
        epochs: int = typer.Option(_F.epochs, "--epochs", help="Passes over the labelled train digits."),
        lr: float = typer.Option(_F.lr, "--lr", help="Peak learning rate of the one-cycle schedule (AdamW)."),
        batch_size: int = typer.Option(_F.batch_size, "--batch-size", help="Digits per step."),
        strong_share: float = typer.Option(
            _F.strong_share, "--strong-share", help="Share of each batch in strong views (the rest: a mild warp)."
        ),
        ema: float = typer.Option(_F.ema, "--ema", help="Weight averaging per step (0: the raw weights)."),
        labels: int = typer.Option(
            _F.labels, "--labels", help="Keep this many train digits (stratified, nested; 0: all of them)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the batch order, augmentation and dropout."),
        device: str = typer.Option("auto", "--device", help="auto|cpu|cuda[:N]."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output (never the model)."),
    ) -> None:
        """Fine-tune --model on the real train labels of --labelled; keep the best real-val epoch's weights."""
        from expforge.adapt.fine_tune import fine_tune_digit_cnn

        settings = FineTuneSettings(
            epochs=epochs, lr=lr, batch_size=batch_size, strong_share=strong_share, ema=ema, labels=labels, seed=seed
        )
        result = fine_tune_digit_cnn(model, labelled, output, settings=settings, device=device, overwrite=overwrite)
        typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
