"""The embedded tracking backend (SQLite), the component façade, provenance capture, queries and `expforge runs`."""

from __future__ import annotations

import datetime as dt
import json
import math
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expforge.cli import app
from expforge.errors import ExpforgeError
from expforge.tracking import (
    MetricCondition,
    RunFilter,
    RunStart,
    TrackingConfig,
    component_run,
    open_tracker,
)
from expforge.tracking.context import capture, git_state, pip_freeze
from expforge.tracking.local import LocalTracker
from expforge.tracking.queries import compare, leaderboard
from expforge.tracking.select import NullTracker

runner = CliRunner()


def _start(run_id: str, **fields) -> RunStart:
    return RunStart(run_id=run_id, experiment=fields.pop("experiment", "exp"), **fields)


def test_round_trip_keeps_every_field(tmp_path):
    with LocalTracker(tmp_path / "runs.sqlite") as tracker:
        start = _start(
            "pipe/train",
            pipeline="mnist",
            step="train",
            parent_run_id="pipe",
            command=["python", "-m", "x"],
            git_commit="abc",
            git_dirty=True,
            git_diff="diff --git a b",
            python="CPython 3.11",
            pip_freeze=["numpy==2.0"],
            device={"cpu_count": 2},
            datasets=["mnist@1"],
            image_digests={"train": "sha256:00"},
            params={"lr": 0.1, "nested": {"a": [1, 2]}, "none": None},
            tags={"team": "a"},
            note="first",
        )
        tracker.start_run(start)
        tracker.log_params("pipe/train", {"epochs": 3, "none2": None})
        for epoch in range(3):
            tracker.log_metrics("pipe/train", {"val_loss": 1.0 / (epoch + 1)}, step=epoch)
        tracker.log_metrics("pipe/train", {"val_loss": 0.25}, step=2)  # re-logged point replaces
        tracker.log_metrics("pipe/train", {"accuracy": 0.9, "loss": math.nan, "big": math.inf})
        tracker.log_artifacts("pipe/train", {"model": "/m"})
        tracker.end_run("pipe/train", "SUCCEEDED")
        record = tracker.get_run("pipe/train")
    assert record.state == "SUCCEEDED" and record.ended_at
    assert record.params == {"lr": 0.1, "nested": {"a": [1, 2]}, "none": None, "epochs": 3, "none2": None}
    assert record.series == {"val_loss": [(0, 1.0), (1, 0.5), (2, 0.25)]}
    assert record.metrics["accuracy"] == 0.9 and record.metrics["big"] == math.inf
    assert math.isnan(record.metrics["loss"])
    assert record.artifacts == {"model": "/m"}
    assert (record.git_commit, record.git_dirty, record.git_diff) == ("abc", True, "diff --git a b")
    assert (record.pipeline, record.step, record.parent_run_id) == ("mnist", "train", "pipe")
    assert record.image_digests == {"train": "sha256:00"} and record.datasets == ["mnist@1"]
    assert record.tags == {"team": "a"} and record.note == "first"


def test_restarting_a_run_keeps_what_it_logged(tmp_path):
    with LocalTracker(tmp_path / "runs.sqlite") as tracker:
        tracker.start_run(_start("r", params={"a": 1}))
        tracker.log_metrics("r", {"loss": 1.0}, step=0)
        tracker.end_run("r", "FAILED")
        tracker.start_run(_start("r", params={"b": 2}))  # the retried task
        record = tracker.get_run("r")
    assert record.state == "RUNNING" and record.ended_at is None
    assert record.params == {"a": 1, "b": 2} and record.series == {"loss": [(0, 1.0)]}


def test_bad_input_is_one_clear_error(tmp_path):
    with LocalTracker(tmp_path / "runs.sqlite") as tracker:
        with pytest.raises(ExpforgeError, match="'never' is not in"):
            tracker.log_metrics("never", {"x": 1.0})
        tracker.start_run(_start("r"))
        with pytest.raises(ExpforgeError, match="metric 'acc': 'high' is not a number"):
            tracker.log_metrics("r", {"acc": "high"})
        with pytest.raises(ExpforgeError, match="metric 'ok': True is not a number"):
            tracker.log_metrics("r", {"ok": True})
        with pytest.raises(ExpforgeError, match="step -1"):
            tracker.log_metrics("r", {"x": 1.0}, step=-1)
        with pytest.raises(ExpforgeError, match="run state 'DONE'"):
            tracker.end_run("r", "DONE")
        with pytest.raises(ExpforgeError, match="not found"):
            tracker.get_run("missing")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ExpforgeError, match="not a usable SQLite tracking database"):
        LocalTracker(tmp_path / "junk.sqlite")


