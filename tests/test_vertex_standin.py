"""The Vertex AI stand-in, driven by the real google-cloud-aiplatform SDK over TLS (no mocks)."""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform, aiplatform_v1
from google.protobuf import json_format

from expforge.standins.tls import make_self_signed_cert, process_cert
from expforge.standins.vertex import VertexStandin, init_aiplatform, start_vertex_standin, trust_certificate

# gRPC loads its TLS roots once per process, at the first secure channel: trust the stand-in's certificate at
# collection time, before any test of this worker creates a channel.
trust_certificate(process_cert().cert_path)

PROJECT = "expforge-test"
REGION = "us-central1"


@pytest.fixture(scope="module")
def vertex() -> Iterator[VertexStandin]:
    with start_vertex_standin() as standin:
        yield standin


@pytest.fixture
def sdk(vertex: VertexStandin) -> VertexStandin:
    init_aiplatform(PROJECT, REGION, vertex.endpoint, vertex.ca_cert)
    return vertex


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _client(cls: type, vertex: VertexStandin) -> object:
    return cls(client_options={"api_endpoint": vertex.endpoint}, credentials=AnonymousCredentials())


def test_tls_is_real_an_untrusted_certificate_is_refused(vertex: VertexStandin, tmp_path: Path) -> None:
    """The server presents a certificate for 127.0.0.1; a client trusting another certificate cannot connect."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(vertex.ca_cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}

    other = make_self_signed_cert(tmp_path)
    for roots, reachable in ((other.cert_pem(), False), (vertex.ca_cert.read_bytes(), True)):
        channel = grpc.secure_channel(vertex.endpoint, grpc.ssl_channel_credentials(root_certificates=roots))
        try:
            grpc.channel_ready_future(channel).result(timeout=2 if not reachable else 10)
            connected = True
        except grpc.FutureTimeoutError:
            connected = False
        finally:
            channel.close()
        assert connected is reachable


def test_model_registry_versions_aliases_and_default(sdk: VertexStandin) -> None:
    name = unique("digits")
    first = aiplatform.Model.upload(
        display_name=name,
        artifact_uri="gs://bucket/models/1",
        serving_container_image_uri="example/serve:1",
        version_aliases=["candidate"],
        labels={"team": "ml"},
    )
    assert first.version_id == "1"
    assert set(first.version_aliases) == {"candidate", "default"}

    second = aiplatform.Model.upload(
        display_name=name,
        parent_model=first.resource_name,
        artifact_uri="gs://bucket/models/2",
        serving_container_image_uri="example/serve:1",
        version_aliases=["candidate"],
        is_default_version=False,
    )
    assert second.resource_name == first.resource_name and second.version_id == "2"
    registry = aiplatform.models.ModelRegistry(first.resource_name)
    aliases = {v.version_id: set(v.version_aliases) for v in registry.list_versions()}
    assert aliases == {"1": {"default"}, "2": {"candidate"}}  # the alias moved to the new version

    assert aiplatform.Model(f"{first.resource_name}@candidate").version_id == "2"
    assert aiplatform.Model(first.resource_name).version_id == "1"  # no suffix: the default version
    assert aiplatform.Model(first.resource_name, version="2").uri == "gs://bucket/models/2"

    registry.add_version_aliases(["prod", "default"], version="2")
    registry.remove_version_aliases(["candidate"], version="2")
    aliases = {v.version_id: set(v.version_aliases) for v in registry.list_versions()}
    assert aliases == {"1": set(), "2": {"default", "prod"}}
    assert aiplatform.Model(first.resource_name).version_id == "2"

    with pytest.raises(exceptions.InvalidArgument, match="default alias"):
        registry.remove_version_aliases(["default"], version="2")
    with pytest.raises(exceptions.InvalidArgument, match="version alias"):
        registry.add_version_aliases(["Bad_Alias"], version="1")
    with pytest.raises(exceptions.NotFound):
        aiplatform.Model(f"{first.resource_name}@missing")

    listed = aiplatform.Model.list(filter=f'display_name="{name}"')
    assert [(m.resource_name, m.version_id) for m in listed] == [(first.resource_name, "2")]
    assert aiplatform.Model.list(filter='labels.team="nobody"') == []
    merges = sdk.requests_for("MergeVersionAliases")
    assert [list(r.version_aliases) for r in merges[:2]] == [["prod", "default"], ["-candidate"]]


def test_model_evaluations_and_operations(sdk: VertexStandin) -> None:
    model = aiplatform.Model.upload(
        display_name=unique("evaluated"), artifact_uri="gs://b/m", serving_container_image_uri="example/serve:1"
    )
    client = _client(aiplatform_v1.ModelServiceClient, sdk)
    evaluation = aiplatform_v1.ModelEvaluation(
        display_name="real-test",
        metrics_schema_uri="gs://google-cloud-aiplatform/schema/modelevaluation/classification_metrics_1.0.0.yaml",
        metrics={"auPrc": 0.9, "logLoss": 0.3},
    )
    stored = client.import_model_evaluation(parent=model.versioned_resource_name, model_evaluation=evaluation)
    assert stored.name.startswith(f"{model.resource_name}/evaluations/")
    evaluations = model.list_model_evaluations()
    assert len(evaluations) == 1
    assert evaluations[0].metrics["auPrc"] == pytest.approx(0.9)

    # UploadModel answered a done long-running operation; GetOperation serves it too.
    request = aiplatform_v1.UploadModelRequest(
        parent=f"projects/{PROJECT}/locations/{REGION}",
        model=aiplatform_v1.Model(display_name="via-gapic"),
        parent_model=model.resource_name,
    )
    operation = client.upload_model(request=request)
    assert operation.result().model_version_id == "2"
    fetched = client._transport.operations_client.get_operation(operation.operation.name)
    assert fetched.done and fetched.name == operation.operation.name


def test_experiment_run_round_trip(sdk: VertexStandin) -> None:
    experiment = unique("exp")
    init_aiplatform(PROJECT, REGION, sdk.endpoint, sdk.ca_cert, experiment=experiment)
    aiplatform.start_run("run-1")
    aiplatform.log_params({"lr": 0.1, "model": "logreg"})
    aiplatform.log_metrics({"accuracy": 0.9})
    aiplatform.log_metrics({"macro_f1": 0.8})  # a second writer of the same run keeps the first value
    for step in range(3):
        aiplatform.log_time_series_metrics({"loss": 1.0 / (step + 1)}, step=step)
    aiplatform.end_run()
    aiplatform.start_run("run-2")
    aiplatform.log_params({"lr": 0.01, "model": "svm"})
    aiplatform.end_run()

    other = unique("exp")  # another experiment's runs must not show up in the first one
    init_aiplatform(PROJECT, REGION, sdk.endpoint, sdk.ca_cert, experiment=other)
    aiplatform.start_run("run-1")
    aiplatform.log_params({"lr": 5.0})
    aiplatform.end_run()

    frame = aiplatform.get_experiment_df(experiment).set_index("run_name").sort_index()
    assert list(frame.index) == ["run-1", "run-2"]
    assert frame.loc["run-1", "param.lr"] == pytest.approx(0.1)
    assert frame.loc["run-2", "param.model"] == "svm"
    assert frame.loc["run-1", "metric.accuracy"] == pytest.approx(0.9)
    assert frame.loc["run-1", "metric.macro_f1"] == pytest.approx(0.8)
    assert set(frame["state"]) == {"COMPLETE"}

    run = aiplatform.ExperimentRun("run-1", experiment=experiment)
    assert run.get_params() == {"lr": 0.1, "model": "logreg"}
    series = run.get_time_series_data_frame()
    assert list(series["step"]) == [0, 1, 2]
    assert list(series["loss"]) == pytest.approx([1.0, 0.5, 1 / 3])
    assert sdk.unimplemented == []


def test_pipeline_service_validates_like_vertex(sdk: VertexStandin) -> None:
    client = _client(aiplatform_v1.PipelineServiceClient, sdk)
    spec = {
        "pipelineInfo": {"name": "tiny"},
        "root": {"inputDefinitions": {"parameters": {"n": {"parameterType": "NUMBER_INTEGER"}}}},
        "schemaVersion": "2.1.0",
    }
    job = aiplatform_v1.PipelineJob(display_name="tiny")
    json_format.ParseDict(spec, aiplatform_v1.PipelineJob.pb(job).pipeline_spec)
    job.runtime_config.gcs_output_directory = "gs://bucket/root"
    parent = f"projects/{PROJECT}/locations/{REGION}"

    job.runtime_config.parameter_values = {"n": 3, "typo": 1}
    with pytest.raises(exceptions.InvalidArgument, match="typo is not found"):
        client.create_pipeline_job(parent=parent, pipeline_job=job, pipeline_job_id="tiny-1")
    job.runtime_config.parameter_values = {}
    with pytest.raises(exceptions.InvalidArgument, match="without a value or default: n"):
        client.create_pipeline_job(parent=parent, pipeline_job=job, pipeline_job_id="tiny-1")
    job.runtime_config.parameter_values = {"n": 3}
    job.runtime_config.gcs_output_directory = "/local/root"
    with pytest.raises(exceptions.InvalidArgument, match="gs://"):
        client.create_pipeline_job(parent=parent, pipeline_job=job, pipeline_job_id="tiny-1")
    job.runtime_config.gcs_output_directory = "gs://bucket/root"
    job.labels = {"Team": "x"}
    with pytest.raises(exceptions.InvalidArgument, match="label key 'Team'"):
        client.create_pipeline_job(parent=parent, pipeline_job=job, pipeline_job_id="tiny-1")
    job.labels = {}

    created = client.create_pipeline_job(parent=parent, pipeline_job=job, pipeline_job_id="tiny-1")
    assert created.state == aiplatform_v1.PipelineState.PIPELINE_STATE_PENDING
    assert created.job_detail.pipeline_run_context.schema_title == "system.PipelineRun"
    with pytest.raises(exceptions.AlreadyExists):
        client.create_pipeline_job(parent=parent, pipeline_job=job, pipeline_job_id="tiny-1")
    client.cancel_pipeline_job(name=created.name)
    assert client.get_pipeline_job(name=created.name).state == aiplatform_v1.PipelineState.PIPELINE_STATE_CANCELLED


def test_unimplemented_rpcs_are_answered_and_recorded(sdk: VertexStandin) -> None:
    client = _client(aiplatform_v1.JobServiceClient, sdk)
    with pytest.raises(exceptions.MethodNotImplemented):
        client.get_custom_job(name=f"projects/{PROJECT}/locations/{REGION}/customJobs/1")
    assert "/google.cloud.aiplatform.v1.JobService/GetCustomJob" in sdk.unimplemented


def test_standalone_server_prints_endpoint_and_certificate() -> None:
    """``python -m expforge.standins.vertex`` serves until SIGTERM; a client trusting its CA file reaches it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "expforge.standins.vertex"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"},
    )
    try:
        assert process.stdout is not None
        lines = dict(process.stdout.readline().strip().split(": ", 1) for _ in range(2))
        ca = Path(lines["ca_cert"]).read_bytes()
        channel = grpc.secure_channel(lines["endpoint"], grpc.ssl_channel_credentials(root_certificates=ca))
        stub = channel.unary_unary(
            "/google.cloud.aiplatform.v1.MetadataService/GetMetadataStore",
            request_serializer=aiplatform_v1.GetMetadataStoreRequest.serialize,
            response_deserializer=aiplatform_v1.MetadataStore.deserialize,
        )
        name = f"projects/{PROJECT}/locations/{REGION}/metadataStores/default"
        with pytest.raises(grpc.RpcError) as raised:
            stub(aiplatform_v1.GetMetadataStoreRequest(name=name), timeout=10)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        channel.close()
    finally:
        process.terminate()
        started = time.monotonic()
        assert process.wait(timeout=10) == 0, process.stderr.read() if process.stderr else ""
        assert time.monotonic() - started < 10


