"""The Pub/Sub stand-in: the official emulator from the installed gcloud CLI (needs Java), like Firestore's.

Started as ``gcloud beta emulators pubsub start --host-port=127.0.0.1:PORT`` in its own process group (the
launcher leaves a ``java`` child behind, so the whole group is stopped), on a free port chosen at start.
Clients find it through ``PUBSUB_EMULATOR_HOST`` (``host:port``, no scheme).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from expforge.standins.gcloud_emulator import (
    START_TIMEOUT_S,
    GcloudEmulator,
    gcloud_emulator_unavailable,
    launch_gcloud_emulator,
    running,
)

__all__ = ["START_TIMEOUT_S", "PubSubEmulator", "launch_pubsub_emulator", "pubsub_unavailable"]


def pubsub_unavailable() -> str | None:
    """Why the emulator cannot start here (no gcloud, no Java, no emulator component), or ``None``."""
    reason = gcloud_emulator_unavailable("Pub/Sub")
    if reason:
        return reason
    platform = Path(str(shutil.which("gcloud"))).resolve().parent.parent / "platform"
    if platform.is_dir() and not (platform / "pubsub-emulator").is_dir():
        return "the gcloud component pubsub-emulator is not installed"
    return None


class PubSubEmulator(GcloudEmulator):
    """A launched Pub/Sub emulator (``PUBSUB_EMULATOR_HOST``)."""

    host_variable = "PUBSUB_EMULATOR_HOST"


def launch_pubsub_emulator(
    *, port: int | None = None, host: str = "127.0.0.1", project: str = "expforge-local"
) -> PubSubEmulator:
    """Start the emulator without waiting for it (call ``wait_ready``); its data lives in a private directory."""
    return launch_gcloud_emulator(
        PubSubEmulator,
        service="Pub/Sub",
        command=["beta", "emulators", "pubsub"],
        reason=pubsub_unavailable(),
        port=port,
        host=host,
        project=project,
        data_dir=True,
    )


@contextlib.contextmanager
def start_pubsub_emulator(
    *, port: int | None = None, host: str = "127.0.0.1", project: str = "expforge-local"
) -> Iterator[PubSubEmulator]:
    """A running emulator for the ``with`` block (stopped on exit)."""
    with running(launch_pubsub_emulator(port=port, host=host, project=project)) as emulator:
        yield emulator
