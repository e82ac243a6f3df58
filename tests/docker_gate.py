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
