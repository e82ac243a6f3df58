"""The task environment: every setting that crosses from a runner (or the compiler) into a task's process.

Components run in containers started by the local runner or by Vertex AI Pipelines; the one channel both offer
is the process environment. Those settings used to be ~26 ``EXPFORGE_*`` string literals written and read in
ten modules, where a typo was silent. They are one frozen dataclass now: producers (the runner's
``task_environment``, ``expforge compile --env``, ``submit``) build a :class:`TaskEnvironment` and write
:meth:`~TaskEnvironment.to_env`; consumers (tracking, the registry, the component adapter) read
:meth:`~TaskEnvironment.from_env`. Each field names its variable once, here.

Bad input: an unknown ``EXPFORGE_*`` name in a task's environment is one warning naming it (a typo such as
``EXPFORGE_TRAKING`` would otherwise leave tracking off without a word); a malformed value (an unknown tracking
backend, ``EXPFORGE_VERTEX=maybe``) is one :class:`~expforge.errors.ExpforgeError` naming the variable and the
accepted values, which every entry point prints as one line with exit status 2.

Standard variables of the Google libraries (``FIRESTORE_EMULATOR_HOST``, ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``,
``STORAGE_EMULATOR_HOST``, ``GOOGLE_CLOUD_PROJECT``) are part of it too: they configure the same clients.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from expforge.errors import ExpforgeError

log = logging.getLogger(__name__)

PREFIX = "EXPFORGE_"
TRACKING_BACKENDS = ("local", "gcp", "off")
REGISTRY_BACKENDS = ("local", "vertex")
ALERT_SINKS = ("local", "pubsub")
_ON = ("on", "1", "true", "yes")
_OFF = ("off", "0", "false", "no")

#: ``EXPFORGE_*`` variables that are not part of a task's environment but are known (runner-host and test
#: settings): no warning for them.
HOST_VARIABLES = frozenset(
    {
        "EXPFORGE_CACHE_DIR",
        "EXPFORGE_CACHE_VERIFY",
        "EXPFORGE_FONT_CACHE",
        "EXPFORGE_DOCKER_NETWORK",
        "EXPFORGE_DOCKER_PIDS_LIMIT",
        "EXPFORGE_MNIST_BASE_URL",
        "EXPFORGE_PIPELINE_ROOT",
        "EXPFORGE_REQUIRE_DOCKER",
        "EXPFORGE_TEST_IMAGE",
        "EXPFORGE_GPU_RESULTS",
        "EXPFORGE_KFP_REGISTRY_ENDPOINT",
    }
)


def _var(name: str, choices: tuple[str, ...] = (), what: str = "value") -> Any:
    return field(default=None, metadata={"env": name, "choices": choices, "what": what})


def _flag(name: str) -> Any:
    return field(default=None, metadata={"env": name, "flag": True})


@dataclass(frozen=True)
class TaskEnvironment:
    """What a task is told about its run and where to report (``None``: not set; the reader's default applies)."""

    # run identity
    run_id: str | None = _var("EXPFORGE_RUN_ID")
    pipeline: str | None = _var("EXPFORGE_PIPELINE")
    task_key: str | None = _var("EXPFORGE_TASK_KEY")
    experiment: str | None = _var("EXPFORGE_EXPERIMENT")
    image_digest: str | None = _var("EXPFORGE_IMAGE_DIGEST")
    git_commit: str | None = _var("EXPFORGE_GIT_COMMIT")
    git_dirty: str | None = _var("EXPFORGE_GIT_DIRTY")
    # tracking backend and paths
    tracking: str | None = _var("EXPFORGE_TRACKING", TRACKING_BACKENDS, "tracking backend")
    tracking_db: str | None = _var("EXPFORGE_TRACKING_DB")
    tracking_spool: str | None = _var("EXPFORGE_TRACKING_SPOOL")
    vertex_tracking: bool | None = _flag("EXPFORGE_VERTEX")
    bq_dataset: str | None = _var("EXPFORGE_BQ_DATASET")
    firestore_collection: str | None = _var("EXPFORGE_FIRESTORE_COLLECTION")
    # model registry
    registry: str | None = _var("EXPFORGE_REGISTRY", REGISTRY_BACKENDS, "registry backend")
    registry_root: str | None = _var("EXPFORGE_REGISTRY_ROOT")
    model_bucket: str | None = _var("EXPFORGE_MODEL_BUCKET")
    gcs_bucket: str | None = _var("EXPFORGE_GCS_BUCKET")
    serving_image: str | None = _var("EXPFORGE_SERVING_IMAGE")
    # alerts (expforge.alerts): always <alerts_root>/.alerts/alerts.jsonl; also Pub/Sub with alerts=pubsub
    alerts: str | None = _var("EXPFORGE_ALERTS", ALERT_SINKS, "alert sink")
    alerts_root: str | None = _var("EXPFORGE_ALERTS_ROOT")
    alerts_topic: str | None = _var("EXPFORGE_ALERTS_TOPIC")
    dashboard_url: str | None = _var("EXPFORGE_DASHBOARD_URL")
    # Google Cloud project and endpoints (stand-ins: endpoints on 127.0.0.1 and their certificate)
    gcp_project: str | None = _var("EXPFORGE_GCP_PROJECT")
    gcp_region: str | None = _var("EXPFORGE_GCP_REGION")
    google_cloud_project: str | None = _var("GOOGLE_CLOUD_PROJECT")
    vertex_endpoint: str | None = _var("EXPFORGE_VERTEX_ENDPOINT")
    bigquery_endpoint: str | None = _var("EXPFORGE_BIGQUERY_ENDPOINT")
    bigquery_emulator_host: str | None = _var("BIGQUERY_EMULATOR_HOST")
    firestore_emulator_host: str | None = _var("FIRESTORE_EMULATOR_HOST")
    storage_emulator_host: str | None = _var("STORAGE_EMULATOR_HOST")
    pubsub_emulator_host: str | None = _var("PUBSUB_EMULATOR_HOST")
    ssl_roots_file: str | None = _var("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")

    def __post_init__(self) -> None:
        for spec in fields(self):
            value, choices = getattr(self, spec.name), spec.metadata.get("choices") or ()
            if value is not None and choices and value not in choices:
                raise ExpforgeError(
                    f"{spec.metadata['env']}: unknown {spec.metadata['what']} {value!r}; "
                    f"expected one of {', '.join(choices)}"
                )

    @classmethod
    def variables(cls) -> dict[str, str]:
        """``field name → variable name`` for every field."""
        return {spec.name: spec.metadata["env"] for spec in fields(cls)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TaskEnvironment:
        """Read ``env`` (default ``os.environ``); empty values count as unset. A malformed value raises one
        :class:`ExpforgeError` naming the variable and what it accepts."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for spec in fields(cls):
            name = spec.metadata["env"]
            text = (env.get(name) or "").strip()
            if not text:
                continue
            if spec.metadata.get("flag"):
                lowered = text.lower()
                if lowered not in _ON + _OFF:
                    raise ExpforgeError(f"{name}: {text!r} is not on/off; expected one of {', '.join(_ON + _OFF)}")
                values[spec.name] = lowered in _ON
            elif spec.metadata.get("choices"):
                values[spec.name] = text.lower()
            else:
                values[spec.name] = text
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The variables of the fields that are set (flags as ``on``/``off``)."""
        env: dict[str, str] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None:
                continue
            env[spec.metadata["env"]] = ("on" if value else "off") if isinstance(value, bool) else str(value)
        return env

    def with_changes(self, **changes: Any) -> TaskEnvironment:
        """A copy with some fields changed (validated like a new one)."""
        return replace(self, **changes)

    @property
    def project(self) -> str | None:
        """The Google Cloud project (``EXPFORGE_GCP_PROJECT``, else ``GOOGLE_CLOUD_PROJECT``)."""
        return self.gcp_project or self.google_cloud_project


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """The ``EXPFORGE_*`` names in ``env`` that neither a task nor a runner host reads (sorted)."""
    env = os.environ if env is None else env
    known = set(TaskEnvironment.variables().values()) | HOST_VARIABLES
    return sorted(name for name in env if name.startswith(PREFIX) and name not in known)


def warn_unknown_variables(env: Mapping[str, str] | None = None, *, where: str = "the task environment") -> list[str]:
    """Log one warning naming the unknown ``EXPFORGE_*`` variables of ``env`` (if any); return them."""
    unknown = unknown_variables(env)
    if unknown:
        log.warning(
            "expforge: warning: unknown variable(s) %s in %s; expforge reads none of them (a typo?)",
            ", ".join(unknown),
            where,
        )
    return unknown
