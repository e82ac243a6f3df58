"""``PipelineService`` of the Vertex AI stand-in: accepts pipeline jobs (nothing runs) and records them.

What it checks is what Vertex rejects at submit time, so ``make pipeline-submit`` tests fail where the real
service would: a pipeline spec with a root and a name, a ``gs://`` pipeline root, parameter values the spec
declares, valid labels. Like Vertex it creates the job's ``system.Pipeline`` and ``system.PipelineRun``
metadata contexts and reports the run context in ``job_detail``: ``PipelineJob.submit(experiment=...)`` waits
for that context to attach the run to the experiment. Jobs stay ``PENDING`` until a test moves them with
:meth:`Pipelines.set_state`, or, after :meth:`Pipelines.play`, live a scripted life that advances one step per
``GetPipelineJob`` (:mod:`expforge.standins.vertex_progress`), which is what ``submit --wait`` watches.
"""

from __future__ import annotations

import re
from typing import cast

import grpc
from google.cloud.aiplatform_v1 import types
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, json_format

from expforge.cloud.labels import label_problem
from expforge.standins.vertex_filter import compile_filter
from expforge.standins.vertex_grpc import V1, RpcFailure, already_exists, invalid, not_found, rpc
from expforge.standins.vertex_metadata import Metadata
from expforge.standins.vertex_operations import Operations
from expforge.standins.vertex_progress import Frame, Life, apply, frames
from expforge.standins.vertex_resources import ResourceService, check_location, copy_message, now, paginate

_JOB_ID = re.compile(r"[a-z][-a-z0-9]{0,127}")
# proto-plus ships no type information, so mypy reads a proto.Enum's members as plain ints; the two states this
# module writes itself, with their real type
_PENDING = cast(types.PipelineState, types.PipelineState.PIPELINE_STATE_PENDING)
_CANCELLED = cast(types.PipelineState, types.PipelineState.PIPELINE_STATE_CANCELLED)
_TERMINAL = {
    types.PipelineState.PIPELINE_STATE_SUCCEEDED,
    types.PipelineState.PIPELINE_STATE_FAILED,
    types.PipelineState.PIPELINE_STATE_CANCELLED,
}


def _check_job(job: types.PipelineJob) -> None:
    spec = json_format.MessageToDict(types.PipelineJob.pb(job).pipeline_spec)
    if not spec.get("root") or not spec.get("pipelineInfo", {}).get("name"):
        raise invalid("pipeline_job.pipeline_spec: expected a compiled pipeline spec with root and pipelineInfo.name")
    root = job.runtime_config.gcs_output_directory
    if not root.startswith("gs://") or len(root) <= len("gs://"):
        raise invalid(f"pipeline_job.runtime_config.gcs_output_directory: expected a gs:// URI, got {root!r}")
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    for name in job.runtime_config.parameter_values:
        if name not in declared:
            raise invalid(f"The pipeline parameter {name} is not found in the pipeline job input definitions.")
    missing = [
        name
        for name, definition in declared.items()
        if not definition.get("isOptional")
        and "defaultValue" not in definition
        and name not in job.runtime_config.parameter_values
    ]
    if missing:
        raise invalid(f"pipeline parameters without a value or default: {', '.join(sorted(missing))}")
    problem = label_problem(dict(job.labels))
    if problem:
        raise invalid(f"pipeline_job.labels: {problem}")


