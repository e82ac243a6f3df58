"""``expforge tensorboard``: open the event files of a pipeline run (every training task its own run name)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer


def register(command: Callable[[str], Callable[[Callable[..., Any]], Callable[..., Any]]], app: typer.Typer) -> None:
    """Add ``tensorboard`` to the ``expforge`` app."""
    del app  # a single command: registered through ``command``

    @command("tensorboard")
    def tensorboard(
        root: Path = typer.Option(Path("runs"), "--root", help="Folder of pipeline runs."),
        run: str | None = typer.Option(None, "--run", help="One pipeline run (its id); default: every run."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
        port: int = typer.Option(6006, "--port"),
        print_only: bool = typer.Option(False, "--print", help="Print the run names and the command; serve nothing."),
    ) -> None:
        """Serve the TensorBoard logs the trainers wrote, one run name per training task."""
        from expforge.train.tensorboard_serve import find_logdirs, tensorboard_command

        logdirs = find_logdirs(root, run)
        argv = tensorboard_command(logdirs, host=host, port=port)
        for name, path in logdirs.items():
            typer.echo(f"{name}\t{path}")
        if print_only:
            typer.echo(" ".join(argv))
            return
        typer.echo(f"TensorBoard on http://{host}:{port}/ (Ctrl-C stops it)")
        raise typer.Exit(subprocess.call(argv))
