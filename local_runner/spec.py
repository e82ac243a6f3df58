"""Loading a compiled pipeline spec — moved to :mod:`expforge.spec.pipeline_file`, the compiled-spec layer that
the runner and ``expforge.cloud`` both stand on. This module keeps the runner's imports working."""

from expforge.spec.pipeline_file import (
    ComponentSpec,
    ContainerSpec,
    ImporterSpec,
    PipelineSpecFile,
    TaskSpec,
    describe_parse_error,
    is_control_flow_group,
    load_pipeline_spec,
)

__all__ = [
    "ComponentSpec",
    "ContainerSpec",
    "ImporterSpec",
    "PipelineSpecFile",
    "TaskSpec",
    "describe_parse_error",
    "is_control_flow_group",
    "load_pipeline_spec",
]
