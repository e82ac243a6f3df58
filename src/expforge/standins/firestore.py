"""The Firestore stand-in: the official emulator from the installed gcloud CLI (needs Java).

Started as ``gcloud emulators firestore start --host-port=127.0.0.1:PORT`` in its own process group (the
launcher leaves a ``java`` child behind, so the whole group is stopped), on a free port chosen at start.
Clients find it through ``FIRESTORE_EMULATOR_HOST`` (``host:port``, no scheme).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from expforge.errors import ExpforgeError
from expforge.standins.ports import ManagedProcess, StandInServer, free_port

START_TIMEOUT_S = 90.0


def firestore_unavailable() -> str | None:
    """Why the emulator cannot start here (no gcloud, no Java), or ``None`` when it can."""
    if not shutil.which("gcloud"):
        return "the gcloud CLI is not installed (the Firestore emulator ships with it)"
    if not shutil.which("java"):
        return "Java is not installed (the Firestore emulator is a Java program)"
    return None


class FirestoreEmulator(StandInServer):
    """A launched emulator: ``host``/``port``, its ``env()``, and ``stop()``/``kill()`` (from the base)."""

    @property
    def address(self) -> str:
        """``host:port`` (the form ``FIRESTORE_EMULATOR_HOST`` takes)."""
        return f"{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Variables that point Firestore clients here."""
        return {"FIRESTORE_EMULATOR_HOST": self.address, "GOOGLE_CLOUD_PROJECT": self.project}

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> FirestoreEmulator:
        """Block until the emulator answers HTTP (it says ``Ok`` on ``/``)."""
        self.wait_http_ok("/", timeout)
        return self


def launch_firestore_emulator(
    *, port: int | None = None, host: str = "127.0.0.1", project: str = "expforge-local"
) -> FirestoreEmulator:
    """Start the emulator without waiting for it (call ``wait_ready``): it takes seconds to boot, so callers
    start it first and do other work meanwhile."""
    reason = firestore_unavailable()
    if reason:
        raise ExpforgeError(f"Firestore stand-in: {reason}")
    workdir = tempfile.TemporaryDirectory(prefix="expforge-firestore-")
    chosen = port or free_port(host)
    argv = [
        "gcloud",
        "emulators",
        "firestore",
        "start",
        f"--host-port={host}:{chosen}",
        "--quiet",
        "--verbosity=error",
    ]
    # gcloud writes its own config/logs; keep them out of the user's home and away from other runs.
    env = {"CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_CORE_PROJECT": project}
    process = ManagedProcess("Firestore emulator", argv, Path(workdir.name) / "firestore.log", env)
    return FirestoreEmulator(host, chosen, process, project, _workdir=workdir)


@contextlib.contextmanager
def start_firestore_emulator(
    *, port: int | None = None, host: str = "127.0.0.1", project: str = "expforge-local"
) -> Iterator[FirestoreEmulator]:
    """A running emulator for the ``with`` block (stopped on exit)."""
    emulator = launch_firestore_emulator(port=port, host=host, project=project)
    try:
        emulator.wait_ready()
        yield emulator
    finally:
        emulator.stop()
