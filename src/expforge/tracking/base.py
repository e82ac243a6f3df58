"""The tracking protocol and its records: what every backend stores about a run, and how it is asked.

Why one small protocol: components, the local runner and the ``expforge runs`` commands talk to tracking only
through :class:`Tracker`, so the backend (``local`` SQLite, ``gcp`` Vertex Experiments + Firestore + BigQuery)
is chosen by configuration and never by editing code. The records are plain dataclasses of JSON-safe values so
that every backend can store them verbatim and give them back unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

from expforge.errors import ExpforgeError
from expforge.timestamps import ISO_FORMAT
from expforge.timestamps import now_iso as now_iso  # (tracking modules take it from here)

RUN_STATES = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")


def parse_time(text: str, *, what: str = "time") -> dt.datetime:
    """An ISO-8601 date or timestamp as an aware UTC datetime (naive input is taken as UTC)."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ExpforgeError(f"{what}: {text!r} is not an ISO-8601 date or time (e.g. 2024-05-01T12:00)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def to_iso(value: Any) -> str | None:
    """Normalise a backend's timestamp (a datetime or text) to :func:`now_iso`'s format."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).strftime(ISO_FORMAT)
    return parse_time(str(value)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def metric_value(key: str, value: Any) -> float:
    """A logged metric as a float; anything that is not a real number is an error naming the key.

    Booleans are refused on purpose: ``True`` as ``1.0`` on a leaderboard is a bug, not a metric.
    NaN and infinities are kept (a diverged loss is worth recording).
    """
    if not isinstance(key, str) or not key:
        raise ExpforgeError(f"metric name {key!r}: expected a non-empty string")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ExpforgeError(f"metric {key!r}: {value!r} is not a number")
    return float(value)


def json_safe(value: Any) -> Any:
    """``value`` round-tripped through JSON (unknown types become strings), so every backend stores the same."""
    return json.loads(json.dumps(value, default=str, allow_nan=True))


@dataclass
class RunStart:
    """Everything known when a run begins (the provenance half of a run row).

    ``run_id`` is unique across the store; a component's run id is ``<pipeline run id>/<task>`` and names the
    pipeline run in ``parent_run_id``. ``git_diff`` is the uncommitted diff (capped; see
    :mod:`expforge.tracking.context`), ``pip_freeze`` the ``name==version`` list of the environment.
    """

    run_id: str
    experiment: str = "default"
    pipeline: str = ""
    step: str = ""
    parent_run_id: str | None = None
    command: list[str] = field(default_factory=list)
    started_at: str = field(default_factory=now_iso)
    git_commit: str | None = None
    git_branch: str | None = None
    git_dirty: bool | None = None
    git_diff: str | None = None
    python: str = ""
    pip_freeze: list[str] = field(default_factory=list)
    device: dict[str, Any] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    image_digests: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.run_id, str) or not self.run_id.strip():
            raise ExpforgeError("run_id: expected a non-empty string")
        self.params = json_safe(dict(self.params))
        self.tags = {str(k): str(v) for k, v in self.tags.items()}


@dataclass
class RunRecord(RunStart):
    """One run as stored: its start, its state, final metrics, per-epoch series and artifacts.

    ``series`` maps a metric name to ``[(step, value), ...]`` sorted by step; ``metrics`` holds the final
    values (logged with ``step=None``).
    """

    state: str = "RUNNING"
    ended_at: str | None = None
    updated_at: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_start(cls, start: RunStart) -> RunRecord:
        """A new record for ``start`` (state RUNNING)."""
        values = {f.name: getattr(start, f.name) for f in fields(RunStart)}
        return cls(**values, updated_at=now_iso())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (older/newer stores)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        series = values.get("series") or {}
        values["series"] = {k: sorted((int(s), float(v)) for s, v in points) for k, points in series.items()}
        values["metrics"] = {k: float(v) for k, v in (values.get("metrics") or {}).items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (series as ``[[step, value], ...]``)."""
        data = asdict(self)
        data["series"] = {k: [[s, v] for s, v in points] for k, points in self.series.items()}
        return data

    def metric(self, key: str) -> float | None:
        """The final value of ``key``, or the last point of its series when no final value was logged."""
        if key in self.metrics:
            return self.metrics[key]
        points = self.series.get(key)
        return points[-1][1] if points else None


_CONDITION = re.compile(r"^\s*([^<>=!\s]+)\s*(>=|<=|==|!=|>|<|=)\s*(\S+)\s*$")


