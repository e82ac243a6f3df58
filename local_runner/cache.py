"""Task-level result cache: skip a task whose component, environment and inputs were already computed.

The key hashes three things, so a change to any of them is a miss:

* the component: its input/output definitions and its container (image reference, command, args, env);
* the environment: the image ID under Docker (a rebuilt image with the same tag is a different image), the
  interpreter and kfp version under the subprocess backend;
* the resolved inputs: parameter values, and for artifacts their type, metadata and *content digest* (not
  their URI, which differs in every run).

Metadata keys that change on every execution (``elapsed_seconds`` and other timings, see
:func:`stable_metadata`) are left out of the key: identical work hits the cache however long it took.

An entry is a small JSON file under ``<root>/.cache/`` plus a private copy of the task's output artifacts under
``<root>/.cache/store/`` (the cache directory is 0700, its files 0444, and it is never mounted into a task).
The copy is taken when the task succeeds, so nothing a run does later to its own outputs reaches the cache, and
a hit *copies* the stored artifacts into the new run's task directory (a reflink where the filesystem can
share extents): cache and runs never share a mutable inode. Every hit first checks that the stored copy is
exactly what was recorded — each file's path, type, size and modification time against the entry's manifest;
with ``EXPFORGE_CACHE_VERIFY=full`` also every byte against the stored SHA-256 — and treats a mismatch or a
missing file as a miss (with a warning), never as data to serve.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from expforge.errors import ExpforgeError
from expforge.local_runner import safefs
from expforge.local_runner.artifacts import RuntimeArtifact, content_digest
from expforge.local_runner.spec import ComponentSpec, ContainerSpec

CACHE_FORMAT = 2
VERIFY_ENV = "EXPFORGE_CACHE_VERIFY"
VERIFY_MODES = ("quick", "full")
# Artifact metadata that differs between two executions of the same work (timings, clock readings).
_VOLATILE_KEYS = frozenset(
    {"elapsed", "elapsed_s", "seconds", "duration_s", "runtime_s", "timestamp", "created_at", "started_at"}
)
_VOLATILE_SUFFIXES = ("_seconds", "_elapsed", "_timestamp")


def stable_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Artifact metadata without the keys that change on every execution (``elapsed_seconds``, ``seconds``,
    ``*_seconds``, timestamps): two runs that produced the same bytes are the same input downstream."""
    return {
        key: value
        for key, value in metadata.items()
        if key not in _VOLATILE_KEYS and not key.endswith(_VOLATILE_SUFFIXES)
    }


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
            name: [{"type": a.schema_title, "digest": a.digest, "metadata": stable_metadata(a.metadata)} for a in items]
            for name, items in artifacts.items()
        },
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """The outputs a task produced, as recorded by the run that computed them. In an entry returned by
    :meth:`TaskCache.lookup`, local artifact URIs point at the cache's verified private copy."""

    key: str
    run_id: str
    task: str
    parameters: dict[str, Any]
    artifacts: dict[str, list[RuntimeArtifact]]


def _manifest(path: Path) -> list[list[Any]]:
    """``[relative path, kind, size, mtime_ns]`` of ``path`` and everything under it (no link is followed)."""
    rows = []
    for entry, info in [(path, os.lstat(path)), *safefs.walk(path)]:
        kind = "d" if stat.S_ISDIR(info.st_mode) else "l" if stat.S_ISLNK(info.st_mode) else "f"
        size = 0 if kind == "d" else info.st_size
        rows.append([str(entry.relative_to(path)), kind, size, 0 if kind == "d" else info.st_mtime_ns])
    return rows


def _remove_tree(path: Path) -> None:
    """Remove a store directory (its 0444 files sit in writable directories, so rmtree needs no chmod)."""
    shutil.rmtree(path, ignore_errors=True)


