"""`make demo`: compile mnist-synthetic and run it with the local runner, then say what came out and what next.

The demo goes through exactly what Vertex AI would run: the compiled YAML, each task in its image (Docker when a
daemon answers, else the same executor commands as subprocesses). It talks while it runs — one line per task
start and finish (duration, cache hit) when stderr is not a terminal (CI logs, ``| tee``), the live view when it
is — and its closing summary names the winning configuration, its real-test accuracy, the model file, the
registered version and aliases, and the commands to look at the results.

Demo settings (why it is quick on a 2-core laptop with no loss of accuracy): each Hyperband trial requests one
CPU (``cpu=1``), so the runner admits two trials at once, each told to use one thread — no oversubscription —
while the font renderer (two CPUs) runs alone.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from expforge.local_runner.api import RunResult, run_pipeline
from expforge.local_runner.progress import ProgressReporter, default_reporter
from expforge.pipelines.compile import compile_pipeline, read_image_map

DEMO_PIPELINE = "mnist-synthetic"
DEFAULT_IMAGE_MAP = Path("build/images.json")
# Pipeline parameters the demo sets unless given: one CPU per trial (two trials at a time on two cores).
DEMO_DEFAULTS: dict[str, object] = {"cpu": "1"}
UI_URL = "http://127.0.0.1:8765"


def run_demo(
    *,
    backend: str = "auto",
    root: Path = Path("runs"),
    output_dir: Path = Path("build/pipelines"),
    images: Path | None = None,
    params: Mapping[str, object] | None = None,
    use_cache: bool = True,
    progress: ProgressReporter | None = None,
) -> RunResult:
    """Compile the demo pipeline (pinned to ``images``, default ``build/images.json`` when present) and run it,
    reporting progress (``default_reporter()`` unless given)."""
    image_file = images or (DEFAULT_IMAGE_MAP if DEFAULT_IMAGE_MAP.is_file() else None)
    image_map = read_image_map(image_file) if image_file else None
    spec = compile_pipeline(DEMO_PIPELINE, output_dir / f"{DEMO_PIPELINE}.yaml", image_map)
    return run_pipeline(
        spec,
        {**DEMO_DEFAULTS, **dict(params or {})},
        backend=backend,
        root=root,
        use_cache=use_cache,
        progress=progress if progress is not None else default_reporter(),
    )


def _task_of(result: RunResult, component: str) -> dict[str, Any] | None:
    """The (last) task record of a component, e.g. ``register-model``."""
    found = [task for task in result.tasks.values() if task.get("component") == component]
    return found[-1] if found else None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _model_file(model_uri: str | None) -> str | None:
    """The model's file: the artifact path itself, or the single file inside it when it is a folder."""
    if not model_uri:
        return None
    path = Path(model_uri)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if len(files) == 1:
            return str(files[0])
    return str(path)


def describe_results(result: RunResult, root: Path | None = None) -> list[str]:
    """The closing summary: outcome, winner, accuracy, model, registration, and the next commands."""
    outputs = result.pipeline_outputs
    lines = [f"run: {result.state} ({result.run_dir})"]
    config = outputs.get("config")
    if isinstance(config, str):
        with contextlib.suppress(ValueError):
            config = json.loads(config)
    if isinstance(config, dict) and config:
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items()))
        lines.append(f"winning config: {shown}")
    if outputs.get("val_accuracy") is not None:
        lines.append(f"real-val accuracy: {float(outputs['val_accuracy']):.4f}")
    if outputs.get("accuracy") is not None:
        lines.append(f"real-test accuracy: {float(outputs['accuracy']):.4f}")
    model = _model_file(_first(outputs.get("model")))
    if model:
        lines.append(f"model: {model}")
    evaluation = (_task_of(result, "evaluate") or {}).get("artifacts", {})
    if evaluation.get("evaluation"):
        lines.append(f"evaluation (confusion matrix, report): {_first(evaluation['evaluation'])}")
    registered = _task_of(result, "register-model")
    if registered and registered.get("state") == "SUCCEEDED":
        parameters = registered.get("parameters", {})
        aliases = parameters.get("aliases") or []
        lines.append(
            f"registered: {parameters.get('model_name', '?')} version {parameters.get('version_id', '?')}"
            + (f" (aliases: {', '.join(map(str, aliases))})" if aliases else "")
        )
    elif registered:
        reason = registered.get("reason") or registered.get("error") or registered.get("state")
        lines.append(f"not registered: {reason} (accuracy threshold or drift gate)")
    runs_root = root or result.run_dir.parent
    lines.append("next:")
    lines.append("  expforge runs leaderboard --metric accuracy   # every run, best first")
    lines.append(f"  expforge ui --root {runs_root}   # then open {UI_URL}")
    return lines
