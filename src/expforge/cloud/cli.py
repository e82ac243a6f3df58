"""``expforge submit``: compile and submit a pipeline to Vertex AI Pipelines (the face of ``make pipeline-submit``).

stdout carries the result only (the console URL, or the request JSON for ``--dry-run``) so scripts can use it;
what happened goes to stderr. Bad input is one ``expforge: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from expforge.errors import ExpforgeError

ENDPOINT_ENV = "EXPFORGE_VERTEX_ENDPOINT"


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ExpforgeError(f"{flag} {pair!r}: expected KEY=VALUE")
        if key.strip() in parsed:
            raise ExpforgeError(f"{flag} {key.strip()}: given more than once")
        parsed[key.strip()] = value
    return parsed


def register(command: Callable[[str], Callable], app: typer.Typer) -> None:
    """Add ``submit`` and the other cloud commands (bigquery, templates, schedule, looker-url) to the CLI."""
    from expforge.bigquery.cli import register as register_bigquery

    register_bigquery(app)
    from expforge.cloud.templates_cli import register as register_templates

    register_templates(app)
    from expforge.cloud.schedule_cli import register as register_schedule

    register_schedule(app)

    @command("looker-url")
    def looker_url_command(
        project: str = typer.Option(None, "--project", help="Google Cloud project ID (of the BigQuery dataset)."),
        dataset: str = typer.Option(None, "--dataset", help="BigQuery dataset made by `expforge bigquery setup`."),
        template: str | None = typer.Option(None, "--template", help="Looker Studio report id to copy."),
        report_name: str | None = typer.Option(None, "--report-name", help="Name of the new report."),
        date_range: bool = typer.Option(
            False, "--date-range", help="Custom queries filtered by the report's date range (@DS_START_DATE)."
        ),
    ) -> None:
        """Print a Looker Studio Linking API URL creating a report with one data source per view."""
        from expforge.cloud.looker import looker_url

        typer.echo(looker_url(project, dataset, template=template, report_name=report_name, date_range=date_range))

    @command("submit")
    def submit(
        pipeline: str | None = typer.Argument(
            None, help="Pipeline name (compiled here) or a compiled pipeline YAML (or use --template)."
        ),
        template: str | None = typer.Option(
            None,
            "--template",
            help="Run a pushed template: https://REGION-kfp.pkg.dev/P/REPO/PACKAGE[@TAG|@sha256:..].",
        ),
        project: str | None = typer.Option(None, "--project", help="Google Cloud project ID."),
        region: str | None = typer.Option(None, "--region", help="Vertex AI region, e.g. us-central1."),
        bucket: str | None = typer.Option(
            None, "--bucket", help="Bucket for the pipeline root (gs://BUCKET/pipeline-root)."
        ),
        experiment: str | None = typer.Option(None, "--experiment", help="Vertex AI experiment to attach the run to."),
        service_account: str | None = typer.Option(None, "--service-account", help="Service account the run uses."),
        param: list[str] = typer.Option([], "--param", "-p", help="Pipeline parameter KEY=VALUE; repeatable."),
        label: list[str] = typer.Option(
            [], "--label", help="Job label KEY=VALUE (Google Cloud label rules); repeatable."
        ),
        cache: bool | None = typer.Option(
            None, "--cache/--no-cache", help="Force task caching on/off (default: as compiled)."
        ),
        display_name: str | None = typer.Option(None, "--display-name", help="Run display name (default: pipeline)."),
        job_id: str | None = typer.Option(None, "--job-id", help="Job ID (default: PIPELINE-TIMESTAMP)."),
        images: Path | None = typer.Option(
            None, "--images", help="Image map for compiling by name (default: build/images.json if present)."
        ),
        save_template: Path | None = typer.Option(None, "--save-template", help="Also write the compiled YAML here."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the CreatePipelineJobRequest; send nothing."),
        api_endpoint: str | None = typer.Option(
            None, "--api-endpoint", envvar=ENDPOINT_ENV, help=f"Vertex AI API endpoint (env {ENDPOINT_ENV})."
        ),
        target: str = typer.Option("vertex", "--target", help="vertex (Vertex AI Pipelines) or kfp (a KFP cluster)."),
        host: str | None = typer.Option(None, "--host", help="--target kfp: the KFP API URL."),
        namespace: str | None = typer.Option(None, "--namespace", help="--target kfp: Kubernetes namespace."),
        wait: bool = typer.Option(False, "--wait", help="Watch the run until it ends; exit 0 only on SUCCEEDED."),
        poll_interval: float = typer.Option(10.0, "--poll-interval", help="Seconds between --wait polls."),
    ) -> None:
        """Compile and submit a pipeline to Vertex AI Pipelines; print the console URL."""
        from expforge.cloud.submit import submit_pipeline
        from expforge.cloud.templates import pipeline_or_template

        source = pipeline_or_template(pipeline, template)
        if target not in ("vertex", "kfp"):
            raise ExpforgeError(f"--target: {target!r}: expected vertex or kfp")
        if target == "kfp":
            from expforge.cloud.kfp_target import submit_kfp

            kfp_run = submit_kfp(
                source,
                host=host,
                namespace=namespace,
                experiment=experiment,
                parameters=_pairs(param, "--param"),
                enable_caching=cache,
                display_name=display_name,
                images=images,
            )
            typer.echo(f"started run {kfp_run.run_id} of {kfp_run.pipeline} (version {kfp_run.version_id})", err=True)
            typer.echo(kfp_run.url)
            if wait:
                from expforge.cloud.kfp_target import kfp_poller
                from expforge.cloud.wait import report, watch

                say = lambda line: typer.echo(line, err=True)  # noqa: E731
                poll = kfp_poller(kfp_run.host, kfp_run.run_id, namespace)
                raise typer.Exit(report(watch(poll, interval_s=poll_interval, echo=say), kfp_run.url, say))
            return
        options: dict[str, Any] = {
            "project": project,
            "region": region,
            "bucket": bucket,
            "experiment": experiment,
            "service_account": service_account,
            "parameters": _pairs(param, "--param"),
            "labels": _pairs(label, "--label"),
            "enable_caching": cache,
            "display_name": display_name,
            "job_id": job_id,
            "images": images,
            "template_out": save_template,
            "dry_run": dry_run,
            "api_endpoint": api_endpoint or os.environ.get(ENDPOINT_ENV) or None,
        }
        result = submit_pipeline(source, **options)
        for warning in result.warnings:
            typer.echo(f"expforge: warning: {warning}", err=True)
        if dry_run:
            typer.echo(result.request_json())
            attached = f", experiment {result.experiment}" if result.experiment else ""
            typer.echo(
                f"dry run: {result.pipeline} as {result.job_id} in {result.region}{attached}; nothing sent", err=True
            )
            return
        typer.echo(f"submitted {result.job_name}", err=True)
        if result.experiment:
            typer.echo(f"attached to experiment {result.experiment}", err=True)
        typer.echo(result.console_url)
        if wait:
            from expforge.cloud.wait import watch_vertex

            raise typer.Exit(watch_vertex(result, options["api_endpoint"], poll_interval))
