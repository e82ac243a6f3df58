"""Task-level result cache: skip a task whose component, environment and inputs were already computed.

The key hashes three things, so a change to any of them is a miss:

* the component: its input/output definitions and its container (image reference, command, args, env);
* the environment: the image ID under Docker (a rebuilt image with the same tag is a different image), the
  interpreter and kfp version under the subprocess backend;
* the resolved inputs: parameter values, and for artifacts their type, metadata and *content digest* (not
  their URI, which differs in every run).

An entry is a small JSON file under ``<root>/.cache/`` that points at the outputs of the run that computed
them. A hit materializes those outputs into the new run's task directory (hard links where possible) and
rewrites their URIs, so every run directory is self-contained. An entry whose files are gone is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from expforge.local_runner.artifacts import RuntimeArtifact
from expforge.local_runner.spec import ComponentSpec, ContainerSpec

CACHE_FORMAT = 1


def component_fingerprint(component: ComponentSpec, container: ContainerSpec) -> dict[str, Any]:
    """What identifies a component's behaviour: its interface and its container spec (resources excluded)."""
    container_json = json_format.MessageToDict(container)
    container_json.pop("resources", None)
    return {
        "inputs": json_format.MessageToDict(component.input_definitions),
        "outputs": json_format.MessageToDict(component.output_definitions),
        "container": container_json,
    }


def cache_key(
    fingerprint: dict[str, Any],
    environment: str,
    parameters: dict[str, Any],
    artifacts: dict[str, list[RuntimeArtifact]],
) -> str:
    """SHA-256 of the canonical JSON of everything that determines a task's outputs."""
    payload = {
        "format": CACHE_FORMAT,
        "component": fingerprint,
        "environment": environment,
        "parameters": parameters,
        "artifacts": {
            name: [{"type": a.schema_title, "digest": a.digest, "metadata": a.metadata} for a in items]
            for name, items in artifacts.items()
        },
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """The outputs a task produced, as recorded by the run that computed them."""

    key: str
    run_id: str
    task: str
    parameters: dict[str, Any]
    artifacts: dict[str, list[RuntimeArtifact]]


class TaskCache:
    """A directory of cache entries; safe for concurrent writers (atomic renames, last writer wins)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def lookup(self, key: str) -> CacheEntry | None:
        """The entry for ``key`` if it exists and its local artifact files still do."""
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        try:
            artifacts = {
                name: [RuntimeArtifact.from_record(item) for item in items] for name, items in data["artifacts"].items()
            }
            entry = CacheEntry(key, data["run_id"], data["task"], dict(data["parameters"]), artifacts)
        except (KeyError, TypeError):
            return None
        for items in entry.artifacts.values():
            for artifact in items:
                if artifact.digest != "absent" and "://" not in artifact.uri and not Path(artifact.uri).exists():
                    return None
        return entry

    def store(self, entry: CacheEntry) -> None:
        """Write (or replace) an entry atomically."""
        path = self._path(entry.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": CACHE_FORMAT,
            "run_id": entry.run_id,
            "task": entry.task,
            "parameters": entry.parameters,
            "artifacts": {name: [a.to_record() for a in items] for name, items in entry.artifacts.items()},
        }
        fd, tmp = tempfile.mkstemp(prefix=".entry-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True, default=str)
        os.replace(tmp, path)
