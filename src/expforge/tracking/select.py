"""Choosing the tracking backend from configuration (environment variables, or explicit arguments).

Why environment variables: components run in containers launched by the local runner or by Vertex AI
Pipelines; the one channel both offer is the task environment (the runner's task env, the compiler's
``--env``). Every variable has a flag or parameter equivalent in the code that sets it.

=============================  =================================================================================
``EXPFORGE_TRACKING``          ``local`` | ``gcp`` | ``off`` (default: ``local`` when ``EXPFORGE_TRACKING_DB`` is
                               set, else ``off``)
``EXPFORGE_TRACKING_DB``       SQLite file of the ``local`` backend
``EXPFORGE_TRACKING_SPOOL``    directory for rows not yet delivered (``gcp``); default beside the DB, else
                               ``~/.cache/expforge/tracking-spool``
``EXPFORGE_GCP_PROJECT``       project (falls back to ``GOOGLE_CLOUD_PROJECT``)
``EXPFORGE_GCP_REGION``        region of Vertex AI (default ``us-central1``)
``EXPFORGE_BQ_DATASET``        BigQuery dataset (default ``expforge``)
``EXPFORGE_FIRESTORE_COLLECTION``  Firestore collection (default ``runs``)
``EXPFORGE_BIGQUERY_ENDPOINT`` BigQuery stand-in ``http://host:port`` (also read: ``BIGQUERY_EMULATOR_HOST``)
``FIRESTORE_EMULATOR_HOST``    Firestore emulator ``host:port``
``EXPFORGE_VERTEX_ENDPOINT``   Vertex stand-in ``host:port``; its CA from ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``
``EXPFORGE_VERTEX``            ``off`` leaves Vertex AI Experiments out of the ``gcp`` backend
=============================  =================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.task_env import TaskEnvironment
from expforge.tracking.base import RunFilter, RunRecord, RunStart, Tracker
from expforge.tracking.gcp_settings import GcpDestination, GcpSettings

BACKENDS = ("local", "gcp", "off")


class NullTracker:
    """``EXPFORGE_TRACKING=off``: accepts everything, stores nothing (components still run untracked)."""

    backend = "off"

    def start_run(self, run: RunStart) -> None:
        """Nothing to do."""

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Nothing to do."""

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Nothing to do."""

    def log_artifacts(self, run_id: str, artifacts: Mapping[str, str]) -> None:
        """Nothing to do."""

    def end_run(self, run_id: str, state: str = "SUCCEEDED") -> None:
        """Nothing to do."""

    def get_run(self, run_id: str) -> RunRecord:
        """Tracking is off: there is nothing to read."""
        raise ExpforgeError("tracking is off (EXPFORGE_TRACKING=off): no runs are stored")

    def list_runs(self, run_filter: RunFilter | None = None) -> list[RunRecord]:
        """Always empty."""
        return []

    def set_tags(self, run_id: str, tags: Mapping[str, str], note: str | None = None) -> RunRecord:
        """Tracking is off: there is nothing to tag."""
        raise ExpforgeError("tracking is off (EXPFORGE_TRACKING=off): no runs are stored")

    def flush(self) -> None:
        """Nothing buffered."""

    def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True)
class TrackingConfig(GcpDestination):
    """The resolved tracking configuration (see the module docstring for the variables)."""

    backend: str
    db: Path | None = None
    spool_dir: Path | None = None
    project: str | None = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, backend: str | None = None, db: Path | str | None = None
    ) -> TrackingConfig:
        """Read the configuration from ``env`` (default ``os.environ``, through
        :class:`~expforge.task_env.TaskEnvironment`); ``backend``/``db`` override it."""
        task = TaskEnvironment.from_env(env)
        db_text = str(db) if db is not None else task.tracking_db
        chosen = backend or task.tracking or ("local" if db_text else "off")
        chosen = check_backend(chosen.strip().lower(), "EXPFORGE_TRACKING" if backend is None else "--backend")
        if task.tracking_spool:
            spool = Path(task.tracking_spool)
        elif db_text:
            spool = Path(db_text).expanduser().parent / "spool"
        else:
            spool = Path.home() / ".cache" / "expforge" / "tracking-spool"
        return cls(
            backend=chosen,
            db=Path(db_text).expanduser() if db_text else None,
            spool_dir=spool.expanduser(),
            project=task.project,
            region=task.gcp_region or "us-central1",
            dataset=task.bq_dataset or "expforge",
            collection=task.firestore_collection or "runs",
            bigquery_endpoint=task.bigquery_endpoint or task.bigquery_emulator_host,
            firestore_emulator_host=task.firestore_emulator_host,
            vertex_endpoint=task.vertex_endpoint,
            vertex_ca_cert=task.ssl_roots_file,
            vertex=task.vertex_tracking is not False,
        )

    def with_overrides(self, **changes: Any) -> TrackingConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def gcp_settings(self, **tuning: Any) -> GcpSettings:
        """:class:`~expforge.tracking.gcp_settings.GcpSettings` of this configuration (``tuning``: batch size,
        timeouts)."""
        if not self.project:
            raise ExpforgeError("EXPFORGE_GCP_PROJECT: the gcp tracking backend needs a Google Cloud project id")
        assert self.spool_dir is not None
        destination = {f.name: getattr(self, f.name) for f in fields(GcpDestination)}
        return GcpSettings(project=self.project, spool_dir=self.spool_dir, **destination, **tuning)


def check_backend(name: str, where: str = "EXPFORGE_TRACKING") -> str:
    """``name`` if it is a known backend, else one line naming the setting and the choices."""
    if name not in BACKENDS:
        raise ExpforgeError(f"{where}: unknown tracking backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


def open_tracker(config: TrackingConfig | str | None = None, **tuning: Any) -> Tracker:
    """The tracker ``config`` selects (a config, a backend name read with the environment, or the environment).

    ``tuning`` goes to :class:`~expforge.tracking.gcp.GcpSettings` (``batch_size``, ``timeout_s``, ...).
    """
    if not isinstance(config, TrackingConfig):
        config = TrackingConfig.from_env(backend=config)
    if config.backend == "off":
        return NullTracker()
    if config.backend == "local":
        if config.db is None:
            raise ExpforgeError("EXPFORGE_TRACKING_DB: the local tracking backend needs the SQLite file's path")
        from expforge.tracking.local import LocalTracker

        return LocalTracker(config.db)
    from expforge.tracking.gcp import GcpTracker

    return GcpTracker(config.gcp_settings(**tuning))
