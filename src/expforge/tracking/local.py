"""The embedded tracking backend: a SQLite run-manifest database in the run root.

Why SQLite: it needs no server, survives crashes (every call is a committed transaction) and is safe with
several writers — the local runner's tasks run in parallel, as processes or containers sharing the file. WAL
mode lets readers proceed while a writer commits; ``BEGIN IMMEDIATE`` plus a long busy timeout serialises the
writers instead of failing them with "database is locked".

Tables: ``runs`` (one row per run; list/dict fields are JSON text) and ``metric_points`` (the per-epoch
series, one row per run, metric and step; re-logging a point replaces it). Final metrics live in
``runs.metrics``; ``run_metrics``, kept by triggers, holds each run's metric values for searches (see
:mod:`expforge.tracking.local_search`).
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.tracking.base import (
    RunFilter,
    RunRecord,
    RunStart,
    check_state,
    check_step,
    json_safe,
    merge_tags,
    metric_value,
    now_iso,
)
from expforge.tracking.local_search import count_sql, ensure_metric_table, order_sql, register_functions, where_sql
from expforge.tracking.queries import RunQuery, SearchResult

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000

# Columns of ``runs`` holding JSON text, and their empty value.
_JSON_COLUMNS: dict[str, Any] = {
    "command": [],
    "pip_freeze": [],
    "device": {},
    "datasets": [],
    "image_digests": {},
    "params": {},
    "tags": {},
    "metrics": {},
    "artifacts": {},
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    pipeline TEXT NOT NULL DEFAULT '',
    step TEXT NOT NULL DEFAULT '',
    parent_run_id TEXT,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    updated_at TEXT NOT NULL,
    command TEXT NOT NULL DEFAULT '[]',
    git_commit TEXT,
    git_branch TEXT,
    git_dirty INTEGER,
    git_diff TEXT,
    python TEXT NOT NULL DEFAULT '',
    pip_freeze TEXT NOT NULL DEFAULT '[]',
    device TEXT NOT NULL DEFAULT '{}',
    datasets TEXT NOT NULL DEFAULT '[]',
    image_digests TEXT NOT NULL DEFAULT '{}',
    params TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    artifacts TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '{}',
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id);
CREATE INDEX IF NOT EXISTS runs_listing ON runs (started_at DESC, run_id);
CREATE INDEX IF NOT EXISTS runs_tree ON runs (parent_run_id, state, started_at DESC, run_id);
CREATE TABLE IF NOT EXISTS metric_points (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    step INTEGER NOT NULL,
    value REAL,
    logged_at TEXT NOT NULL,
    PRIMARY KEY (run_id, key, step)
);
"""

_START_COLUMNS = [f.name for f in fields(RunStart)]


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _float_or_nan(value: float | str | None) -> float:
    # SQLite stores NaN as NULL; the only way a point's value is NULL is that it was NaN.
    return math.nan if value is None else float(value)


