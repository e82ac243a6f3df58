"""State shared by every task of one run, and the outcome a task or sub-DAG reports to its parent."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expforge.local_runner.artifacts import LocalStorage, RuntimeArtifact
from expforge.local_runner.backends import Backend
from expforge.local_runner.cache import TaskCache
from expforge.local_runner.placeholders import JobContext
from expforge.local_runner.progress import ProgressReporter
from expforge.local_runner.record import RunJournal, TaskState
from expforge.local_runner.resources import Admission
from expforge.local_runner.spec import PipelineSpecFile


@dataclass
class Outcome:
    """What a finished task (or sub-DAG, or loop) hands to the tasks that consume it."""

    state: TaskState
    parameters: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, list[RuntimeArtifact]] = field(default_factory=dict)
    error: str | None = None

    @property
    def failed(self) -> bool:
        """Failed itself, could not run because of a failure upstream, or was cancelled."""
        return self.state in (TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED)


@dataclass
class RunContext:
    """Everything a task needs besides its own inputs. ``slots`` admits executing attempts by their resources."""

    spec: PipelineSpecFile
    run_id: str
    run_dir: Path
    backend: Backend
    storage: LocalStorage
    cache: TaskCache | None
    record: RunJournal
    progress: ProgressReporter
    slots: Admission
    create_time_utc: str
    gpu_count: int
    allow_cpu_fallback: bool
    # Environment given to every task (tracking/registry configuration, stand-in endpoints) and the host
    # directories tasks share (mounted read-write into containers).
    task_env: dict[str, str] = field(default_factory=dict)
    shared_dirs: tuple[Path, ...] = ()
    read_paths: tuple[Path, ...] = ()
    workspace: Path | None = None  # the pipeline workspace directory (see workspace.py), if the spec has one
    cancel: threading.Event = field(default_factory=threading.Event)
    warnings: list[str] = field(default_factory=list)
    _warned: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def warn(self, message: str) -> None:
        """Report a warning once per run (to the terminal and to ``run.json``)."""
        with self._lock:
            if message in self._warned:
                return
            self._warned.add(message)
            self.warnings.append(message)
        self.progress.warn(message)

    def job(self, task_name: str) -> JobContext:
        """Values of the job-level placeholders for one task execution."""
        return JobContext(
            pipeline_name=self.spec.name,
            run_id=self.run_id,
            task_name=task_name,
            task_id=uuid.uuid4().hex,
            pipeline_root=str(self.run_dir.parent),
            create_time_utc=self.create_time_utc,
            workspace_path=str(self.workspace) if self.workspace else None,
        )
