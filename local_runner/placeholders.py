"""Build a task's ``ExecutorInput`` and substitute KFP placeholders in its command line.

This is the executor protocol: a container receives its inputs and output locations either as the whole
``ExecutorInput`` JSON (``{{$}}``, used by Python components) or piecewise through placeholders such as
``{{$.inputs.parameters['n']}}`` and ``{{$.outputs.artifacts['model'].path}}`` (container components), possibly
wrapped in ``{"Concat": [...]}`` / ``{"IfPresent": {...}}`` structures. Substitution is a single regex pass,
so a parameter *value* that happens to look like a placeholder is never expanded a second time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expforge.local_runner.artifacts import LocalStorage, RuntimeArtifact
from expforge.local_runner.workspace import map_mount_path

_PLACEHOLDER = re.compile(r"\{\{\$(?:\.(?P<path>[^{}]*))?\}\}")
_IO_PATH = re.compile(
    r"^(?P<side>inputs|outputs)\.(?P<kind>parameters|artifacts)\['(?P<name>[^']*)'\]"
    r"(?:\.(?P<attr>\w+)(?:\['(?P<key>[^']*)'\])?)?$"
)


class PlaceholderError(ValueError):
    """A placeholder the runner cannot resolve (unknown form, or a missing input)."""


@dataclass(frozen=True)
class JobContext:
    """Values of the job-level placeholders (``{{$.pipeline_job_name}}`` and friends) for one task."""

    pipeline_name: str
    run_id: str
    task_name: str
    task_id: str
    pipeline_root: str
    create_time_utc: str
    # The run's workspace directory (``dsl.PipelineConfig(workspace=...)``); None when the pipeline has none.
    workspace_path: str | None = None

    def lookup(self, path: str) -> str | None:
        """The value of a job-level placeholder path, or ``None`` when ``path`` is not one."""
        if path == "workspace_path":
            if self.workspace_path is None:
                raise PlaceholderError(
                    "{{$.workspace_path}} (dsl.WORKSPACE_PATH_PLACEHOLDER) is used but the pipeline declares no "
                    "workspace (dsl.PipelineConfig(workspace=dsl.WorkspaceConfig(size=...)))"
                )
            return self.workspace_path
        return {
            "pipeline_job_name": self.run_id,
            "pipeline_job_resource_name": self.run_id,
            "pipeline_job_uuid": self.run_id,
            "pipeline_task_name": self.task_name,
            "pipeline_task_uuid": self.task_id,
            "pipeline_root": self.pipeline_root,
            "pipeline_job_create_time_utc": self.create_time_utc,
            "pipeline_job_schedule_time_utc": self.create_time_utc,
        }.get(path)


def as_text(value: Any) -> str:
    """How a value appears on a command line: strings verbatim, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def build_executor_input(
    parameters: Mapping[str, Any],
    artifacts: Mapping[str, list[RuntimeArtifact]],
    output_artifacts: Mapping[str, list[RuntimeArtifact]],
    output_parameter_files: Mapping[str, str],
    output_file: str,
) -> dict[str, Any]:
    """The ``ExecutorInput`` message as JSON (what KFP's Python executor parses from ``--executor_input``)."""
    return {
        "inputs": {
            "parameterValues": {name: value for name, value in parameters.items() if value is not None},
            "artifacts": {name: {"artifacts": [a.to_executor() for a in items]} for name, items in artifacts.items()},
        },
        "outputs": {
            "parameters": {name: {"outputFile": path} for name, path in output_parameter_files.items()},
            "artifacts": {
                name: {"artifacts": [a.to_executor() for a in items]} for name, items in output_artifacts.items()
            },
            "outputFile": output_file,
        },
    }


def substitute(text: str, lookup: Callable[[str | None], str | None]) -> str:
    """Replace every ``{{$...}}`` in ``text`` with ``lookup(path)``; unknown placeholders raise."""

    def replace(match: re.Match[str]) -> str:
        value = lookup(match.group("path"))
        if value is None:
            raise PlaceholderError(f"cannot resolve placeholder {match.group(0)}")
        return value

    return _PLACEHOLDER.sub(replace, text)


