"""A whole pipeline with the `gcp` backends against the local stand-ins — what `expforge run --emulate-gcp` does:
every task's run reaches BigQuery, Firestore and Vertex AI Experiments, and the winner of mnist-baseline is
registered in the Vertex Model Registry stand-in (model files in the fake Cloud Storage bucket)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expforge.local_runner.api import run_pipeline
from expforge.pipelines.compile import compile_pipeline
from expforge.tracking.select import TrackingConfig, open_tracker

pytestmark = pytest.mark.e2e

SMALL = {"mnist_source": "bundled", "mnist_limit": 1000, "font_count": 500, "epochs": 2}
STEPS = ("bootstrap-mnist", "render-font-digits", "train-sklearn", "evaluate")


def test_pipeline_tracks_every_task_to_the_gcp_stand_ins(gcp_env, gcp_stack, tmp_path: Path, monkeypatch) -> None:
    spec = compile_pipeline("mnist-baseline", tmp_path / "mnist.yaml")
    result = run_pipeline(spec, SMALL, backend="subprocess", root=tmp_path / "runs", tracking="gcp", task_env=gcp_env)
    assert result.state == "SUCCEEDED", json.dumps({k: t.get("error") for k, t in result.tasks.items()})
    assert not result.warnings or all("tracking" not in w for w in result.warnings), result.warnings

    with open_tracker(TrackingConfig.from_env(gcp_env)) as tracker:
        parent = tracker.get_run(result.run_id)  # read back from BigQuery
        children = {step: tracker.get_run(f"{result.run_id}/{step}") for step in STEPS}
        document = tracker.sinks["firestore"].get(f"{result.run_id}/evaluate")
    assert parent.state == "SUCCEEDED" and parent.metrics["accuracy"] == pytest.approx(
        result.pipeline_outputs["accuracy"]
    )
    assert all(run.state == "SUCCEEDED" and run.parent_run_id == result.run_id for run in children.values())
    assert children["evaluate"].metrics["accuracy"] == pytest.approx(result.pipeline_outputs["accuracy"])
    assert document["metrics"]["accuracy"] == pytest.approx(result.pipeline_outputs["accuracy"])
    assert not gcp_stack.vertex.unimplemented
    assert gcp_stack.vertex.requests_for("CreateExecution") or gcp_stack.vertex.requests_for("CreateContext")

    from expforge.registry.vertex import VertexRegistry

    for key, value in gcp_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EXPFORGE_SERVING_IMAGE", "expforge/serving:local")
    registry = VertexRegistry.from_environment()
    version = registry.register(
        "mnist-baseline",
        result.pipeline_outputs["model"][0],
        evaluation={"accuracy": result.pipeline_outputs["accuracy"]},
        aliases=["challenger"],
    )
    assert registry.get("mnist-baseline", "challenger").version_id == version.version_id
