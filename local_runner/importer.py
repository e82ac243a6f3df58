"""``dsl.importer``: turn an existing URI into an artifact that downstream tasks consume.

Nothing is executed and nothing is copied (as on Vertex, the artifact *is* the given URI), except with
``download_to_workspace=True``: the file or directory is then copied into the pipeline workspace and consumers
get that copy. A relative local
path is made absolute against the current directory so that it means the same thing inside a container. The
artifact's content digest is taken so that caching downstream notices when the imported file changes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.local_runner import values
from expforge.local_runner.artifacts import RuntimeArtifact, content_digest
from expforge.local_runner.context import Outcome, RunContext
from expforge.local_runner.placeholders import PlaceholderError, as_text, substitute
from expforge.local_runner.record import TaskState, now_iso
from expforge.local_runner.spec import ComponentSpec, ImporterSpec
from expforge.local_runner.workspace import import_into_workspace


def _resolve_metadata(value: Any, parameters: dict[str, Any]) -> Any:
    """Importer metadata may reference task inputs (``{{$.inputs.parameters['metadata']}}``)."""

    def lookup(path: str | None) -> str | None:
        prefix, suffix = "inputs.parameters['", "']"
        if path and path.startswith(prefix) and path.endswith(suffix):
            name = path[len(prefix) : -len(suffix)]
            if name in parameters:
                return as_text(parameters[name])
        return None

    if isinstance(value, str):
        # A value that is exactly one placeholder takes the input's own type, not its text.
        stripped = value.strip()
        if stripped.startswith("{{$.inputs.parameters['") and stripped.endswith("']}}") and stripped.count("{{") == 1:
            name = stripped[len("{{$.inputs.parameters['") : -len("']}}")]
            if name in parameters:
                return parameters[name]
        return substitute(value, lookup) if "{{$" in value else value
    if isinstance(value, list):
        return [_resolve_metadata(item, parameters) for item in value]
    if isinstance(value, dict):
        return {str(_resolve_metadata(k, parameters)): _resolve_metadata(v, parameters) for k, v in value.items()}
    return value


def _download_to_workspace(
    ctx: RunContext, key: str, uri: str, local: Path | None
) -> tuple[str, Path | None, str | None]:
    """``download_to_workspace=True``: consumers read a copy in the pipeline workspace (``(uri, path, error)``)."""
    if ctx.workspace is None:
        return uri, local, "download_to_workspace needs a pipeline workspace (dsl.PipelineConfig(workspace=...))"
    if local is None or not local.exists():
        return uri, local, f"download_to_workspace: {uri} is not a local file or directory"
    try:
        copy = import_into_workspace(local, ctx.workspace, key)
    except (ExpforgeError, OSError) as exc:
        return uri, local, str(exc)
    return str(copy), copy, None


def run_importer(
    ctx: RunContext, key: str, task_name: str, component: ComponentSpec, spec: ImporterSpec, parameters: dict[str, Any]
) -> Outcome:
    """Record the imported artifact as the task's single output."""
    started = time.monotonic()
    task_dir = ctx.run_dir / key
    task_dir.mkdir(parents=True, exist_ok=True)
    log_path = task_dir / "log.txt"
    ctx.record.update(key, kind="importer", started=now_iso(), log=str(log_path), state=TaskState.RUNNING, attempts=1)
    error = None
    uri = ""
    if spec.artifact_uri.HasField("runtime_parameter"):
        name = spec.artifact_uri.runtime_parameter
        value = parameters.get(name)
        uri = value if isinstance(value, str) else ""
        if not uri:
            error = f"importer URI input {name!r} has no string value"
    else:
        uri = values.from_protobuf(spec.artifact_uri.constant)
    metadata: dict[str, Any] = {}
    try:
        raw_metadata = values.from_protobuf(spec.metadata) if spec.HasField("metadata") else {}
        metadata = _resolve_metadata(raw_metadata, parameters)
    except PlaceholderError as exc:
        error = f"importer metadata: {exc}"
    if error is None and "://" not in uri:
        uri = str(Path(uri).expanduser().absolute())
    local = ctx.storage.local_path(uri) if error is None else None
    if local is not None and not local.exists():
        ctx.warn(f"{key}: imported path {uri} does not exist")
    if error is None and spec.download_to_workspace:
        uri, local, error = _download_to_workspace(ctx, key, uri, local)
    output_name, output_spec = next(iter(component.output_definitions.artifacts.items()), ("artifact", None))
    schema = output_spec.artifact_type if output_spec is not None else spec.type_schema
    artifact = RuntimeArtifact.of_type(output_name, uri, schema, metadata=metadata, digest=content_digest(local))
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"=== importer {now_iso()} ===\n" + (f"error: {error}\n" if error else f"imported {uri}\n"))
    duration = time.monotonic() - started
    state = TaskState.FAILED if error else TaskState.SUCCEEDED
    ctx.record.update(
        key,
        state=state,
        finished=now_iso(),
        duration_s=round(duration, 3),
        error=error,
        artifacts={} if error else {output_name: [uri]},
        artifact_metadata={} if error else {output_name: [metadata]},
    )
    ctx.progress.task_finished(key, state, cached=False, attempts=1, duration_s=duration)
    if error:
        return Outcome(TaskState.FAILED, error=f"{key}: {error}")
    return Outcome(TaskState.SUCCEEDED, artifacts={output_name: [artifact]})
