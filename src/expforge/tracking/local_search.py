"""A :class:`~expforge.tracking.queries.RunQuery` answered in SQL by the local SQLite tracking database.

Why: ``GET /api/runs`` and the Runs page ask filtered, sorted, paged questions of ten thousand runs. Answered in
Python, every run must first be read and decoded (seconds, on the first request and after every write); here
SQLite filters, sorts and pages the rows where they lie, a metric range or a metric sort is a lookup in the
``run_metrics`` index, and only the page's rows are decoded.

The answer must be exactly :func:`~expforge.tracking.queries.search` over ``list_runs()`` (the tests compare the
two). Where SQL alone would differ from Python — a parameter compared as Python text (floats, lists), a
case-insensitive note search beyond ASCII, a start time not in the canonical format, a JSON column holding
``NaN`` that SQLite's JSON functions refuse — the row is handed to a small Python function registered on the
connection (:func:`register_functions`), so the common rows stay in SQL and the odd ones still answer right.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, replace
from typing import Any

from expforge.errors import ExpforgeError
from expforge.tracking.base import RunFilter, parse_time
from expforge.tracking.queries import SORT_FIELDS, RunQuery, duration_s, param_text

# ``now_iso``'s format: rows in it compare as text in time order; any other form goes through parse_time.
_CANONICAL_TIME = (
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z"
)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_PLAIN_COLUMNS = ("started_at", "ended_at", "state", "pipeline", "experiment", "run_id")
_COMPARE = {">=": ">=", "<=": "<=", ">": ">", "<": "<", "==": "=", "!=": "!="}


# -- Python functions for the rows SQL cannot answer exactly --------------------------------------------------


def _loads(text: str | None) -> Any:
    """A JSON column as ``LocalTracker`` decodes it (an empty column is empty)."""
    return json.loads(text) if text else None


def _param_of(params: str | None, key: str) -> str | None:
    values = _loads(params) or {}
    return param_text(values[key]) if key in values else None


def _get(document: str | None, key: str) -> Any:
    return (_loads(document) or {}).get(key)


def _in_dataset(datasets: str | None, needle: str) -> bool:
    return any(needle in d for d in _loads(datasets) or [])


def _note_has(note: str | None, needle_lower: str) -> bool:
    return needle_lower in (note or "").lower()


def _time(text: str) -> str:
    return parse_time(text).strftime(_TIME_FORMAT)


def _duration(started_at: str, ended_at: str | None) -> float | None:
    from expforge.tracking.base import RunRecord

    return duration_s(RunRecord(run_id="-", started_at=started_at, ended_at=ended_at))


def register_functions(db: sqlite3.Connection) -> None:
    """Make the ``ef_*`` functions the generated SQL calls available on ``db``."""
    functions: dict[str, tuple[int, Any]] = {
        "ef_param": (2, _param_of),
        "ef_get": (2, _get),
        "ef_in_dataset": (2, _in_dataset),
        "ef_note_has": (2, _note_has),
        "ef_time": (1, _time),
        "ef_duration": (2, _duration),
    }
    for name, (arity, function) in functions.items():
        db.create_function(name, arity, function, deterministic=True)


# -- the metric table ------------------------------------------------------------------------------------------

# ``run_metrics`` holds, per run and metric, what :meth:`RunRecord.metric` answers (the final value, else the
# last series point; NULL for NaN), so a metric range or a metric sort is an index lookup instead of decoding
# every run's JSON. Triggers keep it current on every write, whichever expforge version writes; a database made
# before the table existed is filled once when it is opened.
_SAFE_METRICS = "(CASE WHEN json_valid({m}) AND json_type({m}) = 'object' THEN {m} ELSE '{{}}' END)"
_FINAL_VALUE = (
    "CASE j.type WHEN 'integer' THEN j.value WHEN 'real' THEN j.value WHEN 'true' THEN 1.0 WHEN 'false' THEN 0.0 "
    "WHEN 'text' THEN CASE lower(j.value) WHEN 'inf' THEN 9e999 WHEN '+inf' THEN 9e999 WHEN 'infinity' THEN 9e999 "
    "WHEN '-inf' THEN -9e999 WHEN '-infinity' THEN -9e999 ELSE NULL END ELSE NULL END"
)
_LAST_POINT = (
    "(SELECT q.value FROM metric_points q WHERE q.run_id = {run} AND q.key = {key} ORDER BY q.step DESC LIMIT 1)"
)


def _refill_run(run: str, metrics: str) -> str:
    """Statements that rebuild ``run``'s rows from its final metrics and its series."""
    safe = _SAFE_METRICS.format(m=metrics)
    last = _LAST_POINT.format(run=run, key="p.key")
    return (
        f"DELETE FROM run_metrics WHERE run_id = {run}; "
        f"INSERT INTO run_metrics (run_id, key, value) SELECT {run}, j.key, {_FINAL_VALUE} FROM json_each({safe}) j; "
        f"INSERT INTO run_metrics (run_id, key, value) SELECT {run}, p.key, {last} "
        f"FROM (SELECT DISTINCT key FROM metric_points WHERE run_id = {run}) p "
        f"WHERE p.key NOT IN (SELECT key FROM json_each({safe}));"
    )


