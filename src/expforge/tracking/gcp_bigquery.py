"""The BigQuery sink of the ``gcp`` tracking backend: streaming inserts into ``runs`` and ``metric_points``.

Tables ``runs`` (one snapshot row per change, the newest ``updated_at`` wins) and ``metric_points`` (one row per
metric value) are the analysable history Looker Studio charts and ``expforge runs`` queries. Rows carry a
deterministic insert id, so a resent batch is dropped by BigQuery instead of counted twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from expforge.errors import ExpforgeError
from expforge.gcloud_clients import bigquery_client
from expforge.tracking.bqrows import TABLES
from expforge.tracking.gcp_settings import GcpSettings, SendResult, describe_error

# BigQuery insertAll per-row error reasons that mean "not inserted because of another row / transient".
_RETRYABLE_REASONS = {"stopped", "timeout", "backendError", "internalError", "rateLimitExceeded"}


def insert_id(table: str, row: Mapping[str, Any]) -> str:
    """Deterministic insertId: BigQuery drops a resent copy of the same row (best effort, about a minute)."""
    if table == "runs":
        basis = f"runs|{row['run_id']}|{row['updated_at']}|{row['state']}"
    else:
        basis = f"points|{row['run_id']}|{row['key']}|{row['step']}|{row['logged_at']}"
    return hashlib.sha1(basis.encode()).hexdigest()


class BigQuerySink:
    """Streaming inserts into ``<dataset>.runs`` and ``<dataset>.metric_points`` (tables made from the schemas)."""

    name = "bigquery"

    def __init__(self, settings: GcpSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._tables_ready = False

    @property
    def client(self) -> Any:
        """The BigQuery client (created on first use; anonymous against a stand-in)."""
        if self._client is None:
            self._client = bigquery_client(self.settings.project, endpoint=self.settings.bigquery_endpoint)
        return self._client

    def table_ref(self, table: str) -> str:
        """``project.dataset.table``."""
        return f"{self.settings.project}.{self.settings.dataset}.{table}"

    def _retry(self) -> Any:
        from google.cloud.bigquery import DEFAULT_RETRY

        return DEFAULT_RETRY.with_deadline(self.settings.timeout_s)

    def ensure_tables(self) -> None:
        """Create nothing: ``expforge bigquery setup`` makes the dataset, the tables and the views (a missing
        table surfaces as :func:`expforge.bigquery.check.missing_tables_error` at the first insert or query)."""
        self._tables_ready = True

    def _missing(self, exc: BaseException) -> ExpforgeError:
        from expforge.bigquery.check import missing_tables_error

        return missing_tables_error(self.settings.project, self.settings.dataset, str(getattr(exc, "message", exc)))

    def send(self, entries: list[dict[str, Any]]) -> SendResult:
        """Insert the entries' rows, per table in chunks of 500; per-row errors are retried or rejected."""
        from google.api_core.exceptions import NotFound

        result = SendResult()
        try:
            if not self._tables_ready:
                self.ensure_tables()
            for table in TABLES:
                rows = [e for e in entries if e["table"] == table]
                for start in range(0, len(rows), 500):
                    chunk = rows[start : start + 500]
                    try:
                        errors = self._insert(table, chunk)
                    except NotFound as exc:  # no tables: setup was not run (the tracker creates nothing)
                        raise self._missing(exc) from None
                    failed: set[int] = set()
                    for item in errors:
                        index = int(item.get("index", -1))
                        reasons = item.get("errors") or []
                        failed.add(index)
                        if all(r.get("reason") in _RETRYABLE_REASONS for r in reasons):
                            result.error = result.error or f"row {index} of {table}: {reasons}"
                            continue
                        detail = "; ".join(
                            f"field {r.get('location') or '?'}: {r.get('message') or r.get('reason')}" for r in reasons
                        )
                        result.rejected.append((chunk[index], f"BigQuery table {table}, row {index}: {detail}"))
                    result.done += [e["seq"] for i, e in enumerate(chunk) if i not in failed]
        except Exception as exc:  # noqa: BLE001 - any failure keeps the rows spooled; flush reports it
            result.error = describe_error(exc)
        return result

    def _insert(self, table: str, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.client.insert_rows_json(
            self.table_ref(table),
            [e["row"] for e in chunk],
            row_ids=[e["insert_id"] for e in chunk],
            retry=self._retry(),
            timeout=self.settings.timeout_s,
        )

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql`` (``{runs}``/``{points}`` are replaced by the table names) and return dict rows."""
        from google.cloud import bigquery

        if not self._tables_ready:
            self.ensure_tables()
        text = sql.format(runs=f"`{self.table_ref('runs')}`", points=f"`{self.table_ref('metric_points')}`")
        config = bigquery.QueryJobConfig(query_parameters=params or [])
        from google.api_core.exceptions import NotFound

        try:  # (job_retry=None: the client would otherwise retry a job insert for 10 minutes)
            job = self.client.query(
                text, job_config=config, retry=self._retry(), job_retry=None, timeout=self.settings.timeout_s
            )
            return [dict(row) for row in job.result(retry=self._retry(), timeout=self.settings.timeout_s)]
        except NotFound as exc:
            raise self._missing(exc) from None

    def close(self) -> None:
        """Close the HTTP session."""
        if self._client is not None:
            self._client.close()
