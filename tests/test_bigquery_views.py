"""``expforge bigquery setup`` and the six dashboard views, on bqemulator with rows written by the real tracker.

bqemulator (DuckDB) runs the DDL but accepts ``PARTITION BY``/``CLUSTER BY`` without storing them and keeps
``JSON`` columns as ``STRING``; the partitioning and clustering are therefore checked on the DDL text, parsed
with sqlglot's BigQuery grammar and against the documented rules (day partitioning on a TIMESTAMP column, at
most four top-level clustering columns).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expforge.bigquery.ddl import LAYOUTS, VIEWS, statements
from expforge.bigquery.setup import run_setup
from expforge.cli import app
from expforge.errors import ExpforgeError
from expforge.tracking.base import RunStart
from expforge.tracking.bqrows import table_schema

PROJECT = "expforge-local"

# --- the DDL text ----------------------------------------------------------------------------------------------


def test_ddl_is_valid_bigquery_with_day_partitioning_and_clustering() -> None:
    sqlglot = pytest.importorskip("sqlglot", reason="sqlglot comes with bqemulator (expforge[standins])")
    from sqlglot import exp

    todo = statements("my-project", "dash_1", "EU")
    assert [s.kind for s in todo] == ["schema", "table", "table"] + ["view"] * len(VIEWS)
    assert [s.name for s in todo if s.kind == "view"] == list(VIEWS)
    for statement in todo:
        parsed = sqlglot.parse_one(statement.sql, read="bigquery")  # raises on a grammar error
        assert isinstance(parsed, exp.Create), statement.sql
    schema = todo[0].sql
    assert re.fullmatch(r"CREATE SCHEMA IF NOT EXISTS `my-project\.dash_1`\nOPTIONS \(location = \"EU\", .+\)", schema)
    for statement in todo[1:3]:
        layout = LAYOUTS[statement.name]
        columns = {entry["name"]: entry for entry in table_schema(statement.name)}
        assert columns[layout.partition_by]["type"] == "TIMESTAMP"
        assert 1 <= len(layout.cluster_by) <= 4 and set(layout.cluster_by) <= set(columns)
        assert all(columns[c]["mode"] != "REPEATED" and columns[c]["type"] != "JSON" for c in layout.cluster_by)
        assert statement.sql.startswith(f"CREATE TABLE IF NOT EXISTS `my-project.dash_1.{statement.name}` (\n")
        assert f"\nPARTITION BY DATE({layout.partition_by})\nCLUSTER BY {', '.join(layout.cluster_by)}\n" in (
            statement.sql
        )
        tree = sqlglot.parse_one(statement.sql, read="bigquery")
        partition = tree.find(exp.PartitionedByProperty)
        assert partition is not None and partition.this.sql("bigquery") == f"DATE({layout.partition_by})"
        cluster = tree.find(exp.ClusterProperty)
        assert cluster is not None and [e.sql("bigquery") for e in cluster.expressions] == list(layout.cluster_by)
        body = statement.sql.split("(\n", 1)[1].rsplit("\n)\n", 1)[0]
        for line in body.split(",\n"):
            name, kind = line.split()[:2]
            assert re.fullmatch(r"(STRING|INT64|FLOAT64|BOOL|TIMESTAMP|JSON|ARRAY<(STRING|INT64)>)", kind), line
            required = columns[name]["mode"] == "REQUIRED"
            assert (" NOT NULL" in line) == required, line
    for statement in todo[3:]:
        assert statement.sql.startswith(f"CREATE OR REPLACE VIEW `my-project.dash_1.{statement.name}`\nOPTIONS (")
        assert "{" not in statement.sql.split("\nAS\n", 1)[1]  # every placeholder filled


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", "p1-project", "--dataset", "my-data"], "--dataset: 'my-data' is not a BigQuery dataset name"),
        (["--project", "p1-project"], "--dataset: required"),
        (["--project", "Bad_Proj", "--dataset", "d"], "--project: 'Bad_Proj' is not a project ID"),
        (["--project", "p1-project", "--dataset", "d", "--location", "mars"], "--location: 'mars'"),
    ],
)
def test_bad_names_are_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["bigquery", "setup", *args, "--dry-run"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expforge: error: ") and message in lines[0], lines


def test_dry_run_prints_the_ddl_script() -> None:
    result = CliRunner().invoke(app, ["bigquery", "setup", "--project", "my-project", "--dataset", "d", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count(";\n") == 3 + len(VIEWS)
    assert "PARTITION BY DATE(updated_at)" in result.stdout and "CREATE OR REPLACE VIEW `my-project.d.hpo_trials`" in (
        result.stdout
    )


# --- on bqemulator ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bigquery() -> Iterator[object]:
    try:
        import bqemulator  # noqa: F401
        import google.cloud.bigquery  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"{exc.name} is not installed (pip install 'expforge[gcp,standins]')")
    from expforge.standins.bigquery import start_bigquery_emulator

    with start_bigquery_emulator(project=PROJECT) as emulator:
        yield emulator


def _rows(emulator, sql: str) -> list[dict]:
    client = emulator.client()
    try:
        return [dict(row) for row in client.query(sql, retry=None, timeout=60).result(retry=None, timeout=60)]
    finally:
        client.close()


def test_setup_creates_everything_once_and_is_idempotent(bigquery) -> None:
    first = run_setup(PROJECT, "setup_twice", client=bigquery.client())
    assert [(s.kind, s.name, outcome) for s, outcome in first.done] == [
        ("schema", "setup_twice", "CREATE"),
        ("table", "runs", "CREATE"),
        ("table", "metric_points", "CREATE"),
        *[("view", view, "CREATE") for view in VIEWS],
    ]
    second = CliRunner().invoke(
        app,
        ["bigquery", "setup", "--project", PROJECT, "--dataset", "setup_twice", "--api-endpoint", bigquery.endpoint],
    )
    assert second.exit_code == 0, second.output
    assert second.stdout.splitlines()[:3] == [
        "schema setup_twice: exists, kept",
        "table runs: exists, kept",
        "table metric_points: exists, kept",
    ]
    assert all(line.endswith(": replaced") for line in second.stdout.splitlines()[3:])
    client = bigquery.client()
    kinds = {t.table_id: t.table_type for t in client.list_tables(f"{PROJECT}.setup_twice", retry=None)}
    client.close()
    assert kinds == {"runs": "TABLE", "metric_points": "TABLE", **dict.fromkeys(VIEWS, "VIEW")}


def test_a_failing_statement_reports_what_was_created(bigquery, monkeypatch) -> None:
    import expforge.bigquery.ddl as ddl

    original = ddl.view_body

    def broken(view: str, project: str, dataset: str) -> tuple[str, str]:
        description, query = original(view, project, dataset)
        return description, query.replace("FROM", "FROM nowhere_at_all,", 1) if view == "leaderboard" else query

    monkeypatch.setattr(ddl, "view_body", broken)
    with pytest.raises(ExpforgeError) as failure:
        run_setup(PROJECT, "half_way", client=bigquery.client())
    text = str(failure.value)
    assert text.startswith("bigquery setup: view leaderboard failed (")
    assert text.endswith(
        "created before the failure: schema half_way, table runs, table metric_points, view runs_latest, "
        "view metrics_final, view metric_series"
    )


def _settings(emulator, dataset: str, spool: Path):
    from expforge.tracking.gcp import GcpSettings

    return GcpSettings(
        project=PROJECT,
        spool_dir=spool,
        dataset=dataset,
        bigquery_endpoint=emulator.endpoint,
        vertex=False,
        flush_interval_s=3600,
        timeout_s=30,
        flush_attempts=1,
    )


def _tracker(emulator, dataset: str, spool: Path):
    from expforge.tracking.gcp import GcpTracker

    tracker = GcpTracker(_settings(emulator, dataset, spool))
    del tracker.sinks["firestore"]  # BigQuery is what the views read
    return tracker


def test_the_tracker_creates_nothing_and_names_setup(bigquery, tmp_path) -> None:
    bigquery.create_datasets(["no_tables"], tables=False)
    tracker = _tracker(bigquery, "no_tables", tmp_path / "spool")
    tracker.start_run(RunStart("r1", experiment="e"))
    with pytest.raises(ExpforgeError) as failure:
        tracker.flush()
    text = str(failure.value)
    assert f"`expforge bigquery setup --project {PROJECT} --dataset no_tables`" in text and "\n" not in text
    client = bigquery.client()
    assert list(client.list_tables(f"{PROJECT}.no_tables", retry=None)) == []  # still nothing created
    client.close()
    tracker.spool.close()


T0 = "2026-03-01T10:00:00.000000Z"


def _at(seconds: int) -> str:
    return f"2026-03-01T10:{seconds // 60:02d}:{seconds % 60:02d}.000000Z"


@pytest.fixture(scope="module")
def history(bigquery, tmp_path_factory) -> str:
    """A pipeline run with a retried task, a trainer with a series, two Hyperband trials and a failed run —
    written through the real GcpTracker (two trackers: a retry is a new process)."""
    dataset = "views"
    bigquery.create_datasets([dataset])
    spool = tmp_path_factory.mktemp("spool")
    tracker = _tracker(bigquery, dataset, spool / "a")
    tracker.start_run(RunStart("p1", experiment="digits", pipeline="mnist", step="pipeline", started_at=_at(0)))
    tracker.start_run(
        RunStart("p1/train", experiment="digits", pipeline="mnist", step="train", parent_run_id="p1", started_at=_at(1))
    )
    for epoch, loss in enumerate([0.9, 0.5, 0.3]):
        tracker.log_metrics("p1/train", {"loss": loss, "acc": 0.5 + epoch / 10}, step=epoch)
    tracker.log_metrics("p1/train", {"loss": 0.25}, step=2)  # the same step again: the newest wins
    tracker.log_metrics("p1/train", {"acc": 0.8})  # a final value beats the last step
    tracker.end_run("p1/train", "SUCCEEDED")
    tracker.start_run(
        RunStart(
            "p1/eval", experiment="digits", pipeline="mnist", step="evaluate", parent_run_id="p1", started_at=_at(2)
        )
    )
    tracker.end_run("p1/eval", "FAILED")  # first attempt
    for trial, (lr, width, acc) in {"b0-c00": (0.001, 8, 0.91), "b0-c01": (0.01, 32, math.nan)}.items():
        run_id = f"p1/hyperband-trial-{trial}"
        params = {"trial": {"trial_id": trial, "config": {"lr": lr, "width": width, "optimizer": "sgd"}}}
        params |= {"bracket": 0, "rung": 1, "epochs": 3}
        tracker.start_run(
            RunStart(
                run_id,
                experiment="digits",
                pipeline="mnist",
                step="hyperband-trial",
                parent_run_id="p1",
                started_at=_at(3),
                params=params,
            )
        )
        tracker.log_metrics(run_id, {"val_accuracy": acc})
        tracker.end_run(run_id, "SUCCEEDED")
    tracker.start_run(RunStart("solo", experiment="other", started_at=_at(4)))
    tracker.log_metrics("solo", {"acc": 0.99})
    tracker.end_run("solo", "FAILED")
    tracker.close()
    retry = _tracker(bigquery, dataset, spool / "b")  # the evaluate task's second attempt succeeds
    retry.start_run(
        RunStart(
            "p1/eval", experiment="digits", pipeline="mnist", step="evaluate", parent_run_id="p1", started_at=_at(9)
        )
    )
    retry.log_metrics("p1/eval", {"acc": 0.7})
    retry.set_tags("p1/eval", {"cache_hit": "true"})
    retry.end_run("p1/eval", "SUCCEEDED")
    retry.close()
    tracker = _tracker(bigquery, dataset, spool / "c")
    tracker.start_run(RunStart("p1", experiment="digits", pipeline="mnist", step="pipeline", started_at=_at(0)))
    tracker.end_run("p1", "SUCCEEDED")
    tracker.close()
    return dataset


def _view(emulator, dataset: str, view: str, columns: str, order: str) -> list[tuple]:
    rows = _rows(emulator, f"SELECT {columns} FROM `{PROJECT}.{dataset}.{view}` ORDER BY {order}")
    return [tuple(row.values()) for row in rows]


def test_runs_latest_is_the_newest_snapshot_per_run(bigquery, history) -> None:
    rows = _view(bigquery, history, "runs_latest", "run_id, task, state, parent_run_id", "run_id")
    assert rows == [
        ("p1", "pipeline", "SUCCEEDED", None),
        ("p1/eval", "evaluate", "SUCCEEDED", "p1"),
        ("p1/hyperband-trial-b0-c00", "hyperband-trial", "SUCCEEDED", "p1"),
        ("p1/hyperband-trial-b0-c01", "hyperband-trial", "SUCCEEDED", "p1"),
        ("p1/train", "train", "SUCCEEDED", "p1"),
        ("solo", "", "FAILED", None),
    ]


def test_metrics_final_is_the_last_value_per_run_and_metric(bigquery, history) -> None:
    rows = _view(bigquery, history, "metrics_final", "run_id, metric, value, last_step", "run_id, metric")
    nan_row = ("p1/hyperband-trial-b0-c01", "val_accuracy")
    assert [r for r in rows if r[:2] != nan_row] == [
        ("p1/eval", "acc", 0.7, None),
        ("p1/hyperband-trial-b0-c00", "val_accuracy", 0.91, None),
        ("p1/train", "acc", 0.8, None),
        ("p1/train", "loss", 0.25, 2),
        ("solo", "acc", 0.99, None),
    ]
    (nan,) = [r for r in rows if r[:2] == nan_row]
    assert math.isnan(nan[2])


def test_metric_series_has_one_point_per_step(bigquery, history) -> None:
    rows = _view(bigquery, history, "metric_series", "run_id, metric, step, value", "metric, step")
    assert rows == [
        ("p1/train", "acc", 0, 0.5),
        ("p1/train", "acc", 1, 0.6),
        ("p1/train", "acc", 2, 0.7),
        ("p1/train", "loss", 0, 0.9),
        ("p1/train", "loss", 1, 0.5),
        ("p1/train", "loss", 2, 0.25),
    ]


def test_leaderboard_ranks_succeeded_runs_per_metric(bigquery, history) -> None:
    rows = _view(bigquery, history, "leaderboard", "metric, run_id, rank_desc, rank_asc", "metric, rank_desc")
    assert rows == [
        ("acc", "p1/train", 1, 2),  # "solo" failed: not on the board
        ("acc", "p1/eval", 2, 1),
        ("loss", "p1/train", 1, 1),
        ("val_accuracy", "p1/hyperband-trial-b0-c00", 1, 1),
        ("val_accuracy", "p1/hyperband-trial-b0-c01", 2, 2),  # NaN ranks last both ways
    ]


def test_hpo_trials_flatten_the_config(bigquery, history) -> None:
    columns = "trial_id, bracket, rung, epochs, lr, width, optimizer, dropout, val_accuracy"
    rows = _view(bigquery, history, "hpo_trials", columns, "trial_id")
    assert rows[0] == ("b0-c00", 0, 1, 3, 0.001, 8, "sgd", None, 0.91)
    assert rows[1] == ("b0-c01", 0, 1, 3, 0.01, 32, "sgd", None, None)  # NaN is null in the metrics JSON
    assert len(rows) == 2


def test_pipeline_tasks_state_duration_cache_and_attempts(bigquery, history) -> None:
    rows = _rows(bigquery, f"SELECT * FROM `{PROJECT}.{history}.pipeline_tasks` ORDER BY run_id")
    assert [(r["task"], r["state"], r["attempts"], r["cache_hit"], r["pipeline_run_id"]) for r in rows] == [
        ("evaluate", "SUCCEEDED", 2, True, "p1"),
        ("hyperband-trial", "SUCCEEDED", 1, False, "p1"),
        ("hyperband-trial", "SUCCEEDED", 1, False, "p1"),
        ("train", "SUCCEEDED", 1, False, "p1"),
    ]
    for row in rows:
        assert row["duration_s"] == pytest.approx((row["ended_at"] - row["started_at"]).total_seconds())
    assert rows[0]["started_at"].isoformat().startswith("2026-03-01T10:00:09")  # the last attempt's start


@pytest.mark.e2e
def test_views_after_a_real_tracked_pipeline_run(gcp_env, gcp_stack, tmp_path: Path) -> None:
    """mnist-baseline run by the local runner with `gcp` tracking against the stand-ins: every view reads the
    rows the tasks wrote (the dataset was made by `expforge bigquery setup` through the stand-in fixture)."""
    from expforge.local_runner.api import run_pipeline
    from expforge.pipelines.compile import compile_pipeline

    small = {"mnist_source": "bundled", "mnist_limit": 1000, "font_count": 500, "epochs": 2}
    spec = compile_pipeline("mnist-baseline", tmp_path / "mnist.yaml")
    result = run_pipeline(spec, small, backend="subprocess", root=tmp_path / "runs", tracking="gcp", task_env=gcp_env)
    assert result.state == "SUCCEEDED"
    dataset, emulator = gcp_env["EXPFORGE_BQ_DATASET"], gcp_stack.bigquery
    tasks = {f"{result.run_id}/{key}" for key in result.tasks}

    latest = _rows(emulator, f"SELECT run_id, state, task FROM `{gcp_stack.project}.{dataset}.runs_latest`")
    assert {r["run_id"] for r in latest} == {result.run_id, *tasks}
    assert all(r["state"] == "SUCCEEDED" for r in latest)
    board = _rows(
        emulator,
        f"SELECT run_id, value FROM `{gcp_stack.project}.{dataset}.leaderboard` WHERE metric = 'accuracy' "
        "ORDER BY rank_desc",
    )
    accuracy = result.pipeline_outputs["accuracy"]
    assert {r["run_id"] for r in board} >= {result.run_id, f"{result.run_id}/evaluate"}
    assert all(r["value"] == pytest.approx(accuracy) for r in board if r["run_id"] == result.run_id)
    pipeline_tasks = _rows(
        emulator, f"SELECT run_id, state, attempts, cache_hit FROM `{gcp_stack.project}.{dataset}.pipeline_tasks`"
    )
    assert {r["run_id"]: (r["state"], r["attempts"], r["cache_hit"]) for r in pipeline_tasks} == {
        run_id: ("SUCCEEDED", 1, False) for run_id in tasks
    }
    final = _rows(emulator, f"SELECT run_id, metric FROM `{gcp_stack.project}.{dataset}.metrics_final`")
    assert (f"{result.run_id}/evaluate", "accuracy") in {(r["run_id"], r["metric"]) for r in final}
    assert _rows(emulator, f"SELECT * FROM `{gcp_stack.project}.{dataset}.hpo_trials`") == []  # no HPO here
