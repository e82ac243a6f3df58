"""``expforge runs list|leaderboard|compare`` read well: 120 columns with long ids and paths, short ids that
work as arguments, ``--json`` with everything."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from expforge.cli import app
from expforge.tracking.base import RunStart
from expforge.tracking.local import LocalTracker
from expforge.tracking.queries import fit_table, resolve_run_id, short_run_id

runner = CliRunner()
PIPELINE_RUN = "mnist-synthetic-with-a-rather-long-name-20261201-090101-b50ec0"
DATASET = "/home/someone/projects/experiments/runs/" + "x" * 150 + "/bootstrap-mnist/dataset"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "runs.sqlite"
    with LocalTracker(path) as tracker:
        tracker.start_run(RunStart(PIPELINE_RUN, pipeline="mnist-synthetic", step="pipeline", params={"epochs": 3}))
        tracker.log_metrics(PIPELINE_RUN, {"accuracy": 0.91234, "macro_f1": 0.9})
        tracker.end_run(PIPELINE_RUN)
        for i, task in enumerate(["evaluate-on-real-test-with-a-long-task-name", "train-torch"]):
            run_id = f"{PIPELINE_RUN}/{task}"
            start = RunStart(run_id, pipeline="mnist-synthetic", step=task, parent_run_id=PIPELINE_RUN)
            start.datasets = [DATASET]
            start.note = "a note that goes on and on " * 6
            start.params = {"epochs": 3 + i}
            tracker.start_run(start)
            tracker.log_metrics(run_id, {"val_accuracy": 0.5 + i / 10, "accuracy": 0.8 + i / 10})
            tracker.set_tags(run_id, {"stage": "candidate", "owner": "someone-with-a-long-name"})
            tracker.end_run(run_id, "SUCCEEDED" if i else "FAILED")
    return path


def cli(db, *args: str):
    result = runner.invoke(app, ["runs", *args, "--db", str(db)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_tables_fit_120_columns_and_show_short_ids(db) -> None:
    for args in (("list",), ("leaderboard", "--metric", "accuracy"), ("compare", "b50ec0", "b50ec0/train-torch")):
        text = cli(db, *args)
        widths = [len(line) for line in text.splitlines()]
        assert max(widths) <= 120, (args, max(widths))
        assert DATASET not in text and PIPELINE_RUN not in text
    listed = cli(db, "list")
    assert "b50ec0/train-torch" in listed.splitlines()[2] + listed.splitlines()[3]
    assert "0.91234" in listed and "FAILED" in listed
    header = listed.splitlines()[0].split()
    assert header[:4] == ["run", "state", "started", "pipeline/step"] and "accuracy" in header


def test_short_ids_work_as_arguments_and_json_keeps_everything(db) -> None:
    shown = json.loads(cli(db, "show", "b50ec0/train-torch"))
    assert shown["run_id"] == f"{PIPELINE_RUN}/train-torch"
    tagged = json.loads(cli(db, "tag", "b50ec0", "--note", "short ids work"))
    assert tagged["run_id"] == PIPELINE_RUN and tagged["note"] == "short ids work"
    rows = json.loads(cli(db, "list", "--json"))
    assert {r["run_id"] for r in rows} == {
        PIPELINE_RUN,
        f"{PIPELINE_RUN}/train-torch",
        f"{PIPELINE_RUN}/{'evaluate-on-real-test-with-a-long-task-name'}",
    }
    assert any(DATASET in r["datasets"] for r in rows)
    board = json.loads(cli(db, "leaderboard", "--metric", "accuracy", "--json"))
    assert [r["run_id"] for r in board][0] == PIPELINE_RUN and board[0]["accuracy"] == 0.91234


def test_list_filters_by_state_param_pipeline_and_top_level(db) -> None:
    def ids(*args: str) -> set[str]:
        return {r["run_id"].removeprefix(PIPELINE_RUN) for r in json.loads(cli(db, "list", "--json", *args))}

    assert ids("--top-level") == {""}
    assert ids("--state", "FAILED") == {"/evaluate-on-real-test-with-a-long-task-name"}
    assert ids("--param", "epochs=4") == {"/train-torch"}
    assert ids("--pipeline", "mnist-synthetic", "--sort", "val_accuracy", "--limit", "1") == {"/train-torch"}
    bad = runner.invoke(app, ["runs", "list", "--state", "DONE", "--db", str(db)])
    assert bad.exit_code == 2 and "--state: 'DONE' is not one of" in bad.output
    bad = runner.invoke(app, ["runs", "list", "--param", "epochs", "--db", str(db)])
    assert bad.exit_code == 2 and "--param: 'epochs' is not KEY=VALUE" in bad.output


def test_short_id_helpers() -> None:
    assert short_run_id(f"{PIPELINE_RUN}/train") == "b50ec0/train"
    assert short_run_id("a-hand-named-run") == "a-hand-named-run"
    ids = [PIPELINE_RUN, f"{PIPELINE_RUN}/train", "other-20261201-090101-aaaaaa/train"]
    assert resolve_run_id(ids, "b50ec0/train") == f"{PIPELINE_RUN}/train"
    assert resolve_run_id(ids, "unknown") == "unknown"
    with pytest.raises(Exception, match="ambiguous"):
        resolve_run_id(ids, "train")
    table = fit_table(["a", "note"], [["x" * 10, "y" * 300]], flexible=["note"], width=40)
    assert max(len(line) for line in table.splitlines()) <= 40 and "…" in table
