"""The ``expforge`` Typer app, its global ``--verbose`` option and the ``command()`` decorator.

Every command of the package is added to this one app, through :func:`command`, which wraps it in the single
bad-input policy of :mod:`expforge.cli_errors` (an :class:`~expforge.errors.ExpforgeError` prints one line and
exits with status 2). The area modules never import this module: :mod:`expforge.cli` hands them
:func:`command` and :data:`app` through their ``register(command, app)``, so the dependency points one way only.

Nothing here imports a step: ``expforge --help`` stays fast and a command needs only its own extra.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from expforge.cli_errors import one_line_errors

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


def print_json(data: object) -> None:
    """Print ``data`` as indented, key-sorted JSON (what the data commands report)."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@app.callback()
def _configure(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    """Entry point of the ``expforge`` console script and of ``python -m expforge``."""
    app(prog_name="expforge")
