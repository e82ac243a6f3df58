"""``expforge run``: the command-line face of :func:`~expforge.local_runner.api.run_pipeline`.

Exit status: 0 when the pipeline succeeded, 1 when it failed (interrupted: 130, SIGTERM: 143), 2 for bad usage
(one ``expforge: error: ...`` line on stderr). Progress and the summary go to stderr; the run directory is
the last line on stdout, so ``RUN=$(expforge run x.yaml | tail -1)`` works.

Register with ``app.command("run")(run)``; the function also works inside any other Typer app.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from expforge.cli_errors import EXIT_BAD_INPUT, report
from expforge.errors import ExpforgeError

_BACKEND_HELP = "auto (Docker when a daemon answers, else subprocess) | docker | subprocess."


def run(
    pipeline: Path = typer.Argument(..., help="Compiled pipeline spec YAML (from `expforge compile`)."),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Pipeline parameter KEY=VALUE (JSON for lists/dicts); repeatable."
    ),
    backend: str = typer.Option("auto", "--backend", "-b", help=_BACKEND_HELP),
    root: Path = typer.Option(Path("runs"), "--root", help="Directory for run directories and the task cache."),
    max_parallel: int | None = typer.Option(
        None,
        "--max-parallel",
        min=1,
        help="Most tasks executing at once (default: 4 per core). Tasks are admitted by their CPU and memory "
        "requests (unset: 0.5 CPU, 512 MiB) against the host's cores and memory.",
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the task cache."),
    tracking: str = typer.Option(
        "local", "--tracking", help="Where tasks log runs: local (SQLite under --root), gcp, or off."
    ),
    emulate_gcp: bool = typer.Option(
        False,
        "--emulate-gcp",
        help="Start local stand-ins for Firestore, Cloud Storage, BigQuery and Vertex AI and run with the gcp "
        "tracking and registry backends against them.",
    ),
    allow_cpu_fallback: bool = typer.Option(
        False,
        "--allow-cpu-fallback",
        help="On a host without a GPU, run GPU tasks without one (warns) instead of failing.",
    ),
    dev: bool = typer.Option(
        False,
        "--dev",
        help="Run each Docker task in its image with this working tree's expforge code mounted read-only over "
        "the installed package: an edit needs no image build (run from your checkout).",
    ),
) -> None:
    """Run a compiled KFP v2 pipeline locally: each task in its component image (or as a local process)."""
    from expforge.local_runner.api import run_pipeline
    from expforge.local_runner.progress import default_reporter
    from expforge.local_runner.values import parse_cli_params

    try:
        with contextlib.ExitStack() as stack:
            task_env: dict[str, str] = {}
            if emulate_gcp:
                from expforge.standins.stack import emulated_gcp

                typer.echo(
                    "starting the Google Cloud stand-ins (Firestore, Cloud Storage, BigQuery, Vertex AI)", err=True
                )
                task_env = dict(stack.enter_context(emulated_gcp()))
                tracking = "gcp"
            result = run_pipeline(
                pipeline,
                parse_cli_params(param),
                backend=backend,
                root=root,
                max_parallel=max_parallel,
                use_cache=not no_cache,
                allow_cpu_fallback=allow_cpu_fallback,
                dev=dev,
                progress=default_reporter(),
                tracking=tracking,
                task_env=task_env,
            )
    except ExpforgeError as exc:
        report(exc)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None

    failed_tasks = [key for key, task in result.tasks.items() if task.get("state") == "FAILED"]
    for key in failed_tasks:
        typer.echo(f"FAILED {key}: {result.tasks[key].get('error', '')}", err=True)
    error = str(result.record.get("error") or "")
    if result.state != "SUCCEEDED" and error and not any(error.startswith(f"{key}: ") for key in failed_tasks):
        typer.echo(f"run {result.state}: {error}", err=True)  # a failure of the run itself, not of one task
    if result.pipeline_outputs:
        for name, value in result.pipeline_outputs.items():
            typer.echo(f"output {name} = {value}", err=True)
    typer.echo(str(result.run_dir))
    if result.state == "CANCELLED":
        raise typer.Exit(143 if str(result.record.get("error", "")).endswith("(SIGTERM)") else 130)
    if not result.succeeded:
        raise typer.Exit(1)
