"""A stand-in for an Artifact Registry KFP repository, as ``kfp.registry.RegistryClient`` speaks to it.

Two faces, like the real service: the repository host (``https://REGION-kfp.pkg.dev/PROJECT/REPO``: a
multipart ``POST`` uploads a pipeline YAML, ``GET /PACKAGE/TAG|sha256:..`` downloads one) and the Artifact
Registry REST API (``/v1/projects/P/locations/L/repositories/R/packages/...``: packages, versions, tags).
Here the host face is served under ``/kfp/L/P/R`` and the API under ``/artifactregistry/v1/...`` of one local
server; :func:`registry_context` writes the client context file that points ``RegistryClient`` at it.

As on Artifact Registry, the package is named after the YAML's ``pipelineInfo.name``, a version is the
SHA-256 of the uploaded bytes (uploading the same bytes again gives the same version), and a tag names one
version (uploading with an existing tag moves it).
"""

from __future__ import annotations

import contextlib
import datetime
import email.parser
import email.policy
import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from expforge.standins.http_base import Captured, HttpStandin, Reply, error, serve

_SEG = r"([^/]+)"
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Version:
    digest: str
    content: bytes
    created: str


@dataclass
class _Package:
    versions: dict[str, _Version] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # tag -> version (sha256:...)
    created: str = field(default_factory=_now)


def _multipart(request: Captured) -> dict[str, bytes]:
    header = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + request.body)
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True)  # bytes for a leaf part, None for a nested multipart
            parts[str(name)] = payload if isinstance(payload, bytes) else b""
    return parts


def _pipeline_name(content: bytes) -> Any:
    """``pipelineInfo.name`` of the first YAML document (KeyError without one, TypeError if not a mapping)."""
    document = next(iter(yaml.safe_load_all(content)), None)
    if document is None:
        raise KeyError("pipelineInfo")
    return document["pipelineInfo"]["name"]


