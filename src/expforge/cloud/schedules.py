"""``expforge schedule create|list|pause|resume|delete``: Vertex AI pipeline-job schedules.

Why through ``PipelineJob.create_schedule``: the schedule then carries exactly the request ``submit`` would
send (same compiled spec or pushed template, same typed parameters, same pipeline root), so a scheduled run
is the run you tried by hand. The cron is checked first (:mod:`expforge.cloud.cron`).
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expforge.cloud.cron import check_cron
from expforge.errors import ExpforgeError

SCHEDULE_URL = (
    "https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/schedules/{id}?project={project}"
)


@dataclass(frozen=True)
class ScheduleInfo:
    """One schedule as listed: id, display name, cron, state, next run, resource name."""

    schedule_id: str
    display_name: str
    cron: str
    state: str
    next_run: str
    name: str


def _time(value: str | None, flag: str) -> str | None:
    """An RFC 3339 timestamp (what the API takes) from an ISO date/time (UTC when no offset is given)."""
    if value is None:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ExpforgeError(f"{flag} {value!r}: expected an ISO date/time such as 2026-01-31T06:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _init(project: str, region: str, api_endpoint: str | None, credentials: Any | None) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    from expforge.cloud.submit import _is_local

    if credentials is None and _is_local(api_endpoint):
        credentials = AnonymousCredentials()
    aiplatform.init(project=project, location=region, api_endpoint=api_endpoint, credentials=credentials)
    if api_endpoint is None:
        initializer.global_config._api_endpoint = None
    return credentials


def create_schedule(
    pipeline: str,
    *,
    cron: str,
    project: str | None,
    region: str | None,
    bucket: str | None,
    parameters: Mapping[str, Any] | None = None,
    max_concurrent: int = 1,
    start: str | None = None,
    end: str | None = None,
    display_name: str | None = None,
    service_account: str | None = None,
    images: Path | None = None,
    api_endpoint: str | None = None,
    credentials: Any | None = None,
) -> ScheduleInfo:
    """Create a schedule running ``pipeline`` (a name, a compiled YAML or a template URI) on ``cron``."""
    from expforge.cloud.submit import _parameter_values, _without_sdk_bucket_check, check_target, compile_for_submit

    cron = check_cron(cron)
    project, region, bucket_name = check_target(project, region, bucket)
    if max_concurrent < 1:
        raise ExpforgeError(f"--max-concurrent: {max_concurrent}: expected at least 1")
    start_time, end_time = _time(start, "--start"), _time(end, "--end")
    if start_time and end_time and end_time <= start_time:
        raise ExpforgeError(f"--end {end}: must be after --start {start}")
    if service_account is not None and "@" not in service_account:
        raise ExpforgeError(f"--service-account: {service_account!r} is not a service account e-mail address")
    with tempfile.TemporaryDirectory(prefix="expforge-schedule-") as tmp:
        template, name = compile_for_submit(pipeline, images, Path(tmp))
        values = _parameter_values(template, parameters or {})
        credentials = _init(project, region, api_endpoint, credentials)
        from google.cloud import aiplatform

        job = aiplatform.PipelineJob(
            display_name=display_name or name,
            template_path=str(template),
            pipeline_root=f"gs://{bucket_name}/pipeline-root",
            parameter_values=values,
            project=project,
            location=region,
            credentials=credentials,
        )
        if pipeline.startswith("https://"):
            from expforge.cloud.templates import parse_template

            job._gca_resource.template_uri = parse_template(pipeline).uri
        from expforge.cloud.submit import _is_local

        with _without_sdk_bucket_check(_is_local(api_endpoint)):
            schedule = job.create_schedule(
                cron=cron,
                display_name=display_name or f"{name}-schedule",
                start_time=start_time,
                end_time=end_time,
                max_concurrent_run_count=max_concurrent,
                service_account=service_account,
            )
        return _info(schedule._gca_resource)


def _info(resource: Any) -> ScheduleInfo:
    next_run = resource.next_run_time.isoformat() if resource.next_run_time else ""
    return ScheduleInfo(
        resource.name.rsplit("/", 1)[-1],
        resource.display_name,
        resource.cron,
        resource.state.name,
        next_run,
        resource.name,
    )


def list_schedules(
    *, project: str | None, region: str | None, api_endpoint: str | None = None, credentials: Any | None = None
) -> list[ScheduleInfo]:
    """Every schedule of the project and region (newest first)."""
    from expforge.cloud.submit import check_target

    project, region, _ = check_target(project, region, "unused-bucket")
    credentials = _init(project, region, api_endpoint, credentials)
    from google.cloud import aiplatform

    found = aiplatform.PipelineJobSchedule.list(project=project, location=region, credentials=credentials)
    return [_info(s._gca_resource) for s in found]


def change_schedule(
    action: str,
    schedule: str,
    *,
    project: str | None,
    region: str | None,
    api_endpoint: str | None = None,
    credentials: Any | None = None,
) -> ScheduleInfo | None:
    """``pause``, ``resume`` or ``delete`` one schedule (an id or a full resource name); None after delete."""
    from google.api_core import exceptions

    from expforge.cloud.submit import check_target

    project, region, _ = check_target(project, region, "unused-bucket")
    if not schedule.strip() or not (schedule.isdigit() or schedule.startswith("projects/")):
        raise ExpforgeError(f"SCHEDULE {schedule!r}: expected a schedule id (digits) or projects/.../schedules/ID")
    credentials = _init(project, region, api_endpoint, credentials)
    from google.cloud import aiplatform

    try:
        found = aiplatform.PipelineJobSchedule.get(schedule, project=project, location=region, credentials=credentials)
        if action == "pause":
            found.pause()
        elif action == "resume":
            found.resume()
        else:
            found.delete()
            return None
        return _info(aiplatform.PipelineJobSchedule.get(found.resource_name, credentials=credentials)._gca_resource)
    except exceptions.NotFound:
        raise ExpforgeError(f"SCHEDULE {schedule}: no such schedule in {project}/{region}") from None
    except exceptions.FailedPrecondition as exc:
        raise ExpforgeError(f"SCHEDULE {schedule}: cannot {action}: {exc.message}") from None
