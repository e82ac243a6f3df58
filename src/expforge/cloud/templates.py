"""Pipeline templates in Artifact Registry: ``expforge templates push|list`` and ``submit --template``.

Why Artifact Registry (not a GCS folder): Vertex AI lists a KFP repository's packages as templates, runs a
version by its URI and records which one ran (``template_uri``); tags such as a commit SHA and ``latest``
name versions. All calls go through ``kfp.registry.RegistryClient`` (credentials: application default).

``EXPFORGE_KFP_REGISTRY_ENDPOINT`` (``http://host:port``) points the client at a local stand-in: it then gets
a context file with that server's addresses in place of ``REGION-kfp.pkg.dev`` and the Artifact Registry API.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError

ENDPOINT_ENV = "EXPFORGE_KFP_REGISTRY_ENDPOINT"
_REPO = re.compile(
    r"https://(?P<location>[a-z]+(?:-[a-z]+)+[0-9]+)-kfp\.pkg\.dev/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])"
    r"/(?P<repo>[a-z][a-z0-9-]{0,62})"
)
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
REPO_FORM = "https://REGION-kfp.pkg.dev/PROJECT/REPOSITORY"
TEMPLATE_FORM = f"{REPO_FORM}/PACKAGE[@TAG|@sha256:DIGEST] (or .../PACKAGE/TAG)"


@dataclass(frozen=True)
class Repo:
    """An Artifact Registry KFP repository."""

    location: str
    project: str
    repo: str

    @property
    def url(self) -> str:
        """``https://REGION-kfp.pkg.dev/PROJECT/REPO``."""
        return f"https://{self.location}-kfp.pkg.dev/{self.project}/{self.repo}"


@dataclass(frozen=True)
class TemplateRef:
    """One pipeline version in a repository: ``ref`` is a tag or ``sha256:...``."""

    repo: Repo
    package: str
    ref: str

    @property
    def uri(self) -> str:
        """The URI Vertex AI records as the run's template (``.../PACKAGE/TAG`` or ``.../PACKAGE/sha256:..``)."""
        return f"{self.repo.url}/{self.package}/{self.ref}"


def parse_repo(url: str, flag: str = "--repo") -> Repo:
    """``https://REGION-kfp.pkg.dev/PROJECT/REPO`` → :class:`Repo` (one-line error naming the form)."""
    match = _REPO.fullmatch(url.strip().rstrip("/"))
    if not match:
        raise ExpforgeError(f"{flag}: {url!r} is not an Artifact Registry KFP repository ({REPO_FORM})")
    return Repo(match["location"], match["project"], match["repo"])


def check_tag(tag: str, flag: str = "--tag") -> str:
    """A tag Artifact Registry accepts (not a digest)."""
    if tag.startswith("sha256:") or not _TAG.fullmatch(tag):
        raise ExpforgeError(f"{flag}: {tag!r}: expected letters, digits, '.', '_', '-' (at most 128, not sha256:)")
    return tag


def parse_template(uri: str, flag: str = "--template") -> TemplateRef:
    """``REPO/PACKAGE[@TAG|@sha256:..]`` or ``REPO/PACKAGE/TAG`` → :class:`TemplateRef` (default tag latest)."""
    text = uri.strip()
    wrong = f"{flag}: {uri!r} is not a template URI ({TEMPLATE_FORM})"
    match = _REPO.match(text)
    if not match or not text[match.end() :].startswith("/"):
        raise ExpforgeError(wrong)
    rest = text[match.end() + 1 :].rstrip("/")
    if "@" in rest:
        package, _, ref = rest.partition("@")
    elif "/" in rest:
        package, _, ref = rest.partition("/")
    else:
        package, ref = rest, "latest"
    if not _PACKAGE.fullmatch(package) or not (_DIGEST.fullmatch(ref) or (_TAG.fullmatch(ref) and "sha256" not in ref)):
        raise ExpforgeError(wrong)
    return TemplateRef(Repo(match["location"], match["project"], match["repo"]), package, ref)


def pipeline_or_template(pipeline: str | None, template: str | None) -> str:
    """What a command runs: its PIPELINE argument (a name or compiled YAML) or its ``--template`` URI, exactly
    one of them; a template of the wrong form is one line before anything else is done."""
    if (pipeline is None) == (template is None):
        raise ExpforgeError("PIPELINE: give a pipeline name or file, or --template URI (exactly one)")
    if template is not None:
        parse_template(template)
        return template
    assert pipeline is not None, "checked above: exactly one is given"
    return pipeline


