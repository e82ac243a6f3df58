"""The Registry page's data: every model in the runs root's local registry, its versions, aliases and evaluations.

Read-only: the registry is opened only when its catalogue exists (opening it would otherwise create one).
"""

from __future__ import annotations

from typing import Any

from expforge.ui.store import Store

SHOWN_METRICS = ("accuracy", "macro_f1", "n", "split")


def models(store: Store) -> dict[str, Any]:
    """``{"root": ..., "models": [{"name", "aliases": {alias: version}, "versions": [...]}]}``."""
    from expforge.registry.local import DB_NAME, LocalRegistry

    root = store.registry_root()
    if not (root / DB_NAME).is_file():
        return {"root": str(root), "models": []}
    registry = LocalRegistry(root)
    out = []
    for name in registry.list_models():
        versions = registry.list_versions(name)
        aliases = {alias: v.version_id for v in versions for alias in v.aliases}
        out.append(
            {
                "name": name,
                "aliases": aliases,
                "versions": [
                    {
                        "version": v.version_id,
                        "aliases": v.aliases,
                        "created": v.created,
                        "uri": v.uri,
                        "evaluation": v.evaluation,
                        "headline": {k: v.evaluation[k] for k in SHOWN_METRICS if k in v.evaluation},
                        "metadata": v.metadata,
                        "labels": v.labels,
                        "source_run": _source_run(v.metadata, v.labels),
                    }
                    for v in reversed(versions)
                ],
            }
        )
    return {"root": str(root), "models": out}


def _source_run(metadata: dict[str, Any], labels: dict[str, str]) -> str | None:
    """The pipeline run that registered a version, when its metadata or labels say."""
    for source in (metadata, labels):
        for key in ("pipeline_run", "run_id", "expforge_run_id", "run"):
            value = source.get(key)
            if isinstance(value, str) and value:
                return value.split("/")[0]
    return None
