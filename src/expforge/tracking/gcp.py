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
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.gcloud_clients import bigquery_client, firestore_client, init_aiplatform
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
    parse_time,
)
from expforge.tracking.bqrows import TABLES, point_row, record_from_row, run_row, validate_row
from expforge.tracking.select import GcpDestination
from expforge.tracking.spool import Spool

log = logging.getLogger(__name__)

SINKS = ("bigquery", "firestore", "vertex")
_VERTEX_STATES = {"SUCCEEDED": "COMPLETE", "FAILED": "FAILED", "CANCELLED": "CANCELLED", "RUNNING": "RUNNING"}
# BigQuery insertAll per-row error reasons that mean "not inserted because of another row / transient".
_RETRYABLE_REASONS = {"stopped", "timeout", "backendError", "internalError", "rateLimitExceeded"}


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


def _strip_empty(data: dict[str, Any]) -> dict[str, Any]:
    # With merge=True an empty map would *replace* the stored map; leave such fields out instead.
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _strip_empty(value)
            if not value:
                continue
        out[key] = value
    return out


def _deep_merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _firestore_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """Spool form → Firestore form: ``*_at`` strings become timestamps, ``None`` floats in series stay null."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key.endswith("_at") and isinstance(value, str):
            out[key] = parse_time(value)
        elif isinstance(value, dict):
            out[key] = _firestore_values(value)
        else:
            out[key] = value
    return out


def _firestore_doc(record: RunRecord) -> dict[str, Any]:
    data = record.to_dict()
    data["series"] = {k: {str(s): v for s, v in points} for k, points in record.series.items()}
    return data


def _insert_id(table: str, row: Mapping[str, Any]) -> str:
    """Deterministic insertId: BigQuery drops a resent copy of the same row (best effort, about a minute)."""
    if table == "runs":
        basis = f"runs|{row['run_id']}|{row['updated_at']}|{row['state']}"
    else:
        basis = f"points|{row['run_id']}|{row['key']}|{row['step']}|{row['logged_at']}"
    return hashlib.sha1(basis.encode()).hexdigest()


@dataclass
class SendResult:
    """What a sink did with a batch: delivered seqs, entries to retry (with the error), entries refused."""

    done: list[int] = field(default_factory=list)
    error: str | None = None
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


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
            result.error = _describe(exc)
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


class FirestoreSink:
    """One document per run in ``<collection>/<run id>``, updated with merges (batched writes)."""

    name = "firestore"

    def __init__(self, settings: GcpSettings) -> None:
        self.settings = settings
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The Firestore client (``FIRESTORE_EMULATOR_HOST`` points it at the emulator)."""
        if self._client is None:
            self._client = firestore_client(self.settings.project, emulator_host=self.settings.firestore_emulator_host)
        return self._client

    def send(self, entries: list[dict[str, Any]]) -> SendResult:
        """Coalesce consecutive merges per document and commit them in batches of up to 500 writes."""
        from google.api_core.retry import Retry

        ops: list[tuple[str, dict[str, Any], list[str] | None, list[int]]] = []
        for entry in entries:
            replace = entry.get("replace")
            last = ops[-1] if ops else None
            if last is not None and last[0] == entry["doc"] and last[2] is None and not replace:
                _deep_merge(last[1], entry["data"])
                last[3].append(entry["seq"])
            else:
                ops.append((entry["doc"], copy.deepcopy(entry["data"]), replace, [entry["seq"]]))
        result = SendResult()
        try:
            collection = self.client.collection(self.settings.collection)
            for start in range(0, len(ops), 500):
                batch = self.client.batch()
                part = ops[start : start + 500]
                for doc, data, replace, _ in part:
                    values = _firestore_values(data if replace else _strip_empty(data))
                    batch.set(collection.document(doc), values, merge=replace or True)
                batch.commit(retry=Retry(deadline=self.settings.timeout_s), timeout=self.settings.timeout_s)
                result.done += [seq for *_, seqs in part for seq in seqs]
        except Exception as exc:  # noqa: BLE001 - any failure keeps the rows spooled; flush reports it
            result.error = _describe(exc)
        return result

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The stored document of ``run_id`` (for tests and tools)."""
        snapshot = self.client.collection(self.settings.collection).document(firestore_document_id(run_id)).get()
        return snapshot.to_dict() if snapshot.exists else None

    def close(self) -> None:
        """Close the gRPC channel."""
        if self._client is not None:
            self._client.close()


def _quiet_aiplatform() -> None:
    """The SDK narrates every resource it creates at INFO, each module logger with its own level and a stdout
    handler; task logs need none of it."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("google.cloud.aiplatform") and isinstance(logger, logging.Logger):
            logger.setLevel(logging.WARNING)


