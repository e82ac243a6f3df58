"""Every component run is tracked the same way, without a line of tracking code in the component itself.

The adapter calls :func:`call_tracked` around the step function: it opens a run with the configured backend
(``EXPFORGE_TRACKING``: the local runner sets ``local`` with a SQLite file shared by all tasks; Vertex runs
get ``gcp`` from ``expforge compile --env``; unset means off), logs the parameters and the input datasets,
and after the step returns logs what the step reported through KFP's own types: every value of an output
``Metrics`` artifact (keys ``epoch_<n>_<name>`` become points of the per-epoch series ``<name>``), the numeric
output parameters, and the URIs of the output artifacts. A failing step ends its run ``FAILED``.
"""

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from kfp import dsl
from kfp.dsl.types import type_annotations

EPOCH_KEY = re.compile(r"^epoch_(?P<step>\d+)_(?P<name>.+)$")
PARAMETER_TYPES = (str, int, float, bool, list, dict)


def _artifact_arguments(func: Callable[..., Any], kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the call's artifacts into inputs and outputs by the function's ``Input``/``Output`` annotations."""
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for name, parameter in inspect.signature(func).parameters.items():
        value = kwargs.get(name)
        if value is None:
            continue
        annotation = type_annotations.maybe_strip_optional_from_annotation(parameter.annotation)
        if type_annotations.is_artifact_wrapped_in_Output(annotation):
            outputs[name] = value
        elif type_annotations.is_artifact_wrapped_in_Input(annotation):
            inputs[name] = value
    return inputs, outputs


def _uris(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [item.uri for item in items if isinstance(item, dsl.Artifact)]


def split_metrics(values: Mapping[str, Any]) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """Numeric metric values → (final metrics, per-epoch series keyed by epoch)."""
    final: dict[str, float] = {}
    series: dict[int, dict[str, float]] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        match = EPOCH_KEY.match(key)
        if match:
            series.setdefault(int(match["step"]), {})[match["name"]] = float(value)
        else:
            final[key] = float(value)
    return final, series


def _numeric_outputs(result: Any) -> dict[str, float]:
    if isinstance(result, tuple) and hasattr(result, "_asdict"):
        items = result._asdict().items()
    elif isinstance(result, int | float) and not isinstance(result, bool):
        items = [("Output", result)]
    else:
        return {}
    return {k: float(v) for k, v in items if isinstance(v, int | float) and not isinstance(v, bool)}


def call_tracked(step: str, func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run ``func(**kwargs)`` inside a tracked component run (a no-op wrapper when tracking is off)."""
    from expforge.tracking.facade import component_run

    inputs, outputs = _artifact_arguments(func, kwargs)
    params = {
        k: v for k, v in kwargs.items() if k not in inputs and k not in outputs and isinstance(v, PARAMETER_TYPES)
    }
    datasets = [uri for value in inputs.values() for uri in _uris(value)]
    with component_run(step, params, datasets=datasets) as run:
        result = func(**kwargs)
        if run.enabled:
            final: dict[str, float] = {}
            for artifact in outputs.values():
                if isinstance(artifact, dsl.Metrics):
                    artifact_final, series = split_metrics(artifact.metadata)
                    final.update(artifact_final)
                    for epoch in sorted(series):
                        run.log_metrics(series[epoch], step=epoch)
            final.update(_numeric_outputs(result))
            if final:
                run.log_metrics(final)
            run.log_artifacts({name: uri for name, value in outputs.items() for uri in _uris(value)})
    return result
