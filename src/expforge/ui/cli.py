"""``expforge ui [--root runs] [--tracking local|gcp] [--host 127.0.0.1] [--port 8765]``.

Binds to 127.0.0.1 unless told otherwise: the dashboard can edit notes and tags and serves files of the runs
root, which is nobody else's business on a shared network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from expforge.errors import ExpforgeError

DEFAULT_PORT = 8765


def register(command: Callable[..., Any], app: typer.Typer) -> None:
    """Add the ``ui`` command to the ``expforge`` app."""

    @command("ui")
    def ui(
        root: Path = typer.Option(Path("runs"), "--root", help="Runs root (where `expforge run` writes)."),
        tracking: str = typer.Option("local", "--tracking", help="local (SQLite under --root) | gcp (BigQuery)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
        port: int = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535, help="Port to listen on."),
    ) -> None:
        """Serve the experiment dashboard: runs, pipeline graphs, artifacts, curves, Hyperband, registry."""
        try:
            import uvicorn

            from expforge.ui.app import create_app
            from expforge.ui.store import Store
        except ImportError as exc:
            raise ExpforgeError(f"ui: {exc.name} is not installed (pip install 'expforge[ui]')") from None
        if tracking not in ("local", "gcp"):
            raise ExpforgeError(f"--tracking: {tracking!r} is not one of local, gcp")
        if not root.is_dir():
            raise ExpforgeError(f"--root: {root} is not a directory (run a pipeline first, or pass --root)")
        store = Store(root, tracking)
        application = create_app(store)
        config = uvicorn.Config(application, host=host, port=port, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        typer.echo(f"expforge ui: http://{host}:{port}/ (runs root {store.root}, {tracking} tracking)", err=True)
        try:
            server.run()
        finally:
            store.close()
