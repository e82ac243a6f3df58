"""``expforge submit --target kfp`` through the real ``kfp.Client`` against the KFP v2beta1 REST stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from expforge.cli import app
from expforge.pipelines.compile import compile_pipeline
from expforge.standins.kfp_api import KfpApiStandin, RunLife, start_kfp_api_standin
from expforge.standins.ports import free_port
from expforge.standins.vertex_progress import task_order

API = "/apis/v2beta1"


@pytest.fixture(scope="module")
def kfp() -> Iterator[KfpApiStandin]:
    with start_kfp_api_standin() as standin:
        yield standin


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_pipeline("mnist-baseline", tmp_path_factory.mktemp("c") / "mnist-baseline.yaml")


def _submit(kfp: KfpApiStandin, compiled: Path, *extra: str):
    args = ["submit", str(compiled), "--target", "kfp", "--host", kfp.url, "-p", "mnist_source=bundled"]
    return CliRunner().invoke(app, [*args, *extra])


def test_first_submit_uploads_the_pipeline_and_starts_a_run(kfp: KfpApiStandin, compiled: Path) -> None:
    result = _submit(kfp, compiled, "--experiment", "digits", "-p", "mnist_limit=300", "--no-cache")
    assert result.exit_code == 0, result.output
    (run_id,) = kfp.api.runs
    assert result.stdout.strip() == f"{kfp.url}/#/runs/details/{run_id}"  # stdout: the result only
    (upload,) = kfp.http.requests_to("POST", f"{API}/pipelines/upload")
    assert upload.query["name"] == "mnist-baseline" and compiled.read_bytes() in upload.body
    (created,) = kfp.http.requests_to("POST", f"{API}/experiments")
    assert created.json()["display_name"] == "digits"
    (run,) = kfp.http.requests_to("POST", f"{API}/runs")
    body = run.json()
    (pipeline_id,) = kfp.api.pipelines
    assert body["pipeline_version_reference"] == {
        "pipeline_id": pipeline_id,
        "pipeline_version_id": kfp.api.versions[pipeline_id][0]["pipeline_version_id"],
    }
    assert body["runtime_config"]["parameters"] == {"mnist_source": "bundled", "mnist_limit": 300}
    assert body["experiment_id"] == next(iter(kfp.api.experiments))
    assert kfp.api.versions[pipeline_id][0]["pipeline_spec"] == yaml.safe_load(compiled.read_text())
    assert not kfp.http.unimplemented


def test_a_second_submit_adds_a_version_and_reuses_the_experiment(kfp: KfpApiStandin, compiled: Path) -> None:
    _submit(kfp, compiled, "--experiment", "digits")
    result = _submit(kfp, compiled, "--experiment", "digits")
    assert result.exit_code == 0, result.output
    (pipeline_id,) = kfp.api.pipelines
    assert len(kfp.api.versions[pipeline_id]) >= 2
    (upload,) = kfp.http.requests_to("POST", f"{API}/pipelines/upload_version")[-1:]
    assert upload.query["pipelineid"] == pipeline_id
    assert len(kfp.api.experiments) == 1  # found by name, not created again
    assert not kfp.http.unimplemented


def test_wait_streams_states_and_names_the_failing_task(kfp: KfpApiStandin, compiled: Path) -> None:
    tasks = task_order(yaml.safe_load(compiled.read_text()))
    ok = _submit(kfp, compiled, "--wait", "--poll-interval", "0.01")
    assert ok.exit_code == 0, ok.output
    assert [line for line in ok.stderr.splitlines() if line.startswith("task ")][-1] == f"task {tasks[-1]}: SUCCEEDED"
    assert ok.stderr.splitlines()[-1].startswith(f"SUCCEEDED: {kfp.url}/#/runs/details/")
    kfp.api.life = RunLife("FAILED", tasks[0], "failed with exit code 137")
    failed = _submit(kfp, compiled, "--wait", "--poll-interval", "0.01")
    kfp.api.life = RunLife()
    assert failed.exit_code == 1, failed.output
    assert failed.stderr.splitlines()[-1] == f"task {tasks[0]} failed: failed with exit code 137"
    assert "job: FAILED" in failed.stderr.splitlines()
    assert not kfp.http.unimplemented


def test_a_host_that_does_not_answer_is_one_line(compiled: Path) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["submit", str(compiled), "--target", "kfp", "--host", host])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"expforge: error: --host {host}: no answer from Kubeflow Pipelines")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "kfp"], "--host: None: expected the KFP API URL"),
        (["--target", "kfp", "--host", "localhost:8888"], "--host: 'localhost:8888': expected the KFP API URL"),
        (["--target", "argo"], "--target: 'argo': expected vertex or kfp"),
    ],
)
def test_bad_target_input_is_one_line(compiled: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["submit", str(compiled), *args])
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_parameter_is_refused_before_anything_is_sent(kfp: KfpApiStandin, compiled: Path) -> None:
    before = len(kfp.http.requests)
    result = _submit(kfp, compiled, "-p", "typo=1")
    assert result.exit_code == 2 and "--param typo: the pipeline has no such parameter" in result.stderr
    assert [json.dumps(r.path) for r in kfp.http.requests[before:]] == [json.dumps(f"{API}/healthz")]
