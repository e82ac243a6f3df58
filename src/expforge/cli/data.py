"""Dataset commands: ``bootstrap-mnist`` (real digits) and ``generate-font-digits`` (rendered synthetic digits).

Each command imports its step when it runs, so listing the commands loads neither numpy nor the font renderer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from expforge.cli.app import print_json


def register(command: Callable[[str], Callable[[Callable[..., Any]], Callable[..., Any]]], app: typer.Typer) -> None:
    """Add the dataset commands to the ``expforge`` app."""

    @command("bootstrap-mnist")
    def bootstrap_mnist(
        limit: int = typer.Option(2000, "--limit", help="Number of real MNIST digits to take (stratified)."),
        output: Path = typer.Option(Path("data/real/mnist"), "--output", help="Dataset directory to write."),
        source: str = typer.Option(
            "auto", "--source", help="auto|idx|openml|bundled (bundled: offline, 5,000 digits)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the stratified train/val/test split."),
        base_url: str | None = typer.Option(None, "--base-url", help="Base URL of the MNIST IDX files."),
        val_fraction: float = typer.Option(0.1, "--val-fraction", help="Fraction of each class put in val."),
        test_fraction: float = typer.Option(0.2, "--test-fraction", help="Fraction of each class put in test."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output (never an input)."),
    ) -> None:
        """Load real MNIST digits into the dataset layout with a deterministic stratified split."""
        from expforge.data import mnist

        extra: dict[str, Any] = {"base_url": base_url} if base_url else {}
        summary = mnist.bootstrap_mnist(
            limit,
            output,
            source=source,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            overwrite=overwrite,
            **extra,
        )
        print_json(summary)

    @command("generate-font-digits")
    def generate_font_digits(
        count: int = typer.Option(5000, "--count", help="Number of digits to render (balanced over 0–9 and fonts)."),
        output: Path = typer.Option(Path("data/synthetic/fonts"), "--output", help="Dataset directory to write."),
        fonts: list[Path] = typer.Option([], "--fonts", help="Font directories or files (default: system fonts)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the augmentations."),
        workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: all cores)."),
        val_fraction: float = typer.Option(0.0, "--val-fraction", help="Fraction of rows put in split val."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output (never an input)."),
    ) -> None:
        """Render synthetic 28×28 MNIST-format digits from system fonts with seeded augmentations."""
        from expforge.data.fonts import generate_font_digits as generate

        summary = generate(
            count,
            output,
            fonts=fonts or None,
            seed=seed,
            workers=workers,
            val_fraction=val_fraction,
            overwrite=overwrite,
        )
        print_json(summary)
