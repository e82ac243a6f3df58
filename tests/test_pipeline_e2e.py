"""mnist-baseline end to end through the compiled YAML and the local runner (subprocess and Docker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from expforge.local_runner.api import RunResult, run_pipeline
from expforge.pipelines.compile import compile_pipeline
from expforge.train.sklearn_trainer import load_model

pytestmark = pytest.mark.e2e

SMALL = {"mnist_source": "bundled", "mnist_limit": 2000, "font_count": 1500, "epochs": 3, "real_fraction": 0.5}
STEPS = {"bootstrap-mnist", "render-font-digits", "train-sklearn", "evaluate"}


def check_successful_run(result: RunResult) -> None:
    assert result.state == "SUCCEEDED", json.dumps(result.record.get("tasks"), indent=1)[:3000]
    assert set(result.tasks) == STEPS
    assert all(t["state"] == "SUCCEEDED" and t["attempts"] == 1 for t in result.tasks.values())
    accuracy = result.pipeline_outputs["accuracy"]
    # Half of 1,400 real train digits plus fonts, 3 epochs: far above chance (0.1), below perfect.
    assert 0.6 < accuracy < 1.0
    model_uri = result.pipeline_outputs["model"][0]
    bundle = load_model(model_uri)
    assert bundle["params"]["epochs"] == 3
    evaluation = Path(result.tasks["evaluate"]["artifacts"]["evaluation"][0])
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["n"] == 400  # 20% of 2,000, stratified
    assert (evaluation / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    dataset = Path(result.tasks["render-font-digits"]["artifacts"]["dataset"][0])
    assert len((dataset / "labels.csv").read_text().splitlines()) == 1501
    history = Path(result.tasks["train-sklearn"]["artifacts"]["history"][0]).read_text().splitlines()
    # sequential curriculum (the default): 3 epochs on fonts, then 3 on the real fraction
    assert len(history) == 7 and history[0].startswith("epoch,")
    assert [line.split(",")[1].split(":")[0] for line in history[1:]] == ["0"] * 3 + ["1"] * 3


def check_tracked(result: RunResult, root: Path) -> None:
    """The run and each of its tasks are in the local tracking store, with provenance and metrics."""
    from expforge.tracking.local import LocalTracker

    with LocalTracker(root / ".tracking" / "runs.sqlite") as store:
        parent = store.get_run(result.run_id)
        children = {r.run_id: r for r in store.list_runs() if r.parent_run_id == result.run_id}
    assert parent.state == "SUCCEEDED" and parent.pipeline == "mnist-baseline"
    assert parent.params["font_count"] == SMALL["font_count"]
    assert parent.metrics["accuracy"] == pytest.approx(result.pipeline_outputs["accuracy"])
    assert parent.python and parent.pip_freeze and parent.image_digests
    assert set(children) == {f"{result.run_id}/{step}" for step in STEPS}
    evaluate = children[f"{result.run_id}/evaluate"]
    assert evaluate.state == "SUCCEEDED" and evaluate.params["split"] == "test"
    assert evaluate.metrics["accuracy"] == pytest.approx(result.pipeline_outputs["accuracy"])
    assert any(uri.endswith("/dataset") for uri in evaluate.datasets)
    assert set(evaluate.artifacts) >= {"metrics", "report", "evaluation"}


def test_subprocess_backend_runs_the_pipeline_and_reuses_the_cache(tmp_path: Path) -> None:
    spec = compile_pipeline("mnist-baseline", tmp_path / "mnist.yaml")
    first = run_pipeline(spec, SMALL, backend="subprocess", root=tmp_path / "runs")
    check_successful_run(first)
    check_tracked(first, tmp_path / "runs")
    again = run_pipeline(spec, SMALL, backend="subprocess", root=tmp_path / "runs")
    assert again.state == "SUCCEEDED"
    assert all(t["cached"] for t in again.tasks.values())
    assert again.pipeline_outputs["accuracy"] == first.pipeline_outputs["accuracy"]


def test_bad_component_input_fails_the_task_with_one_clear_line(tmp_path: Path) -> None:
    spec = compile_pipeline("mnist-baseline", tmp_path / "mnist.yaml")
    completed = subprocess.run(
        [sys.executable, "-m", "expforge", "run", str(spec), "--backend", "subprocess", "--root", str(tmp_path)]
        + [arg for k, v in {**SMALL, "mnist_limit": -5}.items() for arg in ("-p", f"{k}={v}")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 1, completed.stderr
    run_dir = Path(completed.stdout.strip().splitlines()[-1])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["state"] == "FAILED"
    assert record["tasks"]["bootstrap-mnist"]["state"] == "FAILED"
    log = (run_dir / "bootstrap-mnist" / "log.txt").read_text()
    assert "expforge: error: --limit" in log and "Traceback" not in log
    assert record["tasks"]["train-sklearn"]["state"] == "UPSTREAM_FAILED"


@pytest.mark.docker
def test_docker_backend_runs_the_same_yaml_in_the_built_images(tmp_path: Path, built_images: dict[str, str]) -> None:
    spec = compile_pipeline("mnist-baseline", tmp_path / "mnist.yaml", built_images)
    assert all(built_images[step] in spec.read_text() for step in STEPS)
    result = run_pipeline(spec, SMALL, backend="docker", root=tmp_path / "runs")
    check_successful_run(result)
    check_tracked(result, tmp_path / "runs")
