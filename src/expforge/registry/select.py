"""Choosing a registry backend by configuration, and the champion/challenger policy on top of any of them.

Configuration (environment, so the same component image works locally and on Vertex):

* ``EXPFORGE_REGISTRY`` — ``local`` (default) or ``vertex``;
* local: ``EXPFORGE_REGISTRY_ROOT`` (default ``runs/registry``);
* vertex: ``EXPFORGE_GCP_PROJECT``, ``EXPFORGE_GCP_REGION``, ``EXPFORGE_MODEL_BUCKET`` (where model files are
  uploaded; default ``EXPFORGE_GCS_BUCKET``), ``EXPFORGE_SERVING_IMAGE`` (the serving container every Vertex
  model version must name) and, for another API endpoint or the local stand-in, ``EXPFORGE_VERTEX_ENDPOINT``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.registry.base import (
    ACCURACY_KEY,
    CHALLENGER,
    CHAMPION,
    DEFAULT_ALIAS,
    ModelRegistry,
    ModelVersion,
    NotRegisteredError,
    check_evaluation,
)
from expforge.task_env import TaskEnvironment

REGISTRY_ENV = "EXPFORGE_REGISTRY"
REGISTRY_KINDS = ("local", "vertex")

log = logging.getLogger(__name__)


def open_registry(kind: str | None = None, **options: Any) -> ModelRegistry:
    """The registry named by ``kind`` (else ``$EXPFORGE_REGISTRY``, else ``local``); ``options`` go to its class."""
    chosen = (kind or TaskEnvironment.from_env().registry or "local").strip().lower()
    if chosen == "local":
        from expforge.registry.local import LocalRegistry

        return LocalRegistry(**options)
    if chosen == "vertex":
        from expforge.registry.vertex import VertexRegistry

        return VertexRegistry.from_environment(**options)
    raise ExpforgeError(f"registry {chosen!r}: unknown backend; expected one of {', '.join(REGISTRY_KINDS)}")


def register_with_policy(
    registry: ModelRegistry,
    model_name: str,
    artifact: Path | str,
    *,
    evaluation: Mapping[str, Any],
    accuracy_key: str = ACCURACY_KEY,
    metadata: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Register a new version as ``challenger``; make it ``champion`` (and ``default``) when its accuracy is at
    least the current champion's, or when there is no champion yet.

    The new version always holds ``challenger`` (the latest candidate); the previous champion loses
    ``champion`` only when beaten or matched, since a tie goes to the newer model, trained on newer code and data.
    The aliases are given in the same registration, so an interrupted run never leaves the model without a
    champion nor two versions claiming it; the registry's lock (local: a file lock) keeps concurrent
    registrations from deciding against the same old champion.
    """
    checked = check_evaluation(evaluation, accuracy_key=accuracy_key)
    accuracy = float(checked[accuracy_key])
    with registry.lock(model_name):
        try:
            champion: ModelVersion | None = registry.get(model_name, CHAMPION)
        except NotRegisteredError:
            champion = None
        best = champion.metric(accuracy_key) if champion is not None else None
        promote = champion is None or best is None or accuracy >= best
        if champion is not None and best is None:
            log.warning(
                "champion %s@%s has no %r; the new version replaces it", model_name, champion.version_id, accuracy_key
            )
        aliases = [CHALLENGER, CHAMPION, DEFAULT_ALIAS] if promote else [CHALLENGER]
        return registry.register(
            model_name,
            artifact,
            evaluation=checked,
            metadata=metadata,
            labels=labels,
            aliases=aliases,
            accuracy_key=accuracy_key,
        )
