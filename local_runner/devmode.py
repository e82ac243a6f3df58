"""``expforge run --dev``: run each Docker task in its image with the working tree's code, no image build.

Why: the developer's loop is edit → run → look; rebuilding images for a one-line edit breaks it. In dev mode
each task still runs in its own component image (its dependencies, its OS packages, its user), but the
``expforge`` package in it is replaced, read-only, by the working tree's: the step library (``src/expforge``),
``components``, ``pipelines`` and ``local_runner``, laid out as the installed package (``package-dir`` of
``pyproject.toml``).

How: the tree is copied once per content hash into ``<root>/.dev/<tree-hash>/expforge`` (a snapshot: a file
edited while the run goes on cannot change the code under a running task, and the hash recorded is exactly
the code that ran), and that folder is bind-mounted over ``<site-packages>/expforge`` of each image (the image
says where with its ``org.expforge.site-packages`` label, written by ``containers/build_images.py``). The
cache key of a dev-mode task includes the tree hash, so results of other code are never reused; ``run.json``
records ``code: {mode: dev, tree, tree_hash}``. A dependency the tree declares that an image lacks is named
before the run starts, with the ``make images`` that fixes it; an import the image cannot satisfy at run time
is named the same way in the task's error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.local_runner.backends import Launch, LaunchResult
from expforge.local_runner.docker_backend import DockerBackend

PROJECT_NAME = "expforge"
DEV_DIR_NAME = ".dev"
SITE_LABEL = "org.expforge.site-packages"
EXTRAS_LABEL = "org.expforge.extras"
REQUIRES_LABEL = "org.expforge.requires"
IMAGES_FIX = "make images"
_SKIPPED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}
_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")


@dataclass(frozen=True)
class TreeSource:
    """The working tree's package: where it is, its files (package path → file) and their content hash."""

    root: Path
    files: dict[str, Path]
    tree_hash: str

    def record(self, mode: str) -> dict[str, Any]:
        """The ``code`` field of ``run.json``."""
        return {"mode": mode, "tree": str(self.root), "tree_hash": self.tree_hash}


def _pyproject(root: Path) -> dict[str, Any] | None:
    try:
        return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None


def find_checkout(start: Path) -> Path:
    """The expforge checkout containing ``start`` (its ``pyproject.toml`` names project ``expforge``)."""
    start = start.absolute()
    for folder in (start, *start.parents):
        data = _pyproject(folder)
        if data is not None and data.get("project", {}).get("name") == PROJECT_NAME:
            if not (folder / "src" / PROJECT_NAME / "__init__.py").is_file():
                break
            return folder
    raise ExpforgeError(
        f"--dev: {start} is not inside an expforge checkout (no pyproject.toml naming project {PROJECT_NAME!r} "
        f"with src/{PROJECT_NAME}/); run it from your clone of the repository, or drop --dev"
    )


def package_dirs(root: Path) -> dict[str, Path]:
    """Package path inside ``expforge`` → folder of the tree, from ``[tool.setuptools] package-dir``.

    ``{"": src}`` puts ``src/expforge`` at ``""``; ``{"expforge.components": components}`` puts ``components``
    at ``components``. Nested mappings are why a single mount of ``src/expforge`` would not do.
    """
    data = _pyproject(root) or {}
    mapping = data.get("tool", {}).get("setuptools", {}).get("package-dir", {"": "src"})
    folders: dict[str, Path] = {}
    for package, folder in mapping.items():
        if package == "":
            folders[""] = root / folder / PROJECT_NAME
        elif package == PROJECT_NAME or package.startswith(f"{PROJECT_NAME}."):
            inner = package.removeprefix(PROJECT_NAME).lstrip(".").replace(".", "/")
            folders[inner] = root / folder
    return dict(sorted(folders.items()))


def tree_source(root: Path) -> TreeSource:
    """Every source file of the package in the tree at ``root`` and the SHA-256 of their paths and bytes."""
    files: dict[str, Path] = {}
    folders = package_dirs(root)
    for inner, folder in folders.items():
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if not path.is_file() or _SKIPPED_PARTS & set(relative.parts) or path.suffix in _SKIPPED_SUFFIXES:
                continue
            files[str(Path(inner) / relative) if inner else str(relative)] = path
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return TreeSource(root, files, digest.hexdigest()[:16])


