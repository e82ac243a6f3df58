"""Parameter values: protobuf ``Value`` to Python, typing by the spec, and pipeline inputs from the command line.

Inside the runner every parameter is a plain JSON value (str, int, float, bool, list, dict, None). Protobuf's
``Value`` has a single number type, so integers would silently become floats (``3`` → ``3.0``) on their way
into a component; :func:`coerce` restores the type the component declared, exactly where a value crosses a
component boundary.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from expforge.errors import ExpforgeError

ParameterType = pb.ParameterType.ParameterTypeEnum
JsonValue = Any

TYPE_NAMES: dict[int, str] = {
    pb.ParameterType.STRING: "string",
    pb.ParameterType.NUMBER_INTEGER: "int",
    pb.ParameterType.NUMBER_DOUBLE: "float",
    pb.ParameterType.BOOLEAN: "bool",
    pb.ParameterType.LIST: "list",
    pb.ParameterType.STRUCT: "dict",
    pb.ParameterType.TASK_FINAL_STATUS: "task final status",
    pb.ParameterType.TASK_CONFIG: "task config",
}

_TRUE_WORDS = {"true", "1", "yes", "y", "on"}
_FALSE_WORDS = {"false", "0", "no", "n", "off"}


def from_protobuf(value: struct_pb2.Value) -> JsonValue:
    """A protobuf ``Value`` as a plain JSON value (numbers come back as floats; see :func:`coerce`)."""
    return json_format.MessageToDict(value)


def type_name(parameter_type: int) -> str:
    """Readable name of a spec parameter type, for error messages."""
    return TYPE_NAMES.get(parameter_type, "unspecified")


def coerce(value: JsonValue, parameter_type: int) -> JsonValue:
    """Return ``value`` in the Python type a parameter declares, or raise ``TypeError``/``ValueError``.

    Integral floats become ints for ``NUMBER_INTEGER`` (protobuf lost the distinction); ints become floats for
    ``NUMBER_DOUBLE``. JSON text is accepted for lists and dicts, since a ``str`` output is a common carrier.
    ``None`` passes through: an absent optional value is not a type error.
    """
    if value is None or parameter_type in (pb.ParameterType.PARAMETER_TYPE_ENUM_UNSPECIFIED,):
        return value
    if parameter_type == pb.ParameterType.STRING:
        if isinstance(value, str):
            return value
        raise TypeError(f"expected a string, got {value!r}")
    if parameter_type == pb.ParameterType.NUMBER_INTEGER:
        if isinstance(value, bool):
            raise TypeError("expected an int, got a bool")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"expected an int, got {value!r}")
    if parameter_type == pb.ParameterType.NUMBER_DOUBLE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a float, got {value!r}")
        return float(value)
    if parameter_type == pb.ParameterType.BOOLEAN:
        if isinstance(value, bool):
            return value
        raise TypeError(f"expected a bool, got {value!r}")
    if parameter_type == pb.ParameterType.LIST:
        value = json.loads(value) if isinstance(value, str) else value
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {value!r}")
        return value
    if parameter_type == pb.ParameterType.STRUCT:
        value = json.loads(value) if isinstance(value, str) else value
        if not isinstance(value, dict):
            raise TypeError(f"expected a dict, got {value!r}")
        return value
    return value


def driver_text(value: JsonValue) -> str:
    """A non-string value as the text KFP's driver passes to a ``STRING`` input (``PbValueToText``).

    Numbers in plain decimal notation without a trailing ``.0`` (``3.0`` → ``"3"``, ``1e-07`` →
    ``"0.0000001"``), booleans as ``true``/``false``, ``None`` as the empty string, lists and dicts as compact
    JSON. This is what lets a loop item's integer field feed a ``str`` parameter.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return json.dumps(value)
        text = format(Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return json.dumps(_integral_floats_as_ints(value), separators=(",", ":"), sort_keys=True)


def _integral_floats_as_ints(value: JsonValue) -> JsonValue:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    return value


def coerce_input(value: JsonValue, parameter_type: int) -> JsonValue:
    """:func:`coerce` for a value entering a task: a non-string given to a ``STRING`` input becomes its text, as
    KFP's driver converts it (a loop item or selector result has no static type the compiler could check)."""
    if parameter_type == pb.ParameterType.STRING and value is not None and not isinstance(value, str):
        return driver_text(value)
    return coerce(value, parameter_type)


def coerce_lenient(value: JsonValue, parameter_type: int) -> JsonValue:
    """:func:`coerce`, but values that do not fit pass through unchanged (the component will complain)."""
    try:
        return coerce(value, parameter_type)
    except (TypeError, ValueError):
        return value


def parse_text(text: str, parameter_type: int) -> JsonValue:
    """Parse a command-line ``--param`` value for a parameter of the given type (raises ``ValueError``)."""
    if parameter_type == pb.ParameterType.STRING:
        return text
    if parameter_type == pb.ParameterType.NUMBER_INTEGER:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"expected an int, got {text!r}") from None
    if parameter_type == pb.ParameterType.NUMBER_DOUBLE:
        try:
            number = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a float, got {text!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"expected a finite float, got {text!r}")
        return number
    if parameter_type == pb.ParameterType.BOOLEAN:
        word = text.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if parameter_type in (pb.ParameterType.LIST, pb.ParameterType.STRUCT):
        kind = "list" if parameter_type == pb.ParameterType.LIST else "dict"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected a JSON {kind}, got {text!r} ({exc.msg})") from None
        return coerce(value, parameter_type)
    return text


