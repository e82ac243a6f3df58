"""Fixtures of the runner tests: which backends to run on, the image, and a compile-and-run helper.

Every conformance test runs on the subprocess backend; the ``docker`` variant runs when a daemon answers and
the base image (``EXPFORGE_TEST_IMAGE``, else ``build/images.json`` key ``base``) exists, and is skipped
otherwise — unless ``EXPFORGE_REQUIRE_DOCKER=1`` (CI), where a missing daemon or image fails the test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from docker_gate import docker_unavailable, require_images
from runner_components import compile_pipeline, make_components

from expforge.local_runner.api import RunResult, run_pipeline

REPO = Path(__file__).resolve().parents[2]
IMAGES_JSON = REPO / "build" / "images.json"
FALLBACK_IMAGE = "expforge/base:latest"


def base_image_ref() -> str | None:
    """The image the Docker tests run components in (``None`` when none is configured)."""
    if os.environ.get("EXPFORGE_TEST_IMAGE"):
        return os.environ["EXPFORGE_TEST_IMAGE"]
    try:
        return json.loads(IMAGES_JSON.read_text())["base"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The base image, checked to exist in a reachable Docker daemon."""
    ref = base_image_ref()
    if ref is None:
        docker_unavailable("no base image: set EXPFORGE_TEST_IMAGE or run `make images` (build/images.json)")
    require_images([ref])
    return ref


@pytest.fixture(params=["subprocess", pytest.param("docker", marks=pytest.mark.docker)])
def backend(request: pytest.FixtureRequest) -> str:
    """Each conformance test runs once per backend."""
    if request.param == "docker":
        request.getfixturevalue("docker_image")
    return request.param


@pytest.fixture
def image(backend: str, request: pytest.FixtureRequest) -> str:
    """The component image: the real base image under Docker; any name under subprocess (it is not used)."""
    if backend == "docker":
        return request.getfixturevalue("docker_image")
    return base_image_ref() or FALLBACK_IMAGE


@pytest.fixture
def comps(image: str) -> SimpleNamespace:
    """The test components, built for this test's image."""
    return make_components(image)


def _runner(directory: Path, backend: str) -> Callable[..., RunResult]:
    def execute(pipeline: Any, params: dict[str, Any] | None = None, **options: Any) -> RunResult:
        spec = compile_pipeline(pipeline, directory / "specs")
        options.setdefault("root", directory / "runs")
        options.setdefault("backend", backend)
        return run_pipeline(spec, params or {}, **options)

    return execute


@pytest.fixture
def run(tmp_path: Path, backend: str) -> Callable[..., RunResult]:
    """``run(pipeline, params, **options)``: compile into tmp_path, run there, return the result."""
    return _runner(tmp_path, backend)


@pytest.fixture
def subprocess_run(tmp_path: Path) -> Callable[..., RunResult]:
    """:func:`run` for tests that only make sense on the subprocess backend."""
    return _runner(tmp_path, "subprocess")


@pytest.fixture
def subprocess_comps() -> SimpleNamespace:
    """Components for subprocess-only tests (the image name is not used)."""
    return make_components(base_image_ref() or FALLBACK_IMAGE)


@pytest.fixture
def docker_run(tmp_path: Path, docker_image: str) -> Callable[..., RunResult]:
    """:func:`run` for Docker-only tests (resource enforcement, container user)."""
    return _runner(tmp_path, "docker")


@pytest.fixture
def docker_comps(docker_image: str) -> SimpleNamespace:
    """Components built for the Docker base image."""
    return make_components(docker_image)
