"""Load a compiled KFP v2 pipeline spec YAML into kfp's own protobuf messages.

The compiled YAML is the contract between the compiler, Vertex AI and this runner, so it is read with the
``pipeline_spec_pb2`` messages that define it instead of walking dictionaries by hand: a field the runner
misreads is a type error here, not a silent ``None`` deep inside the scheduler. The YAML may carry a second
document (the platform spec, e.g. Kubernetes settings); it is parsed too and kept for reporting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from expforge.errors import ExpforgeError

ComponentSpec = pb.ComponentSpec
TaskSpec = pb.PipelineTaskSpec
ContainerSpec = pb.PipelineDeploymentConfig.PipelineContainerSpec
ImporterSpec = pb.PipelineDeploymentConfig.ImporterSpec

# Control-flow groups are sub-DAGs the compiler generates for dsl.ParallelFor / dsl.If / dsl.ExitHandler. They
# are not user-visible steps, so task keys elide them (a nested *pipeline*, by contrast, adds a path segment).
_GROUP_TASK_NAME = re.compile(r"^(for-loop|condition|condition-branches|exit-handler)-\d+$")


def is_control_flow_group(task_name: str) -> bool:
    """Whether a DAG task is a compiler-generated control-flow group rather than a nested pipeline."""
    return bool(_GROUP_TASK_NAME.match(task_name))


@dataclass(frozen=True)
class PipelineSpecFile:
    """A parsed pipeline spec: the pipeline, its executors and (optionally) its platform spec."""

    path: Path
    pipeline: pb.PipelineSpec
    deployment: pb.PipelineDeploymentConfig
    platform: pb.PlatformSpec | None = None
    ignored_platform_settings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The pipeline's name (``pipelineInfo.name``)."""
        return self.pipeline.pipeline_info.name or self.path.stem

    @property
    def root(self) -> ComponentSpec:
        """The root component: its DAG is the pipeline, its input definitions are the pipeline parameters."""
        return self.pipeline.root

    def component(self, name: str) -> ComponentSpec:
        """The component a task refers to (``componentRef.name``)."""
        try:
            return self.pipeline.components[name]
        except KeyError:
            raise ExpforgeError(f"{self.path}: task refers to unknown component {name!r}") from None

    def executor_of(self, component: ComponentSpec) -> pb.PipelineDeploymentConfig.ExecutorSpec:
        """The executor (container or importer) that implements a leaf component."""
        try:
            return self.deployment.executors[component.executor_label]
        except KeyError:
            raise ExpforgeError(f"{self.path}: unknown executor {component.executor_label!r}") from None

    def container_images(self) -> dict[str, list[str]]:
        """Every container image the spec names, with the executors that use it (for preflight checks)."""
        images: dict[str, list[str]] = {}
        for label, executor in sorted(self.deployment.executors.items()):
            if executor.HasField("container"):
                images.setdefault(executor.container.image, []).append(label.removeprefix("exec-"))
        return images


def _read_documents(path: Path) -> list[Any]:
    if not path.exists():
        raise ExpforgeError(f"{path}: pipeline file not found")
    if not path.is_file():
        raise ExpforgeError(f"{path}: not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExpforgeError(f"{path}: cannot read pipeline file ({exc})") from exc
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10× faster on big specs
    try:
        return [doc for doc in yaml.load_all(text, Loader=loader) if doc is not None]
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise ExpforgeError(f"{path}: not valid YAML ({problem})") from exc


def _describe_platform(platform: pb.PlatformSpec) -> list[str]:
    """Human-readable names of platform settings that have no local meaning (reported, then ignored)."""
    notes = []
    for platform_name, single in platform.platforms.items():
        executors = single.deployment_spec.executors
        for label in sorted(executors):
            notes.append(f"{platform_name} settings of {label.removeprefix('exec-')}")
    return notes


def load_pipeline_spec(path: Path | str) -> PipelineSpecFile:
    """Parse a compiled pipeline YAML; bad input raises :class:`ExpforgeError` with one clear line."""
    path = Path(path)
    documents = _read_documents(path)
    if not documents or not isinstance(documents[0], dict):
        raise ExpforgeError(f"{path}: not a compiled KFP pipeline spec (expected a YAML mapping)")
    spec_doc = documents[0]
    missing = [key for key in ("pipelineInfo", "root", "deploymentSpec") if key not in spec_doc]
    if missing:
        raise ExpforgeError(
            f"{path}: not a compiled KFP v2 pipeline spec (missing {', '.join(missing)}); "
            "compile the pipeline with `expforge compile` or kfp.compiler.Compiler"
        )
    pipeline = pb.PipelineSpec()
    deployment = pb.PipelineDeploymentConfig()
    try:
        json_format.ParseDict(spec_doc, pipeline, ignore_unknown_fields=True)
        json_format.ParseDict(spec_doc.get("deploymentSpec") or {}, deployment, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ExpforgeError(f"{path}: malformed pipeline spec ({exc})") from exc
    if not pipeline.root.HasField("dag"):
        raise ExpforgeError(f"{path}: the pipeline spec's root has no DAG")

    platform = None
    notes: list[str] = []
    if len(documents) > 1 and isinstance(documents[1], dict):
        platform = pb.PlatformSpec()
        try:
            json_format.ParseDict(documents[1], platform, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise ExpforgeError(f"{path}: malformed platform spec (second YAML document: {exc})") from exc
        notes = _describe_platform(platform)
    return PipelineSpecFile(path, pipeline, deployment, platform, notes)
