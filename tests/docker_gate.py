"""One rule for every Docker test: skip where Docker is optional, fail where CI requires it.

CI sets ``EXPFORGE_REQUIRE_DOCKER=1`` after starting the daemon and building the images, so a Docker test
that would silently skip there fails instead.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_DOCKER = os.environ.get("EXPFORGE_REQUIRE_DOCKER") == "1"


def docker_unavailable(reason: str) -> None:
    """Skip the calling test, or fail it where Docker is required."""
    if REQUIRE_DOCKER:
        pytest.fail(f"EXPFORGE_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


def require_images(refs: list[str]) -> None:
    """Skip/fail unless a Docker daemon answers and every image in ``refs`` exists locally (never pulled)."""
    from expforge.local_runner.docker_backend import docker_client

    client, problem = docker_client()
    if client is None:
        docker_unavailable(f"no Docker daemon ({problem})")
    try:
        for ref in refs:
            try:
                client.images.get(ref)
            except Exception:
                docker_unavailable(f"image {ref} is not built: run `make images`")
    finally:
        client.close()