def _writer(db: str, worker: int, points: int) -> None:
    tracker = LocalTracker(db)
    run_id = f"w{worker}"
    tracker.start_run(RunStart(run_id=run_id))
    for step in range(points):
        tracker.log_metrics(run_id, {"loss": float(step), "acc": step / points}, step=step)
        tracker.log_params(run_id, {f"p{step % 5}": step})
    tracker.end_run(run_id)
    tracker.close()


def test_concurrent_processes_lose_nothing(tmp_path):
    db = str(tmp_path / "runs.sqlite")  # not created yet: the writers race to create it too
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(db, i, 40)) for i in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    with LocalTracker(db) as tracker:
        runs = tracker.list_runs()
    assert sorted(r.run_id for r in runs) == ["w0", "w1", "w2", "w3"]
    for record in runs:
        assert record.state == "SUCCEEDED"
        assert [s for s, _ in record.series["loss"]] == list(range(40)) and len(record.series["acc"]) == 40
        assert sorted(record.params) == ["p0", "p1", "p2", "p3", "p4"]
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _populate(tracker: LocalTracker) -> None:
    rows = [
        ("a", "2024-01-01T10:00:00Z", ["mnist@1"], {"lr": 0.1}, {"accuracy": 0.80}, "baseline run"),
        ("b", "2024-02-01T10:00:00Z", ["fonts@2", "mnist@1"], {"lr": 0.2, "wd": 0.01}, {"accuracy": 0.95}, "Fonts!"),
        ("c", "2024-03-01T10:00:00Z", ["fonts@2"], {"lr": 0.3}, {}, ""),
    ]
    for run_id, started, datasets, params, metrics, note in rows:
        tracker.start_run(_start(run_id, started_at=started, datasets=datasets, params=params, note=note))
        if metrics:
            tracker.log_metrics(run_id, metrics)
    for step, value in enumerate([0.5, 0.7, 0.9]):  # c has only a series: its last point counts
        tracker.log_metrics("c", {"accuracy": value, "loss": 1 - value}, step=step)


def test_filters_compare_and_leaderboard(tmp_path):
    with LocalTracker(tmp_path / "runs.sqlite") as tracker:
        _populate(tracker)

        def ids(**criteria) -> list[str]:
            return [r.run_id for r in tracker.list_runs(RunFilter(**criteria))]

        assert ids() == ["c", "b", "a"]
        assert ids(dataset="mnist") == ["b", "a"]
        assert ids(since=dt.datetime(2024, 2, 1, 10, tzinfo=dt.UTC)) == ["c", "b"]
        assert ids(until=dt.datetime(2024, 2, 1, 10, tzinfo=dt.UTC)) == ["a"]
        assert ids(metrics=(MetricCondition.parse("accuracy>=0.9"),)) == ["c", "b"]
        assert ids(metrics=(MetricCondition.parse("loss < 0.2"),)) == ["c"]
        assert ids(note_contains="fonts") == ["b"]
        assert ids(limit=1) == ["c"]

        table = compare([tracker.get_run("a"), tracker.get_run("b"), tracker.get_run("c")])
        assert list(table.params) == ["lr", "wd"] and table.params["wd"] == [None, 0.01, None]
        assert list(table.metrics) == ["accuracy", "loss"]
        assert table.metrics["accuracy"] == [0.80, 0.95, 0.9]

        board = leaderboard(tracker.list_runs(), "accuracy", top=2)
        assert [(e.rank, e.run.run_id) for e in board] == [(1, "b"), (2, "c")]
        assert [e.run.run_id for e in leaderboard(tracker.list_runs(), "accuracy", ascending=True)] == ["a", "c", "b"]
        assert [e.run.run_id for e in leaderboard(tracker.list_runs(), "loss")] == ["c"]

        record = tracker.set_tags("a", {"keep": "yes", "drop": "x"}, "note!")
        record = tracker.set_tags("a", {"drop": ""})
        assert record.tags == {"keep": "yes"} and record.note == "note!"
        assert ids(tags=(("keep", "yes"),)) == ["a"]
    with pytest.raises(ExpforgeError, match="--metric: 'accuracy' is not KEY OP NUMBER"):
        MetricCondition.parse("accuracy")


