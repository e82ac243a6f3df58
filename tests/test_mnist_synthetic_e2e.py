"""mnist-synthetic end to end in its Docker images: Hyperband (warm-started rungs), evaluation, drift gates and
registration, with every trial tracked — the graph `make demo` and Vertex AI run, at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expforge.local_runner.api import run_pipeline
from expforge.pipelines.compile import compile_pipeline
from expforge.train.classifier import load_classifier

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

SPACE = {
    "lr": {"distribution": "log-uniform", "low": 0.002, "high": 0.01},
    "width": {"distribution": "choice", "values": [4, 8]},
    "batch_size": {"distribution": "choice", "values": [64]},
}
TINY = {
    "mnist_source": "bundled",
    "mnist_limit": 1000,
    "font_count": 800,
    "search_space": json.dumps(SPACE),
    "accuracy_threshold": 0.0,
    "cpu": "1",
    "memory": "2G",
}


def test_hyperband_pipeline_runs_in_docker_and_registers_the_winner(tmp_path: Path, built_images) -> None:
    spec = compile_pipeline("mnist-synthetic", tmp_path / "mnist-synthetic.yaml", built_images)
    root = tmp_path / "runs"
    result = run_pipeline(spec, TINY, backend="docker", root=root)
    assert result.state == "SUCCEEDED", json.dumps({k: t.get("error") for k, t in result.tasks.items()}, indent=1)

    # demo preset: bracket 1 (3 trials at 1 epoch → 1 at 3) and bracket 0 (2 trials at 3 epochs)
    trials = {k: t for k, t in result.tasks.items() if k.startswith("hyperband-trial")}
    assert len(trials) == 6 and all(t["state"] == "SUCCEEDED" for t in trials.values())
    records = [t["parameters"]["record"] for t in trials.values()]
    promoted = [r for r in records if r["item"]["rung"] == 1]
    # the promoted trial continued its rung-0 checkpoint (1 → 3 epochs), it did not start over
    assert len(promoted) == 1 and promoted[0]["item"]["resume_from"] is not None
    assert [row["epoch"] for row in promoted[0]["history"]] == [1, 2, 3]  # the whole run, resumed at 1
    assert result.tasks["register-model"]["state"] == "SUCCEEDED"

    winner = load_classifier(result.pipeline_outputs["model"][0])
    assert winner.framework == "pytorch"
    assert 0.0 <= result.pipeline_outputs["accuracy"] <= 1.0
    assert set(result.pipeline_outputs["config"]) == set(SPACE)

    from expforge.registry.local import LocalRegistry
    from expforge.tracking.local import LocalTracker

    champion = LocalRegistry(root / "registry").get("mnist-digits", "champion")
    assert champion.metric("accuracy") == pytest.approx(result.pipeline_outputs["accuracy"])
    with LocalTracker(root / ".tracking" / "runs.sqlite") as store:
        runs = [r for r in store.list_runs() if r.parent_run_id == result.run_id]
    trial_runs = [r for r in runs if r.step == "hyperband-trial"]
    assert len(trial_runs) == 6
    assert all(r.state == "SUCCEEDED" and r.params["trial"]["config"] for r in trial_runs)
    # the per-epoch series of each trial reached the tracking store (epoch_<n>_<name> metrics)
    assert any(len(r.series.get("val_accuracy", [])) >= 1 for r in trial_runs)
