"""The run record, ``<root>/<run-id>/run.json``: the machine-readable account of a run.

Shape (stable; tests and tools read it)::

    {"run_id": ..., "pipeline": ..., "state": "SUCCEEDED" | "FAILED" | "RUNNING" | "CANCELLED",
     "pipeline_outputs": {"<name>": <value> | ["<uri>", ...]},
     "tasks": {"<task-key>": {"state": ..., "attempts": n, "cached": bool,
                              "parameters": {...outputs...}, "artifacts": {"<name>": ["<uri>", ...]}, ...}},
     "warnings": [...], "error": ..., "backend": ..., "parameters": {...inputs...}, "started": ..., "finished": ...}

Task states: ``SUCCEEDED``, ``FAILED``, ``SKIPPED`` (condition false), ``UPSTREAM_FAILED`` (never ran because
something it depends on failed), ``CANCELLED`` (interrupted); ``PENDING``/``RUNNING`` while the run is live.
Besides the keys above a task carries ``artifact_metadata``, ``inputs``, ``log``, ``started``/``finished``,
``duration_s`` (wall time, including retries), ``runtime_s`` (time its process/container itself ran),
``error``, ``reason`` (why it did not run), ``cache_key`` and ``cached_from``.

Task keys: a task's name; ``.<i>`` per enclosing ``ParallelFor`` iteration (``train.0``, ``train.1``; nested
loops ``train.0.1``); ``<pipeline-task>/`` before tasks of a nested pipeline (``inner/add``, ``inner.2/add``).
Control-flow groups (``for-loop-2``, ``condition-3``, ``exit-handler-1``) do not appear in keys. The same key is
the task's directory under the run directory. The record is rewritten atomically on every state change, so a
crashed or interrupted run still leaves an accurate file behind.

The header's ``runner`` (pid, host, process start time) says who is writing the record: a record that says
``RUNNING`` while that process is gone is read as ``RUNNER_DIED`` (:func:`load_run_record`), and the next run
under the same root finalises it (see :mod:`.reaper`). When the record cannot be written (a full disk), the run
is stopped and ends ``FAILED`` with that reason; the final record is then written in place over the previous
one if a new file cannot be created (its blocks are already allocated), so it never stays ``RUNNING``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from expforge.timestamps import now_iso as now_iso  # (runner modules take it from here)


class TaskState(StrEnum):
    """Lifecycle of one task (``UPSTREAM_FAILED``: never ran because something it depends on failed)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    CANCELLED = "CANCELLED"


RUNNER_DIED = "RUNNER_DIED"
LIVE_STATES = ("RUNNING",)

TERMINAL = {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.SKIPPED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED}


def _process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22): with the pid, it
    identifies a process even after its pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    try:
        return int(text.rpartition(")")[2].split()[19])
    except (IndexError, ValueError):
        return None


def runner_identity() -> dict[str, Any]:
    """Who writes this record: pid, host and process start time."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start": _process_start(pid)}


def runner_alive(runner: Any) -> bool | None:
    """Whether the process a record names is still running: ``None`` when that cannot be told from here
    (another host, an older record without a runner)."""
    if not isinstance(runner, dict) or runner.get("host") != socket.gethostname():
        return None
    pid = runner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    start = _process_start(pid)
    if start is None:
        return False
    return runner.get("start") is None or start == runner.get("start")


def died_record(document: dict[str, Any]) -> dict[str, Any]:
    """The record of a run whose runner is gone: state ``RUNNER_DIED``, live tasks ``CANCELLED``."""
    result = dict(document)
    runner = document.get("runner") or {}
    result["state"] = RUNNER_DIED
    result.setdefault("error", f"the runner (pid {runner.get('pid')}) died before the run finished")
    tasks = {}
    for key, task in (document.get("tasks") or {}).items():
        task = dict(task)
        if task.get("state") in (TaskState.PENDING, TaskState.RUNNING):
            task["state"] = TaskState.CANCELLED.value
            task.setdefault("error", "the runner died")
        tasks[key] = task
    result["tasks"] = tasks
    return result


def load_run_record(path: Path) -> dict[str, Any]:
    """``run.json`` as it should be read: a ``RUNNING`` record whose runner process is gone is returned as
    ``RUNNER_DIED`` (see :func:`died_record`). Raises ``OSError``/``ValueError`` for an unreadable file."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    if document.get("state") in LIVE_STATES and runner_alive(document.get("runner")) is False:
        return died_record(document)
    return document


