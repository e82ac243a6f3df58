"""Build the wheelhouse and the component images, offline and content-addressed.

Why this script exists (see DESIGN.md, "Containers"):

* **Offline, reproducible installs.** Every Python package an image holds comes from ``build/wheelhouse``,
  built on the host with the host's own pip configuration, and is installed in the image with
  ``pip install --no-index``. ``docker build`` runs with ``--network none``: nothing is downloaded during a build.
* **Small build contexts.** Each image is built from a staged temporary context holding just its recipe
  folder, ``expforge-stage`` and the wheels that image adds over its parent (hard links, so staging is free),
  never the repository.
* **Content-hash tags.** An image's tag is a hash of its recipe, the wheels it installs, its build arguments
  and its parent's image ID, so ``make images`` with nothing changed only checks that tags exist (seconds),
  and a changed project wheel rebuilds exactly what depends on it. Each image is also tagged ``:latest``
  (the compiler's default, ``components/_adapter.py:default_image``); ``build/images.json`` maps every step
  to its exact hash tag for the compiler.
* **One recipe per step.** ``containers/<step>/Dockerfile`` declares everything: its parent
  (``ARG BASE_IMAGE=expforge/<parent>:latest``) and what it installs (its ``expforge-stage`` line), so adding
  a step is a 5-line Dockerfile and nothing here changes. ``base`` and ``torch-base`` are shared layers, not
  steps; ``*-gpu`` folders are Cloud Build recipes and are never built locally.

Subcommands: ``wheelhouse``, ``images [--base-image REF] [--only NAME ...]``, ``context NAME --output DIR``
(stage a context without building, e.g. for Cloud Build). Uses only the standard library and the ``docker``
CLI. Run it with the project's Python 3.11 (the venv): the wheelhouse is resolved for the interpreter
that runs pip, and the images hold Python 3.11.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "containers"
BUILD = REPO / "build"
WHEELHOUSE = BUILD / "wheelhouse"
IMAGES_JSON = BUILD / "images.json"
FONTS_CACHE = BUILD / "fonts"

PREFIX = "expforge"
SHARED_LAYERS = ("base", "torch-base")
GPU_SUFFIX = "-gpu"
UPSTREAM_BASE = "python:3.11-slim"
DEBOOTSTRAP_BASE = "expforge/python-base:3.11-bookworm"
DEBOOTSTRAP_SCRIPT = CONTAINERS / "base" / "debootstrap-base.sh"
STAGE_SCRIPT = CONTAINERS / "base" / "expforge-stage"
FONT_PACKAGES_FILE = CONTAINERS / "render-font-digits" / "font-packages.txt"
# The only torch spec that resolves to the local CPU wheel; any other spec can pull GBs of CUDA packages.
TORCH_PIN = "torch==2.13.0"
# Files at the project root that go into the project wheel (besides the package folders of pyproject.toml).
PROJECT_TOP_FILES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.cfg", "setup.py")
HASH_LEN = 12


class BuildError(Exception):
    """A problem the user can fix; printed as one line, exit status 1."""


def log(message: str) -> None:
    """Progress on stderr (stdout stays clean for scripts)."""
    sys.stderr.write(f"build_images: {message}\n")  # one write: lines from parallel builds stay whole
    sys.stderr.flush()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: object) -> str:
    """Hex SHA-256 of a JSON-able value in canonical form (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def write_atomic(path: Path, text: str) -> None:
    """Write a file so readers never see it half-written (temp file in the same folder + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def rel(path: Path) -> str:
    """A path for messages: relative to the repository when inside it."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> str:
    """Run a command; return its stdout. On failure raise BuildError with the tail of its output."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise BuildError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{tail}")
    return proc.stdout


# --- recipes ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """One ``containers/<name>/Dockerfile`` and what it declares."""

    name: str
    folder: Path
    parent: str | None  # another recipe's name, or None when FROM is an external base image
    requirements: tuple[str, ...]  # the expforge-stage requirements (with dependencies)
    no_deps: tuple[str, ...]  # the expforge-stage requirements after --no-deps
    step: str | None  # the --step of expforge-stage (the KFP component this image runs)

    @property
    def dockerfile(self) -> Path:
        """The recipe's Dockerfile."""
        return self.folder / "Dockerfile"

    @property
    def is_gpu_recipe(self) -> bool:
        """Cloud Build recipes (CUDA base images): never built locally."""
        return self.name.endswith(GPU_SUFFIX)

    @property
    def is_step(self) -> bool:
        """A component image (as opposed to a shared layer or a GPU recipe)."""
        return self.name not in SHARED_LAYERS and not self.is_gpu_recipe

    @property
    def repository(self) -> str:
        """Image repository name, e.g. ``expforge/train-sklearn``."""
        return f"{PREFIX}/{self.name}"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
        current = ""
    return result


def parse_recipe(folder: Path) -> Recipe:
    """Read a recipe's parent (``ARG BASE_IMAGE=...``) and its ``expforge-stage`` line from its Dockerfile."""
    dockerfile = folder / "Dockerfile"
    if not dockerfile.is_file():
        raise BuildError(f"no Dockerfile for {folder.name!r}: expected {rel(dockerfile)}")
    instructions = _instructions(dockerfile.read_text(encoding="utf-8"))
    parent: str | None = None
    base_arg = None
    for keyword, rest in instructions:
        if keyword == "FROM":
            break
        if keyword == "ARG" and rest.split("=", 1)[0] in ("BASE_IMAGE", "CUDA_BASE"):
            base_arg = rest.partition("=")[2].strip().strip('"')
    if base_arg is None:
        raise BuildError(f"{rel(dockerfile)}: needs `ARG BASE_IMAGE=...` before its first FROM")
    match = re.fullmatch(rf"{PREFIX}/([a-z0-9-]+):latest", base_arg)
    if match:
        parent = match.group(1)
    requirements: list[str] = []
    no_deps: list[str] = []
    step: str | None = None
    for keyword, rest in instructions:
        if keyword != "RUN" or "expforge-stage" not in rest:
            continue
        words = shlex.split(rest.split("expforge-stage", 1)[1].split("&&")[0])
        target = requirements
        i = 0
        while i < len(words):
            word = words[i]
            if word == "--step":
                step = words[i + 1]
                i += 2
                continue
            if word == "--no-deps":
                target = no_deps
            elif not word.startswith("-"):
                target.append(word)
            i += 1
    return Recipe(folder.name, folder, parent, tuple(requirements), tuple(no_deps), step)


def discover_recipes() -> dict[str, Recipe]:
    """Every ``containers/<name>/Dockerfile``, by name."""
    return {p.parent.name: parse_recipe(p.parent) for p in sorted(CONTAINERS.glob("*/Dockerfile"))}


def ancestry(recipes: dict[str, Recipe], name: str) -> list[Recipe]:
    """The recipe and its local parents, root first (``base``, ``torch-base``, ``train-torch``)."""
    chain: list[Recipe] = []
    current: str | None = name
    while current is not None:
        if current not in recipes:
            raise BuildError(f"{name}: parent image {PREFIX}/{current} has no containers/{current}/Dockerfile")
        if any(r.name == current for r in chain):
            raise BuildError(f"{name}: parent images form a cycle")
        chain.append(recipes[current])
        current = recipes[current].parent
    return chain[::-1]


# --- wheelhouse ---------------------------------------------------------------------------------------------


def _project_files() -> list[Path]:
    """Every file that goes into the project wheel: pyproject, README and the package folders."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_dirs = set(pyproject.get("tool", {}).get("setuptools", {}).get("package-dir", {}).values())
    files = [REPO / name for name in PROJECT_TOP_FILES if (REPO / name).is_file()]
    for folder in sorted(package_dirs or {"src"}):
        root = REPO / folder
        for path in sorted(root.rglob("*")):
            parts = set(path.relative_to(REPO).parts)
            if (
                path.is_file()
                and "__pycache__" not in parts
                and not any(p.endswith(".egg-info") for p in parts)
                and path.suffix not in (".pyc", ".pyo")
            ):
                files.append(path)
    return files


def _all_stage_requirements(recipes: dict[str, Recipe]) -> tuple[list[str], list[str]]:
    """What the wheelhouse must hold: the union of every recipe's expforge-stage requirements."""
    reqs: set[str] = set()
    no_deps: set[str] = set()
    for recipe in recipes.values():
        reqs.update(recipe.requirements)
        no_deps.update(recipe.no_deps)
    return sorted(reqs), sorted(no_deps)


def _merge_expforge_extras(reqs: list[str]) -> tuple[list[str], list[str]]:
    """Split requirements into the extras of ``expforge[...]`` and the other requirements."""
    extras: set[str] = set()
    others: list[str] = []
    for req in reqs:
        match = re.fullmatch(r"expforge(?:\[([a-z0-9_,-]*)\])?", req.replace(" ", ""))
        if match:
            extras.update(e for e in (match.group(1) or "").split(",") if e)
        else:
            others.append(req)
    return sorted(extras), others


def _pip(*args: str, isolated_env: bool = False) -> list[str]:
    """A pip command for the running interpreter (the project venv)."""
    cmd = [sys.executable, "-m", "pip", *args]
    if isolated_env:
        cmd.insert(3, "--isolated")
    return cmd


def _check_interpreter() -> None:
    if sys.version_info[:2] != (3, 11):
        raise BuildError(
            f"run this with Python 3.11 (the project venv: .venv/bin/python), not {sys.version.split()[0]}: "
            "the wheelhouse is resolved for the interpreter that runs pip"
        )


def build_wheelhouse(recipes: dict[str, Recipe] | None = None, *, force: bool = False) -> dict[str, str]:
    """Make build/wheelhouse hold the project wheel and every wheel the images install; return {file: sha256}.

    Incremental on two levels: the project wheel is rebuilt when any project file changed; the dependency
    wheels are re-resolved only when pyproject.toml or a recipe's requirements changed. Resolution uses the
    host's pip configuration (whatever index or mirror the machine has); torch is pinned to the CPU wheel.
    """
    _check_interpreter()
    recipes = recipes if recipes is not None else discover_recipes()
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    stamps_path = WHEELHOUSE / ".stamps.json"
    stamps: dict[str, Any] = json.loads(stamps_path.read_text()) if stamps_path.is_file() and not force else {}

    files = _project_files()
    file_hashes = {str(f.relative_to(REPO)): sha256_file(f) for f in files}
    project_stamp = sha256_json(sorted(file_hashes.items()))
    reqs, no_deps = _all_stage_requirements(recipes)
    extras, other_reqs = _merge_expforge_extras(reqs)
    if any(r.replace(" ", "").startswith("torch") and r != TORCH_PIN for r in [*other_reqs, *no_deps]):
        raise BuildError(f"images may only ask for {TORCH_PIN!r} (any other torch spec pulls CUDA packages)")
    deps_stamp = sha256_json(
        {"pyproject": sha256_file(REPO / "pyproject.toml"), "extras": extras, "reqs": other_reqs, "no_deps": no_deps}
    )

    project_wheels = sorted(WHEELHOUSE.glob("expforge-*.whl"))
    if stamps.get("project") != project_stamp or len(project_wheels) != 1:
        started = time.monotonic()
        previous = stamps.get("project_files", {})
        changed = sorted(set(previous.items()) ^ set(file_hashes.items()))
        if previous and changed:
            names = sorted({name for name, _ in changed})
            more = f" (+{len(names) - 5} more)" if len(names) > 5 else ""
            log(f"project sources changed: {', '.join(names[:5])}{more}")
        with tempfile.TemporaryDirectory(prefix="wheel-", dir=BUILD) as tmp:
            # Build from a clean copy: setuptools' in-tree build/ folder would otherwise collide with ours and
            # could carry deleted modules into the wheel.
            src = Path(tmp) / "src"
            for f in files:
                (src / f.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, src / f.relative_to(REPO))
            out = Path(tmp) / "out"
            # Fixed zip timestamps: the same sources give the same wheel bytes, hence the same image tags.
            env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
            run(_pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(src)), env=env)
            built = sorted(out.glob("expforge-*.whl"))
            if len(built) != 1:
                raise BuildError(f"pip wheel built {len(built)} expforge wheels, expected one")
            for old in project_wheels:
                old.unlink()
            shutil.move(str(built[0]), WHEELHOUSE / built[0].name)
        stamps["project"] = project_stamp
        stamps["project_files"] = file_hashes
        stamps.pop("manifest", None)
        write_atomic(stamps_path, json.dumps(stamps, indent=1))
        log(f"project wheel built in {time.monotonic() - started:.1f}s")
    project_wheel = next(WHEELHOUSE.glob("expforge-*.whl"))

    if stamps.get("deps") != deps_stamp:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="deps-", dir=BUILD) as tmp:
            out = Path(tmp)
            target = f"expforge[{','.join(extras)}] @ {project_wheel.as_uri()}" if extras else project_wheel.as_uri()
            log(f"resolving the wheelhouse: expforge[{','.join(extras)}] {' '.join(other_reqs)} (host pip config)")
            # One resolution for everything: every image then installs mutually consistent versions.
            env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}  # (for any dependency built from an sdist)
            run(_pip("wheel", "--quiet", "--prefer-binary", "--wheel-dir", str(out), target, *other_reqs), env=env)
            if no_deps:
                run(_pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), *no_deps), env=env)
            for old in WHEELHOUSE.glob("*.whl"):
                if old.name != project_wheel.name:
                    old.unlink()
            for new in out.glob("*.whl"):
                if not new.name.startswith("expforge-"):
                    shutil.move(str(new), WHEELHOUSE / new.name)
        stamps["deps"] = deps_stamp
        stamps.pop("manifest", None)
        write_atomic(stamps_path, json.dumps(stamps, indent=1))
        log(f"dependency wheels resolved in {time.monotonic() - started:.1f}s")
    return wheel_manifest()


