"""The wheelhouse (``build/wheelhouse``): every Python package an image holds, built on the host.

Images install only from here with ``pip install --no-index`` (``docker build --network none``), so builds are
reproducible and offline. Two levels of incrementality: the project wheel is rebuilt when a project file
changed; the dependency wheels are re-resolved only when ``pyproject.toml`` or a recipe's requirements changed.
Resolution uses the host's pip configuration (whatever index or mirror the machine has).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.parse
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imagebuild.common import (
    BUILD,
    PROJECT_TOP_FILES,
    REPO,
    SOURCE_DATE_EPOCH,
    TORCH_PIN,
    WHEELHOUSE,
    BuildError,
    log,
    run,
    sha256_file,
    sha256_json,
    write_atomic,
)
from imagebuild.recipes import Recipe, discover_recipes, merge_expforge_extras

PROJECT_WHEEL_GLOB = "expforge-*.whl"


def project_files() -> list[Path]:
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


def all_stage_requirements(recipes: dict[str, Recipe]) -> tuple[list[str], list[str]]:
    """What the wheelhouse must hold: the union of every recipe's expforge-stage requirements."""
    reqs: set[str] = set()
    no_deps: set[str] = set()
    for recipe in recipes.values():
        reqs.update(recipe.requirements)
        no_deps.update(recipe.no_deps)
    return sorted(reqs), sorted(no_deps)


def _pip(*args: str, isolated_env: bool = False) -> list[str]:
    """A pip command for the running interpreter (the project venv)."""
    cmd = [sys.executable, "-m", "pip", *args]
    if isolated_env:
        cmd.insert(3, "--isolated")
    return cmd


def check_interpreter() -> None:
    """The wheelhouse is resolved for the interpreter that runs pip: it must be the images' Python 3.11."""
    if sys.version_info[:2] != (3, 11):
        raise BuildError(
            f"run this with Python 3.11 (the project venv: .venv/bin/python), not {sys.version.split()[0]}: "
            "the wheelhouse is resolved for the interpreter that runs pip"
        )


def project_wheel() -> Path:
    """The project wheel in the wheelhouse (exactly one; :func:`build_wheelhouse` makes it)."""
    wheels = sorted(WHEELHOUSE.glob(PROJECT_WHEEL_GLOB))
    if len(wheels) != 1:
        raise BuildError(f"expected one project wheel in {WHEELHOUSE}, found {len(wheels)}: run `make wheelhouse`")
    return wheels[0]


def is_project_wheel(name: str) -> bool:
    """Whether a wheel file name is the project's own wheel (the code layer, not a dependency)."""
    return name.startswith("expforge-")


def build_wheelhouse(recipes: dict[str, Recipe] | None = None, *, force: bool = False) -> dict[str, str]:
    """Make build/wheelhouse hold the project wheel and every wheel the images install; return {file: sha256}."""
    check_interpreter()
    recipes = recipes if recipes is not None else discover_recipes()
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    stamps_path = WHEELHOUSE / ".stamps.json"
    stamps: dict[str, Any] = json.loads(stamps_path.read_text()) if stamps_path.is_file() and not force else {}

    files = project_files()
    file_hashes = {str(f.relative_to(REPO)): sha256_file(f) for f in files}
    project_stamp = sha256_json(sorted(file_hashes.items()))
    reqs, no_deps = all_stage_requirements(recipes)
    extras, other_reqs = merge_expforge_extras(reqs)
    if any(r.replace(" ", "").startswith("torch") and r != TORCH_PIN for r in [*other_reqs, *no_deps]):
        raise BuildError(f"images may only ask for {TORCH_PIN!r} (any other torch spec pulls CUDA packages)")
    # Only what the images' resolution depends on: an edit to tool settings or to an extra no image installs
    # (dev, ui, ...) re-resolves nothing.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    optional = project.get("optional-dependencies", {})
    deps_stamp = sha256_json(
        {
            "dependencies": project.get("dependencies", []),
            "optional": {extra: optional.get(extra, []) for extra in extras},
            "extras": extras,
            "reqs": other_reqs,
            "no_deps": no_deps,
        }
    )

    existing = sorted(WHEELHOUSE.glob(PROJECT_WHEEL_GLOB))
    if stamps.get("project") != project_stamp or len(existing) != 1:
        started = time.monotonic()
        previous = stamps.get("project_files", {})
        changed = sorted(set(previous.items()) ^ set(file_hashes.items()))
        if previous and changed:
            names = sorted({name for name, _ in changed})
            more = f" (+{len(names) - 5} more)" if len(names) > 5 else ""
            log(f"project sources changed: {', '.join(names[:5])}{more}")
        _build_project_wheel(files, existing)
        stamps["project"] = project_stamp
        stamps["project_files"] = file_hashes
        write_atomic(stamps_path, json.dumps(stamps, indent=1))
        log(f"project wheel built in {time.monotonic() - started:.1f}s")
    wheel = project_wheel()

    if stamps.get("deps") != deps_stamp:
        started = time.monotonic()
        if _satisfied_offline(wheel, extras, other_reqs, no_deps):
            log("the wheelhouse already satisfies the changed requirements (checked offline); nothing to download")
        else:
            _resolve_dependencies(wheel, extras, other_reqs, no_deps)
        stamps["deps"] = deps_stamp
        write_atomic(stamps_path, json.dumps(stamps, indent=1))
        log(f"dependency wheels resolved in {time.monotonic() - started:.1f}s")
    return wheel_manifest()


