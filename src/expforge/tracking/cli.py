"""``expforge runs list|show|compare|leaderboard|tag|flush-spool`` over either tracking backend.

The ``local`` backend reads the SQLite file (``--db``, default ``$EXPFORGE_TRACKING_DB`` or
``runs/.tracking/runs.sqlite``, where ``expforge run`` writes it); the ``gcp`` backend reads BigQuery (the
analysable store Looker Studio also reads), configured by the ``EXPFORGE_*`` variables of
:mod:`expforge.tracking.select`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from expforge.errors import ExpforgeError

DEFAULT_DB = Path("runs/.tracking/runs.sqlite")

_BACKEND_HELP = "local (SQLite) | gcp (BigQuery); default: $EXPFORGE_TRACKING, else local."
_DB_HELP = "SQLite tracking database (default: $EXPFORGE_TRACKING_DB, else runs/.tracking/runs.sqlite)."


def _tracker(backend: str | None, db: Path | None) -> Any:
    from expforge.tracking.select import TrackingConfig, check_backend, open_tracker

    env = os.environ
    chosen = check_backend((backend or env.get("EXPFORGE_TRACKING") or "local").lower(), "--backend")
    if chosen == "off":
        raise ExpforgeError("--backend: tracking is off; choose local or gcp")
    path = db or (Path(env["EXPFORGE_TRACKING_DB"]) if env.get("EXPFORGE_TRACKING_DB") else DEFAULT_DB)
    if chosen == "local" and not path.is_file():
        raise ExpforgeError(f"--db: no tracking database at {path} (run a pipeline first, or pass --db)")
    return open_tracker(TrackingConfig.from_env(env, backend=chosen, db=path))


def _json(data: object) -> str:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None if math.isnan(value) else str(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), indent=2, sort_keys=True, default=str)


def _filter(
    dataset: str | None,
    since: str | None,
    until: str | None,
    metric: list[str],
    note_contains: str | None,
    experiment: str | None,
    tag: list[str],
    limit: int | None,
) -> Any:
    from expforge.tracking.base import MetricCondition, RunFilter, parse_time

    return RunFilter(
        dataset=dataset,
        since=parse_time(since, what="--since") if since else None,
        until=parse_time(until, what="--until") if until else None,
        metrics=tuple(MetricCondition.parse(m) for m in metric),
        note_contains=note_contains,
        experiment=experiment,
        tags=tuple(_parse_tag(t) for t in tag),
        limit=limit,
    )


def _parse_tag(text: str, flag: str = "--tag") -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ExpforgeError(f"{flag}: {text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def _get(tracker: Any, run_id: str) -> Any:
    """The run ``run_id``, or the one run whose id ends with it (the short ids the tables show)."""
    from expforge.tracking.queries import resolve_run_id

    try:
        return tracker.get_run(run_id)
    except ExpforgeError:
        resolved = resolve_run_id([r.run_id for r in tracker.list_runs()], run_id)
        if resolved == run_id:
            raise
        return tracker.get_run(resolved)


def run_table(records: list[Any], metrics: list[str]) -> str:
    """Runs as a table that fits 120 columns: short ids, start minute, pipeline or step, key metrics, tags, note."""
    from expforge.tracking.queries import fit_table, short_run_id, when

    headers = ["run", "state", "started", "pipeline/step", *metrics, "tags", "note"]
    rows = [
        [
            short_run_id(r.run_id),
            r.state,
            when(r.started_at),
            _kind(r),
            *(r.metric(m) for m in metrics),
            ",".join(f"{k}={v}" for k, v in sorted(r.tags.items())),
            r.note,
        ]
        for r in records
    ]
    for optional in ("tags", "note"):  # an all-empty column is only noise
        at = headers.index(optional)
        if not any(row[at] for row in rows):
            headers.pop(at)
            for row in rows:
                row.pop(at)
    return fit_table(headers, rows, flexible=["note", "tags", "pipeline/step"])


def _kind(record: Any) -> str:
    """A pipeline run shows its pipeline, a task run its step."""
    return record.step if record.parent_run_id else record.pipeline


def register(command: Callable[..., Any], app: typer.Typer) -> None:
    """Add the ``runs`` command group to the ``expforge`` app."""
    from expforge.cli_errors import one_line_errors

    runs = typer.Typer(help="Query and annotate tracked runs (local SQLite or BigQuery).", no_args_is_help=True)
    app.add_typer(runs, name="runs")

    backend_opt = typer.Option(None, "--backend", help=_BACKEND_HELP)
    db_opt = typer.Option(None, "--db", help=_DB_HELP)
    json_opt = typer.Option(False, "--json", help="Print JSON instead of a table.")

    @runs.command("list")
    @one_line_errors
    def list_command(
        dataset: str | None = typer.Option(None, "--dataset", help="Only runs whose dataset ids contain this."),
        since: str | None = typer.Option(None, "--since", help="Started at or after (ISO date/time, UTC)."),
        until: str | None = typer.Option(None, "--until", help="Started before (ISO date/time, UTC)."),
        metric: list[str] = typer.Option([], "--metric", help="Threshold, e.g. 'val_accuracy>=0.9'; repeatable."),
        note_contains: str | None = typer.Option(None, "--note-contains", help="Note contains (case-insensitive)."),
        experiment: str | None = typer.Option(None, "--experiment", help="Only this experiment."),
        tag: list[str] = typer.Option([], "--tag", help="Only runs with tag KEY=VALUE; repeatable."),
        pipeline: str | None = typer.Option(None, "--pipeline", help="Only runs of this pipeline."),
        state: list[str] = typer.Option([], "--state", help="Only runs in this state (RUNNING, FAILED, ...)."),
        param: list[str] = typer.Option([], "--param", help="Only runs with parameter KEY=VALUE; repeatable."),
        top_level: bool = typer.Option(False, "--top-level", help="Only pipeline runs (no task runs)."),
        sort: str = typer.Option("started_at", "--sort", help="started_at, duration, ... or a metric name."),
        ascending: bool = typer.Option(False, "--ascending", help="Sort ascending (default: descending)."),
        limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many runs."),
        backend: str | None = backend_opt,
        db: Path | None = db_opt,
        as_json: bool = json_opt,
    ) -> None:
        """Runs matching every given filter, newest first; the table fits 120 columns (short run ids)."""
        from expforge.tracking.base import RUN_STATES
        from expforge.tracking.queries import RunQuery, key_metric_names, search, summary

        for value in state:
            if value not in RUN_STATES:
                raise ExpforgeError(f"--state: {value!r} is not one of {', '.join(RUN_STATES)}")
        run_filter = _filter(dataset, since, until, metric, note_contains, experiment, tag, None)
        run_filter = replace(run_filter, pipeline=pipeline)
        query = RunQuery(
            run_filter=run_filter,
            states=tuple(state),
            params=tuple(_parse_tag(p, "--param") for p in param),
            top_level=top_level,
            sort=sort,
            descending=not ascending,
            limit=limit,
        )
        tracker = _tracker(backend, db)
        try:
            found = search(tracker.list_runs(run_filter), query).runs
        finally:
            tracker.close()
        keys = key_metric_names(found, [condition.key for condition in run_filter.metrics])
        if as_json:
            typer.echo(_json([{**summary(r, keys), "pipeline": r.pipeline, "step": r.step} for r in found]))
            return
        typer.echo(run_table(found, keys))
        typer.echo(f"{len(found)} run(s)", err=True)

    @runs.command("show")
    @one_line_errors
    def show_command(
        run_id: str = typer.Argument(..., help="Run id."),
        full: bool = typer.Option(False, "--full", help="Include pip freeze and the git diff."),
        backend: str | None = backend_opt,
        db: Path | None = db_opt,
    ) -> None:
        """Everything stored about one run (JSON)."""
        tracker = _tracker(backend, db)
        try:
            record = _get(tracker, run_id).to_dict()
        finally:
            tracker.close()
        if not full:
            record["pip_freeze"] = f"{len(record['pip_freeze'])} packages (--full to show)"
            if record.get("git_diff"):
                record["git_diff"] = f"{len(record['git_diff'])} characters (--full to show)"
        typer.echo(_json(record))

    @runs.command("compare")
    @one_line_errors
    def compare_command(
        run_ids: list[str] = typer.Argument(..., help="Two or more run ids."),
        backend: str | None = backend_opt,
        db: Path | None = db_opt,
        as_json: bool = json_opt,
    ) -> None:
        """Runs side by side: the union of their parameter and metric keys."""
        from expforge.tracking.queries import compare, fit_table, short_run_id

        tracker = _tracker(backend, db)
        try:
            records = [_get(tracker, r) for r in run_ids]
        finally:
            tracker.close()
        comparison = compare(records)
        if as_json:
            typer.echo(_json(comparison.to_json()))
            return
        headers = ["key", *(short_run_id(r) for r in comparison.run_ids)]
        typer.echo(fit_table(headers, comparison.rows(), flexible=headers[1:]))

    @runs.command("leaderboard")
    @one_line_errors
    def leaderboard_command(
        metric: str = typer.Option(..., "--metric", help="Metric to rank by (final value, else last epoch)."),
        top: int = typer.Option(10, "--top", min=1, help="How many runs."),
        ascending: bool = typer.Option(False, "--ascending", help="Smaller is better (losses, errors)."),
        dataset: str | None = typer.Option(None, "--dataset", help="Only runs whose dataset ids contain this."),
        experiment: str | None = typer.Option(None, "--experiment", help="Only this experiment."),
        since: str | None = typer.Option(None, "--since", help="Started at or after (ISO date/time, UTC)."),
        backend: str | None = backend_opt,
        db: Path | None = db_opt,
        as_json: bool = json_opt,
    ) -> None:
        """The best runs by any metric."""
        from expforge.tracking.queries import fit_table, leaderboard, short_run_id, when

        run_filter = _filter(dataset, since, None, [], None, experiment, [], None)
        tracker = _tracker(backend, db)
        try:
            entries = leaderboard(tracker.list_runs(run_filter), metric, top=top, ascending=ascending)
        finally:
            tracker.close()
        headers = ["rank", metric, "run_id", "started_at", "note"]
        rows = [[e.rank, e.value, e.run.run_id, e.run.started_at, e.run.note] for e in entries]
        if as_json:
            typer.echo(_json([dict(zip(headers, row, strict=True)) for row in rows]))
            return
        table = [
            [e.rank, e.value, short_run_id(e.run.run_id), when(e.run.started_at), _kind(e.run), e.run.note]
            for e in entries
        ]
        headers = ["rank", metric, "run", "started", "pipeline/step", "note"]
        typer.echo(fit_table(headers, table, flexible=["note", "pipeline/step"]))
        if not entries:
            typer.echo(f"no run has metric {metric!r}", err=True)

    @runs.command("tag")
    @one_line_errors
    def tag_command(
        run_id: str = typer.Argument(..., help="Run id."),
        tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE (empty VALUE removes the tag); repeatable."),
        note: str | None = typer.Option(None, "--note", help="Replace the run's note."),
        backend: str | None = backend_opt,
        db: Path | None = db_opt,
    ) -> None:
        """Add tags and/or a note to a run."""
        if not tag and note is None:
            raise ExpforgeError("tag: give --tag KEY=VALUE and/or --note TEXT")
        tags = dict(_parse_tag(t) for t in tag)
        tracker = _tracker(backend, db)
        try:
            record = tracker.set_tags(_get(tracker, run_id).run_id, tags, note)
        finally:
            tracker.close()
        typer.echo(_json({"run_id": record.run_id, "tags": record.tags, "note": record.note}))

    @runs.command("flush-spool")
    @one_line_errors
    def flush_spool_command(
        directory: Path | None = typer.Argument(
            None, help="Spool directory (default: $EXPFORGE_TRACKING_SPOOL, else beside the tracking DB)."
        ),
    ) -> None:
        """Resend rows a gcp tracker could not deliver (left by tasks that ended during an outage)."""
        from expforge.tracking.gcp_resend import resend_spool
        from expforge.tracking.select import TrackingConfig

        config = TrackingConfig.from_env(backend="gcp")
        where = directory or config.spool_dir
        assert where is not None
        delivered, remaining = resend_spool(config.gcp_settings(), where)
        typer.echo(f"delivered {delivered} row(s) from {where}; {remaining} left")
