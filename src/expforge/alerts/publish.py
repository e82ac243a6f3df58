"""Sending the alerts a step raised: always to ``<root>/.alerts/alerts.jsonl``, also to Pub/Sub when asked.

One message per firing rule, carrying the run, the task, the metric, its value, the rule's threshold and
operator, and a link to the run on the dashboard. The local file is appended one whole line per ``write``
(``O_APPEND``), so concurrent tasks never interleave half-lines. ``EXPFORGE_ALERTS=pubsub`` also publishes each
message to the topic ``EXPFORGE_ALERTS_TOPIC`` (default ``expforge-alerts``, created when missing) of the
task's project with the official ``google-cloud-pubsub`` client, which honours ``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from expforge.alerts.rules import AlertRule, fired
from expforge.errors import ExpforgeError
from expforge.task_env import TaskEnvironment
from expforge.timestamps import now_iso

ALERTS_DIR = ".alerts"
ALERTS_FILE = "alerts.jsonl"
DEFAULT_TOPIC = "expforge-alerts"
DEFAULT_ROOT = "runs"
DEFAULT_DASHBOARD = "http://127.0.0.1:8765"
DEFAULT_PROJECT = "expforge-local"


@dataclass(frozen=True)
class Alert:
    """One firing of one rule."""

    run: str
    task: str
    step: str
    metric: str
    value: float
    op: str
    threshold: float
    rule: str
    link: str
    time: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=True)


def alerts_root(env: TaskEnvironment) -> Path:
    """Where the alerts file lives: ``EXPFORGE_ALERTS_ROOT``, else the runs root the runner gave the tracking
    store (``<root>/.tracking/runs.sqlite``), else ``runs``."""
    if env.alerts_root:
        return Path(env.alerts_root)
    if env.tracking_db and Path(env.tracking_db).parent.name == ".tracking":
        return Path(env.tracking_db).parent.parent
    return Path(DEFAULT_ROOT)


def make_alerts(
    firings: Iterable[tuple[AlertRule, float]], *, step: str, env: TaskEnvironment, link: str | None = None
) -> list[Alert]:
    """The messages for ``firings`` of ``step``, identified by the task environment's run and task."""
    run = env.run_id or "local"
    task = env.task_key or step
    dashboard = (env.dashboard_url or DEFAULT_DASHBOARD).rstrip("/")
    link = link or f"{dashboard}/runs/{run}"
    now = now_iso()
    return [
        Alert(run, task, step, rule.metric, value, rule.op, rule.threshold, rule.text, link, now)
        for rule, value in firings
    ]


def append_local(alerts: Sequence[Alert], root: Path) -> Path:
    """Append each alert as one JSON line to ``<root>/.alerts/alerts.jsonl`` (one write per line)."""
    path = root / ALERTS_DIR / ALERTS_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ExpforgeError(f"alerts: cannot write {path}: {exc.strerror or exc}") from exc
    try:
        for alert in alerts:
            os.write(descriptor, (alert.to_json() + "\n").encode("utf-8"))
    finally:
        os.close(descriptor)
    return path


def publish_pubsub(alerts: Sequence[Alert], *, project: str, topic: str) -> list[str]:
    """Publish each alert to ``projects/<project>/topics/<topic>`` (created if missing); the message ids."""
    from google.api_core import exceptions
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # (no stubs for the namespace package)

    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(project, topic)
    with contextlib.suppress(exceptions.AlreadyExists):
        publisher.create_topic(name=path)
    ids = []
    for alert in alerts:
        attributes = {"run": alert.run, "task": alert.task, "metric": alert.metric, "rule": alert.rule}
        future = publisher.publish(path, alert.to_json().encode("utf-8"), **attributes)
        ids.append(str(future.result(timeout=60)))
    return ids


def publish(alerts: Sequence[Alert], env: TaskEnvironment | None = None) -> dict[str, Any]:
    """Send ``alerts`` where the task environment says; what was done (for the step's log)."""
    env = TaskEnvironment.from_env() if env is None else env
    if not alerts:
        return {"alerts": 0}
    done: dict[str, Any] = {"alerts": len(alerts), "file": str(append_local(alerts, alerts_root(env)))}
    if env.alerts == "pubsub":
        topic = env.alerts_topic or DEFAULT_TOPIC
        project = env.project or DEFAULT_PROJECT
        done["pubsub"] = {
            "topic": f"projects/{project}/topics/{topic}",
            "ids": publish_pubsub(alerts, project=project, topic=topic),
        }
    return done


def read_alerts(root: Path | str) -> list[dict[str, Any]]:
    """Every alert recorded under ``root``, oldest first (a line that does not parse is one error naming it)."""
    path = Path(root) / ALERTS_DIR / ALERTS_FILE
    if not path.is_file():
        return []
    alerts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            alerts.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ExpforgeError(f"{path}:{number}: not a JSON alert ({exc.msg})") from exc
    return alerts


def raise_alerts(
    rules: Sequence[AlertRule],
    values: Mapping[str, float],
    *,
    step: str,
    env: TaskEnvironment | None = None,
    link: str | None = None,
) -> list[Alert]:
    """Check ``rules`` against a step's ``values`` and send one message per firing rule; the alerts sent."""
    if not rules:
        return []
    env = TaskEnvironment.from_env() if env is None else env
    alerts = make_alerts(fired(rules, values), step=step, env=env, link=link)
    publish(alerts, env)
    return alerts