def wheel_manifest() -> dict[str, str]:
    """{wheel file name: sha256} of the wheelhouse, cached by (name, size, mtime) so no-op runs stay fast."""
    cache_path = WHEELHOUSE / ".sha256.json"
    cache: dict[str, list[object]] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    manifest: dict[str, str] = {}
    fresh: dict[str, list[object]] = {}
    for wheel in sorted(WHEELHOUSE.glob("*.whl")):
        stat = wheel.stat()
        key = [stat.st_size, stat.st_mtime_ns]
        cached = cache.get(wheel.name)
        digest = str(cached[2]) if cached and cached[:2] == key else sha256_file(wheel)
        manifest[wheel.name] = digest
        fresh[wheel.name] = [*key, digest]
    if fresh != cache:
        write_atomic(cache_path, json.dumps(fresh, indent=1))
    return manifest


def resolve_closure(requirements: Sequence[str], no_deps: Sequence[str], manifest: dict[str, str]) -> list[str]:
    """Wheel files (from the wheelhouse) that installing these requirements into an empty venv would use.

    ``pip install --dry-run --report`` against the wheelhouse only (``--isolated --no-index``), so it answers
    exactly what ``pip install --no-index`` in the image will pick. Cached per wheelhouse state.
    """
    cache_path = WHEELHOUSE / ".closures.json"
    cache: dict[str, list[str]] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    key = sha256_json({"manifest": manifest, "reqs": list(requirements), "no_deps": list(no_deps)})
    if key in cache:
        return cache[key]
    files: set[str] = set()
    for reqs, flags in ((requirements, ()), (no_deps, ("--no-deps",))):
        if not reqs:
            continue
        with tempfile.TemporaryDirectory(dir=BUILD) as tmp:
            report = Path(tmp) / "report.json"
            run(
                _pip(
                    "install",
                    "--dry-run",
                    "--ignore-installed",
                    "--no-index",
                    "--find-links",
                    str(WHEELHOUSE),
                    "--report",
                    str(report),
                    "--quiet",
                    *flags,
                    *reqs,
                    isolated_env=True,
                )
            )
            for item in json.loads(report.read_text())["install"]:
                name = urllib.parse.unquote(item["download_info"]["url"].rsplit("/", 1)[-1])  # torch-…%2Bcpu
                if name not in manifest:
                    raise BuildError(f"{name} resolved from outside the wheelhouse; run: make wheelhouse")
                files.add(name)
    result = sorted(files)
    cache[key] = result
    write_atomic(cache_path, json.dumps(cache, indent=1))
    return result


