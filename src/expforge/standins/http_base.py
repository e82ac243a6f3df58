"""A small in-process HTTP stand-in: routes by method and path pattern, records every request it got.

Why in-process (not a subprocess like the emulators): the Artifact Registry KFP API and the KFP REST API
have no emulators; their stand-ins are a few routes each, and tests assert on the requests the real clients
(``kfp.registry.RegistryClient``, ``kfp.Client``) sent — the uploaded bytes, the tags, the run body — so the
requests must be at hand. A request no route matches answers 501 and is remembered in
:attr:`HttpStandin.unimplemented`, which is how a test proves no call went unserved.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Captured:
    """One request: method, path (no query), query (first value per key), headers, body bytes."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    """What a route answers: status, body (bytes, str or JSON-able), content type."""

    status: int = 200
    body: Any = None
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        """The body on the wire."""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps({} if self.body is None else self.body).encode()


Handler = Callable[[Captured, re.Match[str]], Reply]


def error(status: int, message: str) -> Reply:
    """A Google-style JSON error body (what both real APIs answer)."""
    return Reply(status, {"error": {"code": status, "message": message}, "code": status, "message": message})


@dataclass
class HttpStandin:
    """A running stand-in: ``url``, recorded ``requests``, ``unimplemented`` (method path), ``stop()``."""

    server: http.server.ThreadingHTTPServer
    requests: list[Captured] = field(default_factory=list)
    unimplemented: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self.server.server_address[:2]
        # typeshed allows bytes for a Unix-socket server; this one is always bound to an IP address
        assert isinstance(host, str), f"stand-in server bound to a non-IP address {host!r}"
        return f"http://{host}:{port}"

    def requests_to(self, method: str, pattern: str) -> list[Captured]:
        """Recorded requests with this method whose path matches the regular expression ``pattern``."""
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        self.server.shutdown()
        self.server.server_close()


def serve(routes: list[tuple[str, str, Handler]], *, host: str = "127.0.0.1", port: int = 0) -> HttpStandin:
    """Serve ``routes`` (method, path regex, handler) on ``host:port`` (a free port by default) in a thread."""
    compiled = [(method, re.compile(pattern), handler) for method, pattern, handler in routes]
    lock = threading.Lock()
    standin: HttpStandin

    class Handle(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            query = {k: v[0] for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}
            path = urllib.parse.unquote(parsed.path)
            captured = Captured(self.command, path, query, {k.lower(): v for k, v in self.headers.items()}, body)
            with lock:
                standin.requests.append(captured)
            reply = None
            for method, pattern, handler in compiled:
                match = pattern.fullmatch(path)
                if method == self.command and match:
                    try:
                        reply = handler(captured, match)
                    except Exception as exc:  # noqa: BLE001 - a stand-in bug answers 500, it never hangs a client
                        reply = error(500, f"stand-in error: {type(exc).__name__}: {exc}")
                    break
            if reply is None:
                with lock:
                    standin.unimplemented.append(f"{self.command} {path}")
                reply = error(501, f"not implemented by the stand-in: {self.command} {path}")
            data = reply.encoded()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle  # noqa: N815 - http.server's naming

        def log_message(self, *args: object) -> None:
            """Quiet (the requests are recorded instead)."""

    server = http.server.ThreadingHTTPServer((host, port), Handle)
    server.daemon_threads = True
    standin = HttpStandin(server)
    threading.Thread(target=server.serve_forever, name="http-standin", daemon=True).start()
    return standin
