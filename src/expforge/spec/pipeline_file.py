"""Load a compiled KFP v2 pipeline spec YAML into kfp's own protobuf messages.

The compiled YAML is the contract between the compiler, Vertex AI and this runner, so it is read with the
``pipeline_spec_pb2`` messages that define it instead of walking dictionaries by hand: a field the runner
misreads is a type error here, not a silent ``None`` deep inside the scheduler. Parsing is strict: an unknown
field (a typo such as ``componentRefs``, or a field from a newer kfp than the one installed) or a bad enum
value is one line naming it and where it is, instead of being dropped and failing later in a backend. The
graph is then checked as a whole (:mod:`.graph_check`: references, dependency cycles) before anything runs.

The YAML may carry a second document (the platform spec, e.g. Kubernetes settings and the pipeline
workspace); it is parsed too. Any other multi-document file is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from expforge.errors import ExpforgeError
from expforge.spec.graph_check import check_pipeline_graph

# (kfp's generated protobuf modules carry no type stubs: these aliases are ``Any`` to mypy, named for readers)
ComponentSpec: TypeAlias = pb.ComponentSpec
TaskSpec: TypeAlias = pb.PipelineTaskSpec
ContainerSpec: TypeAlias = pb.PipelineDeploymentConfig.PipelineContainerSpec
ImporterSpec: TypeAlias = pb.PipelineDeploymentConfig.ImporterSpec

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
    def workspace(self) -> pb.WorkspaceConfig | None:
        """The pipeline workspace (``dsl.PipelineConfig(workspace=...)``), from any platform's pipelineConfig."""
        if self.platform is None:
            return None
        for single in self.platform.platforms.values():
            if single.HasField("pipelineConfig") and single.pipelineConfig.HasField("workspace"):
                return single.pipelineConfig.workspace
        return None

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
    except RecursionError:
        raise ExpforgeError(f"{path}: not valid YAML (nested too deeply)") from None


_PARSE_PREFIX = re.compile(r"^(?:Failed to parse \w+ field: )+")
_NO_FIELD = re.compile(r'has no field named "(?P<field>[^"]*)" at "(?P<at>[^"]*)"')
_BAD_ENUM = re.compile(r"Invalid enum value (?P<value>.*?) for enum type (?P<type>[\w.]+) at (?P<at>\S+?)\.*$")
_AVAILABLE = re.compile(r"Available Fields\(except extensions\): \"\[(?P<names>[^\]]*)\]")


def _spec_version() -> str:
    try:
        from importlib import metadata

        return metadata.version("kfp-pipeline-spec")
    except Exception:  # noqa: BLE001 - only decorates a message
        return "unknown"


def _enum_names(full_name: str) -> list[str]:
    from google.protobuf import descriptor_pool

    try:
        enum = descriptor_pool.Default().FindEnumTypeByName(full_name)
    except KeyError:
        return ["?"]
    return [value.name for value in enum.values if not value.name.endswith("UNSPECIFIED")]


def describe_parse_error(exc: json_format.ParseError, document: str) -> str:
    """protobuf's nested ``Failed to parse X field: ...`` text as one short line naming the field and place."""
    text = " ".join(str(exc).split())
    text = _PARSE_PREFIX.sub("", text)
    missing = _NO_FIELD.search(text)
    if missing:
        at = missing["at"].split(".", 1)[1] if "." in missing["at"] else document
        names = _AVAILABLE.search(text)
        known = names["names"].replace("'", "") if names else ""
        hint = f"; expected one of: {known}" if known else ""
        return (
            f"unknown field {missing['field']!r} at {at}{hint} "
            f"(kfp-pipeline-spec {_spec_version()} is installed; a newer compiler may add fields)"
        )
    enum = _BAD_ENUM.search(text)
    if enum:
        at = enum["at"].split(".", 1)[1] if "." in enum["at"] else enum["at"]
        return f"bad value {enum['value']!r} at {at} (expected one of: {', '.join(_enum_names(enum['type']))})"
    text = re.sub(r"\bat (?:PipelineSpec|PipelineDeploymentConfig|PlatformSpec)\.", "at ", text)
    return text.rstrip(".") or "malformed"


def _parse_strict(document: Any, message: Any, what: str, path: Path) -> None:
    try:
        json_format.ParseDict(document, message)
    except json_format.ParseError as exc:
        raise ExpforgeError(f"{path}: invalid {what}: {describe_parse_error(exc, what)}") from exc
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:  # protobuf's own checks on odd input
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ExpforgeError(f"{path}: invalid {what}: {detail}") from exc


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
    if len(documents) > 2:
        raise ExpforgeError(
            f"{path}: {len(documents)} YAML documents; expected one pipeline spec, optionally followed by its "
            "platform spec (give one pipeline per file)"
        )
    spec_doc = documents[0]
    if len(documents) == 2 and (not isinstance(documents[1], dict) or "platforms" not in documents[1]):
        raise ExpforgeError(
            f"{path}: the second YAML document is not a platform spec (expected a mapping with 'platforms'); "
            "give one pipeline per file"
        )
    missing = [key for key in ("pipelineInfo", "root", "deploymentSpec") if key not in spec_doc]
    if missing:
        raise ExpforgeError(
            f"{path}: not a compiled KFP v2 pipeline spec (missing {', '.join(missing)}); "
            "compile the pipeline with `expforge compile` or kfp.compiler.Compiler"
        )
    pipeline = pb.PipelineSpec()
    deployment = pb.PipelineDeploymentConfig()
    _parse_strict(spec_doc, pipeline, "pipeline spec", path)
    _parse_strict(spec_doc.get("deploymentSpec") or {}, deployment, "deploymentSpec", path)
    if not pipeline.root.HasField("dag"):
        raise ExpforgeError(f"{path}: the pipeline spec's root has no DAG")
    try:
        check_pipeline_graph(pipeline, deployment)
    except ExpforgeError as exc:
        raise ExpforgeError(f"{path}: {exc}") from None

    platform = None
    notes: list[str] = []
    if len(documents) == 2:
        platform = pb.PlatformSpec()
        _parse_strict(documents[1], platform, "platform spec (second YAML document)", path)
        notes = _describe_platform(platform)
    return PipelineSpecFile(path, pipeline, deployment, platform, notes)
