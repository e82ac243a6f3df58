"""`make demo`: compile mnist-synthetic and run it with the local runner, then say where the results are.

The demo goes through exactly what Vertex AI would run: the compiled YAML, each task in its image (Docker when a
daemon answers, else the same executor commands as subprocesses).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from expforge.local_runner.api import RunResult, run_pipeline
from expforge.pipelines.compile import compile_pipeline, read_image_map

DEMO_PIPELINE = "mnist-synthetic"
DEFAULT_IMAGE_MAP = Path("build/images.json")


def run_demo(
    *,
    backend: str = "auto",
    root: Path = Path("runs"),
    output_dir: Path = Path("build/pipelines"),
    images: Path | None = None,
    params: Mapping[str, object] | None = None,
    use_cache: bool = True,
) -> RunResult:
    """Compile the demo pipeline (pinned to ``images``, default ``build/images.json`` when present) and run it."""
    image_file = images or (DEFAULT_IMAGE_MAP if DEFAULT_IMAGE_MAP.is_file() else None)
    image_map = read_image_map(image_file) if image_file else None
    spec = compile_pipeline(DEMO_PIPELINE, output_dir / f"{DEMO_PIPELINE}.yaml", image_map)
    return run_pipeline(spec, dict(params or {}), backend=backend, root=root, use_cache=use_cache)


def describe_results(result: RunResult) -> list[str]:
    """Lines telling where the model, the metrics and the confusion matrix of a finished demo run are."""
    lines = [f"run: {result.state} ({result.run_dir})"]
    tasks = result.tasks
    evaluation = tasks.get("evaluate", {}).get("artifacts", {})
    training = tasks.get("train-sklearn", {}).get("artifacts", {})
    accuracy = result.pipeline_outputs.get("accuracy")
    if accuracy is not None:
        lines.append(f"real-test accuracy: {float(accuracy):.4f}")
    for label, uris in (
        ("model", training.get("model")),
        ("training history (CSV)", training.get("history")),
        ("metrics", evaluation.get("metrics")),
        ("evaluation report (HTML)", evaluation.get("report")),
    ):
        if uris:
            lines.append(f"{label}: {uris[0]}")
    if evaluation.get("evaluation"):
        lines.append(f"confusion matrix: {Path(evaluation['evaluation'][0]) / 'confusion_matrix.png'}")
    return lines