def _context_file(repo: Repo, endpoint: str, directory: Path) -> Path:
    """A RegistryClient context file aiming every URL of the KFP context at the stand-in ``endpoint``."""
    import kfp.registry

    source = Path(kfp.registry.__file__).parent / "context" / "kfp_pkg_dev.json"
    text = source.read_text(encoding="utf-8").replace(
        "https://artifactregistry.googleapis.com", f"{endpoint}/artifactregistry"
    )
    text = (
        text.replace("{project_id}", repo.project).replace("{location}", repo.location).replace("{repo_id}", repo.repo)
    )
    context = json.loads(text)
    context.pop("auth_scopes", None)
    path = directory / "registry-context.json"
    path.write_text(json.dumps(context), encoding="utf-8")
    return path


def registry_client(repo: Repo, workdir: Path, endpoint: str | None = None) -> Any:
    """A ``kfp.registry.RegistryClient`` for ``repo`` (or for the stand-in at ``endpoint``/the env variable)."""
    from kfp.registry import RegistryClient

    endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
    if endpoint is None:
        return RegistryClient(host=repo.url)
    host = f"{endpoint.rstrip('/')}/kfp/{repo.location}/{repo.project}/{repo.repo}"
    return RegistryClient(host=host, config_file=str(_context_file(repo, endpoint.rstrip("/"), workdir)))


def _http_error(exc: Exception, what: str) -> ExpforgeError:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    text = ""
    if response is not None:
        try:
            text = response.json().get("error", {}).get("message", "")
        except ValueError:
            text = response.text[:200]
    detail = f"HTTP {status}: {text}" if status else f"{type(exc).__name__}: {exc}"
    return ExpforgeError(f"{what}: {' '.join(detail.split())[:300]}")


@dataclass(frozen=True)
class Pushed:
    """What a push created: the package, its version (sha256:...) and the tags now on it."""

    package: str
    version: str
    tags: tuple[str, ...]
    repo: Repo

    @property
    def uri(self) -> str:
        """The version's template URI (by digest: immutable)."""
        return TemplateRef(self.repo, self.package, self.version).uri


def push_template(
    pipeline: str, repo_url: str, tags: list[str], *, images: Path | None = None, endpoint: str | None = None
) -> Pushed:
    """Compile ``pipeline`` (a name or a compiled YAML) and upload it to ``repo_url`` with ``tags``."""
    import requests

    from expforge.cloud.submit import compile_for_submit

    repo = parse_repo(repo_url)
    tags = [check_tag(tag) for tag in tags]
    with tempfile.TemporaryDirectory(prefix="expforge-templates-") as tmp:
        template, name = compile_for_submit(pipeline, images, Path(tmp))
        if not _PACKAGE.fullmatch(name):
            raise ExpforgeError(
                f"PIPELINE {name!r}: Artifact Registry package names are lowercase letters, digits, '-'"
            )
        client = registry_client(repo, Path(tmp), endpoint)
        try:
            package, version = client.upload_pipeline(str(template), tags=tags or None)
        except requests.RequestException as exc:
            raise _http_error(exc, f"--repo {repo.url}: upload failed") from None
    return Pushed(package, version, tuple(tags), repo)


def list_templates(repo_url: str, *, endpoint: str | None = None) -> list[dict[str, Any]]:
    """Every package of the repository with its versions (newest first) and their tags."""
    import requests

    repo = parse_repo(repo_url)
    with tempfile.TemporaryDirectory(prefix="expforge-templates-") as tmp:
        client = registry_client(repo, Path(tmp), endpoint)
        try:
            found = []
            for package in client.list_packages() or []:
                name = package["name"].rsplit("/", 1)[-1]
                tags: dict[str, list[str]] = {}
                for tag in client.list_tags(name) or []:
                    tags.setdefault(tag["version"].rsplit("/", 1)[-1], []).append(tag["name"].rsplit("/", 1)[-1])
                versions = sorted(client.list_versions(name) or [], key=lambda v: v.get("createTime", ""), reverse=True)
                found.append(
                    {
                        "package": name,
                        "versions": [
                            {
                                "version": v["name"].rsplit("/", 1)[-1],
                                "created": v.get("createTime", ""),
                                "tags": sorted(tags.get(v["name"].rsplit("/", 1)[-1], [])),
                            }
                            for v in versions
                        ],
                    }
                )
        except requests.RequestException as exc:
            raise _http_error(exc, f"--repo {repo.url}: listing failed") from None
    return found


def fetch_template(uri: str, workdir: Path, *, endpoint: str | None = None) -> tuple[Path, TemplateRef]:
    """Download the version ``uri`` names into ``workdir`` (a missing tag/version is one line)."""
    import requests

    ref = parse_template(uri)
    client = registry_client(ref.repo, workdir, endpoint)
    target = workdir / f"{ref.package}.yaml"
    by_digest = ref.ref.startswith("sha256:")
    try:
        client.download_pipeline(
            ref.package,
            version=ref.ref if by_digest else None,
            tag=None if by_digest else ref.ref,
            file_name=str(target),
        )
    except requests.RequestException as exc:
        raise _http_error(exc, f"--template {ref.uri}: cannot download it") from None
    return target, ref