_NOT_FINAL = (
    "NOT EXISTS (SELECT 1 FROM runs r, json_each("
    + _SAFE_METRICS.format(m="r.metrics")
    + ") j WHERE r.run_id = NEW.run_id AND j.key = NEW.key)"
)
# DELETE then INSERT, not INSERT OR REPLACE: inside a trigger the outer statement's conflict policy (the UPSERT
# of a re-logged point aborts) would replace the trigger's own.
_POINT_CHANGED = (
    f"DELETE FROM run_metrics WHERE run_id = NEW.run_id AND key = NEW.key AND {_NOT_FINAL}; "
    "INSERT INTO run_metrics (run_id, key, value) "
    f"SELECT NEW.run_id, NEW.key, {_LAST_POINT.format(run='NEW.run_id', key='NEW.key')} "
    f"WHERE EXISTS (SELECT 1 FROM runs r WHERE r.run_id = NEW.run_id) AND {_NOT_FINAL};"
)

METRIC_TABLE = [
    "CREATE TABLE IF NOT EXISTS run_metrics (run_id TEXT NOT NULL, key TEXT NOT NULL, value REAL, "
    "PRIMARY KEY (run_id, key)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS run_metrics_value ON run_metrics (key, value)",
    "CREATE TRIGGER IF NOT EXISTS run_metrics_run_added AFTER INSERT ON runs BEGIN "
    + _refill_run("NEW.run_id", "NEW.metrics")
    + " END",
    "CREATE TRIGGER IF NOT EXISTS run_metrics_final AFTER UPDATE OF metrics ON runs BEGIN "
    + _refill_run("NEW.run_id", "NEW.metrics")
    + " END",
    "CREATE TRIGGER IF NOT EXISTS run_metrics_run_gone AFTER DELETE ON runs BEGIN "
    "DELETE FROM run_metrics WHERE run_id = OLD.run_id; END",
    f"CREATE TRIGGER IF NOT EXISTS run_metrics_point_added AFTER INSERT ON metric_points BEGIN {_POINT_CHANGED} END",
    f"CREATE TRIGGER IF NOT EXISTS run_metrics_point_changed AFTER UPDATE ON metric_points BEGIN {_POINT_CHANGED} END",
    "CREATE TRIGGER IF NOT EXISTS run_metrics_point_gone AFTER DELETE ON metric_points BEGIN "
    + _POINT_CHANGED.replace("NEW.", "OLD.")
    + " END",
]


