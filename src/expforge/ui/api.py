"""The JSON API under ``/api`` (OpenAPI at ``/docs``): the same data the pages show, for scripts and notebooks.

Errors are JSON too: ``{"detail": "...", "field": "..."}`` — 404 for an unknown run, task or artifact (and for a
path that escapes the runs root: nothing outside it is ever confirmed to exist), 422 naming the query field that
is wrong, 503 when the tracking backend cannot be reached.
"""

from __future__ import annotations

import mimetypes
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from expforge.errors import ExpforgeError
from expforge.tracking.base import RUN_STATES, MetricCondition, RunFilter, parse_time
from expforge.tracking.queries import RunQuery, compare, leaderboard, search
from expforge.ui import hyperband, registry_view, views
from expforge.ui.store import NotFound, Store


class BadInput(ExpforgeError):
    """A query value that does not parse: HTTP 422 naming ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RunPatch(BaseModel):
    """``PATCH /api/runs/{id}``: fields left out are left alone; a tag with an empty value is removed."""

    note: str | None = Field(default=None, max_length=10_000)
    tags: dict[str, str] = Field(default_factory=dict)


def _pairs(values: list[str], field: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise BadInput(field, f"{text!r} is not KEY=VALUE")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _time(text: str | None, field: str) -> Any:
    if not text:
        return None
    try:
        return parse_time(text, what=field)
    except ExpforgeError as exc:
        raise BadInput(field, str(exc).split(": ", 1)[-1]) from None


def build_query(
    *,
    pipeline: str | None = None,
    experiment: str | None = None,
    state: list[str] | None = None,
    dataset: str | None = None,
    since: str | None = None,
    until: str | None = None,
    metric: str | None = None,
    metric_min: float | None = None,
    metric_max: float | None = None,
    param: list[str] | None = None,
    tag: list[str] | None = None,
    note: str | None = None,
    top_level: bool = False,
    sort: str = "started_at",
    order: str = "desc",
    limit: int | None = 50,
    offset: int = 0,
) -> RunQuery:
    """A :class:`RunQuery` from query-string values; a bad value is :class:`BadInput` naming its field."""
    for value in state or []:
        if value not in RUN_STATES:
            raise BadInput("state", f"{value!r} is not one of {', '.join(RUN_STATES)}")
    if (metric_min is not None or metric_max is not None) and not metric:
        raise BadInput("metric", "metric_min/metric_max need metric=NAME")
    conditions: tuple[MetricCondition, ...] = ()
    run_filter = RunFilter(
        dataset=dataset or None,
        since=_time(since, "since"),
        until=_time(until, "until"),
        metrics=conditions,
        note_contains=note or None,
        experiment=experiment or None,
        pipeline=pipeline or None,
        tags=_pairs(tag or [], "tag"),
    )
    return RunQuery(
        run_filter=run_filter,
        states=tuple(state or ()),
        params=_pairs(param or [], "param"),
        metric=metric or None,
        metric_min=metric_min,
        metric_max=metric_max,
        top_level=top_level,
        sort=sort or "started_at",
        descending=order != "asc",
        offset=offset,
        limit=limit,
    )


def router(store: Store) -> APIRouter:
    """The ``/api`` routes over ``store``."""
    api = APIRouter(prefix="/api", tags=["api"])

    @api.get("/health")
    def health() -> JSONResponse:
        """Whether the tracking backend answers, and how many runs it holds."""
        try:
            count = len(store.records())
        except ExpforgeError as exc:
            body = {"status": "unavailable", "tracking": store.tracking, "root": str(store.root), "detail": str(exc)}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "tracking": store.tracking, "root": str(store.root), "runs": count})

    @api.get("/runs")
    def list_runs(
        pipeline: str | None = None,
        experiment: str | None = None,
        state: Annotated[list[str] | None, Query()] = None,
        dataset: str | None = None,
        since: Annotated[str | None, Query(description="started at or after (ISO date/time, UTC)")] = None,
        until: Annotated[str | None, Query(description="started before (ISO date/time, UTC)")] = None,
        metric: Annotated[str | None, Query(description="metric that metric_min/metric_max bound")] = None,
        metric_min: float | None = None,
        metric_max: float | None = None,
        param: Annotated[list[str] | None, Query(description="KEY=VALUE parameter equality; repeatable")] = None,
        tag: Annotated[list[str] | None, Query(description="KEY=VALUE tag; repeatable")] = None,
        note: Annotated[str | None, Query(description="note contains (case-insensitive)")] = None,
        top_level: Annotated[bool, Query(description="only runs without a parent (pipeline runs)")] = False,
        sort: Annotated[
            str, Query(description="started_at, ended_at, duration, state, ... or a metric")
        ] = "started_at",
        order: Literal["asc", "desc"] = "desc",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        """Runs matching every filter, sorted and paged."""
        query = build_query(
            pipeline=pipeline,
            experiment=experiment,
            state=state,
            dataset=dataset,
            since=since,
            until=until,
            metric=metric,
            metric_min=metric_min,
            metric_max=metric_max,
            param=param,
            tag=tag,
            note=note,
            top_level=top_level,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )
        result = store.search(query)
        return {
            "total": result.total,
            "offset": result.offset,
            "limit": limit,
            "runs": [views.summary(r) for r in result.runs],
        }

    @api.get("/runs/compare")
    def compare_runs(ids: Annotated[list[str], Query(min_length=2, description="two or more run ids")]) -> Any:
        """The union of the runs' parameter and metric keys with each run's values, and their learning curves."""
        records = [store.record(run_id) for run_id in ids]
        data = compare(records).to_json()
        data["curves"] = [c.to_json() for run_id in ids for c in views.run_curves(store, run_id)]
        return views.clean(data)

    @api.get("/leaderboard")
    def leaderboard_runs(
        metric: str,
        top_k: Annotated[int, Query(ge=1, le=1000)] = 10,
        mode: Literal["max", "min"] = "max",
        pipeline: str | None = None,
        experiment: str | None = None,
        top_level: bool = False,
    ) -> list[dict[str, Any]]:
        """The best runs by ``metric`` (final value, else last epoch)."""
        query = build_query(pipeline=pipeline, experiment=experiment, top_level=top_level, limit=None)
        records = search(store.records(), query).runs
        entries = leaderboard(records, metric, top=top_k, ascending=mode == "min")
        return [{"rank": e.rank, "value": views.clean(e.value), **views.summary(e.run)} for e in entries]

    @api.get("/registry")
    def registry() -> dict[str, Any]:
        """Registered models with their versions, aliases and evaluations."""
        return views.clean(registry_view.models(store))

    @api.get("/runs/{run_id:path}/artifacts/{name}/{sub_path:path}")
    def artifact_in_directory(run_id: str, name: str, sub_path: str) -> FileResponse:
        """A file inside a directory artifact (never outside it, nor outside the runs root)."""
        return _send(store, run_id, name, sub_path)

    @api.get("/runs/{run_id:path}/artifacts/{name}")
    def artifact(run_id: str, name: str) -> FileResponse:
        """The file of a file artifact."""
        return _send(store, run_id, name, "")

    @api.get("/runs/{run_id:path}/tasks/{key:path}/log")
    def task_log(run_id: str, key: str) -> PlainTextResponse:
        """The tail of a task's log."""
        return PlainTextResponse(store.task_log(run_id, key))

    @api.get("/runs/{run_id:path}/tasks/{key:path}")
    def task(run_id: str, key: str) -> dict[str, Any]:
        """One task of a pipeline run: inputs, outputs, metrics, artifact files and log."""
        return views.task_detail(store, run_id, key)

    @api.get("/runs/{run_id:path}/status")
    def status(run_id: str) -> dict[str, Any]:
        """The run's state and each task's state (what the Run page polls while a run is working)."""
        document = store.run_json(run_id)
        if document is None:
            raise NotFound(f"run {run_id!r} has no run.json under {store.root}")
        tasks = {
            k: {"state": t.get("state"), "cached": t.get("cached", False), "duration_s": t.get("duration_s")}
            for k, t in (document.get("tasks") or {}).items()
        }
        return {"run_id": run_id, "state": document.get("state"), "tasks": tasks}

    @api.get("/runs/{run_id:path}/hyperband")
    def hyperband_view(run_id: str) -> dict[str, Any]:
        """The run's Hyperband (or random-search) trials: parallel coordinates, rung chart, leaderboard."""
        document = store.run_json(run_id)
        if document is None:
            raise NotFound(f"run {run_id!r} has no run.json under {store.root}")
        return views.clean(hyperband.view(document))

    @api.get("/runs/{run_id:path}")
    def run_detail(run_id: str) -> dict[str, Any]:
        """Params, final metrics, per-epoch series, artifacts, parent and child runs, provenance, ``run.json``."""
        return views.detail(store, run_id)

    @api.patch("/runs/{run_id:path}")
    def patch_run(run_id: str, patch: RunPatch) -> dict[str, Any]:
        """Set the note and/or merge tags (per field: the last write wins; tags from concurrent edits merge)."""
        if patch.note is None and not patch.tags:
            raise BadInput("body", "give note and/or tags")
        for key in patch.tags:
            if not key.strip():
                raise BadInput("tags", "a tag needs a non-empty key")
        record = store.set_tags(run_id, dict(patch.tags), patch.note)
        return {"run_id": record.run_id, "note": record.note, "tags": record.tags}

    return api


def _send(store: Store, run_id: str, name: str, sub_path: str) -> FileResponse:
    found = store.artifact_file(run_id, name, sub_path)
    media_type = mimetypes.guess_type(found.name)[0]
    if media_type is None:
        kind = views.preview_kind(found.path)
        media_type = {"html": "text/html", "image": "image/png"}.get(kind, "text/plain")
        if kind == "file" and found.path.suffix not in ("", ".log", ".txt", ".csv", ".md"):
            media_type = "application/octet-stream"
    headers = {"X-Content-Type-Options": "nosniff"}
    if media_type in ("text/html", "image/svg+xml"):
        # A report opened on its own still runs sandboxed: no script of it ever runs as this origin.
        headers["Content-Security-Policy"] = "sandbox"
    return FileResponse(found.path, media_type=media_type, headers=headers, filename=None)