# --- fonts --------------------------------------------------------------------------------------------------


def font_packages() -> list[str]:
    """The Debian font packages of the render-font-digits image (font-packages.txt, or $FONT_PACKAGES)."""
    if os.environ.get("FONT_PACKAGES", "").strip():
        return sorted(os.environ["FONT_PACKAGES"].split())
    lines = FONT_PACKAGES_FILE.read_text(encoding="utf-8").splitlines()
    return sorted(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def fonts_tar(packages: Sequence[str], *, empty: bool = False) -> Path:
    """A deterministic tar of the files the host's font packages installed (paths as dpkg put them).

    Why from the host: Debian packages cannot come from pip, and ``apt-get`` inside ``docker build`` needs
    network. Docs and lintian files are left out; symlinks stay symlinks; owner root, mtime fixed, sorted, so
    the tar (and the image's content hash) only changes when a package version does. Cached by versions.
    """
    FONTS_CACHE.mkdir(parents=True, exist_ok=True)
    if empty:
        path = FONTS_CACHE / "empty.tar"
        if not path.is_file():
            with tarfile.open(path, "w", format=tarfile.GNU_FORMAT):
                pass
        return path
    if shutil.which("dpkg-query") is None:
        raise BuildError("this host has no dpkg to take font packages from; build with --fonts-from apt")
    status = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Status}\\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    versions = dict(line.split()[:2] for line in status.splitlines() if line.endswith(" installed"))
    missing = [p for p in packages if p not in versions]
    if missing:
        raise BuildError(
            f"font packages missing on this host: {' '.join(missing)} — run `make fonts` as root, "
            "or build with --fonts-from apt (needs network in the build)"
        )
    path = FONTS_CACHE / f"fonts-{sha256_json(versions)[:HASH_LEN]}.tar"
    if path.is_file():
        return path
    members: set[Path] = set()
    for package in packages:
        listing = run(["dpkg-query", "-L", package]).splitlines()
        for entry in listing:
            item = Path(entry)
            if not entry.startswith("/") or any(p in item.parts for p in ("doc", "lintian", "man", "metainfo")):
                continue
            if item.is_symlink() or item.is_file():
                members.add(item)
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        directories = sorted({parent for m in members for parent in m.parents if parent != Path("/")})
        for item in [*directories, *sorted(members)]:
            info = tar.gettarinfo(str(item), arcname=str(item).lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.mode = 0o755 if info.isdir() else (info.mode & 0o777) | 0o444
            if info.isfile():
                with item.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    tmp.replace(path)
    log(f"fonts: {len(members)} files of {len(packages)} packages -> {rel(path)}")
    return path


# --- docker -------------------------------------------------------------------------------------------------


def docker_env() -> dict[str, str]:
    """The environment for ``docker build``: the legacy builder when the buildx plugin is absent."""
    env = dict(os.environ)
    if "DOCKER_BUILDKIT" not in env:
        has_buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, check=False).returncode
        if has_buildx != 0:
            env["DOCKER_BUILDKIT"] = "0"
    return env


