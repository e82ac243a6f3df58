"""``expforge bigquery setup``: the dashboard dataset, tables and views (see :mod:`expforge.bigquery.setup`).

stdout carries the result (the DDL for ``--dry-run``, else one line per statement); errors are one line.
"""

from __future__ import annotations

from typing import Any

import typer


def register(app: typer.Typer) -> None:
    """Add the ``bigquery`` command group to the ``expforge`` app."""
    from expforge.cli_errors import one_line_errors

    group = typer.Typer(help="BigQuery tables and Looker Studio views of the tracking history.", no_args_is_help=True)
    app.add_typer(group, name="bigquery")

    @group.command("setup")
    @one_line_errors
    def setup_command(
        project: str = typer.Option(None, "--project", help="Google Cloud project ID."),
        dataset: str = typer.Option(None, "--dataset", help="BigQuery dataset (created when missing)."),
        location: str | None = typer.Option(None, "--location", help="Dataset location: US, EU or a region."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the DDL; send nothing."),
        api_endpoint: str | None = typer.Option(
            None, "--api-endpoint", envvar="EXPFORGE_BIGQUERY_ENDPOINT", help="BigQuery endpoint (a stand-in)."
        ),
    ) -> None:
        """Create the dataset, the day-partitioned clustered tables and the six views (idempotent)."""
        from expforge.bigquery.ddl import script
        from expforge.bigquery.names import check_dataset, check_location, check_project
        from expforge.bigquery.setup import run_setup

        if dry_run:
            typer.echo(script(check_project(project), check_dataset(dataset), check_location(location)), nl=False)
            return
        result: Any = run_setup(project, dataset, location, endpoint=api_endpoint)
        for line in result.lines():
            typer.echo(line)
        for warning in result.warnings:
            typer.echo(f"expforge: warning: {warning}", err=True)
        typer.echo(f"bigquery setup: {result.project}.{result.dataset} ready in {result.elapsed_s:.1f}s", err=True)
