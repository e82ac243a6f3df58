"""The Pub/Sub stand-in: the official emulator from the installed gcloud CLI (needs Java), like Firestore's.

Started as ``gcloud beta emulators pubsub start --host-port=127.0.0.1:PORT`` in its own process group (the
launcher leaves a ``java`` child behind, so the whole group is stopped), on a free port chosen at start.
Clients find it through ``PUBSUB_EMULATOR_HOST`` (``host:port``, no scheme).
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


def pubsub_unavailable() -> str | None:
    """Why the emulator cannot start here (no gcloud, no Java, no emulator component), or ``None``."""
    gcloud = shutil.which("gcloud")
    if not gcloud:
        return "the gcloud CLI is not installed (the Pub/Sub emulator ships with it)"
    if not shutil.which("java"):
        return "Java is not installed (the Pub/Sub emulator is a Java program)"
    platform = Path(gcloud).resolve().parent.parent / "platform"
    if platform.is_dir() and not (platform / "pubsub-emulator").is_dir():
        return "the gcloud component pubsub-emulator is not installed"
    return None


class PubSubEmulator(StandInServer):
    """A launched emulator: ``host``/``port``, its ``env()``, and ``stop()``/``kill()`` (from the base)."""

    @property
    def address(self) -> str:
        """``host:port`` (the form ``PUBSUB_EMULATOR_HOST`` takes)."""
        return f"{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Variables that point Pub/Sub clients here."""
        return {"PUBSUB_EMULATOR_HOST": self.address, "GOOGLE_CLOUD_PROJECT": self.project}

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> PubSubEmulator:
        """Block until the emulator answers HTTP (it says ``Ok`` on ``/``)."""
        self.wait_http_ok("/", timeout)
        return self


def launch_pubsub_emulator(
    *, port: int | None = None, host: str = "127.0.0.1", project: str = "expforge-local"
) -> PubSubEmulator:
    """Start the emulator without waiting for it (call ``wait_ready``)."""
    reason = pubsub_unavailable()
    if reason:
        raise ExpforgeError(f"Pub/Sub stand-in: {reason}")
    workdir = tempfile.TemporaryDirectory(prefix="expforge-pubsub-")
    chosen = port or free_port(host)
    argv = [
        "gcloud",
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port={host}:{chosen}",
        f"--data-dir={workdir.name}",
        "--quiet",
        "--verbosity=error",
    ]
    env = {"CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_CORE_PROJECT": project}
    process = ManagedProcess("Pub/Sub emulator", argv, Path(workdir.name) / "pubsub.log", env)
    return PubSubEmulator(host, chosen, process, project, _workdir=workdir)


@contextlib.contextmanager
def start_pubsub_emulator(
    *, port: int | None = None, host: str = "127.0.0.1", project: str = "expforge-local"
) -> Iterator[PubSubEmulator]:
    """A running emulator for the ``with`` block (stopped on exit)."""
    emulator = launch_pubsub_emulator(port=port, host=host, project=project)
    try:
        emulator.wait_ready()
        yield emulator
    finally:
        emulator.stop()
