"""Finalise runs whose runner died (``kill -9``, a crash, a lost machine) the next time a run starts.

A runner that is killed outright cannot clean up: its ``run.json`` says ``RUNNING``, its tracking run stays
``RUNNING``, processes of its subprocess tasks (in their own sessions) keep running and its containers are
never removed. Every ``expforge run`` therefore first looks at the other runs under its root: a record that
says ``RUNNING`` and names a runner process on this host that no longer exists is rewritten as
``RUNNER_DIED`` (live tasks ``CANCELLED``), the processes carrying that run's ``EXPFORGE_RUN_ID`` are killed,
its containers (labelled with its run directory) removed, and its local tracking run ended ``CANCELLED``.
Readers that do not start a run get the same state from :func:`~.record.load_run_record`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from expforge.local_runner import safefs
from expforge.local_runner.record import LIVE_STATES, died_record, runner_alive


def _task_processes(run_id: str) -> list[int]:
    """Pids of processes whose environment carries ``EXPFORGE_RUN_ID=<run_id>`` (every task of the run)."""
    marker = f"EXPFORGE_RUN_ID={run_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:
            continue
        if marker in variables:
            found.append(int(entry))
    return found


def _remove_containers(backend: Any, run_dir: Path) -> int:
    client = getattr(backend, "client", None)
    if client is None:
        return 0
    from docker.errors import DockerException

    removed = 0
    try:
        containers = client.containers.list(all=True, filters={"label": f"expforge.run-dir={run_dir}"})
    except DockerException:
        return 0
    for container in containers:
        with contextlib.suppress(DockerException):
            container.remove(force=True)
            removed += 1
    return removed


def _end_tracking(root: Path, document: dict[str, Any]) -> None:
    """End the dead run's pipeline run in the local tracking database (other backends are left alone)."""
    database = root / ".tracking" / "runs.sqlite"
    if document.get("tracking", "local") != "local" or not database.is_file() or database.is_symlink():
        return
    from expforge.errors import ExpforgeError
    from expforge.tracking.local import LocalTracker

    with contextlib.suppress(ExpforgeError, OSError, sqlite3.Error):
        tracker = LocalTracker(database)
        try:
            tracker.end_run(str(document["run_id"]), "CANCELLED")
        finally:
            tracker.close()


def _rewrite(path: Path, document: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".run-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(document, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def reap_dead_runs(root: Path, backend: Any = None, *, skip: Path | None = None) -> list[str]:
    """Finalise every run under ``root`` whose runner died; one note per run for the new run's warnings."""
    notes = []
    for path in sorted(root.glob("*/run.json")):
        if skip is not None and path.parent == skip:
            continue
        try:
            document = json.loads(safefs.read_text(path))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if not isinstance(document, dict) or document.get("state") not in LIVE_STATES:
            continue
        if runner_alive(document.get("runner")) is not False:
            continue
        run_id = str(document.get("run_id", path.parent.name))
        killed = 0
        for pid in _task_processes(run_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        removed = _remove_containers(backend, path.parent)
        _end_tracking(root, document)
        try:
            _rewrite(path, died_record(document))
        except OSError:
            continue
        leftovers = f"; killed {killed} task process(es)" if killed else ""
        leftovers += f"; removed {removed} container(s)" if removed else ""
        notes.append(f"run {run_id}: its runner died before it finished; marked RUNNER_DIED{leftovers}")
    return notes
