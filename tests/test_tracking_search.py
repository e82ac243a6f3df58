"""The local backend's SQL run search answers exactly what the Python search over every run answers.

A store with the awkward cases on purpose (NaN and infinite metrics, series-only metrics, NaN in params, bool
and float-integer params, list params, keys with dots and quotes, non-ASCII notes, a start time in another
format, runs without a parent in both spellings), then many queries compared run id by run id.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import sqlite3

import pytest

from expforge.tracking.base import MetricCondition, RunFilter, RunStart
from expforge.tracking.local import LocalTracker
from expforge.tracking.queries import RunQuery, search, search_tracker


def _populate(tracker: LocalTracker) -> None:
    rng = random.Random(7)
    base = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
    for i in range(60):
        started = (base + dt.timedelta(minutes=rng.choice([i, i, 3]))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if i == 5:
            started = "2026-11-30T08:30:00+00:00"  # another ISO form: parsed, not compared as text
        parent = None if i % 3 == 0 else f"run-{i - i % 3:02d}"
        if i == 9:
            parent = ""
        params = {
            "epochs": rng.choice([3, 5, 5.0, "5"]),
            "lr": rng.choice([0.1, 0.01, 1e-3, 0.30000000000000004]),
            "flag": rng.choice([True, False, None]),
            "layers": rng.choice([[64, 32], [64], {"a": 1}]),
            "dotted.key": rng.choice(["x", "y"]),
            'quo"te': rng.choice(["q", "r"]),
        }
        if i % 7 == 0:
            params["nan"] = float("nan")  # SQLite's JSON functions refuse NaN: answered in Python
        if i % 11 == 0:
            del params["epochs"]
        tracker.start_run(
            RunStart(
                f"run-{i:02d}",
                experiment=rng.choice(["exp-a", "exp-b"]),
                pipeline=rng.choice(["p1", "p2", ""]),
                parent_run_id=parent,
                started_at=started,
                datasets=rng.choice([["mnist@1"], ["fonts@2", "mnist@3"], []]),
                params=params,
                tags=rng.choice([{}, {"team": "vision"}, {"team": "text", "x.y": "1"}]),
                note=rng.choice(["", "Straße baseline", "STRASSE", "good run", "GOOD"]),
            )
        )
        metrics: dict[str, float] = {}
        if i % 4:
            metrics["accuracy"] = rng.choice([rng.random(), 0.5, float("nan"), float("inf"), 1])
        if i % 5 == 0:
            metrics["weird.key"] = rng.random()
        if metrics:
            tracker.log_metrics(f"run-{i:02d}", metrics)
        if i % 2 or i % 8 == 0:
            for epoch in range(1, rng.randint(1, 4)):
                value = rng.choice([rng.random(), float("nan")])
                tracker.log_metrics(f"run-{i:02d}", {"val_accuracy": value, "accuracy": rng.random()}, step=epoch)
        if i % 6 != 1:
            tracker.end_run(f"run-{i:02d}", rng.choice(["SUCCEEDED", "FAILED", "SUCCEEDED"]))
    for value in (0.99, 0.01):  # a re-logged point replaces the first (an UPSERT under the triggers)
        tracker.log_metrics("run-58", {"val_accuracy": value, "late": value}, step=9)
    tracker.log_metrics("run-58", {"late": 0.5})  # a final value now hides the series


QUERIES = [
    RunQuery(),
    RunQuery(limit=None),
    RunQuery(limit=7, offset=3),
    RunQuery(offset=100),
    RunQuery(top_level=True),
    RunQuery(states=("SUCCEEDED", "RUNNING")),
    RunQuery(params=(("epochs", "5"),)),
    RunQuery(params=(("flag", "true"),)),
    RunQuery(params=(("flag", "None"),)),
    RunQuery(params=(("lr", "0.30000000000000004"),)),
    RunQuery(params=(("lr", "0.001"),)),
    RunQuery(params=(("layers", "[64, 32]"),)),
    RunQuery(params=(("layers", "{'a': 1}"),)),
    RunQuery(params=(("dotted.key", "x"), ('quo"te', "q"))),
    RunQuery(params=(("nan", "nan"),)),
    RunQuery(metric="accuracy", metric_min=0.5),
    RunQuery(metric="accuracy", metric_max=0.5, limit=None),
    RunQuery(metric="val_accuracy", metric_min=0.2, metric_max=0.9),
    RunQuery(metric="weird.key", metric_min=0.0),
    RunQuery(run_filter=RunFilter(dataset="mnist")),
    RunQuery(run_filter=RunFilter(dataset="fonts@2")),
    RunQuery(run_filter=RunFilter(note_contains="strasse")),
    RunQuery(run_filter=RunFilter(note_contains="straße")),
    RunQuery(run_filter=RunFilter(note_contains="good")),
    RunQuery(run_filter=RunFilter(experiment="exp-a", pipeline="p1")),
    RunQuery(run_filter=RunFilter(tags=(("team", "vision"),))),
    RunQuery(run_filter=RunFilter(tags=(("x.y", "1"), ("team", "text")))),
    RunQuery(run_filter=RunFilter(since=dt.datetime(2026, 11, 30, 8, 20, tzinfo=dt.UTC))),
    RunQuery(
        run_filter=RunFilter(
            since=dt.datetime(2026, 11, 30, 8, 10, tzinfo=dt.UTC), until=dt.datetime(2026, 11, 30, 8, 30, tzinfo=dt.UTC)
        )
    ),
    RunQuery(run_filter=RunFilter(metrics=(MetricCondition.parse("accuracy>=0.5"),))),
    RunQuery(run_filter=RunFilter(metrics=(MetricCondition.parse("accuracy!=0.5"),))),
    RunQuery(top_level=True, states=("SUCCEEDED",), sort="accuracy"),
]
SORTS = ["started_at", "ended_at", "duration", "state", "pipeline", "experiment", "run_id", "accuracy"]
SORTS += ["val_accuracy", "weird.key", "late", "absent"]


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    with LocalTracker(tmp_path_factory.mktemp("search") / "runs.sqlite") as opened:
        _populate(opened)
        yield opened


def _same(tracker: LocalTracker, query: RunQuery) -> None:
    expected = search(tracker.list_runs(), query)
    got = tracker.search(query)
    assert (got.total, got.offset) == (expected.total, expected.offset), query
    assert [r.run_id for r in got.runs] == [r.run_id for r in expected.runs], query
    assert json.dumps([r.to_dict() for r in got.runs]) == json.dumps([r.to_dict() for r in expected.runs])


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: repr(q)[:80])
def test_filters_match_the_python_search(tracker, query):
    _same(tracker, query)


@pytest.mark.parametrize(("sort", "descending"), list(itertools.product(SORTS, [True, False])))
def test_every_sort_matches_the_python_search(tracker, sort, descending):
    _same(tracker, RunQuery(sort=sort, descending=descending, limit=None))
    _same(tracker, RunQuery(sort=sort, descending=descending, limit=5, offset=20, top_level=True))


def test_the_store_holds_awkward_cases(tracker):
    """The comparisons above would prove little if the odd rows were not there."""
    runs = {r.run_id: r for r in tracker.list_runs()}
    assert any(r.metrics.get("accuracy") != r.metrics.get("accuracy") for r in runs.values())  # NaN
    assert any(r.metrics.get("accuracy") == float("inf") for r in runs.values())
    assert any("accuracy" not in r.metrics and r.series.get("accuracy") for r in runs.values())
    assert runs["run-05"].started_at == "2026-11-30T08:30:00+00:00"
    assert search(list(runs.values()), RunQuery(params=(("nan", "nan"),), limit=None)).total >= 5
    assert search(list(runs.values()), RunQuery(run_filter=RunFilter(note_contains="strasse"))).total >= 1


def test_search_tracker_uses_sql_for_the_local_backend(tracker):
    query = RunQuery(metric="accuracy", metric_min=0.1, sort="accuracy")
    assert search_tracker(tracker, query) == tracker.search(query)


def test_an_old_database_gets_the_indexes_and_the_metric_table(tmp_path):
    path = tmp_path / "runs.sqlite"
    with LocalTracker(path) as tracker:
        _populate(tracker)
    with sqlite3.connect(path) as db:  # as a database written before the search pushdown looked
        for kind, name in db.execute("SELECT type, name FROM sqlite_master WHERE name LIKE 'run%'").fetchall():
            if name.startswith(("runs_listing", "runs_tree", "run_metrics")) and kind in ("index", "trigger"):
                db.execute(f"DROP {kind.upper()} {name}")
        db.execute("DROP TABLE run_metrics")
    with LocalTracker(path) as tracker:
        for query in [RunQuery(metric="accuracy", metric_min=0.3), RunQuery(sort="val_accuracy", limit=None)]:
            _same(tracker, query)
        tracker.log_metrics("run-03", {"accuracy": 0.25})  # the triggers are back too
        _same(tracker, RunQuery(metric="accuracy", metric_max=0.3, limit=None))
    with sqlite3.connect(path) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"runs_listing", "runs_tree", "run_metrics", "run_metrics_value", "run_metrics_final"} <= names
