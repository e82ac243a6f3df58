"""The data behind each page and API answer, shaped once so the JSON API and the HTML pages agree.

Paths are shown relative to the runs root (the CLI's rule too): an absolute artifact path is 150 characters of
noise in a table.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from expforge.tracking.base import RunRecord
from expforge.tracking.queries import duration_s
from expforge.ui import curves as curves_module
from expforge.ui.store import NotFound, Store, Unavailable

KEY_METRICS = ("accuracy", "val_accuracy", "macro_f1", "best_val_accuracy", "val_loss", "bits_per_char")


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN becomes ``null``, infinities their text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def relative(store: Store, uri: str) -> str:
    """``uri`` relative to the runs root when it lies under it, else unchanged."""
    if "://" in uri:
        return uri
    with contextlib.suppress(ValueError):
        return str(Path(uri).absolute().relative_to(store.root))
    return uri


def summary(record: RunRecord) -> dict[str, Any]:
    """A run as a row of the Runs page and of ``GET /api/runs`` (no series, no pip freeze)."""
    return clean(
        {
            "run_id": record.run_id,
            "state": record.state,
            "pipeline": record.pipeline,
            "experiment": record.experiment,
            "step": record.step,
            "parent_run_id": record.parent_run_id,
            "started_at": record.started_at,
            "ended_at": record.ended_at,
            "duration_s": duration_s(record),
            "metrics": record.metrics,
            "params": record.params,
            "datasets": record.datasets,
            "tags": record.tags,
            "note": record.note,
        }
    )


def key_metrics(records: Sequence[RunRecord], limit: int = 4) -> list[str]:
    """The metric columns worth showing for these runs: the well-known ones they have, then the most common."""
    counts: dict[str, int] = {}
    for record in records:
        for key in record.metrics:
            counts[key] = counts.get(key, 0) + 1
    chosen = [k for k in KEY_METRICS if k in counts]
    chosen += sorted((k for k in counts if k not in chosen), key=lambda k: (-counts[k], k))
    return chosen[:limit]


def detail(store: Store, run_id: str) -> dict[str, Any]:
    """Everything about one run: the tracked record, its parent and child tasks, and ``run.json`` when it is a
    pipeline run of this root."""
    record = store.record(run_id)
    data = clean(record.to_dict())
    data["series"] = {k: [[s, clean(v)] for s, v in points] for k, points in record.series.items()}
    data["duration_s"] = duration_s(record)
    data["artifacts"] = {k: relative(store, v) for k, v in record.artifacts.items()}
    data["children"] = [summary(child) for child in store.children(run_id)]
    data["parent"] = None
    if record.parent_run_id:
        with contextlib.suppress(NotFound):
            data["parent"] = summary(store.record(record.parent_run_id))
    document = store.run_json(run_id)
    data["run_json"] = clean(document) if document is not None else None
    return data


def task_detail(store: Store, run_id: str, key: str) -> dict[str, Any]:
    """One task of a pipeline run: what ``run.json`` says, its tracked metrics, artifact files and log."""
    document = store.run_json(run_id)
    if document is None:
        raise NotFound(f"run {run_id!r} has no run.json under {store.root}")
    task = (document.get("tasks") or {}).get(key)
    if task is None:
        raise NotFound(f"run {run_id!r} has no task {key!r}")
    tracked: RunRecord | None = None
    with contextlib.suppress(NotFound, Unavailable):
        tracked = store.record(f"{run_id}/{key}")
    outputs = []
    for name, uris in (task.get("artifacts") or {}).items():
        for uri in uris:
            outputs.append({"name": name, "uri": relative(store, uri), "files": artifact_files(store, uri)})
    inputs = task.get("inputs") or {}
    input_artifacts = {n: [relative(store, u) for u in us] for n, us in (inputs.get("artifacts") or {}).items()}
    return clean(
        {
            "key": key,
            "run_id": run_id,
            "task": task,
            "input_parameters": inputs.get("parameters") or {},
            "input_artifacts": input_artifacts,
            "output_parameters": task.get("parameters") or {},
            "outputs": outputs,
            "metrics": tracked.metrics if tracked else {},
            "series": sorted(tracked.series) if tracked else [],
            "tracked_run": tracked.run_id if tracked else None,
            "log": store.task_log(run_id, key),
        }
    )


PREVIEW_KINDS = {
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".gif": "image",
    ".webp": "image",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".csv": "table",
    ".json": "json",
    ".txt": "text",
    ".log": "text",
}
MAX_LISTED_FILES = 40


def preview_kind(path: Path) -> str:
    """How a file is previewed: by its extension, else by its first bytes (KFP names an HTML or Markdown
    artifact's file after the output, without an extension)."""
    kind = PREVIEW_KINDS.get(path.suffix.lower())
    if kind or path.suffix:
        return kind or "file"
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return "file"
    text = head.lstrip().lower()
    if head.startswith(b"\x89PNG"):
        return "image"
    if text.startswith((b"<!doctype html", b"<html")):
        return "html"
    if text.startswith(b"#"):
        return "markdown"
    if text.startswith((b"{", b"[")):
        return "json"
    return "file"


def artifact_files(store: Store, uri: str) -> list[dict[str, str]]:
    """The previewable files of an artifact (itself, or up to 40 files of its directory) with their kinds."""
    if "://" in uri:
        return []
    try:
        path = store.inside_root(uri)
    except NotFound:
        return []
    if path.is_file():
        return [{"path": "", "name": path.name, "kind": preview_kind(path)}]
    files = []
    for child in sorted(path.rglob("*"))[: MAX_LISTED_FILES * 4]:
        if child.is_file() and not child.name.startswith("."):
            rel = str(child.relative_to(path))
            files.append({"path": rel, "name": rel, "kind": preview_kind(child)})
        if len(files) >= MAX_LISTED_FILES:
            break
    return files


def run_curves(store: Store, run_id: str) -> list[curves_module.Curve]:
    """A run's learning curves: its own series, else its tasks' series, else their history artifacts."""
    record = store.record(run_id)
    found = curves_module.series_curves(record)
    if found:
        return found
    document = store.run_json(run_id) or {}
    tasks = document.get("tasks") or {}
    for child in store.children(run_id):
        key = child.run_id.removeprefix(f"{run_id}/")
        for curve in curves_module.series_curves(child, key, (tasks.get(key) or {}).get("runtime_s")):
            curve.run_id = run_id  # grouped (and coloured) under the run being compared
            found.append(curve)
    if found:
        return found
    for key, task in sorted(tasks.items()):
        for uri in (task.get("artifacts") or {}).get(curves_module.HISTORY_ARTIFACT, []):
            with contextlib.suppress(NotFound):
                path = store.inside_root(uri)
                found += curves_module.history_curves(run_id, key, path, task.get("runtime_s"))
    return found
