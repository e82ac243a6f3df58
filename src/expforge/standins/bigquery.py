"""The BigQuery stand-in: ``bqemulator`` (DuckDB-based REST + gRPC emulator), spoken to by the real client.

bqemulator loads DuckDB's ``spatial`` extension at boot (and ``avro`` when available) with ``INSTALL``, which
downloads from DuckDB's extension site — not reachable here, and a startup that stalls for a minute on a
download timeout where it is blocked. The extensions also ship as wheels (``duckdb-extension-spatial``,
``duckdb-extension-avro``, pinned to the DuckDB version); :func:`ensure_duckdb_extensions` installs them from
those wheels into DuckDB's extension directory first, so bqemulator's ``INSTALL`` finds them in place.

Clients: ``bigquery.Client(project, credentials=AnonymousCredentials(),
client_options={"api_endpoint": "http://host:port"})`` (the variables from :meth:`BigQueryEmulator.env`
carry the endpoint); pass ``retry=None`` in tests so a failure is not retried for minutes.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.standins.ports import ManagedProcess, StandInServer, free_port

START_TIMEOUT_S = 60.0
EXTENSIONS = ("spatial", "avro")


def ensure_duckdb_extensions(names: Sequence[str] = EXTENSIONS) -> None:
    """Install DuckDB extensions from their wheels unless DuckDB already has them (idempotent, offline)."""
    try:
        import duckdb
    except ImportError:
        raise ExpforgeError(
            "BigQuery stand-in: bqemulator is not installed (pip install 'expforge[standins]')"
        ) from None
    version = duckdb.__version__
    connection = duckdb.connect()
    try:
        rows = connection.execute("SELECT extension_name, installed FROM duckdb_extensions()").fetchall()
        installed = {name for name, is_installed in rows if is_installed}
        for name in names:
            if name in installed:
                continue
            hint = f"pip install duckdb-extension-{name}=={version}"
            try:
                module = importlib.import_module(f"duckdb_extension_{name}")
            except ImportError:
                raise ExpforgeError(
                    f"BigQuery stand-in: DuckDB's {name} extension is missing and cannot be downloaded here ({hint})"
                ) from None
            base = Path(module.__file__ or "").parent
            files = sorted(base.glob(f"extensions/*/{name}.duckdb_extension"))
            wanted = [f for f in files if f.parent.name == f"v{version}"]
            if not wanted:
                found = ", ".join(f.parent.name for f in files) or "none"
                raise ExpforgeError(
                    f"BigQuery stand-in: duckdb-extension-{name} is built for {found}, DuckDB is v{version} ({hint})"
                )
            connection.execute(f"INSTALL '{wanted[0]}'")
    except duckdb.Error as exc:
        raise ExpforgeError(f"BigQuery stand-in: cannot install DuckDB extensions ({exc})") from exc
    finally:
        connection.close()


@dataclass
class BigQueryEmulator(StandInServer):
    """A running bqemulator: ``host``/``port``, ``endpoint``, ``env()``, ``client()``, ``stop()``/``kill()``."""

    data_dir: Path | None = None

    @property
    def endpoint(self) -> str:
        """``http://host:port`` — the REST endpoint clients use as ``api_endpoint``."""
        return self.url

    def env(self) -> dict[str, str]:
        """Variables that point clients here (``BIGQUERY_EMULATOR_HOST`` is read by google-cloud-bigquery)."""
        return {
            "EXPFORGE_BIGQUERY_ENDPOINT": self.endpoint,
            "BIGQUERY_EMULATOR_HOST": self.endpoint,
            "GOOGLE_CLOUD_PROJECT": self.project,
        }

    def client(self) -> Any:
        """A real ``google.cloud.bigquery.Client`` talking to this emulator."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project, credentials=AnonymousCredentials(), client_options={"api_endpoint": self.endpoint}
        )

    def create_datasets(self, names: Sequence[str], *, tables: bool = True) -> None:
        """Create datasets (existing ones are fine) and, unless ``tables=False``, their tracking tables and
        views with ``expforge bigquery setup`` — the tracker itself creates nothing, as in production."""
        from expforge.bigquery.setup import run_setup

        client = self.client()
        try:
            for name in names:
                if tables:
                    run_setup(self.project, name, client=client)
                else:
                    client.create_dataset(f"{self.project}.{name}", exists_ok=True, retry=None, timeout=30)
        finally:
            client.close()


def launch_bigquery_emulator(
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    project: str = "expforge-local",
    data_dir: Path | str | None = None,
) -> BigQueryEmulator:
    """Start bqemulator without waiting (call :func:`wait_bigquery_ready`). ``data_dir`` makes it persistent
    (DuckDB file there), so a restart on the same directory keeps the tables and rows."""
    ensure_duckdb_extensions()
    workdir = tempfile.TemporaryDirectory(prefix="expforge-bq-")
    chosen = port or free_port(host)
    argv = [
        sys.executable,
        "-m",
        "bqemulator",
        "start",
        "--rest-host",
        host,
        "--rest-port",
        str(chosen),
        "--grpc-host",
        host,
        "--grpc-port",
        "0",
        "--project",
        project,
        "--log-level",
        "warning",
        "--no-admin",
    ]
    if data_dir is not None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        argv += ["--persistent", "--data-dir", str(data_dir)]
    else:
        argv += ["--ephemeral"]
    process = ManagedProcess("BigQuery emulator (bqemulator)", argv, Path(workdir.name) / "bqemulator.log")
    return BigQueryEmulator(
        host, chosen, process, project, _workdir=workdir, data_dir=Path(data_dir) if data_dir else None
    )


def wait_bigquery_ready(emulator: BigQueryEmulator, timeout: float = START_TIMEOUT_S) -> BigQueryEmulator:
    """Block until the REST API lists datasets."""
    emulator.wait_http_ok(f"/bigquery/v2/projects/{emulator.project}/datasets", timeout)
    return emulator


@contextlib.contextmanager
def start_bigquery_emulator(
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    project: str = "expforge-local",
    data_dir: Path | str | None = None,
    datasets: Sequence[str] = (),
) -> Iterator[BigQueryEmulator]:
    """A running emulator for the ``with`` block, with ``datasets`` created (stopped on exit)."""
    emulator = launch_bigquery_emulator(port=port, host=host, project=project, data_dir=data_dir)
    try:
        wait_bigquery_ready(emulator)
        if datasets:
            emulator.create_datasets(datasets)
        yield emulator
    finally:
        emulator.stop()
