"""``expforge submit --wait`` against the Vertex stand-in, whose jobs live a scripted life (one step per poll)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expforge.cli import app
from expforge.cloud.wait import Snapshot, watch
from expforge.errors import ExpforgeError
from expforge.pipelines.compile import compile_pipeline
from expforge.standins.tls import process_cert
from expforge.standins.vertex import VertexStandin, start_vertex_standin, trust_certificate
from expforge.standins.vertex_pipelines import Pipelines
from expforge.standins.vertex_progress import Life, task_order

trust_certificate(process_cert().cert_path)  # before any gRPC channel of this worker (roots load once)

PROJECT = "expforge-test"
REGION = "europe-west4"
PIPELINE = "mnist-baseline"


@pytest.fixture(scope="module")
def vertex() -> Iterator[VertexStandin]:
    with start_vertex_standin() as standin:
        yield standin


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = {"train-sklearn": "europe-west4-docker.pkg.dev/p/r/train-sklearn:abc"}
    return compile_pipeline(PIPELINE, tmp_path_factory.mktemp("compiled") / f"{PIPELINE}.yaml", images)


def _tasks(compiled: Path) -> list[str]:
    import yaml

    return task_order(next(yaml.safe_load_all(compiled.read_text())))


def _submit(vertex: VertexStandin, compiled: Path, job_id: str, life: Life):
    vertex.service(Pipelines).play(life)
    args = ["submit", str(compiled), "--project", PROJECT, "--region", REGION, "--bucket", "b-wait"]
    args += ["--job-id", job_id, "--wait", "--poll-interval", "0.01", "-p", "mnist_source=bundled"]
    before = len(vertex.requests_for("GetPipelineJob"))
    result = CliRunner().invoke(app, args, env=vertex.env())
    polls = len(vertex.requests_for("GetPipelineJob")) - before
    vertex.service(Pipelines).play(None)
    return result, polls


def test_wait_streams_every_state_and_exits_0_on_success(vertex: VertexStandin, compiled: Path) -> None:
    result, polls = _submit(vertex, compiled, "wait-ok", Life())
    assert result.exit_code == 0, result.output
    url = f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/runs/wait-ok?project={PROJECT}"
    assert result.stdout.strip() == url
    tasks = _tasks(compiled)
    lines = [line for line in result.stderr.splitlines() if line.startswith(("job:", "task "))]
    expected = ["job: RUNNING", *[f"task {t}: PENDING" for t in sorted(tasks)]]  # one poll: by name
    for task in tasks:
        expected += [f"task {task}: RUNNING", f"task {task}: SUCCEEDED"]
    assert lines == [*expected, "job: SUCCEEDED"]
    assert result.stderr.splitlines()[-1] == f"SUCCEEDED: {url}"
    assert polls == 2 * len(tasks) + 2  # one GetPipelineJob per step of the life, nothing else
    assert not vertex.unimplemented


def test_wait_names_the_failing_task_and_exits_1(vertex: VertexStandin, compiled: Path) -> None:
    tasks = _tasks(compiled)
    failing = tasks[1]
    result, _ = _submit(vertex, compiled, "wait-fail", Life("FAILED", failing, "OOMKilled: train ran out of memory"))
    assert result.exit_code == 1, result.output
    err = result.stderr.splitlines()
    assert f"task {failing}: FAILED" in err and "job: FAILED" in err
    assert f"task {tasks[2]}: NOT_TRIGGERED" in err
    assert err[-2].startswith("FAILED: https://console.cloud.google.com/vertex-ai/locations/")
    assert err[-1] == f"task {failing} failed: OOMKilled: train ran out of memory"


def test_cancelled_is_exit_1(vertex: VertexStandin, compiled: Path) -> None:
    result, _ = _submit(vertex, compiled, "wait-cancel", Life("CANCELLED"))
    assert result.exit_code == 1 and "job: CANCELLED" in result.stderr.splitlines()


def test_watch_survives_a_flaky_poll_and_gives_up_after_five() -> None:
    answers: list[object] = [ConnectionError("reset"), Snapshot("RUNNING", False), Snapshot("SUCCEEDED", True)]
    lines: list[str] = []

    def poll() -> Snapshot:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    result = watch(poll, interval_s=1, echo=lines.append, sleep=lambda _: None)
    assert result.final.succeeded and result.polls == 3 and result.failed_polls == 1
    assert lines == ["poll failed (ConnectionError); retrying in 1s", "job: RUNNING", "job: SUCCEEDED"]

    def dead() -> Snapshot:
        raise ConnectionError("refused")

    with pytest.raises(ExpforgeError, match="^--wait: 5 polls in a row failed, the last: refused$"):
        watch(dead, interval_s=1, echo=lines.append, sleep=lambda _: None)
    with pytest.raises(ExpforgeError, match="^--poll-interval: 0: expected a positive number"):
        watch(dead, interval_s=0)
