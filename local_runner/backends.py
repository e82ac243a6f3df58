"""The backend protocol: how one attempt of one container task is executed, and how a backend is chosen.

The scheduler decides *what* runs and *when*; a backend only runs a fully resolved command line (in the
component's image, or as a local process) and reports its exit status. Keeping that seam narrow is what lets
both backends share every line of KFP semantics.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from expforge.errors import ExpforgeError
from expforge.local_runner.resources import ResourceRequest

BACKEND_NAMES = ("auto", "docker", "subprocess")


@dataclass(frozen=True)
class Launch:
    """One attempt of one task, with every placeholder already substituted."""

    task_key: str
    image: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    task_dir: Path
    run_dir: Path
    log_path: Path
    resources: ResourceRequest = field(default_factory=ResourceRequest)
    # Local input paths outside the run directory (e.g. an importer's URI): a container must see them too.
    extra_read_paths: tuple[Path, ...] = ()
    # Directories every task may write besides its own outputs (the tracking database, the local registry).
    shared_dirs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class LaunchResult:
    """How an attempt ended. ``runtime_s`` is the time the process/container itself ran."""

    exit_code: int
    runtime_s: float
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        """Exit status 0 (outputs are checked separately)."""
        return self.exit_code == 0

    def describe(self) -> str:
        """``exit code 137 (killed by SIGKILL)``-style text for the task's error."""
        text = f"exit code {self.exit_code}"
        return f"{text} ({self.reason})" if self.reason else text


def signal_reason(exit_code: int) -> str | None:
    """Name the signal behind a 128+N exit status (what shells and Docker report for killed processes)."""
    if exit_code > 128:
        try:
            return f"killed by {signal.Signals(exit_code - 128).name}"
        except ValueError:
            return None
    return None


class Backend(Protocol):
    """What the scheduler needs from an execution backend."""

    name: str
    enforces_limits: bool

    def check_images(self, images: dict[str, list[str]]) -> None:
        """Raise :class:`ExpforgeError` naming any image that cannot run here (never pulls)."""
        ...

    def environment_digest(self, image: str) -> str:
        """Identity of the environment a task runs in, for cache keys (the image ID under Docker)."""
        ...

    def run(self, launch: Launch) -> LaunchResult:
        """Run one attempt to completion, writing its stdout/stderr to ``launch.log_path``."""
        ...

    def cancel_all(self) -> None:
        """Stop every attempt still running (on Ctrl-C)."""
        ...

    def close(self) -> None:
        """Release resources (containers still being removed, client connections)."""
        ...


def select_backend(name: str, *, max_parallel: int) -> Backend:
    """``docker``, ``subprocess``, or ``auto`` (Docker when a daemon answers, else subprocess)."""
    from expforge.local_runner.docker_backend import DockerBackend, docker_client
    from expforge.local_runner.subprocess_backend import SubprocessBackend

    if name not in BACKEND_NAMES:
        raise ExpforgeError(f"unknown backend {name!r} (choose one of: {', '.join(BACKEND_NAMES)})")
    if name == "subprocess":
        return SubprocessBackend()
    client, problem = docker_client(pool_size=max_parallel + 4)
    if client is not None:
        return DockerBackend(client)
    if name == "docker":
        raise ExpforgeError(
            f"--backend docker: Docker is not running or not reachable ({problem}); "
            "start it (`make docker-up`) or use --backend subprocess"
        )
    return SubprocessBackend()
