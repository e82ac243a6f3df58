"""What the two emulators of the installed gcloud CLI (Firestore, Pub/Sub) share: how they are launched and found.

Each is started as ``gcloud [beta] emulators <service> start --host-port=127.0.0.1:PORT`` in its own process group
(the launcher leaves a ``java`` child behind, so the whole group is stopped), on a free port chosen at start, with
gcloud's own config and logs kept in a private temporary directory. Clients find it through one ``*_EMULATOR_HOST``
variable (``host:port``, no scheme), and it is ready once it answers ``Ok`` on ``/``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar, Self, TypeVar

from expforge.errors import ExpforgeError
from expforge.standins.ports import ManagedProcess, StandInServer, free_port

START_TIMEOUT_S = 90.0


def gcloud_emulator_unavailable(service: str) -> str | None:
    """Why a gcloud emulator cannot start here (no gcloud, no Java), or ``None`` when it can."""
    if not shutil.which("gcloud"):
        return f"the gcloud CLI is not installed (the {service} emulator ships with it)"
    if not shutil.which("java"):
        return f"Java is not installed (the {service} emulator is a Java program)"
    return None


class GcloudEmulator(StandInServer):
    """A launched emulator: ``host``/``port``, its ``env()``, and ``stop()``/``kill()`` (from the base)."""

    host_variable: ClassVar[str]  # e.g. FIRESTORE_EMULATOR_HOST

    @property
    def address(self) -> str:
        """``host:port`` (the form the ``*_EMULATOR_HOST`` variables take)."""
        return f"{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Variables that point this service's clients here."""
        return {self.host_variable: self.address, "GOOGLE_CLOUD_PROJECT": self.project}

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> Self:
        """Block until the emulator answers HTTP (it says ``Ok`` on ``/``)."""
        self.wait_http_ok("/", timeout)
        return self


E = TypeVar("E", bound=GcloudEmulator)


def launch_gcloud_emulator(
    kind: type[E],
    *,
    service: str,
    command: Sequence[str],
    reason: str | None,
    port: int | None,
    host: str,
    project: str,
    data_dir: bool = False,
) -> E:
    """Start ``gcloud <command> start`` for ``service`` without waiting for it (call ``wait_ready``): it takes
    seconds to boot, so callers start it first and do other work meanwhile. ``reason`` (from the service's own
    availability check) refuses the start in one line."""
    if reason:
        raise ExpforgeError(f"{service} stand-in: {reason}")
    slug = service.lower().replace("/", "")
    workdir = tempfile.TemporaryDirectory(prefix=f"expforge-{slug}-")
    chosen = port or free_port(host)
    argv = ["gcloud", *command, "start", f"--host-port={host}:{chosen}"]
    if data_dir:
        argv.append(f"--data-dir={workdir.name}")
    argv += ["--quiet", "--verbosity=error"]
    env = {"CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_CORE_PROJECT": project}
    process = ManagedProcess(f"{service} emulator", argv, Path(workdir.name) / f"{slug}.log", env)
    return kind(host, chosen, process, project, _workdir=workdir)


@contextlib.contextmanager
def running(emulator: E) -> Iterator[E]:
    """``emulator`` ready for the ``with`` block and stopped when it ends (also when it never became ready)."""
    try:
        yield emulator.wait_ready()
    finally:
        emulator.stop()