class KfpRegistry:
    """In-memory repositories keyed by (location, project, repo), each with packages, versions and tags."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.repos: dict[tuple[str, str, str], dict[str, _Package]] = {}

    def _repo(self, location: str, project: str, repo: str) -> dict[str, _Package]:
        return self.repos.setdefault((location, project, repo), {})

    @staticmethod
    def _prefix(location: str, project: str, repo: str) -> str:
        return f"projects/{project}/locations/{location}/repositories/{repo}"

    def _version_json(self, prefix: str, package: str, found: _Package, version: str) -> dict[str, Any]:
        entry = found.versions[version]
        tags = sorted(t for t, v in found.tags.items() if v == version)
        return {
            "name": f"{prefix}/packages/{package}/versions/{version}",
            "createTime": entry.created,
            "updateTime": entry.created,
            "relatedTags": [
                {
                    "name": f"{prefix}/packages/{package}/tags/{t}",
                    "version": f"{prefix}/packages/{package}/versions/{version}",
                }
                for t in tags
            ],
            "metadata": {"sizeBytes": str(len(entry.content))},
        }

    # -- the repository host ---------------------------------------------------------------------------------

    def upload(self, request: Captured, match: re.Match[str]) -> Reply:
        location, project, repo = match.groups()
        parts = _multipart(request)
        content = parts.get("content")
        if not content:
            return error(400, "upload: expected a multipart field 'content' with the pipeline YAML")
        try:
            name = _pipeline_name(content)
        except (yaml.YAMLError, TypeError, KeyError):
            return error(400, "upload: the content is not a compiled pipeline (no pipelineInfo.name)")
        tags = [t.strip() for t in parts.get("tags", b"").decode().split(",") if t.strip()]
        bad = [t for t in tags if not _TAG.fullmatch(t) or t.startswith("sha256:")]
        if bad:
            return error(400, f"upload: invalid tag {bad[0]!r}")
        version = "sha256:" + hashlib.sha256(content).hexdigest()
        with self._lock:
            package = self._repo(location, project, repo).setdefault(name, _Package())
            package.versions.setdefault(version, _Version(version, content, _now()))
            for tag in tags:
                package.tags[tag] = version
        return Reply(200, f"{name}/{version}", "text/plain")

    def download(self, request: Captured, match: re.Match[str]) -> Reply:
        location, project, repo, package, ref = match.groups()
        with self._lock:
            found = self._repo(location, project, repo).get(package)
            version = ref if ref.startswith("sha256:") else (found.tags.get(ref) if found else None)
            if found is None or version not in found.versions:
                return error(404, f"{package}/{ref} not found")
            return Reply(200, found.versions[version].content, "application/x-yaml")

    # -- the Artifact Registry API ---------------------------------------------------------------------------

    def list_packages(self, request: Captured, match: re.Match[str]) -> Reply:
        project, location, repo = match.groups()
        prefix = self._prefix(location, project, repo)
        with self._lock:
            packages = self._repo(location, project, repo)
            body = [
                {"name": f"{prefix}/packages/{n}", "createTime": p.created, "updateTime": p.created}
                for n, p in sorted(packages.items())
            ]
        return Reply(200, {"packages": body} if body else {})

    def _package(self, match: re.Match[str]) -> tuple[str, str, _Package | None]:
        project, location, repo, package = match.groups()[:4]
        return self._prefix(location, project, repo), package, self._repo(location, project, repo).get(package)

    def get_package(self, request: Captured, match: re.Match[str]) -> Reply:
        with self._lock:
            prefix, name, found = self._package(match)
            if found is None:
                return error(404, f"package {name} not found")
            return Reply(200, {"name": f"{prefix}/packages/{name}", "createTime": found.created})

    def list_versions(self, request: Captured, match: re.Match[str]) -> Reply:
        with self._lock:
            prefix, name, found = self._package(match)
            if found is None:
                return error(404, f"package {name} not found")
            versions = [self._version_json(prefix, name, found, v) for v in found.versions]
        return Reply(200, {"versions": versions})

    def get_version(self, request: Captured, match: re.Match[str]) -> Reply:
        version = match.group(5)
        with self._lock:
            prefix, name, found = self._package(match)
            if found is None or version not in found.versions:
                return error(404, f"version {name}/{version} not found")
            return Reply(200, self._version_json(prefix, name, found, version))

    def list_tags(self, request: Captured, match: re.Match[str]) -> Reply:
        with self._lock:
            prefix, name, found = self._package(match)
            if found is None:
                return error(404, f"package {name} not found")
            tags = [
                {"name": f"{prefix}/packages/{name}/tags/{t}", "version": f"{prefix}/packages/{name}/versions/{v}"}
                for t, v in sorted(found.tags.items())
            ]
        return Reply(200, {"tags": tags} if tags else {})

    def get_tag(self, request: Captured, match: re.Match[str]) -> Reply:
        tag = match.group(5)
        with self._lock:
            prefix, name, found = self._package(match)
            if found is None or tag not in found.tags:
                return error(404, f"tag {name}/{tag} not found")
            version = found.tags[tag]
        return Reply(
            200,
            {"name": f"{prefix}/packages/{name}/tags/{tag}", "version": f"{prefix}/packages/{name}/versions/{version}"},
        )

    def put_tag(self, request: Captured, match: re.Match[str]) -> Reply:
        tag = match.group(5) or request.query.get("tagId", "")
        body = request.json() or {}
        version = str(body.get("version", "")).rsplit("/versions/", 1)[-1]
        with self._lock:
            prefix, name, found = self._package(match)
            if found is None or version not in found.versions:
                return error(404, f"version {name}/{version} not found")
            if not _TAG.fullmatch(tag) or tag.startswith("sha256:"):
                return error(400, f"invalid tag {tag!r}")
            if request.method == "POST" and tag in found.tags:
                return error(409, f"tag {tag} already exists")
            found.tags[tag] = version
        return Reply(
            200,
            {"name": f"{prefix}/packages/{name}/tags/{tag}", "version": f"{prefix}/packages/{name}/versions/{version}"},
        )

    def delete_tag(self, request: Captured, match: re.Match[str]) -> Reply:
        tag = match.group(5)
        with self._lock:
            _, name, found = self._package(match)
            if found is None or found.tags.pop(tag, None) is None:
                return error(404, f"tag {name}/{tag} not found")
        return Reply(200, {})

    def routes(self) -> list[tuple[str, str, Any]]:
        """(method, path regex, handler) of every served call."""
        api = rf"/artifactregistry/v1/projects/{_SEG}/locations/{_SEG}/repositories/{_SEG}"
        package = rf"{api}/packages/{_SEG}"
        return [
            ("POST", rf"/kfp/{_SEG}/{_SEG}/{_SEG}/?", self.upload),
            ("GET", rf"/kfp/{_SEG}/{_SEG}/{_SEG}/{_SEG}/{_SEG}", self.download),
            ("GET", rf"{api}/packages", self.list_packages),
            ("GET", package, self.get_package),
            ("GET", rf"{package}/versions", self.list_versions),
            ("GET", rf"{package}/versions/{_SEG}", self.get_version),
            ("GET", rf"{package}/tags", self.list_tags),
            ("GET", rf"{package}/tags/{_SEG}", self.get_tag),
            ("POST", rf"{package}/tags()", self.put_tag),
            ("PATCH", rf"{package}/tags/{_SEG}", self.put_tag),
            ("DELETE", rf"{package}/tags/{_SEG}", self.delete_tag),
        ]


@dataclass
class KfpRegistryStandin:
    """The running registry stand-in: its HTTP face, its state, and the variable that points expforge here."""

    http: HttpStandin
    registry: KfpRegistry

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.http.url

    def env(self) -> dict[str, str]:
        """``EXPFORGE_KFP_REGISTRY_ENDPOINT``: expforge's templates commands talk to this stand-in."""
        return {"EXPFORGE_KFP_REGISTRY_ENDPOINT": self.url}


@contextlib.contextmanager
def start_kfp_registry_standin() -> Iterator[KfpRegistryStandin]:
    """A registry stand-in on a free 127.0.0.1 port for the ``with`` block."""
    registry = KfpRegistry()
    http = serve(registry.routes())
    try:
        yield KfpRegistryStandin(http, registry)
    finally:
        http.stop()