def require_docker() -> None:
    """Fail with one actionable line when there is no Docker daemon."""
    if shutil.which("docker") is None:
        raise BuildError("the docker CLI is not installed (Debian: apt-get install docker.io), then: make docker-up")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        raise BuildError("Docker is not running (or not reachable): run `make docker-up`")


def image_id(ref: str) -> str | None:
    """The local image ID of ``ref``, or None when the image is not present."""
    proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def choose_base_image(explicit: str | None) -> str:
    """The external base: --base-image, else python:3.11-slim when present, else the debootstrap base."""
    if explicit:
        if image_id(explicit) is None:
            log(f"{explicit} is not present locally: docker pull {explicit}")
            run(["docker", "pull", "--quiet", explicit])
        return explicit
    if image_id(UPSTREAM_BASE) is not None:
        return UPSTREAM_BASE
    if image_id(DEBOOTSTRAP_BASE) is None:
        log(f"neither {UPSTREAM_BASE} nor {DEBOOTSTRAP_BASE} is present: building the latter (make base-image)")
        if subprocess.run(["bash", str(DEBOOTSTRAP_SCRIPT)], check=False).returncode != 0:
            raise BuildError(f"could not build {DEBOOTSTRAP_BASE}; or `docker pull {UPSTREAM_BASE}` where you can")
    return DEBOOTSTRAP_BASE


