"""``submit --wait``: watch a submitted run until it ends, printing each state change once.

Why a loop of our own rather than ``PipelineJob.wait()``: the SDK's wait logs only the job state at growing
intervals and raises on failure without naming the task; a person watching wants every task's state as it
changes, the failing task's error, and an exit status scripts can use. The loop is target-neutral: a poll
function (Vertex ``GetPipelineJob``, KFP ``GET /apis/v2beta1/runs/{id}``) returns a :class:`Snapshot`, so the
same watcher serves Vertex AI and Kubeflow Pipelines. One poll is one API call; at the default 10 s interval
that is 6 calls a minute, far below Vertex AI's read quota.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from expforge.errors import ExpforgeError

DEFAULT_POLL_INTERVAL_S = 10.0
MAX_POLL_FAILURES = 5
_VERTEX_DONE = {"SUCCEEDED", "FAILED", "CANCELLED"}


@dataclass(frozen=True)
class Snapshot:
    """A run's state at one poll: ``state`` (SUCCEEDED, FAILED, RUNNING, ...), tasks' (state, error) by name."""

    state: str
    done: bool
    tasks: dict[str, tuple[str, str]] = field(default_factory=dict)
    error: str = ""

    @property
    def succeeded(self) -> bool:
        """Whether the run ended SUCCEEDED."""
        return self.done and self.state == "SUCCEEDED"


@dataclass
class WatchResult:
    """The last snapshot, how many polls (= API calls) it took and how long."""

    final: Snapshot
    polls: int
    elapsed_s: float
    failed_polls: int = 0

    def failing_tasks(self) -> list[tuple[str, str]]:
        """``(task, error)`` of every task that ended FAILED."""
        return [(name, error) for name, (state, error) in sorted(self.final.tasks.items()) if state == "FAILED"]


def watch(
    poll: Callable[[], Snapshot],
    *,
    interval_s: float = DEFAULT_POLL_INTERVAL_S,
    echo: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    timeout_s: float | None = None,
) -> WatchResult:
    """Poll until the run is done; echo ``job: STATE`` and ``task NAME: STATE`` whenever one changes.

    A failing poll (network, 5xx) is retried at the next interval; ``MAX_POLL_FAILURES`` in a row raise.
    """
    if interval_s <= 0:
        raise ExpforgeError(f"--poll-interval: {interval_s}: expected a positive number of seconds")
    started = time.monotonic()
    last_state = ""
    last_tasks: dict[str, str] = {}
    polls = failures = failed_total = 0
    while True:
        polls += 1
        try:
            snapshot = poll()
            failures = 0
        except ExpforgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a watcher survives a flaky poll; five in a row stop it
            failures += 1
            failed_total += 1
            if failures >= MAX_POLL_FAILURES:
                raise ExpforgeError(f"--wait: {failures} polls in a row failed, the last: {exc}") from None
            echo(f"poll failed ({type(exc).__name__}); retrying in {interval_s:g}s")
            sleep(interval_s)
            continue
        if snapshot.state != last_state:
            echo(f"job: {snapshot.state}")
            last_state = snapshot.state
        for name, (state, _error) in sorted(snapshot.tasks.items()):
            if last_tasks.get(name) != state:
                echo(f"task {name}: {state}")
                last_tasks[name] = state
        if snapshot.done:
            return WatchResult(snapshot, polls, time.monotonic() - started, failed_total)
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise ExpforgeError(f"--wait: the run is still {snapshot.state} after {timeout_s:g}s")
        sleep(interval_s)


def report(result: WatchResult, url: str, echo: Callable[[str], None]) -> int:
    """Echo the end (state, console URL, failing tasks' errors); return the exit status: 0 SUCCEEDED, else 1."""
    final = result.final
    echo(f"{final.state}: {url}")
    for name, error in result.failing_tasks():
        echo(f"task {name} failed: {error or '(no error message)'}")
    if final.error and not result.failing_tasks():
        echo(f"error: {final.error}")
    return 0 if final.succeeded else 1


def _state_name(value: Any, prefix: str) -> str:
    name = getattr(value, "name", str(value))
    return name.removeprefix(prefix)


def vertex_poller(job_name: str, *, api_endpoint: str | None, region: str, credentials: Any | None) -> Callable:
    """A poll function over ``GetPipelineJob`` (one RPC per call)."""
    from google.cloud import aiplatform_v1

    endpoint = api_endpoint or f"{region}-aiplatform.googleapis.com"
    client = aiplatform_v1.PipelineServiceClient(client_options={"api_endpoint": endpoint}, credentials=credentials)

    def poll() -> Snapshot:
        job = client.get_pipeline_job(name=job_name, timeout=60)
        state = _state_name(job.state, "PIPELINE_STATE_")
        tasks = {
            detail.task_name: (_state_name(detail.state, ""), detail.error.message)
            for detail in job.job_detail.task_details
        }
        return Snapshot(state, state in _VERTEX_DONE, tasks, job.error.message)

    return poll


def _local(endpoint: str | None) -> bool:
    return bool(endpoint) and str(endpoint).rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]")


def watch_vertex(result: Any, api_endpoint: str | None, interval_s: float, echo: Callable | None = None) -> int:
    """Watch a submitted Vertex job (a :class:`~expforge.cloud.submit.SubmitResult`); return the exit status."""
    import typer

    say = echo or (lambda line: typer.echo(line, err=True))
    credentials = None
    if _local(api_endpoint):
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    poll = vertex_poller(result.job_name, api_endpoint=api_endpoint, region=result.region, credentials=credentials)
    return report(watch(poll, interval_s=interval_s, echo=say), result.console_url, say)
