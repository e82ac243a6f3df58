"""Process plumbing shared by the stand-ins: free ports, process groups, waiting until a server answers.

Why process groups: launchers such as ``gcloud emulators firestore start`` are scripts that start the real
server (a JVM) as a child; stopping only the launcher leaves the child listening. Each stand-in therefore runs
in its own session (``start_new_session``) and is stopped by signalling the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from expforge.errors import ExpforgeError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice, so parallel tests rarely collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ManagedProcess:
    """A server process started in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            try:
                self.popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})},
                    start_new_session=True,
                )
            except OSError as exc:
                raise ExpforgeError(f"{name}: cannot start {self.argv[0]} ({exc.strerror or exc})") from exc

    @property
    def pid(self) -> int:
        """The leader's pid (= the process group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the leader is still running."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole group, then SIGKILL what is left after ``timeout`` (idempotent)."""
        if self.popen.returncode is not None and not _group_alive(self.pid):
            return
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.popen.poll()
            if not _group_alive(self.pid):
                break
            time.sleep(0.05)
        else:
            _signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the whole group at once (what a crash or an outage looks like to clients)."""
        _signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True  # (zombies count until reaped: callers poll() the leader first)


def group_members(pgid: int) -> list[tuple[int, str]]:
    """``(pid, command)`` of the live (non-zombie) processes in group ``pgid``, read from ``/proc`` (Linux).

    Used to check that stopping a stand-in left nothing behind (the Firestore launcher's java child)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may contain spaces, so split after its closing parenthesis.
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, _ppid, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            members.append((int(entry.name), command))
    return members


def http_ok(url: str, timeout: float = 2.0) -> Callable[[], bool]:
    """A readiness check: ``url`` answers with a 2xx status."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local stand-in URL
                return 200 <= response.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return check


def wait_until_ready(process: ManagedProcess, ready: Callable[[], bool], timeout: float) -> None:
    """Poll ``ready`` until it is true; a process that exits or a timeout is one error with the log's tail."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if ready():
            return
        if not process.alive():
            raise ExpforgeError(
                f"{process.name} exited with status {process.popen.returncode} while starting "
                f"(log {process.log_path}):\n{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            process.stop()
            raise ExpforgeError(
                f"{process.name} did not become ready within {timeout:.0f} s (log {process.log_path}):\n"
                f"{process.log_tail()}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


@dataclass
class StandInServer:
    """A launched stand-in server: where it listens, its process, and the temporary directory it owns.

    The stand-ins differ in how they start and which variables point clients at them (:meth:`env`); stopping,
    killing and cleaning up after them is the same, so it lives here once.
    """

    host: str
    port: int
    process: ManagedProcess
    project: str = "expforge-local"
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Variables that point clients at this server (each stand-in names its own)."""
        raise NotImplementedError

    def wait_http_ok(self, path: str, timeout: float) -> None:
        """Block until ``GET url + path`` answers 2xx (one error with the log's tail on exit or timeout)."""
        wait_until_ready(self.process, http_ok(f"{self.url}{path}"), timeout)

    def alive(self) -> bool:
        """Whether the server (or its launcher) still runs."""
        return self.process.alive()

    def stop(self) -> None:
        """Stop the whole process group and remove the temporary directory (idempotent)."""
        self.process.stop()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def kill(self) -> None:
        """SIGKILL the group: the server vanishes as in an outage."""
        self.process.kill()
