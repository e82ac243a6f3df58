"""``ScheduleService`` of the Vertex AI stand-in: pipeline-job schedules (nothing is ever triggered).

It checks what Vertex checks when a schedule is created — a cron that parses, a pipeline job request that
CreatePipelineJob would accept, a positive max_concurrent_run_count, start before end — and keeps the state
machine pause/resume/delete works on (ACTIVE ⇄ PAUSED; pausing a paused schedule is FAILED_PRECONDITION).
"""

from __future__ import annotations

import datetime
from typing import cast

import grpc
from google.cloud.aiplatform_v1 import types
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2

from expforge.cloud.cron import cron_problem
from expforge.standins.vertex_filter import compile_filter
from expforge.standins.vertex_grpc import V1, RpcFailure, invalid, not_found, rpc
from expforge.standins.vertex_operations import Operations
from expforge.standins.vertex_pipelines import _check_job
from expforge.standins.vertex_resources import ResourceService, check_location, copy_message, now, paginate

State = types.Schedule.State
# proto-plus ships no type information, so mypy reads a proto.Enum's members as plain ints; the two states a
# schedule moves between, with their real type
_ACTIVE = cast(State, State.ACTIVE)
_PAUSED = cast(State, State.PAUSED)


class Schedules(ResourceService):
    """In-memory schedules."""

    SERVICE = f"{V1}.ScheduleService"

    def __init__(self, operations: Operations) -> None:
        super().__init__(operations, 7_000_000_000_000_000_000)
        self.schedules: dict[str, types.Schedule] = {}

    def _get(self, name: str) -> types.Schedule:
        if name not in self.schedules:
            raise not_found(f"Schedule {name}")
        return self.schedules[name]

    @rpc(types.CreateScheduleRequest, types.Schedule)
    def create_schedule(self, request: types.CreateScheduleRequest) -> types.Schedule:
        """Validate and store a schedule, ACTIVE, its next run computed from the start time."""
        check_location(request.parent)
        schedule = copy_message(request.schedule)
        if not schedule.display_name:
            raise invalid("schedule.display_name: required")
        if not schedule.cron:
            raise invalid("schedule.cron: required")
        problem = cron_problem(schedule.cron)
        if problem:
            raise invalid(f"schedule.cron {schedule.cron!r}: {problem}")
        if "create_pipeline_job_request" not in schedule:
            raise invalid("schedule: expected create_pipeline_job_request")
        job_request = schedule.create_pipeline_job_request
        if job_request.parent != request.parent:
            raise invalid("schedule.create_pipeline_job_request.parent: must equal the schedule's parent")
        _check_job(job_request.pipeline_job)
        if schedule.max_concurrent_run_count <= 0:
            raise invalid("schedule.max_concurrent_run_count: must be positive")
        if schedule.start_time and schedule.end_time and schedule.end_time <= schedule.start_time:
            raise invalid("schedule.end_time: must be after start_time")
        with self._lock:
            name = f"{request.parent}/schedules/{self._ids.next()}"
            stamp = now()
            schedule.name = name
            schedule.create_time = schedule.update_time = stamp
            schedule.state = _ACTIVE
            start = schedule.start_time or stamp
            schedule.next_run_time = max(start, stamp) + datetime.timedelta(minutes=1)
            self.schedules[name] = schedule
            return copy_message(schedule)

    @rpc(types.GetScheduleRequest, types.Schedule)
    def get_schedule(self, request: types.GetScheduleRequest) -> types.Schedule:
        """One schedule."""
        with self._lock:
            return copy_message(self._get(request.name))

    @rpc(types.ListSchedulesRequest, types.ListSchedulesResponse)
    def list_schedules(self, request: types.ListSchedulesRequest) -> types.ListSchedulesResponse:
        """Schedules of a location, filtered, newest first."""
        check_location(request.parent)
        keep = compile_filter(request.filter)
        with self._lock:
            found = [
                copy_message(s)
                for name, s in reversed(self.schedules.items())
                if name.startswith(f"{request.parent}/")
                and keep(types.Schedule.to_dict(s, preserving_proto_field_name=True))
            ]
        page, token = paginate(found, request.page_size, request.page_token)
        return types.ListSchedulesResponse(schedules=page, next_page_token=token)

    def _move(self, name: str, source: State, target: State, verb: str) -> None:
        with self._lock:
            schedule = self._get(name)
            if schedule.state != source:
                raise RpcFailure(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"Schedule {name} is {schedule.state.name}; only an {source.name} schedule can be {verb}.",
                )
            schedule.state = target
            schedule.update_time = now()

    @rpc(types.PauseScheduleRequest, empty_pb2.Empty)
    def pause_schedule(self, request: types.PauseScheduleRequest) -> empty_pb2.Empty:
        """ACTIVE → PAUSED."""
        self._move(request.name, _ACTIVE, _PAUSED, "paused")
        return empty_pb2.Empty()

    @rpc(types.ResumeScheduleRequest, empty_pb2.Empty)
    def resume_schedule(self, request: types.ResumeScheduleRequest) -> empty_pb2.Empty:
        """PAUSED → ACTIVE (``catch_up`` is recorded on the schedule)."""
        self._move(request.name, _PAUSED, _ACTIVE, "resumed")
        with self._lock:
            self.schedules[request.name].catch_up = request.catch_up
        return empty_pb2.Empty()

    @rpc(types.DeleteScheduleRequest, operations_pb2.Operation)
    def delete_schedule(self, request: types.DeleteScheduleRequest) -> operations_pb2.Operation:
        """Delete a schedule (a done long-running operation)."""
        with self._lock:
            self._get(request.name)
            del self.schedules[request.name]
        return self._operations.finished(request.name, None, types.DeleteOperationMetadata())