def test_runs_cli(tmp_path):
    db = tmp_path / "runs.sqlite"
    with LocalTracker(db) as tracker:
        _populate(tracker)

    def cli(*args: str):
        return runner.invoke(app, ["runs", *args, "--db", str(db)])

    listed = cli("list", "--dataset", "mnist", "--metric", "accuracy>0.9", "--json")
    assert listed.exit_code == 0, listed.output
    assert [row["run_id"] for row in json.loads(listed.stdout)] == ["b"]
    since = cli("list", "--since", "2024-01-15", "--until", "2024-02-15", "--note-contains", "FONTS")
    assert since.exit_code == 0 and "b " in since.stdout and "baseline" not in since.stdout
    compared = cli("compare", "a", "c", "--json")
    assert json.loads(compared.stdout)["params"] == {"lr": [0.1, 0.3]}
    board = cli("leaderboard", "--metric", "accuracy", "--top", "1", "--json")
    assert [row["run_id"] for row in json.loads(board.stdout)] == ["b"]
    tagged = cli("tag", "c", "--tag", "stage=prod", "--note", "promoted")
    assert tagged.exit_code == 0 and json.loads(tagged.stdout)["tags"] == {"stage": "prod"}
    shown = cli("show", "c")
    record = json.loads(shown.stdout)
    assert record["note"] == "promoted" and record["series"]["accuracy"][-1] == [2, 0.9]

    bad = runner.invoke(app, ["runs", "list", "--backend", "sqlite", "--db", str(db)])
    assert bad.exit_code == 2 and "unknown tracking backend 'sqlite'" in bad.output
    missing = runner.invoke(app, ["runs", "list", "--db", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 2 and "no tracking database" in missing.output
    assert cli("show", "zzz").exit_code == 2
    assert "--since: 'yesterday'" in cli("list", "--since", "yesterday").output


def test_component_run_uses_the_environment(tmp_path):
    env = {
        "EXPFORGE_TRACKING": "local",
        "EXPFORGE_TRACKING_DB": str(tmp_path / "t" / "runs.sqlite"),
        "EXPFORGE_RUN_ID": "pipe-1",
        "EXPFORGE_PIPELINE": "mnist-synthetic",
        "EXPFORGE_TASK_KEY": "train.0",
        "EXPFORGE_IMAGE_DIGEST": "sha256:abc",
    }
    with component_run("train", {"lr": 0.1}, datasets=["mnist@1"], env=env) as run:
        assert run.run_id == "pipe-1/train.0"
        run.log_metrics({"val_loss": 0.5}, step=0)
        run.log_metrics({"accuracy": 0.9})
    no_task_key = {**env, "EXPFORGE_TASK_KEY": ""}
    with pytest.raises(ValueError, match="boom"), component_run("evaluate", env=no_task_key):
        raise ValueError("boom")
    with open_tracker(TrackingConfig.from_env(env)) as tracker:
        trained, evaluated = tracker.get_run("pipe-1/train.0"), tracker.get_run("pipe-1/evaluate")
    assert trained.state == "SUCCEEDED" and trained.experiment == "mnist-synthetic"
    assert trained.parent_run_id == "pipe-1" and trained.image_digests == {"train": "sha256:abc"}
    assert trained.metrics == {"accuracy": 0.9} and trained.series == {"val_loss": [(0, 0.5)]}
    assert trained.python.startswith("CPython") and trained.pip_freeze and trained.device["cpu_count"]
    assert evaluated.state == "FAILED"


def test_backend_selection(tmp_path):
    assert isinstance(open_tracker(TrackingConfig.from_env({})), NullTracker)  # nothing configured: off
    with component_run("x", env={}) as run:  # off costs nothing and stores nothing
        run.log_metrics({"a": 1.0})
        assert not run.enabled
    local = open_tracker(TrackingConfig.from_env({"EXPFORGE_TRACKING_DB": str(tmp_path / "a.sqlite")}))
    assert local.backend == "local"
    local.close()
    with pytest.raises(ExpforgeError, match=r"^EXPFORGE_TRACKING: unknown tracking backend 'mlflow'; expected one of"):
        TrackingConfig.from_env({"EXPFORGE_TRACKING": "mlflow"})
    with pytest.raises(ExpforgeError, match="EXPFORGE_TRACKING_DB"):
        open_tracker(TrackingConfig.from_env({"EXPFORGE_TRACKING": "local"}))
    with pytest.raises(ExpforgeError, match="EXPFORGE_GCP_PROJECT"):
        open_tracker(TrackingConfig.from_env({"EXPFORGE_TRACKING": "gcp", "EXPFORGE_TRACKING_SPOOL": str(tmp_path)}))


def test_provenance_of_a_git_checkout(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    (repo / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    clean = git_state(repo)
    assert clean.commit and len(clean.commit) == 40 and clean.branch == "main" and clean.dirty is False
    (repo / "a.txt").write_text("two\n")
    dirty = git_state(repo)
    assert dirty.dirty is True and "+two" in (dirty.diff or "")
    image = git_state(Path("/"), env={"EXPFORGE_GIT_COMMIT": "deadbeef", "EXPFORGE_GIT_DIRTY": "true"})
    assert (image.commit, image.dirty) == ("deadbeef", True)
    assert any(line.startswith("expforge==") for line in pip_freeze())
    assert capture(repo).command[0] == sys.executable
