"""Paths, constants, the user-facing error and the small helpers every other module of the build shares."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
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
CODE_DOCKERFILE = CONTAINERS / "base" / "code.Dockerfile"
FONT_PACKAGES_FILE = CONTAINERS / "render-font-digits" / "font-packages.txt"
# Where the images' venv keeps its packages (every image holds Python 3.11; build_images checks the host's).
SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages"
# The only torch spec that resolves to the local CPU wheel; any other spec can pull GBs of CUDA packages.
TORCH_PIN = "torch==2.13.0"
# Files at the project root that go into the project wheel (besides the package folders of pyproject.toml).
PROJECT_TOP_FILES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.cfg", "setup.py")
HASH_LEN = 12
# Fixed timestamps (zip entries, staged code files): the same sources give the same bytes, hence the same tags.
SOURCE_DATE_EPOCH = 315532800


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


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (staging is free), copying where links are impossible."""
    import shutil

    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