# --- contexts and builds ------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What one image build needs: its context files, build arguments and resulting content hash."""

    recipe: Recipe
    parent_ref: str
    wheels: list[str]
    build_args: dict[str, str] = field(default_factory=dict)
    extra_files: dict[str, Path] = field(default_factory=dict)  # context name -> source file
    content_hash: str = ""

    @property
    def ref(self) -> str:
        """The hash-tagged reference, e.g. ``expforge/train-sklearn:0123456789ab``."""
        return f"{self.recipe.repository}:{self.content_hash}"


def _recipe_files(recipe: Recipe) -> dict[str, Path]:
    files = {p.name: p for p in sorted(recipe.folder.iterdir()) if p.is_file() and not p.name.startswith(".")}
    text = recipe.dockerfile.read_text(encoding="utf-8")
    if "expforge-stage" in text and "expforge-stage" not in files:
        files["expforge-stage"] = STAGE_SCRIPT
    return files


def plan_image(
    recipes: dict[str, Recipe],
    recipe: Recipe,
    parent_ref: str,
    parent_id: str,
    manifest: dict[str, str],
    fonts_from: str,
) -> Plan:
    """Decide the context and the content hash of one image (nothing is built here)."""
    chain = ancestry(recipes, recipe.name)
    installed: set[str] = set()
    for ancestor in chain[:-1]:
        installed.update(resolve_closure(ancestor.requirements, ancestor.no_deps, manifest))
    wheels = [w for w in resolve_closure(recipe.requirements, recipe.no_deps, manifest) if w not in installed]
    plan = Plan(recipe, parent_ref, wheels, build_args={"BASE_IMAGE": parent_ref})
    text = recipe.dockerfile.read_text(encoding="utf-8")
    if "fonts.tar" in text:
        packages = font_packages()
        plan.extra_files["fonts.tar"] = fonts_tar(packages, empty=fonts_from == "apt")
        plan.build_args["FONTS_FROM"] = fonts_from
        plan.build_args["FONT_PACKAGES"] = " ".join(packages)
    recipe_files = {name: sha256_file(path) for name, path in _recipe_files(recipe).items()}
    extra = {name: _cached_file_hash(path) for name, path in plan.extra_files.items()}
    plan.content_hash = sha256_json(
        {
            "recipe": recipe_files,
            "extra": extra,
            "wheels": {w: manifest[w] for w in wheels},
            "args": plan.build_args,
            "parent": parent_id,
        }
    )[:HASH_LEN]
    return plan


