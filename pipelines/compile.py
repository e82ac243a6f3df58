"""Compile pipelines to the pipeline-spec YAML that Vertex AI Pipelines and the local runner both execute.

The image map (step → image reference, e.g. ``build/images.json`` from ``make images`` or the map Cloud
Build writes after pushing) decides which image every task names, so the YAML is exactly what was built.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from expforge.atomic import staged_file
from expforge.errors import ExpforgeError
from expforge.pipelines import PIPELINES
from expforge.spec.task_env_injection import inject_task_environment
from expforge.task_env import TaskEnvironment, warn_unknown_variables

NON_STEP_IMAGE_KEYS = frozenset({"base", "torch-base"})


def read_image_map(path: Path | str) -> dict[str, str]:
    """Load and validate an image map JSON file (an object of step name → image reference)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExpforgeError(f"{path}: image map not found (make images writes build/images.json)") from None
    except json.JSONDecodeError as exc:
        raise ExpforgeError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ExpforgeError(f"{path}: expected a JSON object mapping step names to image references")
    return data


def check_image_map(images: Mapping[str, str], known_steps: Sequence[str], *, source: str) -> None:
    """Every key must be a known step (typos would silently fall back to default images)."""
    unknown = sorted(set(images) - set(known_steps) - NON_STEP_IMAGE_KEYS)
    if unknown:
        raise ExpforgeError(f"{source}: unknown step(s) {', '.join(unknown)}; known: {', '.join(sorted(known_steps))}")
    empty = sorted(step for step, ref in images.items() if not ref.strip())
    if empty:
        raise ExpforgeError(f"{source}: empty image reference for {', '.join(empty)}")


def load_factory(name: str) -> Callable[..., Any]:
    """Import the factory of pipeline ``name``."""
    if name not in PIPELINES:
        raise ExpforgeError(f"--pipeline: unknown pipeline {name!r}; known: {', '.join(sorted(PIPELINES))}")
    module_name, _, attribute = PIPELINES[name].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


ENV_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (``--env``) → a dict; a malformed item is a one-line error."""
    import re

    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(ENV_NAME_PATTERN, key):
            raise ExpforgeError(f"--env: {item!r} is not KEY=VALUE with KEY a valid environment variable name")
        env[key] = value
    TaskEnvironment.from_env(env)  # a malformed value (EXPFORGE_TRACKING=sqlite) is one line naming it
    warn_unknown_variables(env, where="--env")
    return env


def build_pipeline(name: str, preset: str | None = None) -> Any:
    """Call the factory of ``name`` (with ``preset`` when the pipeline has presets); call inside pinned_images."""
    from expforge.pipelines.presets import PRESETS, get_preset

    factory = load_factory(name)
    get_preset(name, preset)  # validates the name for every pipeline
    return factory(preset) if name in PRESETS else factory()


def compile_pipeline(
    name: str,
    output: Path | str,
    images: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    preset: str | None = None,
) -> Path:
    """Compile pipeline ``name`` to ``output`` (a ``.yaml`` file) with every step pinned to ``images``, the
    graph sized by ``preset`` and, when given, the environment ``env`` set on every task."""
    from kfp import compiler

    from expforge.components._adapter import load_all_components, pinned_images

    steps = list(load_all_components())
    check_image_map(images or {}, steps, source="image map")
    output = Path(output)
    if output.suffix not in (".yaml", ".yml", ".json"):
        raise ExpforgeError(f"{output}: a compiled pipeline must be written to a .yaml or .json file")
    with pinned_images(images), staged_file(output) as staging:
        pipeline = build_pipeline(name, preset)
        compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(staging))
        if env:
            inject_task_environment(staging, env)
    return output


def compile_pipelines(
    output_dir: Path | str,
    names: Sequence[str] | None = None,
    images: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    preset: str | None = None,
) -> list[Path]:
    """Compile each named pipeline (default: all) to ``<output_dir>/<name>.yaml`` (``preset`` applies to the
    pipelines that have it)."""
    from expforge.pipelines.presets import PRESETS

    output_dir = Path(output_dir)
    return [
        compile_pipeline(name, output_dir / f"{name}.yaml", images, env, preset if name in PRESETS else None)
        for name in (names or sorted(PIPELINES))
    ]
