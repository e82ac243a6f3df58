"""``expforge schedule create|list|pause|resume|delete`` (see :mod:`expforge.cloud.schedules`)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import typer

ENDPOINT_ENV = "EXPFORGE_VERTEX_ENDPOINT"


def register(app: typer.Typer) -> None:
    """Add the ``schedule`` command group."""
    from expforge.cli_errors import one_line_errors
    from expforge.errors import ExpforgeError

    group = typer.Typer(help="Vertex AI pipeline schedules (cron).", no_args_is_help=True)
    app.add_typer(group, name="schedule")
    project_opt = typer.Option(None, "--project", help="Google Cloud project ID.")
    region_opt = typer.Option(None, "--region", help="Vertex AI region, e.g. us-central1.")
    endpoint_opt = typer.Option(None, "--api-endpoint", envvar=ENDPOINT_ENV, help="Vertex AI API endpoint.")

    def endpoint(value: str | None) -> str | None:
        return value or os.environ.get(ENDPOINT_ENV) or None

    @group.command("create")
    @one_line_errors
    def create_command(
        pipeline: str | None = typer.Argument(None, help="Pipeline name or compiled YAML (or use --template)."),
        template: str | None = typer.Option(None, "--template", help="A pushed template URI (templates push)."),
        cron: str = typer.Option(..., "--cron", help='Unix cron, e.g. "0 6 * * *" (optional TZ=Zone prefix).'),
        max_concurrent: int = typer.Option(1, "--max-concurrent", help="Runs allowed at the same time."),
        start: str | None = typer.Option(None, "--start", help="First run not before (ISO date/time, UTC)."),
        end: str | None = typer.Option(None, "--end", help="No runs after (ISO date/time, UTC)."),
        param: list[str] = typer.Option([], "--param", "-p", help="Pipeline parameter KEY=VALUE; repeatable."),
        project: str | None = project_opt,
        region: str | None = region_opt,
        bucket: str | None = typer.Option(None, "--bucket", help="Bucket for the pipeline root."),
        display_name: str | None = typer.Option(None, "--display-name", help="Schedule name."),
        service_account: str | None = typer.Option(None, "--service-account", help="Runs use this account."),
        images: Path | None = typer.Option(None, "--images", help="Image map for compiling by name."),
        api_endpoint: str | None = endpoint_opt,
    ) -> None:
        """Create a schedule; print its id and console URL."""
        from google.api_core import exceptions

        from expforge.cloud.cli import _pairs
        from expforge.cloud.schedules import SCHEDULE_URL, create_schedule
        from expforge.cloud.templates import pipeline_or_template

        source = pipeline_or_template(pipeline, template)
        try:
            info = create_schedule(
                source,
                cron=cron,
                project=project,
                region=region,
                bucket=bucket,
                parameters=_pairs(param, "--param"),
                max_concurrent=max_concurrent,
                start=start,
                end=end,
                display_name=display_name,
                service_account=service_account,
                images=images,
                api_endpoint=endpoint(api_endpoint),
            )
        except exceptions.GoogleAPICallError as exc:
            raise ExpforgeError(f"schedule create: Vertex AI refused it: {exc.message}") from None
        typer.echo(f"created schedule {info.name} ({info.state}, next run {info.next_run})", err=True)
        typer.echo(SCHEDULE_URL.format(region=region, id=info.schedule_id, project=project))

    @group.command("list")
    @one_line_errors
    def list_command(
        project: str | None = project_opt,
        region: str | None = region_opt,
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        api_endpoint: str | None = endpoint_opt,
    ) -> None:
        """Schedules of the project and region."""
        from expforge.cloud.schedules import list_schedules

        found = list_schedules(project=project, region=region, api_endpoint=endpoint(api_endpoint))
        if as_json:
            typer.echo(json.dumps([asdict(s) for s in found], indent=2))
            return
        for s in found:
            typer.echo(f"{s.schedule_id}\t{s.state}\t{s.cron}\t{s.display_name}\t{s.next_run}")

    def changer(action: str) -> None:
        @group.command(action)
        @one_line_errors
        def change_command(
            schedule: str = typer.Argument(..., help="Schedule id (from schedule list) or resource name."),
            project: str | None = project_opt,
            region: str | None = region_opt,
            api_endpoint: str | None = endpoint_opt,
        ) -> None:
            from expforge.cloud.schedules import change_schedule

            info = change_schedule(
                action, schedule, project=project, region=region, api_endpoint=endpoint(api_endpoint)
            )
            typer.echo(f"{action}d {schedule}" + (f": {info.state}" if info else ""))

        change_command.__doc__ = f"{action.capitalize()} a schedule."

    for verb in ("pause", "resume", "delete"):
        changer(verb)
