"""A local stand-in for Vertex AI: a gRPC server speaking the real ``aiplatform_v1`` services over TLS.

Why: Vertex AI has no emulator, yet the tracking, registry and submit code must be tested against the real
``google-cloud-aiplatform`` SDK (its request building, its get-or-create logic, its paging), not a mock. The
SDK reaches any ``api_endpoint`` over TLS, so the stand-in serves a self-signed certificate for 127.0.0.1 that
``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` makes trusted, and answers ``AnonymousCredentials``.

Served (in memory, one state per stand-in): ``PipelineService`` (CreatePipelineJob and reads),
``MetadataService`` (the Experiments SDK's stores, contexts, executions, artifacts and lineage),
``TensorboardService`` (time-series metrics), ``ModelService`` (Model Registry versions, aliases,
evaluations), ``ScheduleService`` (pipeline-job schedules), ``PredictionService.GenerateContent`` (Gemini through
``vertexai.generative_models``) and ``google.longrunning.Operations``.
Every request is captured in :attr:`VertexStandin.requests`.

Use::

    with start_vertex_standin() as vertex:
        init_aiplatform("proj", "us-central1", vertex.endpoint, vertex.ca_cert)
        aiplatform.Model.upload(...)
        assert vertex.requests_for("UploadModel")

or ``python -m expforge.standins.vertex --port 8443`` to run it standalone.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.gcloud_clients import check_tls as check_tls  # (re-exported: stand-in users call it from here)
from expforge.gcloud_clients import init_aiplatform as gcloud_init_aiplatform
from expforge.gcloud_clients import trust_roots
from expforge.standins.vertex_grpc import CapturedRequest, Dispatcher, Service

ROOTS_ENV = "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"
ENDPOINT_ENV = "EXPFORGE_VERTEX_ENDPOINT"

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _services() -> list[Service]:
    from expforge.standins.vertex_metadata import Metadata
    from expforge.standins.vertex_models import Models
    from expforge.standins.vertex_operations import Operations
    from expforge.standins.vertex_pipelines import Pipelines
    from expforge.standins.vertex_prediction import Predictions
    from expforge.standins.vertex_schedules import Schedules
    from expforge.standins.vertex_tensorboard import Tensorboards

    operations = Operations()
    metadata = Metadata(operations)
    pipelines = Pipelines(operations, metadata)
    services = [operations, Models(operations), metadata, Tensorboards(operations), pipelines, Schedules(operations)]
    return [*services, Predictions()]


@dataclass
class VertexStandin:
    """A running stand-in: where it listens, the certificate to trust, and every request it received."""

    endpoint: str
    ca_cert: Path
    server: Any = field(repr=False)
    dispatcher: Dispatcher = field(repr=False)
    services: list[Service] = field(repr=False, default_factory=list)

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        return int(self.endpoint.rsplit(":", 1)[1])

    @property
    def requests(self) -> list[CapturedRequest]:
        """``(method, request)`` of every RPC received, in order; ``method`` is ``Service.Method``."""
        return list(self.dispatcher.requests)

    @property
    def unimplemented(self) -> list[str]:
        """Full names of RPCs a client called that the stand-in does not serve (UNIMPLEMENTED answers)."""
        return list(self.dispatcher.unimplemented)

    def requests_for(self, method: str) -> list[Any]:
        """The request messages of ``method`` (``UploadModel`` or ``ModelService.UploadModel``)."""
        return [r.request for r in self.dispatcher.requests if r.method == method or r.method.endswith(f".{method}")]

    def service(self, kind: type) -> Any:
        """The stand-in's implementation of one service (its in-memory state), e.g. ``service(Models)``."""
        return next(s for s in self.services if isinstance(s, kind))

    def env(self) -> dict[str, str]:
        """Environment variables that point a process (e.g. ``expforge submit``) at this stand-in."""
        from expforge.standins.tls import ServerCert, trust_bundle

        cert = ServerCert(self.ca_cert, self.ca_cert.with_name("key.pem"))
        roots = trust_bundle(cert, os.environ.get(ROOTS_ENV))
        return {ROOTS_ENV: str(roots), ENDPOINT_ENV: self.endpoint}

    def stop(self, grace: float | None = 0.5) -> None:
        """Stop serving (idempotent)."""
        self.server.stop(grace).wait()


def serve_vertex_standin(*, port: int | None = None, host: str = "127.0.0.1") -> VertexStandin:
    """Start a stand-in on ``host:port`` (a free port by default) and return it; call ``.stop()`` when done."""
    import grpc

    from expforge.standins.tls import process_cert

    cert = process_cert()
    services = _services()
    dispatcher = Dispatcher(services)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="vertex-standin"),
        options=[("grpc.so_reuseport", 0)],  # (gRPC's default lets a second server share a taken port)
    )
    server.add_generic_rpc_handlers((dispatcher,))
    credentials = grpc.ssl_server_credentials([(cert.key_pem(), cert.cert_pem())])
    chosen = port or _free_port()
    try:
        bound = server.add_secure_port(f"{host}:{chosen}", credentials)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise ExpforgeError(f"--port: cannot listen on {host}:{chosen} (in use?)")
    server.start()
    endpoint = f"{host}:{bound}"
    log.info("vertex stand-in listening on %s (CA %s)", endpoint, cert.cert_path)
    return VertexStandin(endpoint, cert.cert_path, server, dispatcher, services)


@contextlib.contextmanager
def start_vertex_standin(*, port: int | None = None) -> Iterator[VertexStandin]:
    """A stand-in for the duration of a ``with`` block (stopped on exit)."""
    standin = serve_vertex_standin(port=port)
    try:
        yield standin
    finally:
        standin.stop()


def trust_certificate(ca_cert: Path | str) -> Path:
    """Make gRPC in this process trust ``ca_cert`` via ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``; return the roots file.

    gRPC reads the variable (and the file) once per process, when it first loads its roots (the first secure
    channel), so call this before any channel exists. All stand-ins of a process serve the same certificate
    (``tls.process_cert``), so one call covers them all. Roots the variable named before are kept
    (:func:`expforge.gcloud_clients.trust_roots`).
    """
    return trust_roots(ca_cert)


def init_aiplatform(
    project: str,
    location: str,
    endpoint: str,
    ca_cert: Path | str,
    *,
    experiment: str | None = None,
    staging_bucket: str | None = None,
    **kwargs: Any,
) -> None:
    """``aiplatform.init`` aimed at a stand-in: its endpoint, anonymous credentials, its certificate trusted."""
    gcloud_init_aiplatform(
        project,
        location,
        endpoint=endpoint,
        ca_cert=ca_cert,
        experiment=experiment,
        staging_bucket=staging_bucket,
        **kwargs,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m expforge.standins.vertex``: serve until interrupted; print the endpoint and CA path."""
    parser = argparse.ArgumentParser(description="Local Vertex AI stand-in (gRPC over TLS, in memory).")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--verbose", action="store_true", help="log every unimplemented RPC and failure")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        standin = serve_vertex_standin(port=args.port)
    except ExpforgeError as exc:
        print(f"expforge: error: {exc}", file=sys.stderr)
        return 2
    print(f"endpoint: {standin.endpoint}")
    print(f"ca_cert: {standin.ca_cert}")
    print(f"export {ROOTS_ENV}={standin.ca_cert} {ENDPOINT_ENV}={standin.endpoint}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        # A bounded wait, in a loop: the kernel may hand SIGTERM to one of gRPC's threads, and Python runs the
        # handler only when the main thread next executes bytecode, which an unbounded wait never lets it do.
        while not stopped.wait(0.2):
            pass
    standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