def ensure_metric_table(db: sqlite3.Connection) -> None:
    """Create ``run_metrics`` and its triggers when missing, filling it from the runs already stored (call inside
    a write transaction)."""
    existed = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'run_metrics'").fetchone()
    for statement in METRIC_TABLE:
        db.execute(statement)
    if existed is None:
        safe = _SAFE_METRICS.format(m="r.metrics")
        db.execute(
            f"INSERT INTO run_metrics (run_id, key, value) SELECT r.run_id, j.key, {_FINAL_VALUE} "
            f"FROM runs r, json_each({safe}) j"
        )
        last = _LAST_POINT.format(run="p.run_id", key="p.key")
        db.execute(
            f"INSERT OR IGNORE INTO run_metrics (run_id, key, value) SELECT p.run_id, p.key, {last} "
            "FROM (SELECT DISTINCT run_id, key FROM metric_points) p WHERE p.run_id IN (SELECT run_id FROM runs)"
        )


# -- SQL ------------------------------------------------------------------------------------------------------


def _path(key: str) -> str | None:
    """The JSON path of a top-level ``key``, or ``None`` when the key cannot be quoted in one."""
    if '"' in key or "\\" in key:
        return None
    return f'$."{key}"'


@dataclass
class _Sql:
    """A growing ``WHERE`` clause and its arguments."""

    clauses: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, clause: str, *args: Any) -> None:
        self.clauses.append(clause)
        self.args.extend(args)

    @property
    def where(self) -> str:
        return f"WHERE {' AND '.join(self.clauses)}" if self.clauses else ""


def metric_sql(key: str) -> tuple[str, list[Any]]:
    """SQL for :meth:`RunRecord.metric` of ``key`` (``NULL`` for NaN or missing), from ``run_metrics``."""
    return "(SELECT m.value FROM run_metrics m WHERE m.run_id = runs.run_id AND m.key = ?)", [key]


def _param_sql(key: str) -> tuple[str, list[Any]]:
    """SQL for a parameter's value as :func:`param_text` writes it (``NULL`` when the run lacks it)."""
    path = _path(key)
    if path is None:
        return "ef_param(runs.params, ?)", [key]
    kind = "json_type(runs.params, ?)"
    value = "json_extract(runs.params, ?)"
    sql = (
        "(CASE WHEN NOT json_valid(runs.params) THEN ef_param(runs.params, ?) "
        f"WHEN {kind} IS NULL THEN NULL "
        f"WHEN {kind} = 'text' THEN {value} "
        f"WHEN {kind} = 'integer' AND typeof({value}) = 'integer' THEN CAST({value} AS TEXT) "
        f"WHEN {kind} = 'true' THEN 'true' WHEN {kind} = 'false' THEN 'false' WHEN {kind} = 'null' THEN 'None' "
        "ELSE ef_param(runs.params, ?) END)"
    )
    return sql, [key, path, path, path, path, path, path, path, path, path, key]


def _text_sql(column: str, key: str) -> tuple[str, list[Any]]:
    """SQL for the value of ``key`` in a JSON object column (``NULL`` when absent)."""
    path = _path(key)
    if path is None:
        return f"ef_get(runs.{column}, ?)", [key]
    return (
        f"(CASE WHEN json_valid(runs.{column}) THEN json_extract(runs.{column}, ?) ELSE ef_get(runs.{column}, ?) END)",
        [
            path,
            key,
        ],
    )


def _started_sql() -> str:
    return (
        f"(CASE WHEN runs.started_at GLOB '{_CANONICAL_TIME}' THEN runs.started_at ELSE ef_time(runs.started_at) END)"
    )