class TaskCache:
    """A directory of cache entries and their stored outputs; safe for concurrent writers (atomic renames, last
    writer wins)."""

    def __init__(self, directory: Path, verify: str | None = None) -> None:
        self.directory = directory
        self.verify = verify or os.environ.get(VERIFY_ENV) or "quick"
        if self.verify not in VERIFY_MODES:
            raise ExpforgeError(f"{VERIFY_ENV}: expected one of {', '.join(VERIFY_MODES)}, got {self.verify!r}")

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def _store_dir(self, key: str) -> Path:
        return self.directory / "store" / key[:2] / key

    def _ensure_private(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)

    def lookup(self, key: str) -> tuple[CacheEntry | None, str | None]:
        """``(entry, None)`` for a verified hit, ``(None, None)`` for a miss, ``(None, why)`` for an entry whose
        stored outputs are gone or no longer what was recorded (the caller warns and recomputes)."""
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None, None
        try:
            if data.get("format") != CACHE_FORMAT:
                return None, None
            store = self._store_dir(key)
            artifacts: dict[str, list[RuntimeArtifact]] = {}
            for name, items in data["artifacts"].items():
                placed = []
                for item in items:
                    artifact = RuntimeArtifact.from_record(item)
                    stored = item.get("stored")
                    if stored is not None:
                        if not isinstance(stored, str) or "/" in stored or stored.startswith("."):
                            return None, None
                        local = store / stored
                        problem = self._verify(local, item.get("manifest") or [], artifact.digest)
                        if problem:
                            return None, f"cache entry of {data['task']} (run {data['run_id']}): {problem}; recomputing"
                        artifact = artifact.with_uri(str(local))
                    placed.append(artifact)
                artifacts[name] = placed
            entry = CacheEntry(key, data["run_id"], data["task"], dict(data["parameters"]), artifacts)
        except (KeyError, TypeError, AttributeError):
            return None, None
        return entry, None

    def _verify(self, local: Path, manifest: list[list[Any]], digest: str | None) -> str | None:
        """Why ``local`` is not what the entry recorded, or ``None`` when it is."""
        try:
            actual = _manifest(local)
        except FileNotFoundError:
            return f"{local.name} is missing"
        except OSError as exc:
            return f"{local.name} cannot be read ({exc.strerror or exc})"
        if actual != manifest:
            return f"{local.name} was changed after it was stored (sizes or modification times differ)"
        if self.verify == "full" and content_digest(local) != digest:
            return f"{local.name} was changed after it was stored (its SHA-256 differs)"
        return None

    def store(self, entry: CacheEntry, run_dir: Path) -> None:
        """Copy the entry's local artifacts (only those inside ``run_dir``) into the store, then write the entry
        atomically. Raises ``OSError`` (e.g. a full disk) with nothing half-written left behind."""
        self._ensure_private()
        final = self._store_dir(entry.key)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.key[:12]}-", dir=final.parent))
        records: dict[str, list[dict[str, Any]]] = {}
        try:
            for name, items in entry.artifacts.items():
                records[name] = []
                for index, artifact in enumerate(items):
                    record = artifact.to_record()
                    local = None if "://" in artifact.uri else Path(artifact.uri)
                    if local is not None and local.is_relative_to(run_dir) and os.path.lexists(local):
                        stored = f"{name}.{index}"
                        safefs.copy_tree(local, staging / stored, file_mode=0o444, dir_mode=0o755)
                        record.update(stored=stored, manifest=_manifest(staging / stored))
                    records[name].append(record)
            if final.exists():
                aside = Path(tempfile.mkdtemp(prefix=f".old-{entry.key[:12]}-", dir=final.parent))
                os.replace(final, aside / "old")
                _remove_tree(aside)
            os.replace(staging, final)
        except BaseException:
            _remove_tree(staging)
            raise
        data = {
            "format": CACHE_FORMAT,
            "run_id": entry.run_id,
            "task": entry.task,
            "parameters": entry.parameters,
            "artifacts": records,
        }
        path = self._path(entry.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".entry-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, sort_keys=True, default=str)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