@dataclass(frozen=True)
class MetricCondition:
    """``val_accuracy>=0.9``: a threshold on a run's metric (see :meth:`RunRecord.metric`)."""

    key: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> MetricCondition:
        """Parse ``KEY OP NUMBER`` with OP one of ``>= <= > < == !=`` (``=`` means ``==``)."""
        match = _CONDITION.match(text)
        if not match:
            raise ExpforgeError(f"--metric: {text!r} is not KEY OP NUMBER (e.g. 'val_accuracy>=0.9')")
        key, op, number = match.groups()
        try:
            value = float(number)
        except ValueError:
            raise ExpforgeError(f"--metric: {number!r} in {text!r} is not a number") from None
        return cls(key, "==" if op == "=" else op, value)

    def holds(self, record: RunRecord) -> bool:
        """Whether ``record`` has the metric and it satisfies the threshold (NaN never does)."""
        actual = record.metric(self.key)
        if actual is None or math.isnan(actual):
            return False
        return {
            ">=": actual >= self.value,
            "<=": actual <= self.value,
            ">": actual > self.value,
            "<": actual < self.value,
            "==": actual == self.value,
            "!=": actual != self.value,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value:g}"


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list. Every given criterion must hold.

    ``dataset`` matches when it is a substring of one of the run's dataset ids; ``since``/``until`` bound
    ``started_at`` (inclusive/exclusive); ``note_contains`` is a case-insensitive substring of the note.
    """

    dataset: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    metrics: tuple[MetricCondition, ...] = ()
    note_contains: str | None = None
    experiment: str | None = None
    pipeline: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    limit: int | None = None

    def matches(self, record: RunRecord) -> bool:
        """Whether ``record`` passes every criterion."""
        if self.dataset and not any(self.dataset in d for d in record.datasets):
            return False
        if self.since or self.until:
            started = parse_time(record.started_at)
            if self.since and started < self.since:
                return False
            if self.until and started >= self.until:
                return False
        if self.note_contains and self.note_contains.lower() not in (record.note or "").lower():
            return False
        if self.experiment and record.experiment != self.experiment:
            return False
        if self.pipeline and record.pipeline != self.pipeline:
            return False
        if any(record.tags.get(k) != v for k, v in self.tags):
            return False
        return all(condition.holds(record) for condition in self.metrics)


@runtime_checkable
class Tracker(Protocol):
    """What a tracking backend does. Every method may raise :class:`ExpforgeError` for bad input.

    Logging is idempotent: logging the same ``(run, key, step)`` again replaces the value, so a retried task
    does not duplicate points. ``flush`` must either deliver everything logged so far or raise an
    :class:`ExpforgeError` that says where the undelivered rows are kept — never drop them silently.
    """

    backend: str

    def start_run(self, run: RunStart) -> None:
        """Create (or, for a retried task, restart) the run ``run.run_id``."""

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Merge ``params`` into the run's parameters."""

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Final metrics (``step=None``) or one point per metric of the per-epoch series at ``step``."""

    def log_artifacts(self, run_id: str, artifacts: Mapping[str, str]) -> None:
        """Merge name → URI of artifacts the run produced."""

    def end_run(self, run_id: str, state: str = "SUCCEEDED") -> None:
        """Mark the run finished with ``state`` (one of :data:`RUN_STATES`)."""

    def get_run(self, run_id: str) -> RunRecord:
        """The run, or an :class:`ExpforgeError` naming the unknown id."""

    def list_runs(self, run_filter: RunFilter | None = None) -> list[RunRecord]:
        """Runs matching ``run_filter``, newest first."""

    def set_tags(self, run_id: str, tags: Mapping[str, str], note: str | None = None) -> RunRecord:
        """Merge ``tags`` (an empty value removes a tag) and replace the note when given; returns the run."""

    def flush(self) -> None:
        """Deliver everything buffered (raise, naming the spool, if something could not be delivered)."""

    def close(self) -> None:
        """Flush and release connections."""


def check_state(state: str) -> str:
    """``state`` if it is a known run state, else a one-line error."""
    if state not in RUN_STATES:
        raise ExpforgeError(f"run state {state!r}: expected one of {', '.join(RUN_STATES)}")
    return state


def check_step(step: int | None) -> int | None:
    """A series step must be a non-negative integer (epochs, iterations)."""
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ExpforgeError(f"metric step {step!r}: expected a non-negative integer or None (final metrics)")
    return int(step)


def merge_tags(current: Mapping[str, str], update: Mapping[str, str]) -> dict[str, str]:
    """``current`` updated by ``update``; an empty value removes the tag."""
    merged = dict(current)
    for key, value in update.items():
        if not key:
            raise ExpforgeError("--tag: a tag needs a non-empty key (KEY=VALUE)")
        if value == "":
            merged.pop(key, None)
        else:
            merged[str(key)] = str(value)
    return merged
