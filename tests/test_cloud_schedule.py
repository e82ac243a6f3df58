"""``expforge schedule ...`` through ``PipelineJob.create_schedule`` and ``PipelineJobSchedule`` against the
Vertex stand-in's ScheduleService; the cron parser that both use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from typer.testing import CliRunner

from expforge.cli import app
from expforge.cloud.cron import cron_problem
from expforge.pipelines.compile import compile_pipeline
from expforge.standins.tls import process_cert
from expforge.standins.vertex import VertexStandin, start_vertex_standin, trust_certificate
from expforge.standins.vertex_schedules import Schedules

trust_certificate(process_cert().cert_path)

PROJECT = "expforge-test"
REGION = "europe-west4"
TARGET = ["--project", PROJECT, "--region", REGION]


@pytest.fixture(scope="module")
def vertex() -> Iterator[VertexStandin]:
    with start_vertex_standin() as standin:
        yield standin


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_pipeline("mnist-baseline", tmp_path_factory.mktemp("c") / "mnist-baseline.yaml")


def _cli(vertex: VertexStandin, *args: str):
    return CliRunner().invoke(app, ["schedule", *args], env=vertex.env())


def _create(vertex: VertexStandin, compiled: Path, *extra: str):
    args = ["create", str(compiled), "--cron", "0 6 * * *", *TARGET, "--bucket", "sched-bucket"]
    return _cli(vertex, *args, *extra)


def test_create_sends_the_cron_limits_and_the_pipeline_request(vertex: VertexStandin, compiled: Path) -> None:
    result = _create(
        vertex,
        compiled,
        "--max-concurrent",
        "2",
        "--start",
        "2030-01-01T06:00:00Z",
        "--end",
        "2030-06-01",
        "-p",
        "mnist_source=bundled",
        "-p",
        "mnist_limit=300",
        "--display-name",
        "nightly",
    )
    assert result.exit_code == 0, result.output
    (request,) = vertex.requests_for("CreateSchedule")
    schedule = request.schedule
    assert request.parent == f"projects/{PROJECT}/locations/{REGION}"
    assert schedule.cron == "0 6 * * *" and schedule.max_concurrent_run_count == 2
    assert schedule.display_name == "nightly"
    assert schedule.start_time.isoformat() == "2030-01-01T06:00:00+00:00"
    assert schedule.end_time.isoformat() == "2030-06-01T00:00:00+00:00"
    job = schedule.create_pipeline_job_request.pipeline_job
    assert dict(job.runtime_config.parameter_values) == {"mnist_source": "bundled", "mnist_limit": 300}
    assert job.runtime_config.gcs_output_directory == "gs://sched-bucket/pipeline-root"
    spec = json_format.MessageToDict(aiplatform_v1.PipelineJob.pb(job).pipeline_spec)
    assert spec["pipelineInfo"]["name"] == "mnist-baseline"
    schedule_id = next(iter(vertex.service(Schedules).schedules)).rsplit("/", 1)[-1]
    assert result.stdout.strip() == (
        f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/schedules/{schedule_id}"
        f"?project={PROJECT}"
    )
    assert not vertex.unimplemented


def test_list_pause_resume_delete(vertex: VertexStandin, compiled: Path) -> None:
    assert _create(vertex, compiled, "--display-name", "lifecycle").exit_code == 0
    name = next(n for n, s in vertex.service(Schedules).schedules.items() if s.display_name == "lifecycle")
    schedule_id = name.rsplit("/", 1)[-1]
    listed = _cli(vertex, "list", *TARGET)
    assert listed.exit_code == 0, listed.output
    assert f"{schedule_id}\tACTIVE\t0 6 * * *\tlifecycle\t" in listed.stdout
    assert _cli(vertex, "pause", schedule_id, *TARGET).stdout.strip() == f"paused {schedule_id}: PAUSED"
    again = _cli(vertex, "pause", schedule_id, *TARGET)
    assert again.exit_code == 2 and again.stderr.startswith(f"expforge: error: SCHEDULE {schedule_id}: cannot pause:")
    assert _cli(vertex, "resume", schedule_id, *TARGET).stdout.strip() == f"resumed {schedule_id}: ACTIVE"
    assert _cli(vertex, "delete", name, *TARGET).stdout.strip() == f"deleted {name}"
    assert name not in vertex.service(Schedules).schedules
    assert [r.name for r in vertex.requests_for("PauseSchedule")] == [name, name]
    assert [r.name for r in vertex.requests_for("ResumeSchedule")] == [name]
    assert [r.name for r in vertex.requests_for("DeleteSchedule")] == [name]
    gone = _cli(vertex, "pause", schedule_id, *TARGET)
    assert gone.exit_code == 2 and "no such schedule" in gone.stderr
    assert not vertex.unimplemented


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "61 6 * * *"], "--cron '61 6 * * *': field minute: 61 is outside 0-59"),
        (["--cron", "0 6 * *"], "--cron '0 6 * *': expected 5 fields"),
        (["--cron", "TZ=Nowhere/X 0 6 * * *"], "time zone 'Nowhere/X' is not an IANA time zone"),
        (["--cron", "0 6 * * *", "--max-concurrent", "0"], "--max-concurrent: 0: expected at least 1"),
        (["--cron", "0 6 * * *", "--start", "tomorrow"], "--start 'tomorrow': expected an ISO date/time"),
        (["--cron", "0 6 * * *", "--start", "2030-02-01", "--end", "2030-01-01"], "--end 2030-01-01: must be after"),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_sent(vertex, compiled: Path, args: list[str], message: str) -> None:
    before = len(vertex.requests_for("CreateSchedule"))
    result = _cli(vertex, "create", str(compiled), *args, *TARGET, "--bucket", "b12")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expforge: error: ") and message in lines[0], lines
    assert len(vertex.requests_for("CreateSchedule")) == before


def test_the_stand_in_refuses_what_vertex_refuses(vertex: VertexStandin, compiled: Path) -> None:
    """A client that skips our checks (the SDK directly) gets Vertex's INVALID_ARGUMENT for a bad cron."""
    from google.api_core.exceptions import InvalidArgument
    from google.cloud import aiplatform

    from expforge.cloud.schedules import _init

    credentials = _init(PROJECT, REGION, vertex.endpoint, None)
    job = aiplatform.PipelineJob(
        display_name="x",
        template_path=str(compiled),
        pipeline_root="gs://b12/root",
        credentials=credentials,
        parameter_values={"mnist_source": "bundled"},
    )
    with pytest.raises(InvalidArgument, match="schedule.cron '0 25 \\* \\* \\*': field hour: 25 is outside 0-23"):
        job.create_schedule(cron="0 25 * * *", display_name="bad")


@pytest.mark.parametrize(
    "cron", ["0 6 * * *", "*/15 0-23/2 1,15 JAN-mar mon-fri", "CRON_TZ=Europe/Berlin 30 5 * * 0", "0 0 L * *"]
)
def test_cron_forms(cron: str) -> None:
    expected_bad = cron.startswith("0 0 L")  # Quartz extensions are not unix-cron
    assert (cron_problem(cron) is not None) == expected_bad