class LocalTracker:
    """:class:`~expforge.tracking.base.Tracker` over one SQLite file (created on first use)."""

    backend = "local"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExpforgeError(f"EXPFORGE_TRACKING_DB: cannot create {self.path.parent} ({exc.strerror})") from exc
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            register_functions(self._db)
            with self._transaction() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise ExpforgeError(
                        f"{self.path}: tracking database schema {version} is newer than this expforge "
                        f"understands ({SCHEMA_VERSION}); upgrade expforge"
                    )
                # Statement by statement: executescript would commit the transaction we are in.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                ensure_metric_table(db)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise ExpforgeError(f"{self.path}: not a usable SQLite tracking database ({exc})") from exc

    # -- plumbing ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no deadlock-prone lock upgrades)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _require_run(self, db: sqlite3.Connection, run_id: str) -> None:
        """An error naming the run when it was never started."""
        if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise ExpforgeError(f"run {run_id!r} is not in {self.path} (start_run first)")

    def _merge_json(self, run_id: str, column: str, update: Mapping[str, Any]) -> None:
        """Shallow-merge ``update`` into a JSON column inside one write transaction (read, update, write).

        Not SQLite's ``json_patch``: RFC 7396 treats ``null`` as "delete the key", which would drop a ``None``
        parameter.
        """
        with self._transaction() as db:
            row = db.execute(f"SELECT {column} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise ExpforgeError(f"run {run_id!r} is not in {self.path} (start_run first)")
            merged = {**json.loads(row[0] or "{}"), **json_safe(dict(update))}
            db.execute(
                f"UPDATE runs SET {column} = ?, updated_at = ? WHERE run_id = ?", (_dumps(merged), now_iso(), run_id)
            )

    # -- Tracker -----------------------------------------------------------------------------------------

    def start_run(self, run: RunStart) -> None:
        """Insert the run; starting an existing run again (a retried task) refreshes its provenance, sets it
        RUNNING and keeps what it already logged (its params and tags are merged with the new ones)."""
        values = {name: getattr(run, name) for name in _START_COLUMNS}
        values["git_dirty"] = None if run.git_dirty is None else int(run.git_dirty)
        with self._transaction() as db:
            old = db.execute("SELECT params, tags FROM runs WHERE run_id = ?", (run.run_id,)).fetchone()
            if old is not None:
                values["params"] = {**json.loads(old[0] or "{}"), **run.params}
                values["tags"] = {**json.loads(old[1] or "{}"), **run.tags}
            for name in _JSON_COLUMNS:
                if name in values:
                    values[name] = _dumps(values[name])
            columns = [*values, "state", "updated_at"]
            updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "run_id")
            db.execute(
                f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
                f"ON CONFLICT (run_id) DO UPDATE SET {updates}, ended_at = NULL",
                [*values.values(), "RUNNING", now_iso()],
            )

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Merge ``params`` into the run's parameters."""
        self._merge_json(run_id, "params", params)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Final metrics (``step=None``) into ``runs.metrics``; a step's points into ``metric_points``."""
        values = {key: metric_value(key, value) for key, value in metrics.items()}
        step = check_step(step)
        if not values:
            return
        if step is None:
            # JSON has no NaN/Infinity: such values are kept as the strings float() reads back.
            self._merge_json(run_id, "metrics", {k: v if math.isfinite(v) else str(v) for k, v in values.items()})
            return
        logged_at = now_iso()
        with self._transaction() as db:
            self._require_run(db, run_id)
            db.executemany(
                "INSERT INTO metric_points (run_id, key, step, value, logged_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, key, step) DO UPDATE SET value = excluded.value, logged_at = excluded.logged_at",
                [(run_id, key, step, value, logged_at) for key, value in values.items()],
            )
            db.execute("UPDATE runs SET updated_at = ? WHERE run_id = ?", (logged_at, run_id))

    def log_artifacts(self, run_id: str, artifacts: Mapping[str, str]) -> None:
        """Merge name → URI into ``runs.artifacts``."""
        self._merge_json(run_id, "artifacts", {str(k): str(v) for k, v in artifacts.items()})

    def end_run(self, run_id: str, state: str = "SUCCEEDED") -> None:
        """Record the final state and the end time."""
        check_state(state)
        moment = now_iso()
        with self._transaction() as db:
            self._require_run(db, run_id)
            db.execute(
                "UPDATE runs SET state = ?, ended_at = ?, updated_at = ? WHERE run_id = ?",
                (state, moment, moment, run_id),
            )

    def _record(self, row: sqlite3.Row, points: list[tuple[str, int, float | None]]) -> RunRecord:
        data = dict(row)
        for name, empty in _JSON_COLUMNS.items():
            data[name] = json.loads(data[name]) if data.get(name) else empty
        data["metrics"] = {k: _float_or_nan(v) for k, v in data["metrics"].items()}
        data["git_dirty"] = None if data["git_dirty"] is None else bool(data["git_dirty"])
        series: dict[str, list[tuple[int, float]]] = {}
        for key, step, value in points:
            series.setdefault(key, []).append((int(step), _float_or_nan(value)))
        data["series"] = series
        return RunRecord.from_dict(data)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction, so runs and their points are a consistent snapshot."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _fetch(self, where: str = "", args: Sequence[Any] = (), *, ordered: bool = True) -> list[RunRecord]:
        """Runs selected by ``where`` with their points, newest first unless not ``ordered`` (inside
        :meth:`_snapshot`)."""
        order = "ORDER BY started_at DESC, run_id" if ordered else ""
        self._db.row_factory = sqlite3.Row
        try:
            rows = self._db.execute(f"SELECT * FROM runs {where} {order}", args).fetchall()
            ids = [row["run_id"] for row in rows]
            points: dict[str, list[tuple[str, int, float | None]]] = {i: [] for i in ids}
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                for run_id, key, step, value in self._db.execute(
                    f"SELECT run_id, key, step, value FROM metric_points WHERE run_id IN "
                    f"({', '.join('?' for _ in part)}) ORDER BY run_id, key, step",
                    part,
                ):
                    points[run_id].append((key, step, value))
        finally:
            self._db.row_factory = None
        return [self._record(row, points[row["run_id"]]) for row in rows]

    def _read(self, where: str = "", args: tuple[Any, ...] = ()) -> list[RunRecord]:
        with self._snapshot():
            return self._fetch(where, args)

    def get_run(self, run_id: str) -> RunRecord:
        """The run ``run_id`` with its series."""
        found = self._read("WHERE run_id = ?", (run_id,))
        if not found:
            raise ExpforgeError(f"run {run_id!r} not found in {self.path}")
        return found[0]

    def list_runs(self, run_filter: RunFilter | None = None) -> list[RunRecord]:
        """Runs matching ``run_filter``, newest first (time bounds are applied in SQL, the rest in Python)."""
        run_filter = run_filter or RunFilter()
        clauses, args = [], []
        if run_filter.experiment:
            clauses.append("experiment = ?")
            args.append(run_filter.experiment)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        runs = [r for r in self._read(where, tuple(args)) if run_filter.matches(r)]
        return runs[: run_filter.limit] if run_filter.limit else runs

    def search(self, query: RunQuery) -> SearchResult:
        """:func:`~expforge.tracking.queries.search` over :meth:`list_runs`, answered in SQL: only the page's
        runs are decoded (see :mod:`expforge.tracking.local_search`)."""
        with self._snapshot():
            total, ids = self._search_ids(query)
            found = {r.run_id: r for r in self._fetch_ids(ids)}
        return SearchResult(total, query.offset, [found[i] for i in ids])

    def search_ids(self, query: RunQuery) -> tuple[int, list[str]]:
        """How many runs ``query`` matches, and the run ids of its page in order (nothing decoded)."""
        with self._snapshot():
            return self._search_ids(query)

    def get_runs(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """The runs of ``run_ids`` that exist, with their series, in no particular order."""
        with self._snapshot():
            return self._fetch_ids(list(run_ids))

    def _search_ids(self, query: RunQuery) -> tuple[int, list[str]]:
        where, args = where_sql(query)
        order, order_args = order_sql(query)
        count, count_args = count_sql(query)
        total = self._db.execute(count, count_args).fetchone()[0]
        if query.offset >= total:
            return total, []  # a page past the last match: no need to walk the runs in order
        paging = [-1 if query.limit is None else query.limit, query.offset]
        sql = f"SELECT runs.run_id FROM runs {where} {order} LIMIT ? OFFSET ?"
        return total, [row[0] for row in self._db.execute(sql, [*args, *order_args, *paging])]

    def _fetch_ids(self, ids: list[str]) -> list[RunRecord]:
        found = []
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            # Unordered, so the primary key finds the page's rows (ordered, SQLite walks the listing index).
            found += self._fetch(f"WHERE run_id IN ({', '.join('?' for _ in part)})", part, ordered=False)
        return found

    def set_tags(self, run_id: str, tags: Mapping[str, str], note: str | None = None) -> RunRecord:
        """Merge tags (empty value removes one) and replace the note when given."""
        with self._transaction() as db:
            row = db.execute("SELECT tags FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise ExpforgeError(f"run {run_id!r} not found in {self.path}")
            merged = merge_tags(json.loads(row[0] or "{}"), tags)
            db.execute("UPDATE runs SET tags = ?, updated_at = ? WHERE run_id = ?", (_dumps(merged), now_iso(), run_id))
            if note is not None:
                db.execute("UPDATE runs SET note = ? WHERE run_id = ?", (note, run_id))
        return self.get_run(run_id)

    def flush(self) -> None:
        """Nothing is buffered: every call above is a committed transaction."""

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock, contextlib.suppress(sqlite3.ProgrammingError):
            self._db.close()

    def __enter__(self) -> LocalTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