def test_a_taken_port_is_one_clear_error(vertex: VertexStandin) -> None:
    from expforge.errors import ExpforgeError
    from expforge.standins.vertex import serve_vertex_standin

    with pytest.raises(ExpforgeError, match=f"--port: cannot listen on 127.0.0.1:{vertex.port}"):
        serve_vertex_standin(port=vertex.port)


#: ``tgkill(2)``'s syscall number: a signal aimed at one thread of a process, which ``os.kill`` cannot do.
TGKILL = {"x86_64": 234, "aarch64": 131}


def _worker_threads_taking(pid: int, signum: int) -> list[int]:
    """Thread ids of ``pid`` other than its main thread that do not block ``signum`` (from /proc)."""
    taking = []
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
        blocked = int(next(line for line in status if line.startswith("SigBlk:")).split()[1], 16)
        if tid != pid and not blocked & (1 << (signum - 1)):
            taking.append(tid)
    return taking


def test_standalone_server_stops_when_sigterm_lands_on_a_grpc_thread() -> None:
    """The kernel may hand a process-wide SIGTERM to any thread that does not block it, and gRPC's server has
    several. Aimed at one of them, the signal used to leave the main thread in an unbounded wait for good."""
    number = TGKILL.get(platform.machine())
    if number is None or not Path("/proc/self/task").is_dir():
        pytest.skip(f"no tgkill syscall number for {platform.machine()} or no /proc")
    process = subprocess.Popen(
        [sys.executable, "-m", "expforge.standins.vertex"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("endpoint: ")  # serving, its threads started
        assert process.stdout.readline().startswith("ca_cert: ")
        workers = _worker_threads_taking(process.pid, signal.SIGTERM)
        assert workers, "the server runs no thread that could take the signal"
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.syscall(number, process.pid, workers[0], signal.SIGTERM) == 0, os.strerror(ctypes.get_errno())
        assert process.wait(timeout=30) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
