"""``expforge templates push|list`` and ``submit --template`` through the real ``kfp.registry.RegistryClient``,
against the Artifact Registry KFP stand-in; the submitted job goes to the Vertex stand-in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from typer.testing import CliRunner

from expforge.cli import app
from expforge.cloud.templates import parse_template
from expforge.errors import ExpforgeError
from expforge.pipelines.compile import compile_pipeline
from expforge.standins.kfp_registry import KfpRegistryStandin, start_kfp_registry_standin
from expforge.standins.tls import process_cert
from expforge.standins.vertex import VertexStandin, start_vertex_standin, trust_certificate

trust_certificate(process_cert().cert_path)

PROJECT = "expforge-test"
REGION = "europe-west4"
REPO = f"https://{REGION}-kfp.pkg.dev/{PROJECT}/pipelines"
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def registry() -> Iterator[KfpRegistryStandin]:
    with start_kfp_registry_standin() as standin:
        yield standin


@pytest.fixture(scope="module")
def vertex() -> Iterator[VertexStandin]:
    with start_vertex_standin() as standin:
        yield standin


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_pipeline("mnist-baseline", tmp_path_factory.mktemp("c") / "mnist-baseline.yaml")


def _push(registry: KfpRegistryStandin, target: str, *tags: str):
    args = ["templates", "push", target, "--repo", REPO, *[a for t in tags for a in ("--tag", t)]]
    return CliRunner().invoke(app, args, env=registry.env())


def test_push_uploads_the_compiled_yaml_with_its_tags(registry: KfpRegistryStandin, compiled: Path) -> None:
    result = _push(registry, str(compiled), SHA, "latest")
    assert result.exit_code == 0, result.output
    digest = "sha256:" + hashlib.sha256(compiled.read_bytes()).hexdigest()
    assert result.stdout.strip() == f"{REPO}/mnist-baseline/{digest}"
    (upload,) = registry.http.requests_to("POST", f"/kfp/{REGION}/{PROJECT}/pipelines/?")
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert compiled.read_bytes() in upload.body  # the spec bytes, unchanged
    assert f'name="tags"\r\n\r\n{SHA},latest\r\n'.encode() in upload.body
    package = registry.registry.repos[(REGION, PROJECT, "pipelines")]["mnist-baseline"]
    assert package.tags == {SHA: digest, "latest": digest}
    assert not registry.http.unimplemented


def test_list_shows_versions_and_tags(registry: KfpRegistryStandin, compiled: Path, tmp_path: Path) -> None:
    _push(registry, str(compiled), SHA, "latest")
    other = yaml.safe_load(compiled.read_text())
    other["sdkVersion"] = "changed"  # a second version of the same pipeline
    second = tmp_path / "mnist-baseline.yaml"
    second.write_text(yaml.safe_dump(other))
    assert _push(registry, str(second), "latest", "v2").exit_code == 0
    result = CliRunner().invoke(app, ["templates", "list", "--repo", REPO, "--json"], env=registry.env())
    assert result.exit_code == 0, result.output
    (package,) = json.loads(result.stdout)
    assert package["package"] == "mnist-baseline"
    tags = {v["version"]: v["tags"] for v in package["versions"]}
    assert tags == {
        "sha256:" + hashlib.sha256(second.read_bytes()).hexdigest(): ["latest", "v2"],  # latest moved
        "sha256:" + hashlib.sha256(compiled.read_bytes()).hexdigest(): [SHA],
    }
    api = f"/artifactregistry/v1/projects/{PROJECT}/locations/{REGION}/repositories/pipelines/packages"
    assert registry.http.requests_to("GET", api) and registry.http.requests_to("GET", f"{api}/mnist-baseline/tags")
    assert registry.http.requests_to("GET", f"{api}/mnist-baseline/versions")[-1].query == {"view": "FULL"}
    assert not registry.http.unimplemented


def test_submit_template_runs_the_pushed_version(registry, vertex, compiled: Path) -> None:
    _push(registry, str(compiled), SHA)
    env = {**registry.env(), **vertex.env()}
    args = ["submit", "--template", f"{REPO}/mnist-baseline@{SHA}", "--project", PROJECT, "--region", REGION]
    args += ["--bucket", "tpl-bucket", "--job-id", "from-template", "-p", "mnist_source=bundled"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    (request,) = [r for r in vertex.requests_for("CreatePipelineJob") if r.pipeline_job_id == "from-template"]
    assert request.pipeline_job.template_uri == f"{REPO}/mnist-baseline/{SHA}"
    spec = json_format.MessageToDict(aiplatform_v1.PipelineJob.pb(request.pipeline_job).pipeline_spec)
    assert spec["pipelineInfo"]["name"] == "mnist-baseline"
    assert dict(request.pipeline_job.runtime_config.parameter_values) == {"mnist_source": "bundled"}
    assert registry.http.requests_to("GET", f"/kfp/{REGION}/{PROJECT}/pipelines/mnist-baseline/{SHA}")


def test_a_missing_tag_is_one_line(registry, vertex) -> None:
    env = {**registry.env(), **vertex.env()}
    args = ["submit", "--template", f"{REPO}/mnist-baseline@nope", "--project", PROJECT, "--region", REGION]
    result = CliRunner().invoke(app, [*args, "--bucket", "b12"], env=env)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"expforge: error: --template {REPO}/mnist-baseline/nope: cannot download it: HTTP 404: mnist-baseline/nope "
        "not found"
    )


@pytest.mark.parametrize(
    "uri",
    [
        "gs://bucket/pipeline.yaml",
        f"https://{REGION}-docker.pkg.dev/{PROJECT}/pipelines/x",
        f"{REPO}",
        f"{REPO}/Upper@latest",
        f"{REPO}/pkg@sha256:1234",
        f"{REPO}/pkg@a@b",
    ],
)
def test_a_template_uri_of_the_wrong_form_is_one_line(uri: str) -> None:
    with pytest.raises(ExpforgeError, match=r"^--template: .* is not a template URI \(https://REGION-kfp"):
        parse_template(uri)
    result = CliRunner().invoke(app, ["submit", "--template", uri, "--project", PROJECT, "--region", REGION])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["submit"], ["schedule", "create", "--cron", "0 3 * * *"]])
def test_submit_and_schedule_take_exactly_one_of_pipeline_and_template(command: list[str]) -> None:
    for given in ([], ["mnist-baseline", "--template", f"{REPO}/pkg"]):
        result = CliRunner().invoke(app, [*command, *given, "--project", PROJECT, "--region", REGION])
        assert result.exit_code == 2 and "PIPELINE: give a pipeline name or file, or --template URI (exactly one)" in (
            result.stderr
        )
    wrong = CliRunner().invoke(app, [*command, "--template", "gs://b/p.yaml", "--project", PROJECT])
    assert wrong.exit_code == 2 and "--template: 'gs://b/p.yaml' is not a template URI" in wrong.stderr


def test_template_forms() -> None:
    assert parse_template(f"{REPO}/pkg").uri == f"{REPO}/pkg/latest"
    assert parse_template(f"{REPO}/pkg/v1").uri == f"{REPO}/pkg/v1"
    digest = "sha256:" + "a" * 64
    assert parse_template(f"{REPO}/pkg@{digest}").ref == digest


def test_bad_repo_and_tag_are_one_line(compiled: Path) -> None:
    bad_repo = CliRunner().invoke(app, ["templates", "push", str(compiled), "--repo", "https://example.com/x"])
    assert bad_repo.exit_code == 2 and "--repo: 'https://example.com/x' is not an Artifact Registry" in bad_repo.stderr
    bad_tag = CliRunner().invoke(app, ["templates", "push", str(compiled), "--repo", REPO, "--tag", "sha256:x"])
    assert bad_tag.exit_code == 2 and "--tag: 'sha256:x'" in bad_tag.stderr
