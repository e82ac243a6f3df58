"""``expforge submit`` / ``make pipeline-submit`` against the Vertex stand-in: the captured CreatePipelineJobRequest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from typer.testing import CliRunner

from expforge.cli import app
from expforge.cloud.submit import check_target, submit_pipeline
from expforge.pipelines.compile import compile_pipeline, read_image_map
from expforge.standins.tls import process_cert
from expforge.standins.vertex import VertexStandin, start_vertex_standin, trust_certificate

trust_certificate(process_cert().cert_path)  # before any gRPC channel of this worker (roots load once)

REPO = Path(__file__).resolve().parents[1]
PROJECT = "expforge-test"
REGION = "europe-west4"
PIPELINE = "mnist-synthetic"
PARAMS = {"font_count": "100", "real_fraction": "0.25", "mnist_source": "bundled"}
TYPED = {"font_count": 100, "real_fraction": 0.25, "mnist_source": "bundled"}
LABELS = {"team": "ml", "purpose": "ci"}


@pytest.fixture(scope="module")
def vertex() -> Iterator[VertexStandin]:
    with start_vertex_standin() as standin:
        yield standin


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = {"train-sklearn": "europe-west4-docker.pkg.dev/p/r/train-sklearn:abc"}
    return compile_pipeline(PIPELINE, tmp_path_factory.mktemp("compiled") / f"{PIPELINE}.yaml", images)


def spec_of(path: Path) -> dict:
    """The compiled YAML's pipeline spec as Vertex stores it (a protobuf Struct: every number a float)."""
    document = next(yaml.safe_load_all(path.read_text()))
    return json.loads(json.dumps(document, default=str), parse_float=float, parse_int=float)


def request_spec(request: aiplatform_v1.CreatePipelineJobRequest) -> dict:
    return json_format.MessageToDict(aiplatform_v1.PipelineJob.pb(request.pipeline_job).pipeline_spec)


def assert_request(request: aiplatform_v1.CreatePipelineJobRequest, spec: dict, *, bucket: str) -> None:
    job = request.pipeline_job
    assert request.parent == f"projects/{PROJECT}/locations/{REGION}"
    assert job.runtime_config.gcs_output_directory == f"gs://{bucket}/pipeline-root"
    assert dict(job.runtime_config.parameter_values) == TYPED
    assert {k: v for k, v in job.labels.items() if k in LABELS} == LABELS
    got = request_spec(request)
    tasks = [t for c in [got["root"], *got["components"].values()] for t in c.get("dag", {}).get("tasks", {}).values()]
    assert tasks and all(t["cachingOptions"] == {"enableCache": False} for t in tasks)  # --no-cache, every DAG
    for document in (got, spec):
        for component in [document["root"], *document["components"].values()]:
            for task in component.get("dag", {}).get("tasks", {}).values():
                task.pop("cachingOptions", None)
    assert got == spec


def experiment_links(vertex: VertexStandin, job_name: str) -> list[str]:
    """Experiment contexts the run's PipelineRun context was attached to (AddContextChildren requests)."""
    run_context = f"projects/{PROJECT}/locations/{REGION}/metadataStores/default/contexts/{job_name.rsplit('/', 1)[1]}"
    return [r.context for r in vertex.requests_for("AddContextChildren") if run_context in r.child_contexts]


def test_submit_in_process_captures_the_request_and_attaches_the_experiment(
    vertex: VertexStandin, compiled: Path
) -> None:
    result = submit_pipeline(
        compiled,
        project=PROJECT,
        region=REGION,
        bucket="gs://my-bucket/",
        experiment="digits-exp",
        parameters=PARAMS,
        labels=LABELS,
        enable_caching=False,
        api_endpoint=vertex.endpoint,
    )
    request = next(r for r in vertex.requests_for("CreatePipelineJob") if r.pipeline_job_id == result.job_id)
    assert_request(request, spec_of(compiled), bucket="my-bucket")
    assert result.job_name == f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/{result.job_id}"
    assert result.console_url == (
        f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/runs/{result.job_id}"
        f"?project={PROJECT}"
    )
    experiment = f"projects/{PROJECT}/locations/{REGION}/metadataStores/default/contexts/digits-exp"
    assert experiment_links(vertex, result.job_name) == [experiment]
    assert result.warnings == []  # the image map named registry images


