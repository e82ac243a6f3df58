"""Parameter values — moved to :mod:`expforge.spec.values`, the compiled-spec layer that the runner and
``expforge.cloud`` both stand on. This module keeps the runner's imports (``from expforge.local_runner import
values``) working."""

from expforge.spec.values import (
    TYPE_NAMES,
    JsonValue,
    ParameterType,
    apply_selector,
    coerce,
    coerce_input,
    coerce_lenient,
    driver_text,
    from_protobuf,
    parse_cli_params,
    parse_text,
    resolve_pipeline_inputs,
    type_name,
)

__all__ = [
    "TYPE_NAMES",
    "JsonValue",
    "ParameterType",
    "apply_selector",
    "coerce",
    "coerce_input",
    "coerce_lenient",
    "driver_text",
    "from_protobuf",
    "parse_cli_params",
    "parse_text",
    "resolve_pipeline_inputs",
    "type_name",
]
