"""The model registry contract, shared by the local registry and Vertex AI Model Registry.

Semantics (Vertex's, so a pipeline behaves the same against either backend):

* A *model* is a name; each :meth:`ModelRegistry.register` adds a *version* (ids ``"1"``, ``"2"``, … per model).
* A version always carries its *evaluation* (at least ``accuracy``): a model nobody measured cannot be compared
  with the champion, so registering one is refused before anything is copied or uploaded.
* An *alias* (``champion``, ``challenger``, …) names at most one version of a model: giving it to a version
  takes it from whichever version held it. ``default`` is the version a bare model name resolves to; a model's
  first version gets it, and it can be moved but never removed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from expforge.errors import ExpforgeError

DEFAULT_ALIAS = "default"
CHAMPION = "champion"
CHALLENGER = "challenger"
ACCURACY_KEY = "accuracy"
METRICS_JSON = "metrics.json"

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ALIAS = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]")  # Vertex's rule for version aliases
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")  # Vertex's rule for resource labels
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


class NotRegisteredError(ExpforgeError):
    """The model, version or alias asked for does not exist (a lookup miss, distinct from bad input)."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: where its files are, how it scored, and which aliases point at it."""

    name: str
    version_id: str
    aliases: list[str]
    uri: str
    evaluation: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""
    resource: str = ""  # backend-specific: the version directory, or the Vertex resource name ``…/models/ID@N``

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metric(self, key: str = ACCURACY_KEY) -> float | None:
        """A numeric metric of the attached evaluation, or ``None`` when it has none under ``key``."""
        value = self.evaluation.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)


@dataclass(frozen=True)
class Registration:
    """A :meth:`ModelRegistry.register` request after validation: what a backend stores, already known good.

    Every check runs before a backend copies or uploads anything, so a bad request leaves no trace in either.
    """

    name: str
    source: Path
    evaluation: dict[str, Any]
    metadata: dict[str, Any]
    labels: dict[str, str]
    aliases: list[str]


class ModelRegistry(Protocol):
    """What every registry backend offers (see the module docstring for the rules).

    Backends subclass it explicitly to inherit :meth:`register`, which validates the request the same way for
    all of them and hands the result to the backend's :meth:`_register`.
    """

    kind: str

    def register(
        self,
        model_name: str,
        artifact: Path | str,
        *,
        evaluation: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        aliases: Sequence[str] = (),
        accuracy_key: str = ACCURACY_KEY,
    ) -> ModelVersion:
        """Add a version holding a copy of ``artifact`` (a file or directory) with its evaluation."""
        request = Registration(
            name=check_model_name(model_name),
            evaluation=check_evaluation(evaluation, accuracy_key=accuracy_key),
            metadata=check_metadata(metadata),
            labels=check_labels(labels),
            aliases=check_aliases(aliases),
            source=check_artifact(artifact),
        )
        return self._register(request)

    def _register(self, request: Registration) -> ModelVersion:
        """Store a validated request as the model's next version (the backend-specific half of ``register``)."""
        ...

    def get(self, model_name: str, ref: str = DEFAULT_ALIAS) -> ModelVersion:
        """The version named by ``ref``: a version id (``"3"``) or an alias; :class:`NotRegisteredError` if none."""
        ...

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        """Every version of the model, oldest first (empty when the model does not exist)."""
        ...

    def list_models(self) -> list[str]:
        """Names of the registered models."""
        ...

    def set_alias(self, model_name: str, version_id: str, alias: str) -> ModelVersion:
        """Give ``alias`` to one version, taking it from the version that held it."""
        ...

    def remove_alias(self, model_name: str, alias: str) -> None:
        """Take ``alias`` away from whichever version holds it (``default`` cannot be removed)."""
        ...

    def lock(self, model_name: str) -> AbstractContextManager[None]:
        """Exclusive access to ``model_name`` for a read-decide-register sequence (where the backend can)."""
        ...


# --- validation shared by the backends ---------------------------------------------------------------------------


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise ExpforgeError(
            f"model_name {name!r}: expected 1–128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or alias.isdigit():
        raise ExpforgeError(
            f"alias {alias!r}: expected lowercase start, then letters, digits or '-' (2–128 characters, "
            "ending in a lowercase letter or digit)"
        )
    return alias


def check_aliases(aliases: Sequence[str]) -> list[str]:
    if isinstance(aliases, str):
        aliases = [aliases]
    return list(dict.fromkeys(check_alias(a) for a in aliases))


def check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in (labels or {}).items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise ExpforgeError(f"label key {key!r}: expected lowercase letters, digits, '_' or '-' (≤ 63)")
        if not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value):
            raise ExpforgeError(f"label {key}={value!r}: expected lowercase letters, digits, '_' or '-' (≤ 63)")
        checked[key] = value
    return checked


def check_evaluation(
    evaluation: Mapping[str, Any] | None, *, accuracy_key: str = ACCURACY_KEY, source: str = "evaluation"
) -> dict[str, Any]:
    """The evaluation as plain JSON data, refused when missing, empty or without a usable ``accuracy_key``."""
    if evaluation is None:
        raise ExpforgeError(f"{source}: missing; a model version is registered only together with its evaluation")
    if not isinstance(evaluation, Mapping) or not evaluation:
        raise ExpforgeError(f"{source}: empty; expected the evaluation metrics (at least {accuracy_key!r})")
    value = evaluation.get(accuracy_key)
    if value is None:
        raise ExpforgeError(f"{source}: has no {accuracy_key!r}; the registry compares versions by it")
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or not 0 <= value <= 1:
        raise ExpforgeError(f"{source}: {accuracy_key} is {value!r}; expected a number in [0, 1]")
    try:
        return json.loads(json.dumps(dict(evaluation), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ExpforgeError(f"{source}: not JSON data ({exc})") from None


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(metadata or {}), allow_nan=False, default=str))
    except (TypeError, ValueError) as exc:
        raise ExpforgeError(f"metadata: not JSON data ({exc})") from None


def check_artifact(artifact: Path | str) -> Path:
    path = Path(artifact)
    if not path.exists():
        raise ExpforgeError(f"{path}: model artifact not found")
    if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
        raise ExpforgeError(f"{path}: model directory holds no files")
    return path


def load_evaluation(path: Path | str, *, accuracy_key: str = ACCURACY_KEY) -> dict[str, Any]:
    """Read an evaluation: the ``evaluate`` step's output directory (its ``metrics.json``) or a JSON file."""
    path = Path(path)
    file = path / METRICS_JSON if path.is_dir() or not path.suffix else path
    if not file.is_file():
        raise ExpforgeError(
            f"{file}: not found; registering a model needs its evaluation (the evaluate step's metrics.json)"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ExpforgeError(f"{file}: not valid JSON ({exc})") from None
    return check_evaluation(data, accuracy_key=accuracy_key, source=str(file))
