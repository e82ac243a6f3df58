"""Progress on the terminal: a live view of running tasks on a TTY, plain timestamped lines otherwise.

Progress goes to stderr; stdout is reserved for the run directory (printed last) so scripts can capture it.
Reporters are called from many task threads at once and serialize their own output.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from expforge.local_runner.record import TaskState

_STYLE = {
    TaskState.SUCCEEDED: "green",
    TaskState.FAILED: "bold red",
    TaskState.UPSTREAM_FAILED: "red",
    TaskState.SKIPPED: "dim",
    TaskState.CANCELLED: "yellow",
}


class ProgressReporter:
    """Silent reporter; the base of the others (the programmatic API uses it by default)."""

    def start(self, run_id: str, run_dir: str, backend: str) -> None:
        """A run begins."""

    def task_started(self, key: str, attempt: int) -> None:
        """An attempt of a task starts executing (it holds a parallelism slot)."""

    def task_retry(self, key: str, attempt: int, delay_s: float, reason: str) -> None:
        """An attempt failed and another follows after ``delay_s``."""

    def task_finished(self, key: str, state: TaskState, *, cached: bool, attempts: int, duration_s: float) -> None:
        """A task reached a terminal state."""

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the run."""

    def stop(self, state: str, run_dir: str) -> None:
        """The run is over."""


def _outcome(state: TaskState, cached: bool, attempts: int, duration_s: float) -> str:
    if cached:
        return "cached"
    if state in (TaskState.SKIPPED, TaskState.UPSTREAM_FAILED):
        return ""
    tries = f", {attempts} attempts" if attempts > 1 else ""
    return f"{duration_s:.1f}s{tries}"


class PlainProgress(ProgressReporter):
    """One line per event; for logs, CI and pipes."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
            self.stream.flush()

    def start(self, run_id: str, run_dir: str, backend: str) -> None:
        self._line(f"run {run_id} ({backend} backend): {run_dir}")

    def task_started(self, key: str, attempt: int) -> None:
        self._line(f"{'RUNNING':<15} {key}" + (f" (attempt {attempt})" if attempt > 1 else ""))

    def task_retry(self, key: str, attempt: int, delay_s: float, reason: str) -> None:
        self._line(f"{'RETRY':<15} {key}: attempt {attempt} failed ({reason}); retrying in {delay_s:.1f}s")

    def task_finished(self, key: str, state: TaskState, *, cached: bool, attempts: int, duration_s: float) -> None:
        detail = _outcome(state, cached, attempts, duration_s)
        self._line(f"{state.value:<15} {key}" + (f" ({detail})" if detail else ""))

    def warn(self, message: str) -> None:
        self._line(f"WARNING {message}")

    def stop(self, state: str, run_dir: str) -> None:
        self._line(f"run {state}: {run_dir}")


class RichProgress(ProgressReporter):
    """A live table of running tasks under a scrolling list of finished ones."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self._lock = threading.Lock()
        self._running: dict[str, tuple[float, int]] = {}
        self._counts: dict[TaskState, int] = {}
        self._live: Any = None
        self._title = ""

    def _render(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        with self._lock:
            running = sorted(self._running.items(), key=lambda item: item[1][0])
            counts = dict(self._counts)
        done = ", ".join(f"{n} {state.value.lower()}" for state, n in sorted(counts.items()) if n)
        table = Table.grid(padding=(0, 1))
        table.add_row(f"[bold]{self._title}[/] — {len(running)} running" + (f", {done}" if done else ""))
        now = time.monotonic()
        for key, (started, attempt) in running:
            retry = f" [yellow](attempt {attempt})[/]" if attempt > 1 else ""
            table.add_row(Spinner("dots", text=f"{key}{retry}  [dim]{now - started:.0f}s[/]"))
        return table

    def start(self, run_id: str, run_dir: str, backend: str) -> None:
        from rich.live import Live

        self._title = f"{run_id} ({backend})"
        self.console.print(f"[bold]run[/] {run_id} ({backend} backend): {run_dir}")
        self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=8, transient=True)
        self._live.start()

    def task_started(self, key: str, attempt: int) -> None:
        with self._lock:
            self._running[key] = (time.monotonic(), attempt)

    def task_retry(self, key: str, attempt: int, delay_s: float, reason: str) -> None:
        with self._lock:
            self._running.pop(key, None)
        self.console.print(f"[yellow]RETRY[/] {key}: attempt {attempt} failed ({reason}); retrying in {delay_s:.1f}s")

    def task_finished(self, key: str, state: TaskState, *, cached: bool, attempts: int, duration_s: float) -> None:
        with self._lock:
            self._running.pop(key, None)
            self._counts[state] = self._counts.get(state, 0) + 1
        detail = _outcome(state, cached, attempts, duration_s)
        style = "cyan" if cached else _STYLE.get(state, "")
        label = f"[{style}]{state.value:<15}[/]" if style else f"{state.value:<15}"
        self.console.print(f"{label} {key}" + (f" [dim]({detail})[/]" if detail else ""))

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]WARNING[/] {message}")

    def stop(self, state: str, run_dir: str) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        colour = "green" if state == "SUCCEEDED" else "red"
        self.console.print(f"[bold {colour}]run {state}[/]: {run_dir}")


def default_reporter() -> ProgressReporter:
    """Live view when stderr is a terminal, plain lines otherwise."""
    return RichProgress() if sys.stderr.isatty() else PlainProgress()