def _cached_file_hash(path: Path) -> str:
    """SHA-256 of a large generated file, cached next to it by size and mtime."""
    stat = path.stat()
    sidecar = path.with_name(path.name + ".sha256")
    key = f"{stat.st_size} {stat.st_mtime_ns}"
    if sidecar.is_file():
        cached_key, _, digest = sidecar.read_text().rpartition(" ")
        if cached_key == key:
            return digest
    digest = sha256_file(path)
    sidecar.write_text(f"{key} {digest}")
    return digest


@contextlib.contextmanager
def staged_context(plan: Plan) -> Iterator[Path]:
    """A temporary build context: recipe files, expforge-stage, wheels/ and extra files (hard links)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"context-{plan.recipe.name}-", dir=BUILD) as tmp:
        root = Path(tmp)
        for name, source in {**_recipe_files(plan.recipe), **plan.extra_files}.items():
            _link_or_copy(source, root / name)
        (root / "wheels").mkdir()
        for wheel in plan.wheels:
            _link_or_copy(WHEELHOUSE / wheel, root / "wheels" / wheel)
        yield root


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def build_image(plan: Plan, env: dict[str, str]) -> None:
    """``docker build --network none`` of one staged context, tagged with its hash and ``:latest``."""
    size = sum((WHEELHOUSE / w).stat().st_size for w in plan.wheels) + sum(
        p.stat().st_size for p in plan.extra_files.values()
    )
    log(f"building {plan.ref} from {plan.parent_ref} ({len(plan.wheels)} wheels, context {size / 1e6:.0f} MB)")
    started = time.monotonic()
    with staged_context(plan) as context:
        cmd = ["docker", "build", "--network", "none", "--force-rm", "--tag", plan.ref]
        for key, value in plan.build_args.items():
            cmd += ["--build-arg", f"{key}={value}"]
        cmd += ["--label", f"org.expforge.image={plan.recipe.name}"]
        cmd += ["--label", f"org.expforge.hash={plan.content_hash}"]
        if plan.recipe.step:
            cmd += ["--label", f"org.expforge.step={plan.recipe.step}"]
        cmd.append(str(context))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()
        errors = [line for line in output if "expforge-stage: error" in line]
        detail = "\n".join(output[-30:])
        headline = errors[-1] if errors else f"docker build of {plan.recipe.name} failed"
        raise BuildError(f"{headline}\n{detail}")
    log(f"built {plan.ref} in {time.monotonic() - started:.0f}s")


def select(recipes: dict[str, Recipe], only: Sequence[str] | None) -> list[Recipe]:
    """The recipes to build, parents first: the steps (or ``only``) and every image they start FROM."""
    if only:
        unknown = [name for name in only if name not in recipes]
        if unknown:
            known = ", ".join(sorted(recipes))
            raise BuildError(f"no containers/<name>/Dockerfile for {', '.join(unknown)} (known: {known})")
        gpu = [name for name in only if recipes[name].is_gpu_recipe]
        if gpu:
            raise BuildError(f"{', '.join(gpu)}: GPU recipes are built by Cloud Build, not locally")
        wanted = list(only)
    else:
        wanted = [r.name for r in recipes.values() if r.is_step]
    ordered: list[Recipe] = []
    for name in ["base", *wanted]:
        for recipe in ancestry(recipes, name):
            if recipe not in ordered:
                ordered.append(recipe)
    return ordered


def build_images(
    base_image: str | None, only: Sequence[str] | None, fonts_from: str, jobs: int = 2, keep_old: int = 1
) -> dict[str, str]:
    """Build (or find) every selected image; write build/images.json; return the map.

    Images are built level by level (base, then everything FROM base, ...); images of one level are built
    ``jobs`` at a time: much of a build is pip unpacking and layer commits, which overlap well.
    """
    require_docker()
    recipes = discover_recipes()
    if "base" not in recipes:
        raise BuildError("containers/base/Dockerfile is missing")
    selected = select(recipes, only)
    manifest = build_wheelhouse(recipes)
    external = choose_base_image(base_image)
    env = docker_env()
    refs: dict[str, str] = {}
    ids: dict[str, str] = {}
    built = 0
    levels: dict[int, list[Recipe]] = {}
    for recipe in selected:
        levels.setdefault(len(ancestry(recipes, recipe.name)), []).append(recipe)
    for depth in sorted(levels):
        plans: list[Plan] = []
        for recipe in levels[depth]:
            parent_ref = external if recipe.parent is None else refs[recipe.parent]
            parent_id = ids.get(recipe.parent or "") or image_id(parent_ref)
            if parent_id is None:
                raise BuildError(f"{recipe.name}: parent image {parent_ref} is not present")
            plans.append(plan_image(recipes, recipe, parent_ref, parent_id, manifest, fonts_from))
        missing = [plan for plan in plans if image_id(plan.ref) is None]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(build_image, plan, env) for plan in missing]
            errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]  # type: ignore[misc]
        built += len(missing)
        for plan in plans:
            current = image_id(plan.ref)
            if current is None:
                raise BuildError(f"{plan.ref} was built but is not present")
            latest = f"{plan.recipe.repository}:latest"
            if image_id(latest) != current:
                run(["docker", "tag", plan.ref, latest])
            refs[plan.recipe.name] = plan.ref
            ids[plan.recipe.name] = current
    images: dict[str, str] = {}
    if only and IMAGES_JSON.is_file():
        previous = json.loads(IMAGES_JSON.read_text())
        images.update({k: v for k, v in previous.items() if k in recipes and image_id(v) is not None})
    images.update(refs)
    write_atomic(IMAGES_JSON, json.dumps(dict(sorted(images.items())), indent=2) + "\n")
    log(f"{built} built, {len(selected) - built} up to date; wrote {rel(IMAGES_JSON)}")
    if built:
        remove_old_images(images, keep_old)
    return images


def remove_old_images(current: dict[str, str], keep_old: int) -> None:
    """Untag all but the newest ``keep_old`` superseded hash tags per repository; drop our dangling stages.

    Every source change makes new hash tags; without this a working machine fills its disk with old images.
    Only ``expforge/<recipe>:<12 hex>`` tags and dangling images derived from ours (label filter) are touched.
    """
    removed = 0
    for ref in current.values():
        repository = ref.rsplit(":", 1)[0]
        listing = run(["docker", "image", "ls", repository, "--format", "{{.CreatedAt}}\t{{.Tag}}"])
        rows = sorted((line.split("\t") for line in listing.splitlines() if "\t" in line), reverse=True)
        old = [tag for _, tag in rows if re.fullmatch(r"[0-9a-f]{12}", tag) and f"{repository}:{tag}" != ref]
        for tag in old[keep_old:]:
            if subprocess.run(["docker", "image", "rm", f"{repository}:{tag}"], capture_output=True).returncode == 0:
                removed += 1
    # (images made before python-base carried the org.expforge.image label have only the title label)
    for label in ("org.expforge.image", "org.opencontainers.image.title=expforge-python-base"):
        subprocess.run(["docker", "image", "prune", "--force", "--filter", f"label={label}"], capture_output=True)
    if removed:
        log(f"removed {removed} superseded image tag(s) (kept {keep_old} per image; --keep-old changes it)")


def stage_context(name: str, output: Path, fonts_from: str) -> None:
    """Copy the build context of ``name`` to ``output`` (for builders elsewhere, e.g. Cloud Build GPU images)."""
    recipes = discover_recipes()
    if name not in recipes:
        raise BuildError(f"no containers/{name}/Dockerfile")
    manifest = build_wheelhouse(recipes)
    recipe = recipes[name]
    plan = plan_image(recipes, recipe, "<parent>", "<parent>", manifest, fonts_from)
    if recipe.is_gpu_recipe:
        # Starts from a CUDA PyTorch image: all wheels but torch, whose CUDA build the base image provides.
        wheels = resolve_closure(recipe.requirements, recipe.no_deps, manifest)
        plan.wheels = [w for w in wheels if not w.startswith("torch-")]
    if output.exists() and any(output.iterdir()):
        raise BuildError(f"{output} exists and is not empty")
    with staged_context(plan) as context:
        shutil.copytree(context, output, dirs_exist_ok=True)
    log(f"staged {name}'s context in {output} ({len(plan.wheels)} wheels)")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; errors are one line (plus the failing command's tail) and exit status 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    wheelhouse = sub.add_parser("wheelhouse", help="build build/wheelhouse (incremental)")
    wheelhouse.add_argument("--force", action="store_true", help="rebuild even when the inputs are unchanged")
    images = sub.add_parser("images", help="build the base and every component image; write build/images.json")
    images.add_argument("--base-image", help=f"external base image (default: {UPSTREAM_BASE} or {DEBOOTSTRAP_BASE})")
    images.add_argument("--only", nargs="+", metavar="NAME", help="build only these images (and their parents)")
    fonts_help = "where the font image gets its fonts: the host's installed packages, or apt in the build"
    images.add_argument("--fonts-from", choices=("context", "apt"), default="context", help=fonts_help)
    images.add_argument("--jobs", type=int, default=2, help="images built at the same time (default 2)")
    images.add_argument("--keep-old", type=int, default=1, help="superseded hash tags kept per image (default 1)")
    context = sub.add_parser("context", help="stage one image's build context into a folder (no build)")
    context.add_argument("name")
    context.add_argument("--output", type=Path, required=True)
    context.add_argument("--fonts-from", choices=("context", "apt"), default="context", help=fonts_help)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.command == "wheelhouse":
            manifest = build_wheelhouse(force=args.force)
            size = sum((WHEELHOUSE / w).stat().st_size for w in manifest)
            log(f"wheelhouse: {len(manifest)} wheels, {size / 1e6:.0f} MB in {rel(WHEELHOUSE)}")
        elif args.command == "images":
            build_images(args.base_image, args.only, args.fonts_from, args.jobs, args.keep_old)
        else:
            stage_context(args.name, args.output, args.fonts_from)
    except BuildError as exc:
        print(f"build_images: error: {exc}", file=sys.stderr)
        return 1
    log(f"done in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
