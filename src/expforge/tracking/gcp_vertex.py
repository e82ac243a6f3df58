"""The Vertex AI Experiments sink of the ``gcp`` tracking backend, through the aiplatform SDK.

Where people compare runs in the console: params, final metrics, and time series backed by Vertex TensorBoard.
The spooled operations are replayed in order (start, params, metrics, series, end), stopping at the first
failure so the order holds for the retry.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from expforge.errors import ExpforgeError
from expforge.gcloud_clients import init_aiplatform
from expforge.tracking.base import (
    parse_time,
)
from expforge.tracking.gcp_settings import GcpSettings, SendResult, describe_error

_VERTEX_STATES = {"SUCCEEDED": "COMPLETE", "FAILED": "FAILED", "CANCELLED": "CANCELLED", "RUNNING": "RUNNING"}


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
                    from google.cloud.aiplatform.compat.types import execution  # type: ignore[attr-defined]

                    state = getattr(execution.Execution.State, _VERTEX_STATES[payload["state"]])
                    aiplatform.end_run(state=state)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the rows spooled; flush reports it
                result.error = f"{entry.get('op')} of run {entry.get('run')}: {describe_error(exc)}"
                break
            result.done.append(entry["seq"])
        return result

    def close(self) -> None:
        """Nothing to release (the SDK keeps its own channels)."""


def vertex_params(params: Mapping[str, Any]) -> dict[str, float | int | str]:
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


def vertex_metrics(metrics: Mapping[str, float]) -> dict[str, float | str]:
    return {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}