_BUILD_WHEEL = """
import os, sys
os.chdir(sys.argv[1])
from setuptools import build_meta
build_meta.build_wheel(sys.argv[2])
"""


def _build_project_wheel(files: Sequence[Path], old_wheels: Sequence[Path]) -> None:
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=BUILD) as tmp:
        # Build from a clean copy: setuptools' in-tree build/ folder would otherwise collide with ours and
        # could carry deleted modules into the wheel.
        src = Path(tmp) / "src"
        for f in files:
            (src / f.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, src / f.relative_to(REPO))
        out = Path(tmp) / "out"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
        # The PEP 517 hook itself, in one process: `pip wheel --no-build-isolation` runs the same setuptools
        # backend (same bytes) but costs two more interpreters and pip's own start-up — about 2 CPU-seconds of
        # the one-line-edit loop on this machine (0.9 s instead of 2.7 s).
        run([sys.executable, "-c", _BUILD_WHEEL, str(src), str(out)], env=env)
        built = sorted(out.glob(PROJECT_WHEEL_GLOB))
        if len(built) != 1:
            raise BuildError(f"pip wheel built {len(built)} expforge wheels, expected one")
        for old in old_wheels:
            old.unlink()
        shutil.move(str(built[0]), WHEELHOUSE / built[0].name)


def _satisfied_offline(wheel: Path, extras: list[str], other_reqs: list[str], no_deps: list[str]) -> bool:
    """Whether the wheels already here satisfy every requirement together (``pip install --dry-run
    --no-index``): then a changed requirement needs no resolution against the index (seconds, not minutes)."""
    if not any(WHEELHOUSE.glob("*.whl")):
        return False
    target = f"expforge[{','.join(extras)}] @ {wheel.as_uri()}" if extras else wheel.as_uri()
    base = ["install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(WHEELHOUSE), "--quiet"]
    for reqs, flags in (([target, *other_reqs], ()), (no_deps, ("--no-deps",))):
        if not reqs:
            continue
        proc = subprocess.run(_pip(*base, *flags, *reqs, isolated_env=True), capture_output=True, check=False)
        if proc.returncode != 0:
            return False
    return True


def _resolve_dependencies(wheel: Path, extras: list[str], other_reqs: list[str], no_deps: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="deps-", dir=BUILD) as tmp:
        out = Path(tmp)
        target = f"expforge[{','.join(extras)}] @ {wheel.as_uri()}" if extras else wheel.as_uri()
        log(f"resolving the wheelhouse: expforge[{','.join(extras)}] {' '.join(other_reqs)} (host pip config)")
        # One resolution for everything: every image then installs mutually consistent versions. Wheels already
        # here are offered first (--find-links), so changing one extra downloads only what it adds.
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
        links = ["--find-links", str(WHEELHOUSE)]
        run(_pip("wheel", "--quiet", "--prefer-binary", *links, "--wheel-dir", str(out), target, *other_reqs), env=env)
        if no_deps:
            run(_pip("wheel", "--quiet", "--no-deps", *links, "--wheel-dir", str(out), *no_deps), env=env)
        fresh = {new.name for new in out.glob("*.whl") if not is_project_wheel(new.name)}
        for old in WHEELHOUSE.glob("*.whl"):
            if not is_project_wheel(old.name) and old.name not in fresh:
                old.unlink()
        for new in out.glob("*.whl"):
            if is_project_wheel(new.name):
                continue
            # A wheel already here keeps its file: its name pins the version, and a wheel pip rebuilt from an
            # sdist may differ in bytes only, which would change image hashes for nothing.
            if not (WHEELHOUSE / new.name).is_file():
                shutil.move(str(new), WHEELHOUSE / new.name)


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


def project_requirements_digest(manifest: dict[str, str]) -> str:
    """Hash of the project wheel's declared dependencies (``Requires-Dist``/``Provides-Extra`` of METADATA).

    What a resolution depends on: a code edit changes the wheel's bytes but not this, so it re-resolves nothing.
    """
    names = [name for name in manifest if is_project_wheel(name)]
    if not names:
        return "none"
    with zipfile.ZipFile(WHEELHOUSE / names[0]) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode("utf-8").splitlines()
    declared = [line for line in lines if line.startswith(("Requires-Dist:", "Provides-Extra:", "Name:", "Version:"))]
    return sha256_json(declared)


def resolve_closure(requirements: Sequence[str], no_deps: Sequence[str], manifest: dict[str, str]) -> list[str]:
    """Wheel files (from the wheelhouse) that installing these requirements into an empty venv would use.

    ``pip install --dry-run --report`` against the wheelhouse only (``--isolated --no-index``), so it answers
    exactly what ``pip install --no-index`` in the image will pick. Cached per state of the *dependency* wheels
    and the project's declared requirements, so a code edit resolves nothing again.
    """
    cache_path = WHEELHOUSE / ".closures.json"
    cache: dict[str, list[str]] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    dependencies = {name: digest for name, digest in manifest.items() if not is_project_wheel(name)}
    key = sha256_json(
        {
            "dependencies": dependencies,
            "project": project_requirements_digest(manifest),
            "reqs": list(requirements),
            "no_deps": list(no_deps),
        }
    )
    if key in cache and all(name in manifest for name in cache[key]):
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