@dataclass
class TaskRecord:
    """Everything ``run.json`` says about one task."""

    state: TaskState = TaskState.PENDING
    attempts: int = 0
    cached: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, list[str]] = field(default_factory=dict)
    artifact_metadata: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    task_name: str = ""
    component: str = ""
    iteration: list[int] = field(default_factory=list)
    kind: str = "container"
    log: str | None = None
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    runtime_s: float | None = None
    error: str | None = None
    reason: str | None = None
    cache_key: str | None = None
    cached_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form; empty optional fields are dropped to keep the record readable."""
        data = asdict(self)
        data["state"] = self.state.value
        return {k: v for k, v in data.items() if v is not None and not (k in ("iteration", "inputs") and not v)}


class RunJournal:
    """Thread-safe owner of ``run.json``: task threads update it, every update is persisted atomically.

    (Named a journal, not a record: :class:`expforge.tracking.base.RunRecord` is the tracked run.)"""

    def __init__(self, path: Path, header: dict[str, Any], on_write_error: Callable[[str], None] | None = None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._header = dict(header)
        self._header.setdefault("started", now_iso())
        self._header.setdefault("runner", runner_identity())
        # Called once, with a one-line reason, when the record can no longer be written (the run stops).
        self.on_write_error = on_write_error
        self.write_error: str | None = None
        self.state = "RUNNING"
        self.pipeline_outputs: dict[str, Any] = {}
        self.error: str | None = None
        self.tasks: dict[str, TaskRecord] = {}

    def task(self, key: str) -> TaskRecord:
        """The record of ``key``, created on first use."""
        with self._lock:
            return self.tasks.setdefault(key, TaskRecord())

    def update(self, key: str, **fields: Any) -> TaskRecord:
        """Set fields of one task and persist the record."""
        with self._lock:
            record = self.tasks.setdefault(key, TaskRecord())
            for name, value in fields.items():
                setattr(record, name, value)
            self.write()
            return record

    def set_header(self, name: str, value: Any) -> None:
        """Set a run-level field (e.g. ``warnings``); persisted with the next write."""
        with self._lock:
            self._header[name] = value

    def finish(self, state: str, pipeline_outputs: dict[str, Any], error: str | None) -> None:
        """Final state of the run; written immediately."""
        with self._lock:
            # A finished run has no live tasks: anything still PENDING/RUNNING was cut short by the run's end.
            leftover = TaskState.CANCELLED if state == "CANCELLED" else TaskState.FAILED
            for task in self.tasks.values():
                if task.state not in TERMINAL:
                    task.state = leftover
            if self.write_error:
                state, pipeline_outputs, error = "FAILED", {}, self.write_error
                for task in self.tasks.values():
                    if task.state == TaskState.CANCELLED and task.error == "cancelled":
                        task.error = "cancelled: the run record could not be written"
            self.state = state
            self.pipeline_outputs = pipeline_outputs
            self.error = error
            self._header["finished"] = now_iso()
            self.write(final=True)

    def to_json(self) -> dict[str, Any]:
        """The document written to ``run.json``."""
        with self._lock:
            data: dict[str, Any] = {**self._header, "state": self.state, "pipeline_outputs": self.pipeline_outputs}
            if self.error:
                data["error"] = self.error
            data["tasks"] = {key: self.tasks[key].to_json() for key in sorted(self.tasks)}
            return data

    def write(self, *, final: bool = False) -> None:
        """Persist atomically (temporary file beside the target, flushed, then renamed; a failed write removes
        its temporary file). Never raises: the first failure is reported through ``on_write_error``, and the
        final write falls back to overwriting the previous record in place."""
        with self._lock:
            text = json.dumps(self.to_json(), indent=2, default=str) + "\n"
            try:
                self._replace(text)
                return
            except OSError as exc:
                reason = f"cannot write the run record {self.path} ({exc.strerror or exc})"
            if final:
                with contextlib.suppress(OSError):
                    self._overwrite_in_place(text)
            if self.write_error is None:
                self.write_error = reason
                if self.on_write_error is not None:
                    self.on_write_error(reason)

    def _replace(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".run-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _overwrite_in_place(self, text: str) -> None:
        """Last resort on a full disk: rewrite the existing ``run.json`` (whose blocks are allocated) with the
        final record, shortened to the state, the error and the task states if the full one does not fit."""
        data = text.encode()
        size = os.stat(self.path).st_size
        if len(data) > size:
            document = self.to_json()
            keys = ("run_id", "pipeline", "runner", "started", "finished", "state", "error")
            brief = {k: document[k] for k in keys if k in document}
            brief["tasks"] = {key: {"state": task["state"]} for key, task in document["tasks"].items()}
            data = (json.dumps(brief, indent=1, default=str) + "\n").encode()
            if len(data) > size:
                brief.pop("tasks")
                data = (json.dumps(brief, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)
