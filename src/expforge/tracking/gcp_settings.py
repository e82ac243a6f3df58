"""Settings of the ``gcp`` tracking backend and what its sinks share: names, the send result, error text.

:class:`GcpDestination` (where rows go) is declared once here for both the configuration read from the
environment (:class:`expforge.tracking.select.TrackingConfig`) and the backend's own :class:`GcpSettings`
(destination plus batching), so the configuration and the backend need not import each other.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True)
class GcpDestination:
    """Where the ``gcp`` backend writes, besides the project: declared once for the configuration read from the
    environment (:class:`~expforge.tracking.select.TrackingConfig`) and the backend's own settings
    (:class:`GcpSettings`), which ``TrackingConfig.gcp_settings`` copies it into."""

    region: str = "us-central1"
    dataset: str = "expforge"
    collection: str = "runs"
    bigquery_endpoint: str | None = None
    firestore_emulator_host: str | None = None
    vertex_endpoint: str | None = None
    vertex_ca_cert: str | None = None
    vertex: bool = True


SINKS = ("bigquery", "firestore", "vertex")


@dataclass(frozen=True)
class GcpSettings(GcpDestination):
    """Where the ``gcp`` backend writes (destination fields, keyword-only, from :class:`GcpDestination`) and how
    it batches. ``vertex=False`` leaves Vertex AI out (BigQuery + Firestore only)."""

    project: str
    spool_dir: Path
    batch_size: int = 200
    flush_interval_s: float = 5.0
    timeout_s: float = 15.0
    flush_attempts: int = 3
    retry_backoff_s: float = 1.0


def vertex_name(text: str, max_length: int = 128) -> str:
    """``text`` as a Vertex resource name (``[a-z0-9][a-z0-9-]*``); a short hash keeps altered names unique."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "run"
    if cleaned == text and len(cleaned) <= max_length:
        return cleaned
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{cleaned[: max(1, max_length - 9)].rstrip('-')}-{digest}"


def firestore_document_id(run_id: str) -> str:
    """Run ids contain ``/`` (``<pipeline run>/<task>``), which Firestore reads as a path: percent-encode it."""
    return urllib.parse.quote(run_id, safe="")


@dataclass
class SendResult:
    """What a sink did with a batch: delivered seqs, entries to retry (with the error), entries refused."""

    done: list[int] = field(default_factory=list)
    error: str | None = None
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)


def describe_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