class Pipelines(ResourceService):
    """In-memory pipeline jobs."""

    SERVICE = f"{V1}.PipelineService"

    def __init__(self, operations: Operations, metadata: Metadata) -> None:
        super().__init__(operations, 5_000_000_000_000_000_000)
        self._metadata = metadata
        self.jobs: dict[str, types.PipelineJob] = {}
        self.life: Life | None = None  # the life of jobs created from now on (None: they stay PENDING)
        self._lives: dict[str, list[Frame]] = {}

    def play(self, life: Life | None = Life()) -> None:
        """Jobs created from now on live ``life`` (one step per GetPipelineJob); None: they stay PENDING."""
        with self._lock:
            self.life = life

    def _advance(self, name: str) -> None:
        remaining = self._lives.get(name)
        if remaining:
            apply(self.jobs[name], remaining.pop(0), now())

    def _job(self, name: str) -> types.PipelineJob:
        if name not in self.jobs:
            raise not_found(f"PipelineJob {name}")
        return self.jobs[name]

    def _record_contexts(self, parent: str, job_id: str, job: types.PipelineJob) -> None:
        """Create the pipeline's and the run's metadata contexts, as Vertex does when a job starts."""
        store = f"{parent}/metadataStores/default"
        spec = json_format.MessageToDict(types.PipelineJob.pb(job).pipeline_spec)
        pipeline_name = spec["pipelineInfo"]["name"]
        pipeline_context = f"{store}/contexts/{pipeline_name}"
        try:
            self._metadata.get_context(types.GetContextRequest(name=pipeline_context))
        except RpcFailure:
            self._metadata.create_context(
                store, types.Context(display_name=pipeline_name, schema_title="system.Pipeline"), pipeline_name
            )
        run = self._metadata.create_context(
            store,
            types.Context(
                display_name=job_id,
                schema_title="system.PipelineRun",
                metadata={"pipeline_job_name": job.name},
            ),
            job_id,
        )
        self._metadata.add_context_children(pipeline_context, [run.name])
        job.job_detail = types.PipelineJobDetail(
            pipeline_context=self._metadata.get_context(types.GetContextRequest(name=pipeline_context)),
            pipeline_run_context=run,
        )

    def set_state(self, name: str, state: types.PipelineState) -> types.PipelineJob:
        """Move a job to ``state`` (tests use it to play the job's life)."""
        with self._lock:
            job = self._job(name)
            job.state = state
            job.update_time = now()
            if state == types.PipelineState.PIPELINE_STATE_RUNNING and not job.start_time:
                job.start_time = now()
            if state in _TERMINAL:
                job.end_time = now()
            return copy_message(job)

    @rpc(types.CreatePipelineJobRequest, types.PipelineJob)
    def create_pipeline_job(self, request: types.CreatePipelineJobRequest) -> types.PipelineJob:
        """Accept a job (validated as Vertex does); it stays PENDING."""
        check_location(request.parent)
        job_id = request.pipeline_job_id or self._ids.next()
        if request.pipeline_job_id and not _JOB_ID.fullmatch(job_id):
            raise invalid(f"pipeline_job_id {job_id!r}: expected [a-z][-a-z0-9]{{0,127}}")
        job = copy_message(request.pipeline_job)
        _check_job(job)
        with self._lock:
            name = f"{request.parent}/pipelineJobs/{job_id}"
            if name in self.jobs:
                raise already_exists(f"PipelineJob {name}")
            stamp = now()
            job.name = name
            job.create_time = job.update_time = stamp
            job.state = _PENDING
            self._record_contexts(request.parent, job_id, job)
            self.jobs[name] = job
            if self.life is not None:
                spec = json_format.MessageToDict(types.PipelineJob.pb(job).pipeline_spec)
                self._lives[name] = frames(spec, self.life)
            return copy_message(job)

    @rpc(types.GetPipelineJobRequest, types.PipelineJob)
    def get_pipeline_job(self, request: types.GetPipelineJobRequest) -> types.PipelineJob:
        """One job (a job with a scripted life moves one step first)."""
        with self._lock:
            self._job(request.name)
            self._advance(request.name)
            return copy_message(self._job(request.name))

    @rpc(types.ListPipelineJobsRequest, types.ListPipelineJobsResponse)
    def list_pipeline_jobs(self, request: types.ListPipelineJobsRequest) -> types.ListPipelineJobsResponse:
        """Jobs of a location, filtered, newest first."""
        check_location(request.parent)
        keep = compile_filter(request.filter)
        with self._lock:
            found = [
                copy_message(job)
                for name, job in reversed(self.jobs.items())
                if name.startswith(f"{request.parent}/")
                and keep(types.PipelineJob.to_dict(job, preserving_proto_field_name=True))
            ]
        page, token = paginate(found, request.page_size, request.page_token)
        return types.ListPipelineJobsResponse(pipeline_jobs=page, next_page_token=token)

    @rpc(types.CancelPipelineJobRequest, empty_pb2.Empty)
    def cancel_pipeline_job(self, request: types.CancelPipelineJobRequest) -> empty_pb2.Empty:
        """Cancel a job that has not finished."""
        with self._lock:
            if self._job(request.name).state in _TERMINAL:
                raise RpcFailure(
                    grpc.StatusCode.FAILED_PRECONDITION, f"PipelineJob {request.name} has already finished."
                )
            self._lives.pop(request.name, None)
            self.set_state(request.name, _CANCELLED)
        return empty_pb2.Empty()

    @rpc(types.DeletePipelineJobRequest, operations_pb2.Operation)
    def delete_pipeline_job(self, request: types.DeletePipelineJobRequest) -> operations_pb2.Operation:
        """Delete a job."""
        with self._lock:
            self._job(request.name)
            del self.jobs[request.name]
        return self._operations.finished(request.name, None, types.DeleteOperationMetadata())
