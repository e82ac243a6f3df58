"""Creating the Google Cloud clients, in one place for tracking, the registry and submit.

Every client here can point at a local stand-in instead of Google (an endpoint on this machine, anonymous
credentials, the stand-in's own TLS certificate), and the rules for that used to be written three times, once
in a test stand-in that production code imported. They live here now, in production code that imports no
stand-in: the stand-ins only *serve*, and whoever starts one hands its endpoint and certificate to these
functions like any other configuration.

Google's libraries are imported inside the functions, so importing this module costs nothing and needs no
``gcp`` extra; only calling a function does.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError

#: gRPC reads its trusted roots from the file this names, once per process (the first secure channel).
ROOTS_ENV = "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")

_ROOTS_LOCK = threading.Lock()
_ENV_LOCK = threading.Lock()


def is_local_endpoint(endpoint: str | None) -> bool:
    """Whether ``host:port`` is on this machine (a stand-in: no Google account involved)."""
    return bool(endpoint) and str(endpoint).rsplit(":", 1)[0] in LOCAL_HOSTS


def anonymous_credentials() -> Any:
    """Credentials that sign nothing (what every stand-in accepts)."""
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def trust_roots(ca_cert: Path | str) -> Path:
    """Make gRPC in this process trust ``ca_cert`` (kept with the roots trusted before); return the roots file.

    Why a bundle: ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` *replaces* gRPC's roots. Machines often set it to the
    system bundle already; pointing it at one certificate alone would break every other TLS connection of the
    process, so the certificate is appended to what the variable named before, in ``roots.pem`` beside it.
    gRPC loads its roots once per process, so this must run before the first secure channel.
    """
    cert = Path(ca_cert)
    existing = os.environ.get(ROOTS_ENV)
    roots = cert
    if existing and Path(existing).is_file() and Path(existing).resolve() != cert.resolve():
        content, pem = Path(existing).read_bytes(), cert.read_bytes()
        if pem.strip() in content:
            roots = Path(existing)
        else:
            roots = cert.with_name("roots.pem")
            with _ROOTS_LOCK:
                staging = roots.with_suffix(".tmp")
                staging.write_bytes(content.rstrip(b"\n") + b"\n" + pem)
                staging.replace(roots)
    os.environ[ROOTS_ENV] = str(roots)
    return roots


def check_tls(endpoint: str, timeout: float = 10.0) -> None:
    """Fail clearly when this process's gRPC does not trust ``endpoint`` (instead of SDK retries that hang).

    That happens when a secure channel was created before ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` named the
    endpoint's certificate: gRPC keeps the roots it loaded first.
    """
    import grpc

    channel = grpc.secure_channel(endpoint, grpc.ssl_channel_credentials())
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise ExpforgeError(
            f"{endpoint}: no TLS connection to the Vertex endpoint within {timeout:.0f}s; if gRPC loaded its roots "
            f"before {ROOTS_ENV} named the endpoint's certificate, call trust_certificate() at process start"
        ) from None
    finally:
        channel.close()


def init_aiplatform(
    project: str,
    location: str,
    *,
    endpoint: str | None = None,
    ca_cert: Path | str | None = None,
    credentials: Any = None,
    **kwargs: Any,
) -> Any:
    """``aiplatform.init`` for Google or a stand-in; returns the credentials it used (``None``: the default).

    * ``endpoint`` + ``ca_cert`` (a stand-in serving its own certificate): the certificate is trusted, the TLS
      connection checked, and the credentials are anonymous.
    * ``endpoint`` on this machine without a certificate: anonymous credentials.
    * otherwise ``credentials`` as given (Application Default Credentials when ``None``).

    ``kwargs`` (``experiment``, ``staging_bucket``, ...) go to ``aiplatform.init`` unchanged.
    """
    from google.cloud import aiplatform

    if endpoint and ca_cert:
        trust_roots(ca_cert)
        check_tls(endpoint)
        credentials = anonymous_credentials()
    elif credentials is None and is_local_endpoint(endpoint):
        credentials = anonymous_credentials()
    init: dict[str, Any] = {"project": project, "location": location, **kwargs}
    if endpoint:
        init["api_endpoint"] = endpoint
    if credentials is not None:
        init["credentials"] = credentials
    aiplatform.init(**init)
    return credentials


def bigquery_client(project: str, *, endpoint: str | None = None) -> Any:
    """A BigQuery client; ``endpoint`` (``http://host:port`` of a stand-in) makes it anonymous."""
    from google.cloud import bigquery

    if not endpoint:
        return bigquery.Client(project=project)
    return bigquery.Client(
        project=project, credentials=anonymous_credentials(), client_options={"api_endpoint": endpoint}
    )


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """Set one variable while a client is constructed: the Firestore client reads its emulator host from the
    process environment at construction only, and the configuration may come from elsewhere (a task env)."""
    with _ENV_LOCK:
        previous = os.environ.get(name)
        os.environ[name] = value
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous


def firestore_client(project: str, *, emulator_host: str | None = None) -> Any:
    """A Firestore client; ``emulator_host`` (``host:port``) points it at the emulator."""
    from google.cloud import firestore

    with _environment("FIRESTORE_EMULATOR_HOST", emulator_host) if emulator_host else contextlib.nullcontext():
        return firestore.Client(project=project)


def storage_client(project: str, *, credentials: Any = None) -> Any:
    """A Cloud Storage client; anonymous when ``STORAGE_EMULATOR_HOST`` names a stand-in."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project, credentials=anonymous_credentials())
    return storage.Client(project=project, credentials=credentials)
