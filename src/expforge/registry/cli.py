"""``expforge registry list|show|promote|register``: look into and act on the model registry.

The backend is ``--registry`` (default ``$EXPFORGE_REGISTRY``, else ``local``); the local one lives in
``--root`` (default ``$EXPFORGE_REGISTRY_ROOT``, else ``runs/registry``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer


def _open(registry: str | None, root: Path | None) -> Any:
    import os

    from expforge.errors import ExpforgeError
    from expforge.registry.select import REGISTRY_ENV, open_registry

    if root is None:
        return open_registry(registry)
    if (registry or os.environ.get(REGISTRY_ENV) or "local").strip().lower() != "local":
        raise ExpforgeError("--root: applies to the local registry only")
    return open_registry("local", root=root)


def _echo_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def register(command: Callable[[str], Callable[[Any], Any]], app: typer.Typer) -> None:
    """Add the ``registry`` command group to the ``expforge`` app."""
    from expforge.cli_errors import one_line_errors

    group = typer.Typer(help="The model registry: versions, aliases (champion/challenger), evaluations.")
    app.add_typer(group, name="registry")

    registry_option = typer.Option(None, "--registry", help="local|vertex (default: $EXPFORGE_REGISTRY or local).")
    root_option = typer.Option(None, "--root", help="Local registry directory (default: $EXPFORGE_REGISTRY_ROOT).")

    @group.command("list")
    @one_line_errors
    def list_command(
        model_name: str | None = typer.Argument(None, help="A model: list its versions (default: list models)."),
        registry: str | None = registry_option,
        root: Path | None = root_option,
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """List models, or the versions of one model with their aliases and accuracy."""
        backend = _open(registry, root)
        if model_name is None:
            names = backend.list_models()
            if as_json:
                _echo_json(names)
            else:
                for name in names:
                    typer.echo(name)
            return
        versions = backend.list_versions(model_name)
        if as_json:
            _echo_json([v.to_dict() for v in versions])
            return
        if not versions:
            typer.echo(f"{model_name}: no versions")
        for version in versions:
            accuracy = version.metric("accuracy")
            shown = f"{accuracy:.4f}" if accuracy is not None else "-"
            typer.echo(f"{version.name} v{version.version_id}  accuracy={shown}  aliases={','.join(version.aliases)}")

    @group.command("show")
    @one_line_errors
    def show_command(
        model_name: str = typer.Argument(..., help="Model name."),
        ref: str = typer.Argument("champion", help="Version number or alias."),
        registry: str | None = registry_option,
        root: Path | None = root_option,
    ) -> None:
        """Everything about one version (JSON): files, evaluation, aliases, labels."""
        _echo_json(_open(registry, root).get(model_name, ref).to_dict())

    @group.command("promote")
    @one_line_errors
    def promote_command(
        model_name: str = typer.Argument(..., help="Model name."),
        version: str = typer.Argument(..., help="Version number to give the alias to."),
        alias: str = typer.Option("champion", "--alias", help="Alias to move onto the version."),
        registry: str | None = registry_option,
        root: Path | None = root_option,
    ) -> None:
        """Move an alias (default: champion) onto a version; the version that held it loses it."""
        moved = _open(registry, root).set_alias(model_name, version, alias)
        typer.echo(f"{moved.name} v{moved.version_id}: aliases {','.join(moved.aliases)}")

    @group.command("register")
    @one_line_errors
    def register_command(
        model: Path = typer.Option(..., "--model", help="Model file or directory to register."),
        evaluation: Path = typer.Option(..., "--evaluation", help="Evaluation directory (metrics.json) or JSON."),
        model_name: str = typer.Option("mnist-digits", "--name", help="Model name in the registry."),
        accuracy_key: str = typer.Option("accuracy", "--accuracy-key", help="Metric that decides the champion."),
        registry: str | None = registry_option,
        root: Path | None = root_option,
    ) -> None:
        """Register a version as challenger; it becomes champion when at least as accurate as the current one."""
        from expforge.registry.base import load_evaluation
        from expforge.registry.select import register_with_policy

        metrics = load_evaluation(evaluation, accuracy_key=accuracy_key)
        version = register_with_policy(
            _open(registry, root), model_name, model, evaluation=metrics, accuracy_key=accuracy_key
        )
        typer.echo(f"{version.name} v{version.version_id}: aliases {','.join(version.aliases)} ({version.uri})")