def parse_cli_params(pairs: list[str]) -> dict[str, str]:
    """Split ``key=value`` strings (the value may itself contain ``=``); types are applied later."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ExpforgeError(f"--param {pair!r}: expected KEY=VALUE")
        if key in parsed:
            raise ExpforgeError(f"--param {key}: given more than once")
        parsed[key] = text
    return parsed


def resolve_pipeline_inputs(
    root: pb.ComponentSpec, given: Mapping[str, Any]
) -> tuple[dict[str, JsonValue], dict[str, str]]:
    """Typed pipeline parameters (given values, else spec defaults) and root artifact inputs (URIs/paths).

    String values are parsed by the declared type (the command line gives only strings); Python values are
    checked against it. Unknown names, wrong types and missing required parameters are :class:`ExpforgeError`.
    """
    declared = root.input_definitions.parameters
    declared_artifacts = root.input_definitions.artifacts
    unknown = sorted(set(given) - set(declared) - set(declared_artifacts))
    if unknown:
        known = ", ".join(sorted([*declared, *declared_artifacts])) or "none"
        raise ExpforgeError(f"unknown pipeline parameter {unknown[0]!r} (the pipeline takes: {known})")
    values: dict[str, JsonValue] = {}
    for name, spec in declared.items():
        if name in given:
            raw = given[name]
            try:
                if isinstance(raw, str) and spec.parameter_type != pb.ParameterType.STRING:
                    values[name] = parse_text(raw, spec.parameter_type)
                else:
                    values[name] = coerce(raw, spec.parameter_type)
            except (TypeError, ValueError) as exc:
                raise ExpforgeError(f"parameter {name!r} ({type_name(spec.parameter_type)}): {exc}") from None
        elif spec.HasField("default_value"):
            values[name] = coerce_lenient(from_protobuf(spec.default_value), spec.parameter_type)
        elif spec.is_optional:
            continue
        else:
            raise ExpforgeError(
                f"missing required pipeline parameter {name!r} ({type_name(spec.parameter_type)}); "
                f"pass it with --param {name}=VALUE"
            )
    artifacts: dict[str, str] = {}
    for name, spec in declared_artifacts.items():
        if name in given:
            artifacts[name] = str(given[name])
        elif not spec.is_optional:
            raise ExpforgeError(f"missing required pipeline artifact input {name!r}; pass --param {name}=PATH_OR_URI")
    return values, artifacts


_SELECTOR = re.compile(
    r'^\s*(?:parseJson\(string_value\)|struct_value)?(?P<path>(?:\[\s*(?:"[^"]*"|\'[^\']*\'|\d+)\s*\])*)\s*$'
)
_SELECTOR_STEP = re.compile(r'\[\s*(?:"(?P<dq>[^"]*)"|\'(?P<sq>[^\']*)\'|(?P<index>\d+))\s*\]')


def apply_selector(value: JsonValue, selector: str) -> JsonValue:
    """Apply a ``parameterExpressionSelector`` such as ``parseJson(string_value)["a"]`` (a loop item's field).

    Only the forms the compiler emits are accepted: an optional ``parseJson(string_value)`` followed by
    ``["key"]`` / ``[index]`` steps. Raises ``ValueError`` when the value has no such field.
    """
    match = _SELECTOR.match(selector)
    if not match:
        raise ValueError(f"unsupported parameter expression selector {selector!r}")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"selector {selector!r}: value {value!r} is not JSON") from None
    for step in _SELECTOR_STEP.finditer(match["path"]):
        index = step["index"]
        try:
            if index is not None:
                value = value[int(index)]
            else:
                value = value[step["dq"] if step["dq"] is not None else step["sq"]]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"selector {selector!r}: no such field in {value!r}") from None
    return value