class VertexSink:
    """Vertex AI Experiments through the aiplatform SDK (``init(experiment=...)``, ``start_run``, ``log_*``)."""

    name = "vertex"

    def __init__(self, settings: GcpSettings) -> None:
        self.settings = settings
        self._experiment: str | None = None
        self._started: set[tuple[str, str]] = set()

    def _init(self, experiment: str) -> None:
        if self._experiment == experiment:
            return
        from google.cloud import aiplatform  # noqa: F401 - loads the SDK's loggers so they can be quietened

        _quiet_aiplatform()
        if self.settings.vertex_endpoint and not self.settings.vertex_ca_cert:
            raise ExpforgeError("EXPFORGE_VERTEX_ENDPOINT is set but GRPC_DEFAULT_SSL_ROOTS_FILE_PATH is not")
        init_aiplatform(
            self.settings.project,
            self.settings.region,
            endpoint=self.settings.vertex_endpoint,
            ca_cert=self.settings.vertex_ca_cert,
            experiment=experiment,
        )
        self._experiment = experiment
        _quiet_aiplatform()

    def _activate(self, experiment: str, run: str, *, starting: bool = False) -> None:
        """Make ``run`` the SDK's current run (create it on ``start``, resume it otherwise)."""
        from google.api_core.exceptions import AlreadyExists
        from google.cloud import aiplatform
        from google.cloud.aiplatform.metadata import metadata

        self._init(experiment)
        current = metadata._experiment_tracker.experiment_run
        if current is not None and current.name == run and not starting:
            return
        if starting and (experiment, run) not in self._started:
            try:
                aiplatform.start_run(run)
            except (AlreadyExists, ValueError):  # a retried task: the run exists already
                aiplatform.start_run(run, resume=True)
        else:
            aiplatform.start_run(run, resume=True)
        self._started.add((experiment, run))

    def send(self, entries: list[dict[str, Any]]) -> SendResult:
        """Replay the operations in order; stop at the first failure so that order is kept for the retry."""
        from google.cloud import aiplatform

        result = SendResult()
        for entry in entries:
            try:
                experiment, run, op, payload = entry["experiment"], entry["run"], entry["op"], entry["payload"]
                self._activate(experiment, run, starting=op == "start")
                if op == "params" and payload:
                    aiplatform.log_params(payload)
                elif op == "metrics" and payload:
                    aiplatform.log_metrics(payload)
                elif op == "series" and payload["metrics"]:
                    from google.protobuf import timestamp_pb2

                    wall = timestamp_pb2.Timestamp()
                    wall.FromDatetime(parse_time(payload["logged_at"]).replace(tzinfo=None))
                    aiplatform.log_time_series_metrics(payload["metrics"], step=payload["step"], wall_time=wall)
                elif op == "end":
                    from google.cloud.aiplatform.compat.types import execution

                    state = getattr(execution.Execution.State, _VERTEX_STATES[payload["state"]])
                    aiplatform.end_run(state=state)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the rows spooled; flush reports it
                result.error = f"{entry.get('op')} of run {entry.get('run')}: {_describe(exc)}"
                break
            result.done.append(entry["seq"])
        return result

    def close(self) -> None:
        """Nothing to release (the SDK keeps its own channels)."""


def _vertex_params(params: Mapping[str, Any]) -> dict[str, float | int | str]:
    """Vertex accepts numbers and strings only: everything else becomes its JSON text."""
    import json

    out: dict[str, float | int | str] = {}
    for key, value in params.items():
        if isinstance(value, bool) or value is None:
            out[key] = json.dumps(value)
        elif isinstance(value, int | float | str):
            out[key] = value if not isinstance(value, float) or math.isfinite(value) else str(value)
        else:
            out[key] = json.dumps(value, sort_keys=True, default=str)
    return out


def _vertex_metrics(metrics: Mapping[str, float]) -> dict[str, float | str]:
    return {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}


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
        return {"sink": "bigquery", "table": table, "row": row, "insert_id": _insert_id(table, row)}

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
            self._fs(record, _firestore_doc(record)),
            self._vx(record, "start", {}),
            self._vx(record, "params", _vertex_params(record.params)) if record.params else None,
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
            self._vx(record, "params", _vertex_params(clean)),
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
            vertex = self._vx(record, "metrics", _vertex_metrics(values))
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
            raise ExpforgeError(f"BigQuery {bq.table_ref('runs')}: query failed ({_describe(exc)})") from exc
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
    """Resend the rows of every abandoned spool in ``directory``; returns ``(delivered, still kept)``.

    A spool whose process is still alive is skipped (it is locked). Raises, naming the files, if rows remain.
    """
    from expforge.tracking.spool import adopted_spools

    delivered = remaining = 0
    kept: list[str] = []
    errors: list[str] = []
    with adopted_spools(directory) as spools:
        for spool in spools:
            before = len(spool)
            tracker = GcpTracker(settings, spool=spool)
            try:
                tracker.flush()
            except ExpforgeError as exc:
                errors.append(str(exc))
                kept.append(str(spool.path))
            delivered += before - len(spool)
            remaining += len(spool)
            for sink in tracker.sinks.values():
                sink.close()
    if errors:
        raise ExpforgeError(f"{remaining} rows still undelivered, kept in {', '.join(kept)} ({errors[0]})")
    return delivered, remaining