def resolve_input_references(parameters: dict[str, Any], names: list[str], job: JobContext) -> None:
    """Expand placeholders inside constant input values, in place.

    The compiler turns ``f"hello-{task.output}"`` into the constant ``hello-{{$.inputs.parameters['pc--x']}}``
    plus an extra input ``pc--x``; job placeholders (``dsl.PIPELINE_JOB_NAME_PLACEHOLDER``) can also be
    passed as constants, and so can the workspace path (``dsl.WORKSPACE_PATH_PLACEHOLDER``, or
    ``/kfp-workspace`` spelled literally). Only the constants listed in ``names`` are expanded.
    """

    def lookup(path: str | None) -> str | None:
        if path is None:
            return None
        match = _IO_PATH.match(path)
        if match and match["side"] == "inputs" and match["kind"] == "parameters" and not match["attr"]:
            if match["name"] not in parameters:
                raise PlaceholderError(f"input {match['name']!r} referenced by a constant has no value")
            return as_text(parameters[match["name"]])
        return job.lookup(path)

    workspace = Path(job.workspace_path) if job.workspace_path else None
    for name in names:
        value = parameters.get(name)
        if isinstance(value, str) and "{{$" in value:
            value = parameters[name] = substitute(value, lookup)
        if isinstance(value, str):
            parameters[name] = map_mount_path(value, workspace)


class CommandResolver:
    """Resolves a container's command and args against one task's ``ExecutorInput``."""

    def __init__(self, executor_input: dict[str, Any], job: JobContext, storage: LocalStorage) -> None:
        self.executor_input = executor_input
        self.job = job
        self.storage = storage

    def resolve(self, parts: list[str]) -> list[str]:
        """Resolve every element; ``IfPresent`` may drop elements or expand into several."""
        resolved: list[str] = []
        for part in parts:
            structure = self._structure(part)
            if structure is None:
                resolved.append(substitute(part, self._lookup))
            else:
                resolved.extend(self._flatten(self._resolve_structure(structure)))
        return resolved

    @staticmethod
    def _structure(part: str) -> dict[str, Any] | None:
        if not part.startswith(('{"Concat"', '{"IfPresent"')):
            return None
        try:
            value = json.loads(part)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) and len(value) == 1 else None

    @staticmethod
    def _flatten(value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, list):
            return [item for element in value for item in CommandResolver._flatten(element)]
        return [value]

    def _is_present(self, name: str) -> bool:
        inputs = self.executor_input["inputs"]
        return inputs["parameterValues"].get(name) is not None or bool(inputs["artifacts"].get(name))

    def _resolve_structure(self, node: Any) -> Any:
        if isinstance(node, str):
            return substitute(node, self._lookup)
        if isinstance(node, list):
            return [self._resolve_structure(element) for element in node]
        if not isinstance(node, dict) or len(node) != 1:
            raise PlaceholderError(f"unsupported placeholder structure {json.dumps(node)}")
        (kind, body), *_ = node.items()
        if kind == "Concat":
            return "".join(self._flatten([self._resolve_structure(element) for element in body]))
        if kind == "IfPresent":
            branch = body.get("Then") if self._is_present(body["InputName"]) else body.get("Else")
            return None if branch is None else self._resolve_structure(branch)
        raise PlaceholderError(f"unsupported placeholder structure {kind!r}")

    def _lookup(self, path: str | None) -> str | None:
        if path is None:
            return json.dumps(self.executor_input)
        if path in ("outputs.output_file", "outputMetadataUri"):
            return self.executor_input["outputs"]["outputFile"]
        job_value = self.job.lookup(path)
        if job_value is not None:
            return job_value
        match = _IO_PATH.match(path)
        if not match:
            return None
        side, kind, name, attr, key = match.group("side", "kind", "name", "attr", "key")
        if kind == "parameters":
            if side == "inputs" and attr is None:
                return as_text(self.executor_input["inputs"]["parameterValues"].get(name))
            if side == "outputs" and attr == "output_file":
                entry = self.executor_input["outputs"]["parameters"].get(name)
                return None if entry is None else entry["outputFile"]
            return None
        group = self.executor_input[side]["artifacts"].get(name)
        if not group or not group["artifacts"]:
            raise PlaceholderError(f"{side[:-1]} artifact {name!r} has no value")
        items = group["artifacts"]
        if attr is None:
            return json.dumps(items)
        artifact = items[0]
        if attr == "uri":
            return artifact["uri"]
        if attr == "path":
            local = self.storage.local_path(artifact["uri"])
            if local is None:
                raise PlaceholderError(f"artifact {name!r} at {artifact['uri']} has no local path")
            return str(local)
        if attr == "metadata":
            metadata = artifact.get("metadata") or {}
            return json.dumps(metadata) if key is None else as_text(metadata.get(key))
        return None
