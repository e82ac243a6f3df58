"""What the dashboard reads: tracked runs (through the tracking query layer), each run's ``run.json``, task logs
and artifact files — and the one place that decides whether a file may be served.

Why a cache: run details, children and the Runs page's choices read many runs, and decoding ten thousand SQLite
rows takes far longer than looking through them. For the local backend the cache is keyed by SQLite's
``data_version``, so a write by a running pipeline is seen on the next request; for BigQuery it lives a few
seconds. ``GET /api/runs`` and the Runs page's table go through :meth:`Store.search` instead, which the local
backend answers in SQL (only the page's runs are decoded).

A remote backend is asked in a worker thread and waited on for at most ``REMOTE_TIMEOUT_S``: the BigQuery
client retries an unreachable endpoint for minutes, and a page must say "unreachable" long before that. While
one query is still out, later requests wait on it rather than starting another.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.tracking.base import RunRecord, Tracker
from expforge.tracking.local import LocalTracker
from expforge.tracking.queries import RunQuery, SearchResult, search

TRACKING_DB = Path(".tracking") / "runs.sqlite"
REGISTRY_DIR = "registry"
RUN_JSON = "run.json"
REMOTE_CACHE_S = 5.0
REMOTE_TIMEOUT_S = 8.0


class NotFound(ExpforgeError):
    """A run, task or file the request named does not exist (or may not be served): HTTP 404."""


class Unavailable(ExpforgeError):
    """The tracking backend cannot be reached (e.g. BigQuery is down): a banner, not a traceback."""


@dataclass(frozen=True)
class ArtifactFile:
    """A file the server may send: its resolved path inside the root and the name it is shown by."""

    path: Path
    name: str


class Store:
    """Tracked runs, run records and artifacts under one runs root (``expforge run --root``)."""

    def __init__(self, root: Path | str, tracking: str = "local", env: dict[str, str] | None = None) -> None:
        self.root = Path(root).expanduser().absolute()
        self.real_root = self.root.resolve()
        self.tracking = tracking
        self.env = dict(os.environ if env is None else env)
        self._lock = threading.Lock()
        self._tracker: Tracker | None = None
        # (fingerprint, records newest first, records by run id)
        self._cache: tuple[Any, list[RunRecord], dict[str, RunRecord]] | None = None
        self._watch_lock = threading.Lock()
        self._warming: threading.Thread | None = None
        self._searcher: LocalTracker | None = None
        self._cached_at = 0.0
        self._pending: concurrent.futures.Future[list[RunRecord]] | None = None
        self._watch: sqlite3.Connection | None = None
        self.problem: str | None = None

    # -- tracking ------------------------------------------------------------------------------------------

    @property
    def db_path(self) -> Path:
        """The local SQLite tracking file the runner writes under the root."""
        return self.root / TRACKING_DB

    def _open(self) -> Tracker | None:
        from expforge.tracking.select import TrackingConfig, open_tracker

        if self._tracker is not None:
            return self._tracker
        if self.tracking == "local":
            if not self.db_path.is_file():
                return None
            config = TrackingConfig.from_env(self.env, backend="local", db=self.db_path)
        else:
            config = TrackingConfig.from_env(self.env, backend="gcp")
        try:
            self._tracker = open_tracker(config, timeout_s=10.0) if self.tracking == "gcp" else open_tracker(config)
            if isinstance(self._tracker, LocalTracker):
                # A connection of its own for searches: a cache refill holds the other one for seconds.
                # Opened with it, before the first fingerprint, so its schema check is no change either.
                self._searcher = LocalTracker(self.db_path)
        except Exception as exc:  # noqa: BLE001 - any client failure becomes the banner
            raise Unavailable(f"{self.tracking} tracking: {_first_line(exc)}") from exc
        return self._tracker

    def _fingerprint(self) -> Any:
        """Changes whenever any connection commits to the local database (SQLite's ``data_version`` on a
        connection of our own, which costs microseconds); ``None`` means "ask again after a while"."""
        if self.tracking != "local":
            return None
        try:
            with self._watch_lock:
                if self._watch is None:
                    if not self.db_path.is_file():
                        return None
                    uri = f"file:{self.db_path}?mode=ro"
                    self._watch = sqlite3.connect(uri, uri=True, timeout=5, check_same_thread=False)
                return self._watch.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None

    def records(self) -> list[RunRecord]:
        """Every tracked run, newest first (cached; see the module docstring)."""
        with self._lock:
            if self.tracking == "local" and self._tracker is None:
                # Opening the tracker may commit (schema check), which must not count as a change.
                with contextlib.suppress(Unavailable):
                    self._open()
            fingerprint = self._fingerprint()
            if self._cache is not None:
                fresh = (
                    self._cache[0] == fingerprint
                    if fingerprint is not None
                    else time.monotonic() - self._cached_at < REMOTE_CACHE_S
                )
                if fresh:
                    return self._cache[1]
            try:
                found = self._list() if self.tracking == "local" else self._list_remote()
            except Unavailable as exc:
                self.problem = str(exc)
                raise
            except Exception as exc:  # noqa: BLE001 - BigQuery/network errors: a banner on the page
                self.problem = f"{self.tracking} tracking: {_first_line(exc)}"
                raise Unavailable(self.problem) from exc
            self.problem = None
            self._cache = (fingerprint, found, {r.run_id: r for r in found})
            self._cached_at = time.monotonic()
            return found

    def search(self, query: RunQuery) -> SearchResult:
        """One page of the runs ``query`` selects. The local backend finds the page in SQL and only the page's
        runs are decoded (taken from the cache when it is current), so the first request does not wait for
        every run to be read; a remote backend's cached records are searched in Python."""
        if self.tracking != "local":
            return search(self.records(), query)
        if self._searcher is None:
            with self._lock:
                try:
                    self._open()
                except Unavailable as exc:
                    self.problem = str(exc)
                    raise
        tracker = self._searcher
        if tracker is None:
            return SearchResult(0, query.offset, [])
        cached = self._current_by_id()
        try:
            total, ids = tracker.search_ids(query)
            missing = [i for i in ids if i not in cached]
            fetched = {r.run_id: r for r in tracker.get_runs(missing)} if missing else {}
        except ExpforgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a database error: a banner on the page
            self.problem = f"{self.tracking} tracking: {_first_line(exc)}"
            raise Unavailable(self.problem) from exc
        self.problem = None
        runs = [cached.get(i) or fetched[i] for i in ids if i in cached or i in fetched]
        return SearchResult(total, query.offset, runs)

    def _current_by_id(self) -> dict[str, RunRecord]:
        """The cached records by run id when the cache is current, else ``{}`` — and the cache is then refilled
        in the background (one refill at a time), so later pages are served from it without waiting."""
        cache = self._cache
        if cache is not None and cache[0] == self._fingerprint():
            return cache[2]
        with self._watch_lock:
            if self._warming is None or not self._warming.is_alive():
                self._warming = threading.Thread(target=self._refill, daemon=True)
                self._warming.start()
        return {}

    def _refill(self) -> None:
        with contextlib.suppress(Exception):
            self.records()

    def _list(self) -> list[RunRecord]:
        tracker = self._open()
        return tracker.list_runs() if tracker is not None else []

    def _list_remote(self) -> list[RunRecord]:
        """:meth:`_list` in the worker thread, waited on for at most ``REMOTE_TIMEOUT_S``."""
        if self._pending is None:
            self._pending = concurrent.futures.Future()
            # A daemon thread, not an executor: a query stuck in retries must not keep the server from exiting.
            threading.Thread(target=_fill, args=(self._pending, self._list), daemon=True).start()
        try:
            found = self._pending.result(timeout=REMOTE_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            raise Unavailable(
                f"{self.tracking} tracking: no answer within {REMOTE_TIMEOUT_S:g} s (is BigQuery reachable?)"
            ) from None
        except BaseException:
            self._pending = None
            raise
        self._pending = None
        return found

    def record(self, run_id: str) -> RunRecord:
        """One run with its series; :class:`NotFound` when it is not tracked."""
        self.records()
        cache = self._cache
        found = cache[2].get(run_id) if cache is not None else None
        if found is not None:
            return found
        raise NotFound(f"run {run_id!r} not found")

    def children(self, run_id: str) -> list[RunRecord]:
        """The tracked task runs of a pipeline run, in task-key order."""
        return sorted((r for r in self.records() if r.parent_run_id == run_id), key=lambda r: r.run_id)

    def set_tags(self, run_id: str, tags: dict[str, str], note: str | None) -> RunRecord:
        """Merge tags and replace the note (when given) in one backend transaction, then drop the cache."""
        self.record(run_id)
        tracker = self._open()
        if tracker is None:
            raise NotFound(f"run {run_id!r} not found")
        with self._lock:
            try:
                updated = tracker.set_tags(run_id, tags, note)
            finally:
                self._cache = None
        return updated

    def close(self) -> None:
        """Release the backend's connections."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._tracker is not None and self._pending is None:
            self._tracker.close()
        self._tracker = None
        if self._searcher is not None:
            self._searcher.close()
        self._searcher = None

    # -- run.json ------------------------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        """``<root>/<run_id>`` for a pipeline run id (a plain directory name, never a path)."""
        if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", "..") or run_id.startswith("."):
            raise NotFound(f"run {run_id!r} has no run directory")
        return self.root / run_id

    def run_json(self, run_id: str) -> dict[str, Any] | None:
        """The runner's record of a pipeline run, or ``None`` when the run has none under this root."""
        try:
            path = self.run_dir(run_id) / RUN_JSON
        except NotFound:
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ExpforgeError(f"{path}: unreadable run record ({exc})") from exc

    def run_ids_on_disk(self) -> list[str]:
        """Run directories with a ``run.json`` (runs the tracking store may not know, e.g. tracking off)."""
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return []
        return sorted(
            (e.name for e in entries if not e.name.startswith(".") and (e / RUN_JSON).is_file()), reverse=True
        )

    # -- files ---------------------------------------------------------------------------------------------

    def inside_root(self, candidate: Path | str) -> Path:
        """``candidate`` resolved (symlinks followed); :class:`NotFound` unless it exists under the root."""
        try:
            resolved = Path(candidate).resolve(strict=True)
        except (OSError, RuntimeError):
            raise NotFound(f"{candidate}: no such file under the run root") from None
        if resolved != self.real_root and self.real_root not in resolved.parents:
            raise NotFound(f"{candidate}: outside the run root")
        return resolved

    def artifact_uri(self, run_id: str, name: str) -> str:
        """The URI of artifact ``name`` of a run: from tracking, else from ``run.json`` (cached tasks are not
        tracked again, and a pipeline run's artifacts are its outputs)."""
        with contextlib.suppress(NotFound, Unavailable):
            uri = self.record(run_id).artifacts.get(name)
            if uri:
                return uri
        pipeline_run, _, task_key = run_id.partition("/")
        document = self.run_json(pipeline_run) or {}
        if task_key:
            uris = (document.get("tasks", {}).get(task_key) or {}).get("artifacts", {}).get(name)
        else:
            uris = document.get("pipeline_outputs", {}).get(name)
        if isinstance(uris, list) and uris and isinstance(uris[0], str):
            return uris[0]
        raise NotFound(f"run {run_id!r} has no artifact {name!r}")

    def artifact_file(self, run_id: str, name: str, sub_path: str = "") -> ArtifactFile:
        """The file behind artifact ``name`` (or ``sub_path`` inside its directory), refused with
        :class:`NotFound` when it, or anything a symlink on the way points to, lies outside the root."""
        uri = self.artifact_uri(run_id, name)
        if "://" in uri:
            raise NotFound(f"artifact {name!r} is not a local file ({uri.split('://')[0]}://)")
        base = self.inside_root(uri)
        if not sub_path:
            if base.is_dir():
                raise NotFound(f"artifact {name!r} is a directory; name a file inside it")
            return ArtifactFile(base, base.name)
        parts = Path(sub_path).parts
        if Path(sub_path).is_absolute() or ".." in parts:
            raise NotFound(f"{sub_path}: outside artifact {name!r}")
        target = self.inside_root(base / sub_path)
        if base not in target.parents or not target.is_file():
            raise NotFound(f"{sub_path}: no such file in artifact {name!r}")
        return ArtifactFile(target, target.name)

    def task_log(self, run_id: str, task_key: str, limit: int = 200_000) -> str:
        """The tail of a task's log file (as ``run.json`` names it), or an empty string."""
        document = self.run_json(run_id) or {}
        task = document.get("tasks", {}).get(task_key)
        if task is None:
            raise NotFound(f"run {run_id!r} has no task {task_key!r}")
        log = task.get("log")
        if not log:
            return ""
        candidate = Path(log) if Path(log).is_absolute() else self.run_dir(run_id) / log
        try:
            path = self.inside_root(candidate)
        except NotFound:
            return ""
        with path.open("rb") as handle:
            size = path.stat().st_size
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", errors="replace")

    def registry_root(self) -> Path:
        """Where the local runner keeps the model registry for this root."""
        return self.root / REGISTRY_DIR


def _fill(future: concurrent.futures.Future[list[RunRecord]], work: Any) -> None:
    try:
        future.set_result(work())
    except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
        future.set_exception(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
