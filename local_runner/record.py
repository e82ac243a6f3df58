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
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class TaskState(StrEnum):
    """Lifecycle of one task (``UPSTREAM_FAILED``: never ran because something it depends on failed)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    CANCELLED = "CANCELLED"


TERMINAL = {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.SKIPPED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED}


def now_iso() -> str:
    """UTC timestamp with second precision, the format used throughout the record."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


class RunRecord:
    """Thread-safe owner of ``run.json``: task threads update it, every update is persisted atomically."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._header = dict(header)
        self._header.setdefault("started", now_iso())
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
            self.state = state
            self.pipeline_outputs = pipeline_outputs
            self.error = error
            self._header["finished"] = now_iso()
            self.write()

    def to_json(self) -> dict[str, Any]:
        """The document written to ``run.json``."""
        with self._lock:
            data: dict[str, Any] = {**self._header, "state": self.state, "pipeline_outputs": self.pipeline_outputs}
            if self.error:
                data["error"] = self.error
            data["tasks"] = {key: self.tasks[key].to_json() for key in sorted(self.tasks)}
            return data

    def write(self) -> None:
        """Persist atomically (temporary file beside the target, then rename)."""
        with self._lock:
            text = json.dumps(self.to_json(), indent=2, default=str)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".run-", suffix=".json", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            os.replace(tmp, self.path)
