"""The ``gcp`` tracking backend: Vertex AI Experiments, a Firestore run document, and BigQuery rows.

Why three sinks: Vertex AI Experiments is where people compare runs in the console (params, final metrics and
time series backed by Vertex TensorBoard); Firestore holds one live document per run that apps can watch; and
BigQuery holds the analysable history — table ``runs`` (one snapshot row per change, the newest
``updated_at`` wins) and table ``metric_points`` (one row per metric value) — that Looker Studio charts and
``expforge runs`` queries.

Delivery: every row goes through a write-ahead :class:`~expforge.tracking.spool.Spool` first and is sent in
batches (when ``batch_size`` rows are waiting, when ``flush_interval_s`` passed, and on ``flush``). A sink that
is down leaves its rows in the spool to be retried; ``flush`` retries a few times and then raises one
:class:`ExpforgeError` naming the spool file, where the rows are safe. BigQuery rows are validated against
the JSON schemas before they are even spooled, so a bad row fails at the call that logged it.

Stand-ins: ``FIRESTORE_EMULATOR_HOST`` (read by the Firestore client), ``EXPFORGE_BIGQUERY_ENDPOINT`` (an
``http://host:port`` for the BigQuery stand-in; anonymous credentials), ``EXPFORGE_VERTEX_ENDPOINT`` plus
``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` (the Vertex stand-in and its certificate).

Modules: this one is the tracker (rows built, spooled, delivered); :mod:`~expforge.tracking.gcp_settings` the
settings and what sinks share; one module per sink (:mod:`~expforge.tracking.gcp_bigquery`,
:mod:`~expforge.tracking.gcp_firestore`, :mod:`~expforge.tracking.gcp_vertex`); and
:mod:`~expforge.tracking.gcp_resend` the resend of abandoned spools.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.tracking.base import (
    RunFilter,
    RunRecord,
    RunStart,
    check_state,
    check_step,
    json_safe,
    merge_tags,
    metric_value,
    now_iso,
)
from expforge.tracking.bqrows import point_row, record_from_row, run_row, validate_row
from expforge.tracking.gcp_bigquery import BigQuerySink, insert_id
from expforge.tracking.gcp_firestore import FirestoreSink, firestore_doc
from expforge.tracking.gcp_settings import SINKS, GcpSettings, describe_error, firestore_document_id, vertex_name
from expforge.tracking.gcp_vertex import VertexSink, vertex_metrics, vertex_params
from expforge.tracking.spool import Spool

# (GcpSettings, the sinks and the names are imported from here by callers that knew this module first)
__all__ = [
    "SINKS",
    "BigQuerySink",
    "FirestoreSink",
    "GcpSettings",
    "GcpTracker",
    "VertexSink",
    "firestore_document_id",
    "resend_spool",
    "vertex_name",
]

log = logging.getLogger(__name__)


class GcpTracker:
    """:class:`~expforge.tracking.base.Tracker` writing to Vertex AI Experiments, Firestore and BigQuery.

    One tracker per process and thread (components are single-threaded); several processes may share a spool
    directory, each with its own file.
    """

    backend = "gcp"

    def __init__(self, settings: GcpSettings, *, spool: Spool | None = None) -> None:
        if not settings.project:
            raise ExpforgeError("EXPFORGE_GCP_PROJECT: the gcp tracking backend needs a Google Cloud project id")
        self.settings = settings
        self.spool = spool or Spool.create(settings.spool_dir)
        self.sinks: dict[str, Any] = {"bigquery": BigQuerySink(settings), "firestore": FirestoreSink(settings)}
        if settings.vertex:
            self.sinks["vertex"] = VertexSink(settings)
        self._runs: dict[str, RunRecord] = {}
        self._last_send = time.monotonic()
        self._failures = 0
        self._quiet_until = 0.0
        self.last_errors: dict[str, str] = {}
        self.rejections: list[str] = []  # rows a sink refused for good, not yet reported by flush

    # -- building rows -----------------------------------------------------------------------------------

    def _vertex_run(self, record: RunRecord) -> tuple[str, str]:
        experiment = vertex_name(record.experiment or "default")
        return experiment, vertex_name(record.run_id, max_length=max(16, 127 - len(experiment)))

    def _bq(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        validate_row(table, row)
        return {"sink": "bigquery", "table": table, "row": row, "insert_id": insert_id(table, row)}

    def _fs(self, record: RunRecord, data: dict[str, Any], replace: list[str] | None = None) -> dict[str, Any] | None:
        if "firestore" not in self.sinks:
            return None
        entry = {"sink": "firestore", "doc": firestore_document_id(record.run_id), "data": json_safe(data)}
        if replace:
            entry["replace"] = replace
        return entry

    def _vx(self, record: RunRecord, op: str, payload: Any) -> dict[str, Any] | None:
        if "vertex" not in self.sinks:
            return None
        experiment, run = self._vertex_run(record)
        return {"sink": "vertex", "experiment": experiment, "run": run, "op": op, "payload": json_safe(payload)}

    def _enqueue(self, *entries: dict[str, Any] | None) -> None:
        """Spool the entries; send when a batch is full or the interval passed — but after a failed send, not
        before a back-off (30 s doubling to 5 min), so a training loop does not stall on a dead sink's
        timeouts at every step. ``flush`` ignores the back-off."""
        self.spool.add(e for e in entries if e is not None)
        now = time.monotonic()
        due = len(self.spool) >= self.settings.batch_size or now - self._last_send >= self.settings.flush_interval_s
        if due and now >= self._quiet_until:
            self._send_pending()
            if self.last_errors:
                self._failures += 1
                self._quiet_until = time.monotonic() + min(300.0, 30.0 * 2 ** (self._failures - 1))
            else:
                self._failures, self._quiet_until = 0, 0.0

    def _known(self, run_id: str) -> RunRecord:
        record = self._runs.get(run_id)
        if record is None:
            raise ExpforgeError(f"run {run_id!r} was not started with this tracker (start_run first)")
        return record

    # -- Tracker -----------------------------------------------------------------------------------------

    def start_run(self, run: RunStart) -> None:
        """Queue the run's first snapshot, its Firestore document and the Vertex run."""
        record = RunRecord.from_start(run)
        entries = (
            self._bq("runs", run_row(record)),  # validated first: a bad row leaves no trace
            self._fs(record, firestore_doc(record)),
            self._vx(record, "start", {}),
            self._vx(record, "params", vertex_params(record.params)) if record.params else None,
        )
        self._runs[run.run_id] = record
        self._enqueue(*entries)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Merge params (BigQuery gets them with the run's next snapshot)."""
        record = self._known(run_id)
        clean = json_safe(dict(params))
        record.params.update(clean)
        record.updated_at = now_iso()
        self._enqueue(
            self._fs(record, {"params": clean, "updated_at": record.updated_at}),
            self._vx(record, "params", vertex_params(clean)),
        )

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Metric points to BigQuery, the document's ``metrics``/``series``, Vertex metrics or time series."""
        record = self._known(run_id)
        values = {key: metric_value(key, value) for key, value in metrics.items()}
        step = check_step(step)
        if not values:
            return
        logged_at = now_iso()
        record.updated_at = logged_at
        rows = [
            self._bq("metric_points", point_row(run_id, record.experiment, k, step, v, logged_at))
            for k, v in values.items()
        ]
        if step is None:
            record.metrics.update(values)
            doc = {"metrics": values, "updated_at": logged_at}
            vertex = self._vx(record, "metrics", vertex_metrics(values))
        else:
            for key, value in values.items():
                points = dict(record.series.get(key, []))
                points[step] = value
                record.series[key] = sorted(points.items())
            doc = {"series": {k: {str(step): v} for k, v in values.items()}, "updated_at": logged_at}
            vertex = self._vx(record, "series", {"metrics": values, "step": step, "logged_at": logged_at})
        self._enqueue(*rows, self._fs(record, doc), vertex)

    def log_artifacts(self, run_id: str, artifacts: Mapping[str, str]) -> None:
        """Artifact URIs into the document (and the next BigQuery snapshot)."""
        record = self._known(run_id)
        clean = {str(k): str(v) for k, v in artifacts.items()}
        record.artifacts.update(clean)
        record.updated_at = now_iso()
        self._enqueue(self._fs(record, {"artifacts": clean, "updated_at": record.updated_at}))

    def end_run(self, run_id: str, state: str = "SUCCEEDED") -> None:
        """Final snapshot row, document state and the Vertex run's end."""
        record = self._known(run_id)
        record.state = check_state(state)
        record.ended_at = record.updated_at = now_iso()
        self._enqueue(
            self._bq("runs", run_row(record)),
            self._fs(record, {"state": state, "ended_at": record.ended_at, "updated_at": record.updated_at}),
            self._vx(record, "end", {"state": state}),
        )

    def set_tags(self, run_id: str, tags: Mapping[str, str], note: str | None = None) -> RunRecord:
        """New snapshot with merged tags/note; the document's tags and note are replaced. Delivered at once."""
        record = self._runs.get(run_id) or self.get_run(run_id)
        record.tags = merge_tags(record.tags, tags)
        if note is not None:
            record.note = note
        record.updated_at = now_iso()
        self._enqueue(
            self._bq("runs", run_row(record)),
            self._fs(
                record,
                {"tags": record.tags, "note": record.note, "updated_at": record.updated_at},
                ["tags", "note", "updated_at"],
            ),
        )
        self.flush()
        return record

    # -- reading (BigQuery) ------------------------------------------------------------------------------

    def _query_runs(self, where: str = "", params: list[Any] | None = None) -> list[RunRecord]:
        from google.cloud import bigquery

        bq: BigQuerySink = self.sinks["bigquery"]
        try:
            rows = bq.query(
                f"SELECT * FROM {{runs}} {where} "
                "QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY updated_at DESC) = 1",
                params,
            )
            if not rows:
                return []
            ids = [row["run_id"] for row in rows]
            points = bq.query(
                "SELECT run_id, key, step, value FROM {points} WHERE run_id IN UNNEST(@ids) "
                "QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id, key, step ORDER BY logged_at DESC) = 1",
                [bigquery.ArrayQueryParameter("ids", "STRING", ids)],
            )
        except ExpforgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unreachable store is a one-line error for the CLI
            raise ExpforgeError(f"BigQuery {bq.table_ref('runs')}: query failed ({describe_error(exc)})") from exc
        records = {row["run_id"]: record_from_row(row) for row in rows}
        for point in sorted(points, key=lambda p: (p["run_id"], p["key"], -1 if p["step"] is None else p["step"])):
            record = records[point["run_id"]]
            value = math.nan if point["value"] is None else float(point["value"])
            if point["step"] is None:  # final metrics logged after the last snapshot (e.g. a crashed task)
                record.metrics[point["key"]] = value
            else:
                record.series.setdefault(point["key"], []).append((int(point["step"]), value))
        return sorted(records.values(), key=lambda r: (r.started_at, r.run_id), reverse=True)

    def get_run(self, run_id: str) -> RunRecord:
        """The run as BigQuery has it (what was delivered)."""
        from google.cloud import bigquery

        found = self._query_runs("WHERE run_id = @run_id", [bigquery.ScalarQueryParameter("run_id", "STRING", run_id)])
        if not found:
            raise ExpforgeError(f"run {run_id!r} not found in BigQuery {self.sinks['bigquery'].table_ref('runs')}")
        return found[0]

    def list_runs(self, run_filter: RunFilter | None = None) -> list[RunRecord]:
        """Runs from BigQuery matching ``run_filter``, newest first."""
        from google.cloud import bigquery

        run_filter = run_filter or RunFilter()
        where, params = "", []
        if run_filter.experiment:
            where = "WHERE experiment = @experiment"
            params.append(bigquery.ScalarQueryParameter("experiment", "STRING", run_filter.experiment))
        runs = [r for r in self._query_runs(where, params) if run_filter.matches(r)]
        return runs[: run_filter.limit] if run_filter.limit else runs

    # -- delivery ----------------------------------------------------------------------------------------

    def _send_pending(self) -> None:
        """One delivery attempt per sink; failures stay in the spool (and are remembered for the report)."""
        self._last_send = time.monotonic()
        for name, sink in self.sinks.items():
            entries = self.spool.pending(name)
            if not entries:
                self.last_errors.pop(name, None)
                continue
            result = sink.send(entries)
            self.spool.done(result.done)
            self.spool.reject(result.rejected)
            self.rejections += [reason for _, reason in result.rejected]
            if result.error:
                self.last_errors[name] = result.error
                log.warning(
                    "tracking: %s unavailable, %d rows kept in %s: %s",
                    name,
                    len(entries),
                    self.spool.path,
                    result.error,
                )
            else:
                self.last_errors.pop(name, None)

    def flush(self) -> None:
        """Deliver everything spooled, retrying ``flush_attempts`` times; raise (naming the spool) if rows remain."""
        for attempt in range(self.settings.flush_attempts):
            self._send_pending()
            if not len(self.spool):
                break
            if attempt + 1 < self.settings.flush_attempts:
                time.sleep(self.settings.retry_backoff_s * 2**attempt)
        if self.rejections:
            count, first = len(self.rejections), self.rejections[0]
            self.rejections = []  # reported once; the rows stay in the rejected file
            raise ExpforgeError(
                f"{first} ({count} row(s) refused by the server); they are kept in {self.spool.rejected_path}"
            )
        if len(self.spool):
            self.spool.sync()
            problems = "; ".join(f"{k}: {v}" for k, v in sorted(self.last_errors.items()))
            raise ExpforgeError(
                f"tracking: {len(self.spool)} rows could not be delivered after {self.settings.flush_attempts} "
                f"attempts ({problems}); they are kept in {self.spool.path} — resend with "
                f"`expforge runs flush-spool {self.spool.path.parent}`"
            )

    def close(self) -> None:
        """Flush, then release the spool (kept on disk if rows remain) and the clients."""
        try:
            self.flush()
        finally:
            self.spool.close()
            for sink in self.sinks.values():
                # Closing a dead channel must not mask the flush error.
                with contextlib.suppress(Exception):
                    sink.close()

    def __enter__(self) -> GcpTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resend_spool(settings: GcpSettings, directory: Path | str) -> tuple[int, int]:
    """See :func:`expforge.tracking.gcp_resend.resend_spool` (imported lazily: it builds trackers of this module)."""
    from expforge.tracking.gcp_resend import resend_spool as resend

    return resend(settings, directory)
