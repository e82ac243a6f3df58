"""The ``expforge`` command line: every step of the library, the compiler and the local runner.

Commands import their step lazily so ``expforge --help`` stays fast and a command needs only its own extra.
Bad input (:class:`~expforge.errors.ExpforgeError`) prints one line and exits with status 2.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import typer

from expforge.cli_errors import one_line_errors
from expforge.local_runner.cli import run as run_pipeline_command

app = typer.Typer(
    name="expforge",
    help="Experiment Forge: containerized KFP v2 steps for ML experiments, compiled for Vertex AI, run locally.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def command(name: str) -> Callable[[F], F]:
    """Register a CLI command with one-line error reporting."""

    def decorate(func: F) -> F:
        app.command(name)(one_line_errors(func))
        return func

    return decorate


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@app.callback()
def _configure(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@command("bootstrap-mnist")
def bootstrap_mnist(
    limit: int = typer.Option(2000, "--limit", help="Number of real MNIST digits to take (stratified)."),
    output: Path = typer.Option(Path("data/real/mnist"), "--output", help="Dataset directory to write."),
    source: str = typer.Option("auto", "--source", help="auto|idx|openml|bundled (bundled: offline, 5,000 digits)."),
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
    _print_json(summary)


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
        count, output, fonts=fonts or None, seed=seed, workers=workers, val_fraction=val_fraction, overwrite=overwrite
    )
    _print_json(summary)


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


@command("compile")
def compile_pipelines(
    pipeline: list[str] = typer.Option([], "--pipeline", help="Pipeline name(s) (default: all)."),
    images: Path | None = typer.Option(None, "--images", help="Image map JSON (step → image), e.g. build/images.json."),
    output: Path = typer.Option(Path("build/pipelines"), "--output", help="Directory for the compiled YAML."),
    env: list[str] = typer.Option(
        [], "--env", help="KEY=VALUE set on every task (e.g. EXPFORGE_TRACKING=gcp for Vertex runs); repeatable."
    ),
    preset: str | None = typer.Option(None, "--preset", help="Pipeline size: demo (default) or full."),
) -> None:
    """Compile pipelines to the pipeline-spec YAML that Vertex AI and `expforge run` execute."""
    from expforge.pipelines.compile import compile_pipelines as compile_all
    from expforge.pipelines.compile import parse_env, read_image_map

    image_map = read_image_map(images) if images else None
    for path in compile_all(output, pipeline or None, image_map, parse_env(env), preset):
        typer.echo(str(path))


app.command("run", help="Run a compiled pipeline YAML locally (Docker images or subprocesses).")(run_pipeline_command)


@command("demo")
def demo(
    backend: str = typer.Option("auto", "--backend", help="docker|subprocess|auto (Docker when a daemon answers)."),
    root: Path = typer.Option(Path("runs"), "--root", help="Where run directories are created."),
    images: Path | None = typer.Option(None, "--images", help="Image map (default: build/images.json if present)."),
    source: str = typer.Option("bundled", "--source", help="MNIST source (bundled: offline, 5,000 real digits)."),
    font_count: int = typer.Option(10000, "--font-count", help="Synthetic digits to render."),
    real_fraction: float = typer.Option(0.0, "--real-fraction", help="Fraction of real train added to training."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute every task."),
) -> None:
    """Compile mnist-synthetic and run it end to end with the local runner."""
    from expforge.demo import describe_results, run_demo

    params = {"mnist_source": source, "font_count": font_count, "real_fraction": real_fraction}
    result = run_demo(backend=backend, root=root, images=images, params=params, use_cache=not no_cache)
    for line in describe_results(result, root):
        typer.echo(line)
    if not result.succeeded:
        raise typer.Exit(1)


# Commands of larger areas live beside their step library; each module defines
# ``register(command: Callable[[str], decorator], app: typer.Typer) -> None`` and adds its commands (and groups).
CLI_MODULES: tuple[str, ...] = (
    "expforge.train.sklearn_cli",
    "expforge.train.torch_cli",
    "expforge.train.tensorboard_cli",
    "expforge.adapt.cli",
    "expforge.tune.cli",
    "expforge.text.cli",
    "expforge.text.lm_cli",
    "expforge.drift.cli",
    "expforge.registry.cli",
    "expforge.cloud.cli",
    "expforge.tracking.cli",
    "expforge.ui.cli",
    "expforge.alerts.cli",
)


def _register_area_commands() -> None:
    import importlib

    for name in CLI_MODULES:
        importlib.import_module(name).register(command, app)


_register_area_commands()


def main() -> None:
    """Entry point that also works as ``python -m expforge``."""
    app(prog_name="expforge")


if __name__ == "__main__":
    sys.exit(main())