def snapshot(source: TreeSource, dev_dir: Path) -> Path:
    """``<dev_dir>/<tree-hash>/expforge``: a read-only-by-convention copy of the tree's package (made once)."""
    target = dev_dir / source.tree_hash / PROJECT_NAME
    if target.is_dir():
        return target
    dev_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{source.tree_hash}-", dir=dev_dir))
    try:
        for name, path in source.files.items():
            destination = staging / PROJECT_NAME / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
            destination.chmod(0o644)
        for folder in (p for p in staging.rglob("*") if p.is_dir()):
            folder.chmod(0o755)
        staging.chmod(0o755)
        try:
            os.rename(staging, dev_dir / source.tree_hash)
        except OSError:  # another run made the same snapshot first
            if not target.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def declared_requirements(pyproject: Mapping[str, Any], extras: list[str]) -> list[str]:
    """Requirement strings of ``expforge[extras]``: the core dependencies plus those extras, sorted.

    The same list ``containers/imagebuild/plan.py`` stores on each step image (``org.expforge.requires``).
    """
    project = pyproject.get("project", {})
    reqs = set(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        reqs.update(optional.get(extra, []))
    return sorted(reqs)


def missing_requirements(labels: Mapping[str, str], pyproject: Mapping[str, Any]) -> list[str]:
    """Requirements the tree declares for an image's extras that the image was not built with."""
    extras = [e for e in labels.get(EXTRAS_LABEL, "").split(",") if e]
    try:
        built_with = set(json.loads(labels.get(REQUIRES_LABEL, "[]")))
    except ValueError:
        built_with = set()
    return [req for req in declared_requirements(pyproject, extras) if req not in built_with]


def is_local_build(labels: Mapping[str, str]) -> bool:
    """Whether an image was built from a tree by ``make images`` (it carries the site-packages label)."""
    return bool(labels.get(SITE_LABEL))


class DevDockerBackend(DockerBackend):
    """The Docker backend with the working tree's package mounted read-only over each image's own."""

    def __init__(self, client: Any, source: TreeSource, dev_dir: Path) -> None:
        super().__init__(client)
        self.source = source
        self.dev_dir = dev_dir
        self.package: Path | None = None  # the snapshot, made once the images passed their checks
        self._sites: dict[str, str] = {}

    def check_images(self, images: dict[str, list[str]]) -> None:
        """The images must exist, be local builds of an expforge tree, and have every declared dependency."""
        super().check_images(images)
        pyproject = _pyproject(self.source.root) or {}
        for ref, users in sorted(images.items()):
            labels = self.client.images.get(ref).labels or {}
            if not is_local_build(labels):
                raise ExpforgeError(
                    f"--dev: image {ref!r} (used by {', '.join(users)}) was not built from an expforge tree by "
                    f"`{IMAGES_FIX}` (it has no {SITE_LABEL} label, e.g. it comes from a registry), so the tree "
                    "cannot be mounted into it; build the images (`make images`) and compile against them "
                    "(`make compile`, or expforge compile --images build/images.json), or run without --dev"
                )
            missing = missing_requirements(labels, pyproject)
            if missing:
                raise ExpforgeError(
                    f"--dev: image {ref!r} (used by {', '.join(users)}) lacks {', '.join(missing)}, which "
                    f"pyproject.toml of {self.source.root} now declares for it; rebuild the images: `{IMAGES_FIX}`"
                )
            self._sites[ref] = labels[SITE_LABEL]
        self.package = snapshot(self.source, self.dev_dir)

    def environment_digest(self, image: str) -> str:
        """The image ID plus the tree hash: a result computed by other code is never reused."""
        return f"{super().environment_digest(image)}+dev:{self.source.tree_hash}"

    def _volumes(self, launch: Launch, *args: Any, **kwargs: Any) -> dict[str, dict[str, str]]:
        """The backend's mounts plus the tree's package over the image's (extra arguments pass through)."""
        volumes = super()._volumes(launch, *args, **kwargs)
        if self.package is None:
            self.package = snapshot(self.source, self.dev_dir)
        site = self._sites.get(launch.image)
        if site is None:
            labels = self.client.images.get(launch.image).labels or {}
            site = self._sites.setdefault(launch.image, labels.get(SITE_LABEL, ""))
        if site:
            volumes[str(self.package)] = {"bind": f"{site.rstrip('/')}/{PROJECT_NAME}", "mode": "ro"}
        return volumes

    def run(self, launch: Launch) -> LaunchResult:
        """Run as usual; a failure from an import the image cannot satisfy names the fix."""
        result = super().run(launch)
        if result.succeeded:
            return result
        module = _missing_module(launch.log_path)
        if module is None or module.split(".")[0] == PROJECT_NAME:
            return result
        reason = (
            f"dev mode: module {module!r} is not installed in image {launch.image}; add its package to the "
            f"step's extra in pyproject.toml and rebuild: `{IMAGES_FIX}`"
        )
        return LaunchResult(result.exit_code, result.runtime_s, reason)


def _missing_module(log_path: Path) -> str | None:
    with contextlib.suppress(OSError):
        with log_path.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 16384))
            tail = handle.read().decode("utf-8", errors="replace")
        found = _MISSING_MODULE.findall(tail)
        return found[-1] if found else None
    return None


def dev_backend(runner: Any, root_dir: Path, cwd: Path | None = None) -> Any:
    """The backend of a ``--dev`` run: Docker tasks get the tree mounted; the subprocess backend already runs
    the installed (editable) tree, so it is returned unchanged (its record says ``mode: tree``)."""
    if runner.name != "docker":
        return runner
    checkout = find_checkout(cwd or Path.cwd())
    source = tree_source(checkout)
    dev = DevDockerBackend(runner.client, source, root_dir / DEV_DIR_NAME)
    return dev


def interpreter_code() -> dict[str, Any]:
    """The code this interpreter's tasks run: its expforge checkout (``mode: tree`` with the tree hash) or the
    installed package (``mode: installed`` with its version)."""
    package = Path(sys.modules[PROJECT_NAME].__file__ or ".").parent
    try:
        return tree_source(find_checkout(package)).record("tree")
    except ExpforgeError:
        try:
            version = metadata.version(PROJECT_NAME)
        except metadata.PackageNotFoundError:
            version = "unknown"
        return {"mode": "installed", "package": str(package), "version": version}


def code_record(runner: Any) -> dict[str, Any]:
    """``run.json``'s ``code``: which code the tasks ran — ``dev`` (tree mounted into the images), ``tree``
    (subprocess backend: the interpreter's own expforge, a checkout when installed editable) or ``image``."""
    if isinstance(runner, DevDockerBackend):
        return runner.source.record("dev")
    if runner.name == "subprocess":
        return dict(runner.code_record())
    return {"mode": "image"}
