"""``expforge alerts list``: the alerts steps raised under a runs root, newest last."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer


def register(command: Callable[[str], Callable[[Callable[..., Any]], Callable[..., Any]]], app: typer.Typer) -> None:
    """Add the ``alerts`` command group to the ``expforge`` app."""
    from expforge.cli_errors import one_line_errors

    del command
    group = typer.Typer(help="Threshold alerts raised by drift-check and evaluate.", no_args_is_help=True)
    app.add_typer(group, name="alerts")

    @group.command("list")
    @one_line_errors
    def list_alerts(
        root: Path = typer.Option(Path("runs"), "--root", help="Runs root holding .alerts/alerts.jsonl."),
        run: str | None = typer.Option(None, "--run", help="Only this run's alerts."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    ) -> None:
        """One line per alert: time, run, task, the rule, the value that fired it, the link."""
        from expforge.alerts.publish import read_alerts

        alerts = [a for a in read_alerts(root) if run is None or a.get("run") == run]
        if not alerts:
            typer.echo(f"no alerts under {root}")
            return
        for alert in alerts:
            if as_json:
                typer.echo(json.dumps(alert, sort_keys=True))
                continue
            typer.echo(
                f"{alert.get('time')}  {alert.get('run')}/{alert.get('task')}  {alert.get('rule')}"
                f"  value={alert.get('value')}  {alert.get('link')}"
            )
