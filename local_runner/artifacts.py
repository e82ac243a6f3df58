"""Artifacts as the runner passes them between tasks, and where their bytes live.

An artifact is identified by its URI, exactly as on Vertex. Locally the URI *is* an absolute path under the
run directory (``<root>/<run-id>/<task>/<output-name>``), so the same string works on the host, inside a
container (the run directory is mounted at the same absolute path) and in ``run.json``. :class:`LocalStorage`
is the seam for other pipeline roots (a ``gs://`` root would map URIs to ``/gcs/...`` paths as KFP does).

A content digest travels with each artifact: cache keys hash *what* a task consumed, not *where* it was stored,
so a re-run whose upstream outputs were copied to a new run directory still hits the cache downstream.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from expforge.local_runner import safefs

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RuntimeArtifact:
    """One artifact instance: what ``ExecutorInput``/``ExecutorOutput`` call a ``RuntimeArtifact``."""

    name: str
    uri: str
    schema_title: str = "system.Artifact"
    schema_version: str = "0.0.1"
    metadata: dict[str, Any] = field(default_factory=dict)
    digest: str | None = None

    @classmethod
    def of_type(cls, name: str, uri: str, schema: pb.ArtifactTypeSchema, **extra: Any) -> RuntimeArtifact:
        """An artifact with the type a component declares."""
        return cls(name, uri, schema.schema_title or "system.Artifact", schema.schema_version or "0.0.1", **extra)

    def to_executor(self) -> dict[str, Any]:
        """The JSON shape of ``RuntimeArtifact`` inside ``ExecutorInput``."""
        return {
            "name": self.name,
            "type": {"schemaTitle": self.schema_title, "schemaVersion": self.schema_version},
            "uri": self.uri,
            "metadata": self.metadata,
        }

    def to_record(self) -> dict[str, Any]:
        """A JSON form for the cache index (round-trips through :meth:`from_record`)."""
        return {
            "name": self.name,
            "uri": self.uri,
            "schema_title": self.schema_title,
            "schema_version": self.schema_version,
            "metadata": self.metadata,
            "digest": self.digest,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> RuntimeArtifact:
        """Inverse of :meth:`to_record`."""
        return cls(
            name=data["name"],
            uri=data["uri"],
            schema_title=data.get("schema_title", "system.Artifact"),
            schema_version=data.get("schema_version", "0.0.1"),
            metadata=dict(data.get("metadata") or {}),
            digest=data.get("digest"),
        )

    def with_uri(self, uri: str) -> RuntimeArtifact:
        """The same artifact stored elsewhere (a cache hit materialized into a new run)."""
        return replace(self, uri=uri)


class LocalStorage:
    """Artifact URIs are absolute local paths; the pipeline root is a local directory."""

    def artifact_uri(self, task_dir: Path, output_name: str) -> str:
        """Where a task's output artifact is written."""
        return str(task_dir / output_name)

    def local_path(self, uri: str) -> Path | None:
        """The host path behind a URI, or ``None`` for a remote URI this storage cannot reach."""
        if "://" in uri:
            return Path(uri[len("file://") :]) if uri.startswith("file://") else None
        return Path(uri)


def content_digest(path: Path | None) -> str:
    """SHA-256 over a file's bytes, or over a directory's relative paths and file bytes (sorted).

    A missing path has a fixed digest ("absent"): a component may legitimately not write an output. Symlinks
    are hashed by their text and never followed, and files are opened with ``O_NOFOLLOW``: a task's output may
    hold a link to a host file, which a root runner must not read.
    """
    if path is None:
        return "remote"
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    digest = hashlib.sha256()
    if stat.S_ISDIR(top.st_mode):
        entries = [(p, info) for p, info in safefs.walk(path) if not stat.S_ISDIR(info.st_mode)]
    else:
        entries = [(path, top)]
    for file, info in entries:
        digest.update(str(file.relative_to(path)).encode() if file != path else b"<file>")
        digest.update(b"\0")
        if stat.S_ISLNK(info.st_mode):
            digest.update(b"<symlink>" + os.fsencode(os.readlink(file)))
        elif stat.S_ISREG(info.st_mode):
            fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        else:
            digest.update(b"<special>")
        digest.update(b"\0")
    return digest.hexdigest()