def test_cli_submit_by_name(vertex: VertexStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `make pipeline-submit` runs: compile by name (no images.json here: default images) and submit; the
    endpoint comes from EXPFORGE_VERTEX_ENDPOINT as `.env()` sets it."""
    monkeypatch.chdir(tmp_path)
    args = ["submit", PIPELINE, "--project", PROJECT, "--region", REGION, "--bucket", "cli-bucket"]
    args += ["--experiment", "cli-exp", "--no-cache", "--save-template", "t.yaml"]
    args += [arg for key, value in PARAMS.items() for arg in ("-p", f"{key}={value}")]
    args += [arg for key, value in LABELS.items() for arg in ("--label", f"{key}={value}")]
    result = CliRunner().invoke(app, args, env=vertex.env())
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    job_id = url.split("/runs/")[1].split("?")[0]
    assert url.startswith(f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/runs/")
    assert job_id.startswith(f"{PIPELINE}-")
    request = next(r for r in vertex.requests_for("CreatePipelineJob") if r.pipeline_job_id == job_id)
    assert_request(request, spec_of(tmp_path / "t.yaml"), bucket="cli-bucket")
    executors = request_spec(request)["deploymentSpec"]["executors"].values()
    assert all(re.fullmatch(r"expforge/[a-z0-9-]+:latest", e["container"]["image"]) for e in executors)  # defaults
    assert "Docker Hub" not in result.stderr  # a local endpoint: no warning about local image tags
    assert experiment_links(vertex, f"{request.parent}/pipelineJobs/{job_id}")


def test_dry_run_prints_the_request_without_any_server(compiled: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EXPFORGE_VERTEX_ENDPOINT"}
    argv = [sys.executable, "-m", "expforge", "submit", str(compiled), "--project", PROJECT, "--region", REGION]
    argv += ["--bucket", "dry-bucket", "--dry-run", "--no-cache", "--job-id", "dry-1"]
    argv += [arg for key, value in PARAMS.items() for arg in ("-p", f"{key}={value}")]
    argv += [arg for key, value in LABELS.items() for arg in ("--label", f"{key}={value}")]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    request = aiplatform_v1.CreatePipelineJobRequest.from_json(proc.stdout)
    assert request.pipeline_job_id == "dry-1"
    assert_request(request, spec_of(compiled), bucket="dry-bucket")
    size = len(aiplatform_v1.CreatePipelineJobRequest.serialize(request))
    count = len(request.pipeline_job.runtime_config.parameter_values)
    print(f"dry run: {elapsed:.1f}s wall, request {size} bytes, {count} params")


def test_dry_run_of_local_images_warns_they_cannot_be_pulled(tmp_path: Path) -> None:
    template = compile_pipeline(PIPELINE, tmp_path / "local.yaml", {"evaluate": "expforge/evaluate:0123456789ab"})
    result = submit_pipeline(template, project=PROJECT, region=REGION, bucket="b-1", dry_run=True)
    assert result.request["pipelineJob"]["runtimeConfig"]["gcsOutputDirectory"] == "gs://b-1/pipeline-root"
    assert result.job_name == "" and result.dry_run
    assert any("Docker Hub" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--region", REGION, "--bucket", "bk1"], "--project: required"),
        (["--project", PROJECT, "--bucket", "bk1"], "--region: required"),
        (["--project", PROJECT, "--region", REGION], "--bucket: required"),
        (["--project", "Bad_Project", "--region", REGION, "--bucket", "bk1"], "--project: 'Bad_Project'"),
        (["--project", PROJECT, "--region", "mars", "--bucket", "bk1"], "--region: 'mars'"),
        (["--project", PROJECT, "--region", REGION, "--bucket", "gs://UPPER"], "--bucket: 'gs://UPPER'"),
        (["--project", PROJECT, "--region", REGION, "--bucket", "bk1", "--label", "Team=x"], "--label: label key"),
        (["--project", PROJECT, "--region", REGION, "--bucket", "bk1", "--label", "team=X Y"], "--label: label team"),
        (["--project", PROJECT, "--region", REGION, "--bucket", "bk1", "--label", "novalue"], "expected KEY=VALUE"),
        (["--project", PROJECT, "--region", REGION, "--bucket", "bk1", "--experiment", "Exp_1"], "--experiment:"),
        (["--project", PROJECT, "--region", REGION, "--bucket", "bk1", "-p", "typo=1"], "--param typo: the pipeline"),
        (
            ["--project", PROJECT, "--region", REGION, "--bucket", "bk1", "-p", "font_count=x"],
            "--param font_count (int)",
        ),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str, compiled: Path) -> None:
    result = CliRunner().invoke(app, ["submit", str(compiled), "--dry-run", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expforge: error: ") and message in lines[0], lines


def test_unknown_pipeline_name_is_one_line() -> None:
    result = CliRunner().invoke(app, ["submit", "no-such", "--project", PROJECT, "--region", REGION, "--bucket", "bk1"])
    assert result.exit_code == 2
    assert "PIPELINE: 'no-such' is neither a compiled pipeline file nor a pipeline name" in result.stderr


def test_check_target_accepts_project_numbers_and_gs_prefixes() -> None:
    assert check_target("123456789", "us-central1", "gs://my.bucket/") == ("123456789", "us-central1", "my.bucket")


def _make_target_ready() -> str | None:
    """Why `make pipeline-submit` cannot be tested here, or None."""
    if subprocess.run(["make", "-n", "pipeline-submit"], cwd=REPO, capture_output=True).returncode != 0:
        return "the Makefile has no pipeline-submit target"
    if subprocess.run(["make", "-q", ".venv/.installed"], cwd=REPO, capture_output=True).returncode != 0:
        return "the venv stamp is out of date (make would reinstall it)"
    return None


def test_make_pipeline_submit(vertex: VertexStandin) -> None:
    reason = _make_target_ready()
    if reason:
        pytest.skip(reason)
    params = " ".join(f"{k}={v}" for k, v in PARAMS.items())
    labels = " ".join(f"{k}={v}" for k, v in LABELS.items())
    argv = ["make", "--no-print-directory", "pipeline-submit", f"PIPELINE={PIPELINE}", f"PROJECT={PROJECT}"]
    argv += [f"REGION={REGION}", "BUCKET=make-bucket", "EXPERIMENT=make-exp", f"PARAMS={params}"]
    argv += [f"LABELS={labels}", "CACHE=0"]
    before = len(vertex.requests_for("CreatePipelineJob"))
    proc = subprocess.run(
        argv, cwd=REPO, env={**os.environ, **vertex.env()}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "https://console.cloud.google.com/vertex-ai/locations/" in proc.stdout
    requests = vertex.requests_for("CreatePipelineJob")[before:]
    assert len(requests) == 1
    images_json = REPO / "build" / "images.json"
    images = read_image_map(images_json) if images_json.is_file() else None
    expected = compile_pipeline(PIPELINE, Path(vertex.ca_cert).parent / "make-expected.yaml", images)
    assert_request(requests[0], spec_of(expected), bucket="make-bucket")
    job_name = f"{requests[0].parent}/pipelineJobs/{requests[0].pipeline_job_id}"
    assert experiment_links(vertex, job_name) == [
        f"projects/{PROJECT}/locations/{REGION}/metadataStores/default/contexts/make-exp"
    ]

    missing = subprocess.run(
        ["make", "--no-print-directory", "pipeline-submit", f"PROJECT={PROJECT}", f"REGION={REGION}", "DRY_RUN=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0
    assert "expforge: error: --bucket: required" in missing.stderr


def test_dry_run_with_a_task_environment_sets_it_on_every_task_and_leaves_the_file(compiled: Path) -> None:
    from expforge.errors import ExpforgeError
    from expforge.task_env import TaskEnvironment

    before = compiled.read_bytes()
    task_env = TaskEnvironment(tracking="gcp", gcp_project=PROJECT)
    result = submit_pipeline(compiled, project=PROJECT, region=REGION, bucket="b-1", dry_run=True, task_env=task_env)
    executors = result.request["pipelineJob"]["pipelineSpec"]["deploymentSpec"]["executors"]
    containers = [executor["container"] for executor in executors.values() if "container" in executor]
    assert containers and all(
        {"name": "EXPFORGE_TRACKING", "value": "gcp"} in c["env"]
        and {"name": "EXPFORGE_GCP_PROJECT", "value": PROJECT} in c["env"]
        for c in containers
    )
    assert compiled.read_bytes() == before and result.template is None
    with pytest.raises(ExpforgeError, match="EXPFORGE_TRACKING: unknown tracking backend 'sqlite'"):
        submit_pipeline(
            compiled,
            project=PROJECT,
            region=REGION,
            bucket="b-1",
            dry_run=True,
            task_env={"EXPFORGE_TRACKING": "sqlite"},
        )
