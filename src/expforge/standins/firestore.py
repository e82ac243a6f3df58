"""The Firestore stand-in: the official emulator from the installed gcloud CLI (needs Java).

Started as ``gcloud emulators firestore start --host-port=127.0.0.1:PORT`` in its own process group (the
launcher leaves a ``java`` child behind, so the whole group is stopped), on a free port chosen at start.
Clients find it through ``FIRESTORE_EMULATOR_HOST`` (``host:port``, no scheme).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from expforge.standins.gcloud_emulator import (
    START_TIMEOUT_S,
    GcloudEmulator,
    gcloud_emulator_unavailable,
    launch_gcloud_emulator,
    running,
)

__all__ = ["START_TIMEOUT_S", "FirestoreEmulator", "firestore_unavailable", "launch_firestore_emulator"]


def firestore_unavailable() -> str | None:
    """Why the emulator cannot start here (no gcloud, no Java), or ``None`` when it can."""
    return gcloud_emulator_unavailable("Firestore")


class FirestoreEmulator(GcloudEmulator):
    """A launched Firestore emulator (``FIRESTORE_EMULATOR_HOST``)."""

    host_variable = "FIRESTORE_EMULATOR_HOST"


def launch_firestore_emulator(
    *, port: int | None = None, host: str = "127.0.0.1", project: str = "expforge-local"
) -> FirestoreEmulator:
    """Start the emulator without waiting for it (call ``wait_ready``)."""
    return launch_gcloud_emulator(
        FirestoreEmulator,
        service="Firestore",
        command=["emulators", "firestore"],
        reason=firestore_unavailable(),
        port=port,
        host=host,
        project=project,
    )


@contextlib.contextmanager
def start_firestore_emulator(
    *, port: int | None = None, host: str = "127.0.0.1", project: str = "expforge-local"
) -> Iterator[FirestoreEmulator]:
    """A running emulator for the ``with`` block (stopped on exit)."""
    with running(launch_firestore_emulator(port=port, host=host, project=project)) as emulator:
        yield emulator
