"""BigQuery rows of the tracking tables: the schemas (kept as JSON in the repo) and validation before sending.

Why validate here: a streaming insert that violates the schema fails on the server with an error that is hard
to tie back to the code that logged it (and the BigQuery stand-in answers such a row with a bare 500). Checking
each row against the same JSON schema the tables are created from gives one clear error naming the table, the
row and the field, before anything leaves the process.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from expforge.errors import ExpforgeError
from expforge.tracking.base import RunRecord, parse_time

TABLES = ("runs", "metric_points")
_SCALAR_TYPES = {"STRING", "INTEGER", "INT64", "FLOAT", "FLOAT64", "BOOLEAN", "BOOL", "TIMESTAMP", "JSON"}
_NON_FINITE = {"NaN", "Infinity", "-Infinity"}


@functools.cache
def table_schema(table: str) -> tuple[dict[str, str], ...]:
    """The schema of ``table`` as BigQuery's JSON schema format (``name``/``type``/``mode``/``description``)."""
    if table not in TABLES:
        raise ExpforgeError(f"BigQuery table {table!r}: expected one of {', '.join(TABLES)}")
    text = resources.files("expforge.tracking").joinpath("schemas", f"{table}.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    for entry in schema:
        mode = entry.get("mode", "NULLABLE")
        if entry["type"] not in _SCALAR_TYPES or mode not in ("NULLABLE", "REQUIRED", "REPEATED"):
            raise ExpforgeError(f"schemas/{table}.json: field {entry['name']!r} has an unsupported type or mode")
    return tuple(schema)


def _type_error(value: Any, kind: str) -> str | None:
    """Why ``value`` is not a valid JSON wire value of BigQuery type ``kind`` (None when it is)."""
    if kind == "STRING":
        return None if isinstance(value, str) else "expects a string"
    if kind in ("INTEGER", "INT64"):
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return None if ok else "expects an integer"
    if kind in ("FLOAT", "FLOAT64"):
        if isinstance(value, str):
            return None if value in _NON_FINITE else "expects a number"
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
        return None if ok else "expects a finite number (or 'NaN'/'Infinity')"
    if kind in ("BOOLEAN", "BOOL"):
        return None if isinstance(value, bool) else "expects true or false"
    if kind == "TIMESTAMP":
        if not isinstance(value, str):
            return "expects an ISO-8601 timestamp string"
        try:
            parse_time(value)
        except ExpforgeError:
            return "expects an ISO-8601 timestamp string"
        return None
    if kind == "JSON":
        if not isinstance(value, str):
            return "expects JSON text"
        try:
            json.loads(value)
        except ValueError:
            return "expects JSON text"
        return None
    return f"has unsupported type {kind}"


def validate_row(table: str, row: Mapping[str, Any], index: int = 0) -> None:
    """Raise one :class:`ExpforgeError` naming the table, row index and field if ``row`` violates the schema."""
    schema = {entry["name"]: entry for entry in table_schema(table)}
    where = f"BigQuery table {table}, row {index}"
    for name in row:
        if name not in schema:
            raise ExpforgeError(f"{where}: field {name!r} is not in schemas/{table}.json")
    for name, entry in schema.items():
        value = row.get(name)
        mode = entry.get("mode", "NULLABLE")
        if value is None:
            if mode == "REQUIRED":
                raise ExpforgeError(f"{where}: required field {name!r} is missing")
            continue
        if mode == "REPEATED":
            if not isinstance(value, list):
                raise ExpforgeError(f"{where}: field {name!r} ({entry['type']}, REPEATED) expects a list")
            for position, item in enumerate(value):
                problem = _type_error(item, entry["type"])
                if problem:
                    raise ExpforgeError(f"{where}: field {name!r}[{position}] {problem}, got {item!r}")
            continue
        problem = _type_error(value, entry["type"])
        if problem:
            shown = value if len(repr(value)) < 80 else f"{repr(value)[:77]}..."
            raise ExpforgeError(f"{where}: field {name!r} ({entry['type']}) {problem}, got {shown!r}")


def validate_rows(table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Validate every row (first violation raises)."""
    for index, row in enumerate(rows):
        validate_row(table, row, index)


def wire_float(value: float) -> float | str:
    """A float as BigQuery's JSON accepts it: non-finite values as ``'NaN'``/``'Infinity'``/``'-Infinity'``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _json_text(value: Any) -> str:
    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(value), sort_keys=True, default=str)


def run_row(record: RunRecord) -> dict[str, Any]:
    """The ``runs`` row of ``record`` (a snapshot; the newest ``updated_at`` per run wins)."""
    return {
        "run_id": record.run_id,
        "experiment": record.experiment,
        "pipeline": record.pipeline,
        "step": record.step,
        "parent_run_id": record.parent_run_id,
        "state": record.state,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "updated_at": record.updated_at,
        "command": list(record.command),
        "git_commit": record.git_commit,
        "git_branch": record.git_branch,
        "git_dirty": record.git_dirty,
        "git_diff": record.git_diff,
        "python": record.python,
        "pip_freeze": list(record.pip_freeze),
        "device": _json_text(record.device),
        "datasets": list(record.datasets),
        "image_digests": _json_text(record.image_digests),
        "params": _json_text(record.params),
        "metrics": _json_text(record.metrics),
        "artifacts": _json_text(record.artifacts),
        "tags": _json_text(record.tags),
        "note": record.note,
    }


def point_row(run_id: str, experiment: str, key: str, step: int | None, value: float, logged_at: str) -> dict[str, Any]:
    """One ``metric_points`` row (``step`` None = a final metric)."""
    return {
        "run_id": run_id,
        "experiment": experiment,
        "key": key,
        "step": step,
        "value": wire_float(value),
        "logged_at": logged_at,
    }


def record_from_row(row: Mapping[str, Any]) -> RunRecord:
    """A :class:`RunRecord` from a ``runs`` row read back from BigQuery (JSON columns as text or objects)."""
    from expforge.tracking.base import to_iso

    data = dict(row)
    for name in ("device", "image_digests", "params", "metrics", "artifacts", "tags"):
        value = data.get(name)
        data[name] = json.loads(value) if isinstance(value, str) else (value or {})
    data["metrics"] = {k: (math.nan if v is None else float(v)) for k, v in data["metrics"].items()}
    for name in ("started_at", "ended_at", "updated_at"):
        data[name] = to_iso(data.get(name))
    for name in ("command", "pip_freeze", "datasets"):
        data[name] = list(data.get(name) or [])
    for name in ("pipeline", "step", "python", "note"):
        data[name] = data.get(name) or ""
    return RunRecord.from_dict(data)
