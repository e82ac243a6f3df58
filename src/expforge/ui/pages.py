"""The server-rendered pages: Runs, Run (graph + task panel), Compare, Hyperband and Registry.

Pages render from the same views as the API. A tracking backend that does not answer shows as a banner above
whatever can still be shown (``run.json`` files need no backend), never as a traceback.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import math
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from expforge.errors import ExpforgeError
from expforge.tracking.base import RUN_STATES, RunRecord
from expforge.tracking.queries import SORT_FIELDS, RunQuery, SearchResult, compare, short_run_id
from expforge.ui import graph as graph_module
from expforge.ui import hyperband, registry_view, views
from expforge.ui.api import BadInput, build_query
from expforge.ui.store import NotFound, Store, Unavailable

TEMPLATES = Path(__file__).parent / "templates"
PAGE_SIZE = 50
PREVIEW_BYTES = 300_000
PREVIEW_ROWS = 50


def short_id(run_id: str) -> str:
    """The CLI's short id (``mnist-baseline-20261201-084812-a1b2c3/evaluate`` → ``a1b2c3/evaluate``); other long
    ids keep both ends."""
    run_id = short_run_id(run_id)
    if len(run_id) <= 32:
        return run_id
    return f"{run_id[:20]}…{run_id[-11:]}"


def when(text: str | None) -> str:
    """An ISO timestamp as ``2026-12-01 08:48`` (UTC)."""
    if not text:
        return "—"
    with contextlib.suppress(ValueError):
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment.strftime("%Y-%m-%d %H:%M")
    return text


def seconds(value: float | None) -> str:
    """``73.4`` → ``1m 13s``; ``None`` → ``—``."""
    if value is None:
        return "—"
    value = float(value)
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(round(value)), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def number(value: Any) -> str:
    """Metrics with four decimals (integers as they are); missing as ``—``."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1):
        return str(int(value))
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def value_text(value: Any) -> str:
    """Parameters and cells: floats short, containers as compact JSON (cut at 300 characters)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        text = json.dumps(value, default=str, separators=(", ", ": "))
        return text if len(text) <= 300 else text[:299] + "…"
    return "—" if value is None else str(value)


def truncate_middle(text: str, width: int) -> str:
    """Keep both ends of a long name (a task key's distinguishing part is often at the end)."""
    text = str(text)
    if len(text) <= width:
        return text
    half = (width - 1) // 2
    return f"{text[:half]}…{text[-(width - 1 - half) :]}"


def _templates(store: Store) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.filters.update(
        short_id=short_id,
        when=when,
        seconds=seconds,
        number=number,
        value=value_text,
        truncate_middle=truncate_middle,
        rel=lambda uri: views.relative(store, str(uri)),
    )
    env.globals.update(chips=graph_module.chip_positions, node_width=graph_module.NODE_WIDTH)
    return templates


def artifact_url(run_id: str, key: str, name: str, path: str = "") -> str:
    """The API URL of an artifact file of task ``key`` (``path`` inside a directory artifact)."""
    url = f"/api/runs/{quote(run_id)}/{quote(key)}/artifacts/{quote(name)}"
    return url + (f"/{quote(path)}" if path else "")


def _markdown(text: str) -> str:
    from markdown_it import MarkdownIt

    # Raw HTML in an artifact's Markdown is shown as text, never rendered.
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def _table(text: str, kind: str) -> tuple[list[str], list[list[Any]], int]:
    if kind == "table":
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return [], [], 0
        return rows[0], rows[1 : PREVIEW_ROWS + 1], max(0, len(rows) - 1)
    data = json.loads(text)
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        header = list(dict.fromkeys(k for r in data[:PREVIEW_ROWS] for k in r))
        return header, [[r.get(h) for h in header] for r in data[:PREVIEW_ROWS]], len(data)
    if isinstance(data, dict):
        return ["key", "value"], [[k, v] for k, v in list(data.items())[:PREVIEW_ROWS]], len(data)
    return [], [], 0


def previews(store: Store, run_id: str, key: str, outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the task panel shows of each artifact file: images and HTML by URL, Markdown rendered, tables."""
    out = []
    for output in outputs:
        for file in output["files"]:
            kind = file["kind"]
            if kind == "file":
                continue
            title = f"{output['name']}/{file['path']}" if file["path"] else output["name"]
            item: dict[str, Any] = {
                "kind": kind,
                "title": title,
                "url": artifact_url(run_id, key, output["name"], file["path"]),
                "text": None,
                "rows": [],
            }
            if kind in ("markdown", "table", "json", "text"):
                try:
                    found = store.artifact_file(f"{run_id}/{key}", output["name"], file["path"])
                    text = found.path.read_bytes()[:PREVIEW_BYTES].decode("utf-8", errors="replace")
                except (NotFound, OSError):
                    continue
                if kind == "markdown":
                    item["html"] = _markdown(text)
                elif kind == "text":
                    item["text"] = text
                else:
                    try:
                        item["header"], item["rows"], total = _table(text, kind)
                        item["more"] = total if total > len(item["rows"]) else 0
                    except ValueError:
                        item["text"] = text
                    if not item["rows"]:
                        item["text"] = text
            out.append(item)
    return out


def _compare_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    comparison = compare(records)
    rows = []
    for kind, table in (("param", comparison.params), ("metric", comparison.metrics)):
        for key, values in table.items():
            cells = [number(v) if kind == "metric" else value_text(v) for v in values]
            rows.append({"kind": kind, "key": f"{kind} {key}", "cells": cells, "differs": len(set(cells)) > 1})
    return rows


def router(store: Store) -> APIRouter:
    """The HTML routes over ``store``."""
    pages = APIRouter(include_in_schema=False)
    templates = _templates(store)

    def render(request: Request, name: str, page: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("problem", store.problem)
        return templates.TemplateResponse(
            request,
            name,
            {"page": page, "tracking": store.tracking, "root": str(store.root), "plots": False, **context},
            status_code=status,
        )

    def records_or_banner() -> list[RunRecord]:
        try:
            return store.records()
        except Unavailable:
            return []

    def search_or_banner(query: RunQuery) -> SearchResult:
        try:
            return store.search(query)
        except Unavailable:
            return SearchResult(0, query.offset, [])

    @pages.get("/", response_class=HTMLResponse)
    def runs_page(request: Request) -> HTMLResponse:
        params = request.query_params
        q = {k: params.get(k) or None for k in ("pipeline", "state", "dataset", "since", "until", "metric")}
        q.update({k: params.get(k) or None for k in ("metric_min", "metric_max", "param", "tag", "note")})
        q["sort"] = params.get("sort") or "started_at"
        offset = int(params.get("offset") or 0) if (params.get("offset") or "0").isdigit() else 0
        records = records_or_banner()
        error = None
        try:
            query = build_query(
                pipeline=q["pipeline"],
                state=[q["state"]] if q["state"] else None,
                dataset=q["dataset"],
                since=q["since"],
                until=q["until"],
                metric=q["metric"],
                metric_min=_float(q["metric_min"], "metric_min"),
                metric_max=_float(q["metric_max"], "metric_max"),
                param=[q["param"]] if q["param"] else None,
                tag=[q["tag"]] if q["tag"] else None,
                note=q["note"],
                top_level=True,
                sort=q["sort"] or "started_at",
                limit=PAGE_SIZE,
                offset=offset,
            )
            result = search_or_banner(query)
        except ExpforgeError as exc:
            error = str(exc)
            result = search_or_banner(build_query(top_level=True, limit=PAGE_SIZE))
        top = [r for r in records if not r.parent_run_id]
        metric_columns = views.key_metrics(result.runs)
        if q["metric"] and q["metric"] not in metric_columns:
            metric_columns.insert(0, q["metric"])
        base = {k: v for k, v in params.items() if k != "offset" and v}
        prev_url = f"/?{urlencode({**base, 'offset': max(0, offset - PAGE_SIZE)})}" if offset > 0 else None
        more = offset + PAGE_SIZE < result.total
        next_url = f"/?{urlencode({**base, 'offset': offset + PAGE_SIZE})}" if more else None
        return render(
            request,
            "runs.html",
            "runs",
            status=422 if error else 200,
            runs=[views.summary(r) for r in result.runs],
            total=result.total,
            metric_columns=metric_columns,
            pipelines=sorted({r.pipeline for r in top if r.pipeline}),
            states=RUN_STATES,
            sorts=[*SORT_FIELDS, *views.key_metrics(top, limit=8)],
            q=q,
            error=error,
            prev_url=prev_url,
            next_url=next_url,
        )

    @pages.get("/fragments/task", response_class=HTMLResponse)
    def task_fragment(request: Request, run: str, key: str) -> HTMLResponse:
        detail = views.task_detail(store, run, key)
        return templates.TemplateResponse(
            request, "_task.html", {"t": detail, "previews": previews(store, run, key, detail["outputs"])}
        )

    @pages.get("/compare", response_class=HTMLResponse)
    def compare_page(request: Request) -> HTMLResponse:
        ids = request.query_params.getlist("ids")
        if len(ids) < 2:
            raise BadInput("ids", "select at least two runs to compare")
        records = [store.record(i) for i in ids]
        curves = [c.to_json() for i in ids for c in views.run_curves(store, i)]
        return render(
            request,
            "compare.html",
            "compare",
            plots=True,
            comparison=compare(records),
            rows=_compare_rows(records),
            curves=curves,
            curves_json=_script_json({"run_ids": ids, "curves": curves}),
        )

    @pages.get("/registry", response_class=HTMLResponse)
    def registry_page(request: Request) -> HTMLResponse:
        data = registry_view.models(store)
        keys = [
            k
            for k in registry_view.SHOWN_METRICS
            if any(k in v["evaluation"] for m in data["models"] for v in m["versions"])
        ]
        return render(request, "registry.html", "registry", registry=data, metric_keys=keys)

    @pages.get("/runs/{run_id:path}/hyperband", response_class=HTMLResponse)
    def hyperband_page(request: Request, run_id: str) -> HTMLResponse:
        document = store.run_json(run_id)
        if document is None:
            raise NotFound(f"run {run_id!r} has no run.json under {store.root}")
        view = views.clean(hyperband.view(document))
        return render(
            request,
            "hyperband.html",
            "hyperband",
            plots=True,
            run_id=run_id,
            view=view,
            view_json=_script_json(view),
        )

    @pages.get("/runs/{run_id:path}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str, task: str | None = None) -> HTMLResponse:
        record = None
        with contextlib.suppress(Unavailable, NotFound):
            record = views.detail(store, run_id)
        document = record["run_json"] if record else views.clean(store.run_json(run_id))
        if record is None and document is None:
            raise NotFound(f"run {run_id!r} not found (neither tracked nor a run directory under {store.root})")
        graph = None
        if document and document.get("tasks"):
            graph = graph_module.build_graph(document, graph_module.load_spec(document.get("pipeline_file")))
        state = (record or {}).get("state") or (document or {}).get("state", "")
        if document and document.get("state") == "RUNNING":
            state = "RUNNING"
        return render(
            request,
            "run.html",
            "run",
            run_id=run_id,
            record=record,
            document=document,
            graph=graph,
            state=state,
            selected=task,
            has_trials=bool(document and hyperband.trials_of(document)),
            tensorboard=_tensorboard_command(store.root, run_id, document),
        )

    return pages


def _tensorboard_command(root: Path, run_id: str, document: dict[str, Any] | None) -> str | None:
    """The command that serves this run's TensorBoard event files (every trainer task writes a ``tensorboard``
    artifact), or None when no task of the run wrote any: the dashboard points to TensorBoard, never embeds it."""
    tasks = (document or {}).get("tasks") or {}
    if not any("tensorboard" in ((task or {}).get("artifacts") or {}) for task in tasks.values()):
        return None
    return f"expforge tensorboard --root {shlex.quote(str(root))} --run {shlex.quote(run_id)}"


def _float(text: str | None, field: str) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise BadInput(field, f"{text!r} is not a number") from None


def _script_json(data: Any) -> str:
    """JSON safe to embed in a ``<script type="application/json">`` (no ``</script>`` can close it)."""
    return json.dumps(data, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
