"""A compiled pipeline's declared inputs and the images it names, read leniently, and typed parameter values.

``expforge submit`` sends a compiled template to Vertex AI; the template may come from a registry and have been
compiled by a newer kfp than the one installed, so unlike the runner's strict loader
(:mod:`.pipeline_file`) unknown fields are ignored here: only the root's input definitions and the executors'
images are read. Values given on the command line are typed exactly as the runner types them
(:mod:`.values`), so ``-p epochs=3`` means the same thing to both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from expforge.errors import ExpforgeError
from expforge.spec.values import coerce, parse_text, type_name


def _first_document(path: Path) -> dict[str, Any]:
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    document = documents[0] if documents else None
    if not isinstance(document, dict) or "root" not in document:
        raise ExpforgeError(f"{path}: not a compiled pipeline spec (no root)")
    return document


def declared_parameters(path: Path | str) -> Mapping[str, Any]:
    """The pipeline's parameters (name → ``ParameterSpec``), from the root's input definitions."""
    spec = json_format.ParseDict(_first_document(Path(path)), pb.PipelineSpec(), ignore_unknown_fields=True)
    return spec.root.input_definitions.parameters


def typed_parameter_values(path: Path | str, given: Mapping[str, Any], *, flag: str = "--param") -> dict[str, Any]:
    """``given`` typed by the pipeline's declared inputs (strings are parsed as the command line's text)."""
    declared = declared_parameters(path)
    values: dict[str, Any] = {}
    for name, raw in given.items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ExpforgeError(f"{flag} {name}: the pipeline has no such parameter (it takes: {known})")
        kind = declared[name].parameter_type
        try:
            values[name] = parse_text(raw, kind) if isinstance(raw, str) else coerce(raw, kind)
        except (TypeError, ValueError) as exc:
            raise ExpforgeError(f"{flag} {name} ({type_name(kind)}): {exc}") from None
    return values


def spec_images(path: Path | str) -> list[str]:
    """Every container image the compiled spec names, sorted (the first YAML document only)."""
    path = Path(path)
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    document = (documents[0] if documents else None) or {}
    executors = document.get("deploymentSpec", {}).get("executors", {})
    return sorted({e.get("container", {}).get("image", "") for e in executors.values()} - {""})
