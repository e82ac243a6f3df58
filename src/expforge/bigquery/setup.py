"""``expforge bigquery setup``: create the dashboard dataset, tables and views — once, explicitly.

Why explicit: the tracker creates nothing (a typo in a dataset name must not silently start a second
history), and creating partitioned tables and views needs rights a pipeline's service account should not
have. Setup runs the statements of :mod:`expforge.bigquery.ddl` in order as query jobs; each is idempotent,
so a second run changes nothing but the view definitions. Setup either completes or raises one error saying
which statement failed and what it had already created.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from expforge.bigquery.ddl import LAYOUTS, Statement, statements
from expforge.bigquery.names import check_dataset, check_location, check_project
from expforge.errors import ExpforgeError

ENDPOINT_ENV = "EXPFORGE_BIGQUERY_ENDPOINT"
_LOCAL_PREFIXES = ("http://127.0.0.1", "http://localhost", "http://[::1]")


@dataclass
class SetupResult:
    """What setup did: one ``(statement, outcome)`` per statement (CREATE, SKIP, REPLACE), warnings, time."""

    project: str
    dataset: str
    done: list[tuple[Statement, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def lines(self) -> list[str]:
        """One human line per statement, e.g. ``table runs: created``."""
        words = {"CREATE": "created", "SKIP": "exists, kept", "REPLACE": "replaced", "": "done"}
        return [f"{s.kind} {s.name}: {words.get(outcome, outcome.lower())}" for s, outcome in self.done]


def bigquery_client(project: str, endpoint: str | None = None, credentials: Any | None = None) -> Any:
    """A BigQuery client for ``project``; ``endpoint`` (default ``$EXPFORGE_BIGQUERY_ENDPOINT``) aims it at
    a stand-in, reached with anonymous credentials when local."""
    from google.cloud import bigquery

    endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
    kwargs: dict[str, Any] = {}
    if endpoint:
        kwargs["client_options"] = {"api_endpoint": endpoint}
        if credentials is None and endpoint.startswith(_LOCAL_PREFIXES):
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
    if credentials is not None:
        kwargs["credentials"] = credentials
    return bigquery.Client(project=project, **kwargs)


def _existing_tables(client: Any, project: str, dataset: str) -> dict[str, Any]:
    from google.api_core.exceptions import NotFound

    try:
        return {t.table_id: t for t in client.list_tables(f"{project}.{dataset}", retry=None, timeout=60)}
    except NotFound:
        return {}


def _layout_warnings(client: Any, project: str, dataset: str, existing: dict[str, Any]) -> list[str]:
    """Tracking tables that existed before setup without the day partitioning (BigQuery cannot add it later)."""
    warnings = []
    for table, layout in LAYOUTS.items():
        if table not in existing:
            continue
        found = client.get_table(f"{project}.{dataset}.{table}", retry=None, timeout=60)
        partitioning = found.time_partitioning
        if partitioning is None or partitioning.field != layout.partition_by:
            warnings.append(
                f"table {table} existed before setup without day partitioning on {layout.partition_by}; BigQuery "
                f"cannot add it in place: copy it (CREATE TABLE ... PARTITION BY DATE({layout.partition_by}) "
                "AS SELECT ...) to get partition pruning"
            )
    return warnings


def plan(project: str | None, dataset: str | None, location: str | None = None) -> list[Statement]:
    """The statements setup would run (names checked first)."""
    return statements(check_project(project), check_dataset(dataset), check_location(location))


def run_setup(
    project: str | None,
    dataset: str | None,
    location: str | None = None,
    *,
    client: Any | None = None,
    endpoint: str | None = None,
    timeout_s: float = 120.0,
) -> SetupResult:
    """Run every statement of :func:`plan`; raise ExpforgeError naming the failed one and what was created."""
    todo = plan(project, dataset, location)
    project, dataset = check_project(project), check_dataset(dataset)
    own_client = client is None
    client = client or bigquery_client(project, endpoint)
    result = SetupResult(project, dataset)
    started = time.monotonic()
    try:
        existing = _existing_tables(client, project, dataset)
        for statement in todo:
            try:
                job = client.query(statement.sql, location=location, retry=None, timeout=timeout_s)
                job.result(retry=None, timeout=timeout_s)
            except Exception as exc:  # noqa: BLE001 - any failure: report what exists now, then stop
                made = ", ".join(f"{s.kind} {s.name}" for s, outcome in result.done if outcome != "SKIP") or "nothing"
                text = " ".join(str(getattr(exc, "message", exc)).split())[:300]
                raise ExpforgeError(
                    f"bigquery setup: {statement.kind} {statement.name} failed ({type(exc).__name__}: {text}); "
                    f"created before the failure: {made}"
                ) from None
            result.done.append((statement, job.ddl_operation_performed or ""))
        result.warnings = _layout_warnings(client, project, dataset, existing)
    finally:
        if own_client:
            client.close()
    result.elapsed_s = time.monotonic() - started
    return result
