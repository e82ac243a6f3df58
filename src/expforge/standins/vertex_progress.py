"""Job-state progression of the Vertex stand-in's pipeline jobs: a scripted life, one step per poll.

Why one step per ``GetPipelineJob`` (not per second): a watcher such as ``expforge submit --wait`` must see
every state — job PENDING, RUNNING, each task RUNNING then SUCCEEDED or FAILED, the end — and a test must be
able to assert on that sequence without sleeping. The life is computed when the job is created from the root
DAG of its pipeline spec (tasks in dependency order); a :class:`Life` says how it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.cloud.aiplatform_v1 import types
from google.rpc import status_pb2

TaskState = types.PipelineTaskDetail.State
JobState = types.PipelineState


@dataclass(frozen=True)
class Life:
    """How a job's life ends: ``outcome`` SUCCEEDED, FAILED or CANCELLED; ``failing_task`` fails (FAILED)."""

    outcome: str = "SUCCEEDED"
    failing_task: str | None = None
    error: str = "The replica workerpool0-0 exited with a non-zero status of 1."


@dataclass(frozen=True)
class Frame:
    """One step of a life: the job's state and the states (and errors) of the tasks that changed."""

    job_state: Any
    tasks: dict[str, tuple[Any, str]]


def task_order(spec: dict[str, Any]) -> list[str]:
    """Root DAG task names in dependency order (ties by name), as Vertex would start them."""
    tasks = spec.get("root", {}).get("dag", {}).get("tasks", {})
    needs = {name: set(task.get("dependentTasks", [])) & set(tasks) for name, task in tasks.items()}
    order: list[str] = []
    while needs:
        ready = sorted(name for name, deps in needs.items() if not deps)
        if not ready:  # a cycle cannot compile; keep going in name order rather than loop
            ready = sorted(needs)[:1]
        for name in ready:
            order.append(name)
            del needs[name]
        for deps in needs.values():
            deps.difference_update(ready)
    return order


def frames(spec: dict[str, Any], life: Life) -> list[Frame]:
    """Every step after creation (PENDING): RUNNING, each task RUNNING then done, then the end state."""
    order = task_order(spec)
    running = JobState.PIPELINE_STATE_RUNNING
    steps = [Frame(running, {name: (TaskState.PENDING, "") for name in order})]
    for name in order:
        steps.append(Frame(running, {name: (TaskState.RUNNING, "")}))
        if name == life.failing_task:
            rest = {other: (TaskState.NOT_TRIGGERED, "") for other in order[order.index(name) + 1 :]}
            steps.append(Frame(JobState.PIPELINE_STATE_FAILED, {name: (TaskState.FAILED, life.error), **rest}))
            return steps
        steps.append(Frame(running, {name: (TaskState.SUCCEEDED, "")}))
    end = {"SUCCEEDED": JobState.PIPELINE_STATE_SUCCEEDED, "CANCELLED": JobState.PIPELINE_STATE_CANCELLED}
    steps.append(Frame(end.get(life.outcome, JobState.PIPELINE_STATE_FAILED), {}))
    return steps


def apply(job: types.PipelineJob, frame: Frame, stamp: Any) -> None:
    """Write ``frame`` into ``job`` (its state, its task details, start/end times, the job's error)."""
    job.state = frame.job_state
    job.update_time = stamp
    if frame.job_state == JobState.PIPELINE_STATE_RUNNING and not job.start_time:
        job.start_time = stamp
    details = {detail.task_name: detail for detail in job.job_detail.task_details}
    for name, (state, error) in frame.tasks.items():
        detail = details.get(name)
        if detail is None:
            detail = types.PipelineTaskDetail(task_id=len(details) + 1, task_name=name, create_time=stamp)
            job.job_detail.task_details.append(detail)
            detail = job.job_detail.task_details[-1]
            details[name] = detail
        detail.state = state
        if state == TaskState.RUNNING:
            detail.start_time = stamp
        if state in (TaskState.SUCCEEDED, TaskState.FAILED):
            detail.end_time = stamp
        if error:
            detail.error = status_pb2.Status(code=9, message=error)
    if frame.job_state in (
        JobState.PIPELINE_STATE_SUCCEEDED,
        JobState.PIPELINE_STATE_FAILED,
        JobState.PIPELINE_STATE_CANCELLED,
    ):
        job.end_time = stamp
        failed = [(n, e) for n, (s, e) in frame.tasks.items() if s == TaskState.FAILED]
        if failed:
            job.error = status_pb2.Status(code=9, message=f"The DAG failed because some tasks failed: {failed[0][0]}")
