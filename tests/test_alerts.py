"""Alert rules on drift-check and evaluate: parsing, the local alerts file, ``expforge alerts list``, Pub/Sub
(the gcloud CLI's real emulator, started on a free port)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expforge.alerts.publish import raise_alerts, read_alerts
from expforge.alerts.rules import AlertRule, fired, parse_rule, parse_rules
from expforge.cli import app
from expforge.errors import ExpforgeError
from expforge.task_env import TaskEnvironment

METRICS = ("accuracy", "drift_share")


def test_rules_parse_and_fire() -> None:
    assert parse_rule("accuracy<0.9", METRICS) == AlertRule("accuracy", "<", 0.9)
    assert parse_rule(" drift_share >= 3e-1 ", METRICS) == AlertRule("drift_share", ">=", 0.3)
    rule = parse_rule("accuracy<0.9", METRICS)
    assert rule.fires(0.5) and not rule.fires(0.95) and rule.fires(float("nan"))


def test_a_metric_the_step_could_not_compute_fires_as_nan() -> None:
    # evaluate reports an undefined AUC (one class in the split) as None; it must fire, not crash
    rules = parse_rules(["accuracy<0.9", "drift_share>0.5"], METRICS)
    (only,) = fired(rules, {"accuracy": None, "drift_share": 0.1})
    assert only[0] == rules[0] and only[1] != only[1]
    assert [rule for rule, _ in fired(rules, {"drift_share": 0.7})] == rules
    assert fired(rules, {"accuracy": 0.95, "drift_share": 0.2}) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accuracy", "--alert: rule 'accuracy' does not parse"),
        ("accuracy<high", "--alert: rule 'accuracy<high' does not parse"),
        ("accuracy=>0.9", "--alert: rule 'accuracy=>0.9' has unknown operator '=>'"),
        ("acuracy<0.9", "--alert: rule 'acuracy<0.9' names unknown metric 'acuracy'"),
    ],
)
def test_bad_rules_are_one_line_naming_them(text: str, message: str) -> None:
    with pytest.raises(ExpforgeError) as error:
        parse_rules([text], METRICS)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_firing_rules_are_appended_and_listed(tmp_path: Path) -> None:
    env = TaskEnvironment(run_id="run-7", task_key="evaluate", alerts_root=str(tmp_path))
    rules = parse_rules(["accuracy<0.9", "accuracy>0.99", "drift_share>0.3"], METRICS)
    sent = raise_alerts(rules, {"accuracy": 0.8, "drift_share": 0.5}, step="evaluate", env=env)
    assert [a.rule for a in sent] == ["accuracy<0.9", "drift_share>0.3"]
    (first, second) = read_alerts(tmp_path)
    assert first["run"] == "run-7" and first["task"] == "evaluate" and first["metric"] == "accuracy"
    assert first["value"] == 0.8 and first["threshold"] == 0.9 and first["op"] == "<"
    assert first["link"].endswith("/runs/run-7") and second["metric"] == "drift_share"
    assert (tmp_path / ".alerts" / "alerts.jsonl").read_text().count("\n") == 2
    listed = CliRunner().invoke(app, ["alerts", "list", "--root", str(tmp_path)])
    assert listed.exit_code == 0 and listed.output.count("run-7/evaluate") == 2 and "drift_share>0.3" in listed.output
    assert CliRunner().invoke(app, ["alerts", "list", "--root", str(tmp_path / "none")]).output.startswith("no alerts")


def test_alerts_root_defaults_to_the_runs_root_of_the_tracking_store(tmp_path: Path) -> None:
    from expforge.alerts.publish import alerts_root

    env = TaskEnvironment(tracking_db=str(tmp_path / "runs" / ".tracking" / "runs.sqlite"))
    assert alerts_root(env) == tmp_path / "runs"
    assert alerts_root(TaskEnvironment(alerts_root="/x")) == Path("/x")
    with pytest.raises(ExpforgeError, match="EXPFORGE_ALERTS: unknown alert sink 'slack'"):
        TaskEnvironment.from_env({"EXPFORGE_ALERTS": "slack"})


@pytest.fixture()
def trained_model(tiny_dataset: Path, tmp_path: Path) -> Path:
    from expforge.train.sklearn_trainer import train_sklearn

    return train_sklearn([tiny_dataset], tiny_dataset, tmp_path / "model.skops", epochs=1).model_path


def test_evaluate_alert_flag(
    trained_model: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs"
    monkeypatch.setenv("EXPFORGE_ALERTS_ROOT", str(root))
    monkeypatch.setenv("EXPFORGE_RUN_ID", "cli-run")
    args = ["evaluate", "--model", str(trained_model), "--dataset", str(tiny_dataset)]
    bad = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "bad"), "--alert", "accuracy~0.9"])
    assert bad.exit_code == 2 and "unknown operator '~'" in bad.output and len(bad.output.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()  # refused before any work
    ok = CliRunner().invoke(
        app, [*args, "--output", str(tmp_path / "e"), "--alert", "accuracy<=1", "--alert", "accuracy>1"]
    )
    assert ok.exit_code == 0, ok.output
    (alert,) = read_alerts(root)
    accuracy = float(ok.output.split("accuracy=")[1].split()[0])
    assert alert["rule"] == "accuracy<=1" and alert["value"] == pytest.approx(accuracy, abs=1e-4)
    assert alert["run"] == "cli-run" and alert["link"] == str((tmp_path / "e").resolve())


def test_drift_check_alert_flag(tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPFORGE_ALERTS_ROOT", str(tmp_path))
    args = ["drift-check", "--reference", str(tiny_dataset), "--current", str(tiny_dataset)]
    bad = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "d0"), "--alert", "drift_shar>0.3"])
    assert bad.exit_code == 2 and "names unknown metric 'drift_shar'" in bad.output
    ok = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "d"), "--alert", "drift_share>=0"])
    assert ok.exit_code == 0, ok.output
    (alert,) = read_alerts(tmp_path)
    drift = json.loads((tmp_path / "d" / "drift.json").read_text())
    assert alert["metric"] == "drift_share" and alert["value"] == pytest.approx(drift["drift_share"])
    assert alert["task"] == "drift-check" and "ALERT drift_share>=0" in ok.output


@pytest.fixture(scope="module")
def pubsub() -> Iterator[object]:
    from expforge.standins.pubsub import pubsub_unavailable, start_pubsub_emulator

    reason = pubsub_unavailable()
    if reason:
        pytest.skip(f"Pub/Sub emulator unavailable: {reason}")
    pytest.importorskip("google.cloud.pubsub_v1")
    with start_pubsub_emulator() as emulator:
        yield emulator


def test_pubsub_gets_one_message_per_firing(pubsub: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud import pubsub_v1

    for name, value in pubsub.env().items():  # type: ignore[attr-defined]
        monkeypatch.setenv(name, value)
    project = pubsub.project  # type: ignore[attr-defined]
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, "alerts-test")
    publisher.create_topic(name=topic)
    subscription = subscriber.subscription_path(project, "alerts-test-sub")
    subscriber.create_subscription(name=subscription, topic=topic)

    env = TaskEnvironment.from_env(
        {**pubsub.env(), "EXPFORGE_ALERTS": "pubsub", "EXPFORGE_ALERTS_TOPIC": "alerts-test",  # type: ignore[attr-defined]
         "EXPFORGE_ALERTS_ROOT": str(tmp_path), "EXPFORGE_RUN_ID": "r1", "EXPFORGE_TASK_KEY": "drift-check"}
    )  # fmt: skip
    rules = parse_rules(["drift_share>0.3", "accuracy<0.9"], METRICS)
    sent = raise_alerts(rules, {"drift_share": 0.4, "accuracy": 0.85}, step="drift-check", env=env)
    assert len(sent) == 2 and len(read_alerts(tmp_path)) == 2  # the local file too

    received: list[dict[str, object]] = []
    for _ in range(20):
        response = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
        for message in response.received_messages:
            received.append({**json.loads(message.message.data), "attributes": dict(message.message.attributes)})
        if response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
        if len(received) >= 2:
            break
    assert sorted(m["metric"] for m in received) == ["accuracy", "drift_share"]
    drift = next(m for m in received if m["metric"] == "drift_share")
    assert drift["run"] == "r1" and drift["task"] == "drift-check" and drift["value"] == 0.4
    assert drift["threshold"] == 0.3 and str(drift["link"]).endswith("/runs/r1")
    assert drift["attributes"] == {
        "run": "r1",
        "task": "drift-check",
        "metric": "drift_share",
        "rule": "drift_share>0.3",
    }