def _filter_sql(sql: _Sql, run_filter: RunFilter) -> None:
    if run_filter.dataset:
        sql.add(
            "(CASE WHEN json_valid(runs.datasets) AND json_type(runs.datasets) = 'array' THEN "
            "EXISTS (SELECT 1 FROM json_each(runs.datasets) d WHERE instr(d.value, ?) > 0) "
            "ELSE ef_in_dataset(runs.datasets, ?) END)",
            run_filter.dataset,
            run_filter.dataset,
        )
    if run_filter.since:
        sql.add(f"{_started_sql()} >= ?", run_filter.since.strftime(_TIME_FORMAT))
    if run_filter.until:
        sql.add(f"{_started_sql()} < ?", run_filter.until.strftime(_TIME_FORMAT))
    if run_filter.note_contains:
        sql.add("ef_note_has(runs.note, ?)", run_filter.note_contains.lower())
    if run_filter.experiment:
        sql.add("runs.experiment = ?", run_filter.experiment)
    if run_filter.pipeline:
        sql.add("runs.pipeline = ?", run_filter.pipeline)
    for key, wanted in run_filter.tags:
        text, args = _text_sql("tags", key)
        sql.add(f"{text} = ?", *args, wanted)
    for condition in run_filter.metrics:
        sql.add(
            "EXISTS (SELECT 1 FROM run_metrics m WHERE m.run_id = runs.run_id AND m.key = ? AND "
            f"m.value IS NOT NULL AND m.value {_COMPARE[condition.op]} ?)",
            condition.key,
            condition.value,
        )


def _metric_range(query: RunQuery) -> tuple[str, list[Any]]:
    """``run_metrics`` rows within the query's metric bounds: a ``WHERE`` clause over ``m`` and its arguments."""
    bounds = [("m.value >= ?", query.metric_min), ("m.value <= ?", query.metric_max)]
    chosen = [(clause, bound) for clause, bound in bounds if bound is not None]
    clause = " AND ".join(["m.key = ?", "m.value IS NOT NULL", *(c for c, _ in chosen)])
    return clause, [query.metric, *(bound for _, bound in chosen)]


def count_sql(query: RunQuery) -> tuple[str, list[Any]]:
    """``SELECT COUNT(*)`` of the runs ``query`` matches; a metric range alone is counted in its index."""
    only_range = replace(query, metric=None, metric_min=None, metric_max=None, sort="started_at", offset=0)
    if query.metric and not where_sql(only_range)[0] and (query.metric_min, query.metric_max) != (None, None):
        clause, args = _metric_range(query)
        return f"SELECT COUNT(*) FROM run_metrics m WHERE {clause}", args
    where, args = where_sql(query)
    return f"SELECT COUNT(*) FROM runs {where}", args


def where_sql(query: RunQuery) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause selecting the runs ``query`` matches (``run_filter.limit`` is not applied: a
    search pages with ``offset``/``limit``), and its arguments."""
    sql = _Sql()
    if query.top_level:
        sql.add("(runs.parent_run_id IS NULL OR runs.parent_run_id = '')")
    if query.states:
        sql.add(f"runs.state IN ({', '.join('?' for _ in query.states)})", *query.states)
    for key, wanted in query.params:
        text, args = _param_sql(key)
        sql.add(f"{text} = ?", *args, wanted)
    if query.metric and (query.metric_min is not None or query.metric_max is not None):
        clause, args = _metric_range(query)
        # EXISTS, not IN (list): the listing order is walked and each run looked up by its key (twice as fast).
        sql.add(f"EXISTS (SELECT 1 FROM run_metrics m WHERE m.run_id = runs.run_id AND {clause})", *args)
    _filter_sql(sql, query.run_filter)
    return sql.where, sql.args


def order_sql(query: RunQuery) -> tuple[str, list[Any]]:
    """``ORDER BY`` of :func:`~expforge.tracking.queries.search`: the sort key with missing values last in both
    directions, ties in the listing order (newest first, then run id)."""
    listing = "runs.started_at DESC, runs.run_id ASC"
    if query.sort == "started_at" and query.descending:
        return f"ORDER BY {listing}", []
    args: list[Any] = []
    if query.sort in _PLAIN_COLUMNS:
        key = f"runs.{query.sort}"
    elif query.sort == "duration":
        key = "ef_duration(runs.started_at, runs.ended_at)"
    elif query.sort in SORT_FIELDS:
        raise ExpforgeError(f"sort: {query.sort!r} has no SQL form")  # a new SORT_FIELDS entry needs one here
    else:
        key, args = metric_sql(query.sort)
    direction = "DESC" if query.descending else "ASC"
    return f"ORDER BY {key} {direction} NULLS LAST, {listing}", args
