"""Pipeline commands: ``compile`` (to the pipeline-spec YAML), ``run`` (the local runner) and ``demo`` (both).

``run`` is the runner's own command (:mod:`expforge.local_runner.cli`), mounted as it is: it reports bad input
through the same :mod:`expforge.cli_errors` policy itself and has exit statuses of its own (1 for a failed
pipeline, 130/143 when interrupted). The others import the compiler or the runner only when they run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from expforge.local_runner.cli import run as run_pipeline_command


def register(command: Callable[[str], Callable[[Callable[..., Any]], Callable[..., Any]]], app: typer.Typer) -> None:
    """Add ``compile``, ``run`` and ``demo`` to the ``expforge`` app."""

    @command("compile")
    def compile_pipelines(
        pipeline: list[str] = typer.Option([], "--pipeline", help="Pipeline name(s) (default: all)."),
        images: Path | None = typer.Option(
            None, "--images", help="Image map JSON (step → image), e.g. build/images.json."
        ),
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

    app.command("run", help="Run a compiled pipeline YAML locally (Docker images or subprocesses).")(
        run_pipeline_command
    )

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
