"""The ``gcp`` tracking backend against the real client libraries and local stand-ins (Firestore emulator,
bqemulator, the Vertex AI stand-in): delivery, schema validation, the spool, and outages mid-run."""

from __future__ import annotations

import http.server
import json
import math
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expforge.cli import app
from expforge.errors import ExpforgeError
from expforge.tracking import RunFilter, RunStart, TrackingConfig, component_run, open_tracker
from expforge.tracking.base import RunRecord
from expforge.tracking.bqrows import point_row, run_row, table_schema, validate_row
from expforge.tracking.gcp import GcpSettings, GcpTracker, firestore_document_id, resend_spool, vertex_name
from expforge.tracking.spool import Spool, read_spool, spool_files

# --- no stand-in needed --------------------------------------------------------------------------------------


def test_rows_match_the_schemas_in_the_repo():
    record = RunRecord.from_start(RunStart("p/t", params={"lr": 0.1}, datasets=["d"], command=["x"]))
    record.metrics = {"loss": math.nan, "acc": 0.5}
    row = run_row(record)
    assert set(row) == {field["name"] for field in table_schema("runs")}
    validate_row("runs", row)
    assert json.loads(row["metrics"]) == {"acc": 0.5, "loss": None}
    point = point_row("p/t", "e", "loss", None, math.nan, record.started_at)
    assert set(point) == {field["name"] for field in table_schema("metric_points")} and point["value"] == "NaN"
    validate_row("metric_points", point)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"value": "high"}, "field 'value' (FLOAT) expects a number, got 'high'"),
        ({"value": True}, "field 'value' (FLOAT) expects a finite number"),
        ({"step": 1.5}, "field 'step' (INTEGER) expects an integer, got 1.5"),
        ({"key": None}, "required field 'key' is missing"),
        ({"logged_at": "yesterday"}, "field 'logged_at' (TIMESTAMP) expects an ISO-8601 timestamp"),
        ({"colour": "red"}, "field 'colour' is not in schemas/metric_points.json"),
    ],
)
def test_a_row_that_violates_the_schema_is_one_clear_error(change, message):
    row = {**point_row("r", "e", "loss", 1, 0.5, "2024-01-01T00:00:00Z"), **change}
    with pytest.raises(ExpforgeError) as failure:
        validate_row("metric_points", row)
    text = str(failure.value)
    assert text.startswith("BigQuery table metric_points, row 0: ") and message in text and "\n" not in text


def test_a_bad_row_fails_at_the_call_and_nothing_is_spooled(tmp_path):
    settings = GcpSettings(project="p", spool_dir=tmp_path, vertex=False, flush_interval_s=3600)
    tracker = GcpTracker(settings)
    with pytest.raises(ExpforgeError, match="field 'started_at' \\(TIMESTAMP\\) expects an ISO-8601"):
        tracker.start_run(RunStart("r", started_at="yesterday"))
    assert len(tracker.spool) == 0
    with pytest.raises(ExpforgeError, match="run 'r' was not started"):
        tracker.log_metrics("r", {"x": 1.0})
    tracker.spool.close()
    assert spool_files(tmp_path) == []


def test_spool_keeps_unacknowledged_rows_across_a_crash(tmp_path):
    spool = Spool.create(tmp_path)
    spool.add([{"sink": "bigquery", "n": i} for i in range(4)])
    spool.done([0, 2])
    assert Spool.adopt(spool.path) is None  # a live process holds it
    spool._handle.write('{"sink": "bigquery", "n": 9, "se')  # the process dies mid-line
    spool._handle.flush()
    spool._handle.close()  # (lock released as by the kernel at exit)
    adopted = Spool.adopt(spool.path)
    assert adopted is not None and [e["n"] for e in adopted.pending()] == [1, 3]
    adopted.done([1, 3])
    adopted.close()
    assert not spool.path.exists()


def test_a_dead_sink_is_not_retried_at_every_step_and_flush_fails_loudly(tmp_path):
    from expforge.standins.ports import free_port

    settings = GcpSettings(
        project="p",
        spool_dir=tmp_path,
        bigquery_endpoint=f"http://127.0.0.1:{free_port()}",
        firestore_emulator_host=f"127.0.0.1:{free_port()}",
        vertex=False,
        flush_interval_s=0,
        timeout_s=0.5,
        flush_attempts=2,
        retry_backoff_s=0.05,
    )
    tracker = GcpTracker(settings)
    tracker.start_run(RunStart("r"))  # the first send fails: the tracker backs off
    assert set(tracker.last_errors) == {"bigquery", "firestore"}
    started = time.monotonic()
    for step in range(50):
        tracker.log_metrics("r", {"loss": 1.0}, step=step)
    assert time.monotonic() - started < 1.0
    undelivered = r"^tracking: 102 rows could not be delivered after 2 attempts \(bigquery: "
    with pytest.raises(ExpforgeError, match=undelivered):
        tracker.close()
    assert len(read_spool(tracker.spool.path)) == 102


class _InsertErrorsHandler(http.server.BaseHTTPRequestHandler):
    """BigQuery's REST answers for dataset/table creation and an insertAll that refuses one row for good (the
    BigQuery stand-in answers every insert with success or a bare 500, so per-row errors need this)."""

    calls: list[int] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path.split("?")[0].endswith("/insertAll"):
            rows = body["rows"]
            self.calls.append(len(rows))
            errors = []
            for index, row in enumerate(rows):
                if row["json"].get("key") == "bad":
                    errors.append(
                        {"index": index, "errors": [{"reason": "invalid", "location": "key", "message": "no"}]}
                    )
                elif len(self.calls) == 1:  # first attempt: the good rows were not inserted because of the bad one
                    stopped = {"reason": "stopped", "location": "", "message": ""}
                    errors.append({"index": index, "errors": [stopped]})
            answer: dict = {
                "kind": "bigquery#tableDataInsertAllResponse",
                **({"insertErrors": errors} if errors else {}),
            }
        else:
            answer = {**body, "id": "x"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        """Quiet."""


def test_rows_the_server_refuses_are_kept_and_reported(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _InsertErrorsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = GcpSettings(
            project="p",
            spool_dir=tmp_path,
            bigquery_endpoint=f"http://127.0.0.1:{server.server_port}",
            vertex=False,
            flush_interval_s=3600,
            retry_backoff_s=0.01,
        )
        tracker = GcpTracker(settings)
        del tracker.sinks["firestore"]  # BigQuery's per-row errors only
        tracker._runs["r"] = RunRecord.from_start(RunStart("r"))  # (start_run would add a runs row too)
        tracker.log_metrics("r", {"good": 1.0, "bad": 2.0, "fine": 3.0}, step=0)
        with pytest.raises(ExpforgeError) as failure:
            tracker.flush()
        message = str(failure.value)
        assert message.startswith("BigQuery table metric_points, row 1: field key: no (1 row(s) refused by the server)")
        assert str(tracker.spool.rejected_path) in message
        assert _InsertErrorsHandler.calls == [3, 2]  # the two stopped rows were resent, the refused one was not
        assert len(tracker.spool) == 0
        (refused,) = [json.loads(line) for line in tracker.spool.rejected_path.read_text().splitlines()]
        assert refused["row"]["key"] == "bad" and "field key" in refused["reason"]
        tracker.close()  # reported once: nothing else pending
    finally:
        server.shutdown()


def test_resource_names():
    assert vertex_name("exp-1") == "exp-1"
    name = vertex_name("Pipe_2024/train.0")
    assert name.startswith("pipe-2024-train-0-") and name != vertex_name("pipe-2024/train-0")
    assert len(vertex_name("x" * 300, max_length=100)) == 100
    assert firestore_document_id("pipe/train.0") == "pipe%2Ftrain.0"


# --- against the stand-ins -----------------------------------------------------------------------------------


def test_component_run_reaches_vertex_firestore_and_bigquery(gcp_env, gcp_stack, monkeypatch):
    env = {**gcp_env, "EXPFORGE_RUN_ID": "pipe-9", "EXPFORGE_PIPELINE": "mnist"}
    with component_run("train", {"lr": 0.1, "layers": [2, 3]}, datasets=["mnist@1"], env=env) as run:
        for epoch in range(3):
            run.log_metrics({"val_loss": 1 / (epoch + 1), "val.acc": 0.5 + epoch / 10}, step=epoch)
        run.log_metrics({"accuracy": 0.91, "loss": math.nan})
        run.log_artifacts({"model": "gs://bucket/model"})
    assert spool_files(gcp_env["EXPFORGE_TRACKING_SPOOL"]) == []  # everything delivered, spool removed

    with open_tracker(TrackingConfig.from_env(env)) as tracker:
        record = tracker.get_run("pipe-9/train")  # from BigQuery
        document = tracker.sinks["firestore"].get("pipe-9/train")
    assert record.state == "SUCCEEDED" and record.params == {"lr": 0.1, "layers": [2, 3]}
    assert record.metrics["accuracy"] == 0.91 and math.isnan(record.metrics["loss"])
    assert record.series["val.acc"] == [(0, 0.5), (1, 0.6), (2, 0.7)] and len(record.series["val_loss"]) == 3
    assert record.artifacts == {"model": "gs://bucket/model"} and record.datasets == ["mnist@1"]
    assert record.pip_freeze and record.python

    assert document["state"] == "SUCCEEDED" and document["params"]["layers"] == [2, 3]
    assert document["series"]["val.acc"] == {"0": 0.5, "1": 0.6, "2": 0.7} and document["metrics"]["accuracy"] == 0.91
    assert document["artifacts"] == {"model": "gs://bucket/model"} and document["run_id"] == "pipe-9/train"

    from google.cloud import aiplatform

    experiment = vertex_name(env["EXPFORGE_EXPERIMENT"])
    vertex_run = aiplatform.ExperimentRun(vertex_name("pipe-9/train", 127 - len(experiment)), experiment=experiment)
    assert vertex_run.get_params() == {"lr": 0.1, "layers": "[2, 3]"}
    assert vertex_run.get_metrics()["accuracy"] == 0.91
    assert vertex_run.get_state() == "COMPLETE"
    writes = gcp_stack.vertex.requests_for("WriteTensorboardRunData")
    assert len(writes) >= 3 and not gcp_stack.vertex.unimplemented

    # `expforge runs` over the gcp backend reads BigQuery.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    listed = runner.invoke(app, ["runs", "list", "--backend", "gcp", "--metric", "accuracy>0.9", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [row["run_id"] for row in json.loads(listed.stdout)] == ["pipe-9/train"]
    tag_args = ["runs", "tag", "pipe-9/train", "--backend", "gcp", "--tag", "best=yes", "--note", "n1"]
    tagged = runner.invoke(app, tag_args)
    assert tagged.exit_code == 0, tagged.output
    with open_tracker(TrackingConfig.from_env(env)) as tracker:
        assert tracker.get_run("pipe-9/train").tags == {"best": "yes"}
        assert [r.run_id for r in tracker.list_runs(RunFilter(note_contains="N1"))] == ["pipe-9/train"]
        assert tracker.sinks["firestore"].get("pipe-9/train")["note"] == "n1"
    board = runner.invoke(app, ["runs", "leaderboard", "--backend", "gcp", "--metric", "val_loss", "--ascending"])
    assert board.exit_code == 0 and "pipe-9/train" in board.stdout


def test_stand_ins_that_go_away_mid_run_lose_nothing(standins_available, tmp_path):
    from expforge.standins.bigquery import launch_bigquery_emulator, wait_bigquery_ready
    from expforge.standins.firestore import launch_firestore_emulator
    from expforge.standins.ports import group_members

    data_dir = tmp_path / "bigquery-data"  # persistent, so a restarted emulator still has the early rows
    firestore = launch_firestore_emulator()
    bigquery = launch_bigquery_emulator(data_dir=data_dir)
    restarted = []
    try:
        wait_bigquery_ready(bigquery)
        bigquery.create_datasets(["outage"])
        firestore.wait_ready()
        settings = GcpSettings(
            project=bigquery.project,
            spool_dir=tmp_path / "spool",
            dataset="outage",
            bigquery_endpoint=bigquery.endpoint,
            firestore_emulator_host=firestore.address,
            vertex=False,
            flush_interval_s=3600,
            timeout_s=30,
            flush_attempts=2,
            retry_backoff_s=0.1,
        )
        tracker = GcpTracker(settings)
        with pytest.raises(ExpforgeError) as failure, component_run("train", {"lr": 0.1}, run_id="r1", tracker=tracker):
            tracker.log_metrics("r1", {"loss": 1.0}, step=0)
            tracker.flush()  # delivered while everything is up (and the emulators are warm)
            tracker.settings.__dict__["timeout_s"] = 1.5  # frozen dataclass: shorten waits on dead sockets
            firestore.kill()
            bigquery.kill()
            for step in (1, 2, 3):  # logging goes on while the stand-ins are gone
                tracker.log_metrics("r1", {"loss": 1.0 / (step + 1)}, step=step)
            tracker.log_metrics("r1", {"accuracy": 0.9})
        message = str(failure.value)
        assert "rows could not be delivered" in message and "expforge runs flush-spool" in message
        (kept,) = spool_files(settings.spool_dir)
        assert str(kept) in message
        entries = read_spool(kept)
        assert {e["sink"] for e in entries} == {"bigquery", "firestore"}
        assert sum(e["sink"] == "bigquery" and e["table"] == "metric_points" for e in entries) == 4

        # The stand-ins come back on the same addresses; the spool is resent and removed.
        firestore = launch_firestore_emulator(port=firestore.port)
        restarted.append(firestore)
        bigquery = launch_bigquery_emulator(port=bigquery.port, data_dir=data_dir)
        restarted.append(bigquery)
        wait_bigquery_ready(bigquery)
        firestore.wait_ready()
        delivered, remaining = resend_spool(GcpSettings(**{**settings.__dict__, "timeout_s": 60}), settings.spool_dir)
        assert (delivered, remaining) == (len(entries), 0) and spool_files(settings.spool_dir) == []

        reader = GcpTracker(GcpSettings(**{**settings.__dict__, "spool_dir": tmp_path / "reader"}))
        record = reader.get_run("r1")
        document = reader.sinks["firestore"].get("r1")
        reader.close()
        assert record.state == "SUCCEEDED" and record.metrics == {"accuracy": 0.9}
        assert record.series["loss"] == [(0, 1.0), (1, 0.5), (2, 1 / 3), (3, 0.25)]
        # The Firestore emulator keeps nothing across a restart: the document holds what was resent.
        assert document["state"] == "SUCCEEDED" and document["series"]["loss"] == {"1": 0.5, "2": 1 / 3, "3": 0.25}
    finally:
        for emulator in (firestore, bigquery, *restarted):
            emulator.stop()
    for emulator in (firestore, bigquery, *restarted):  # stopped means the whole group (the JVM too)
        assert group_members(emulator.process.pid) == []


def test_unreachable_store_is_one_line_for_the_cli(tmp_path, monkeypatch):
    from expforge.standins.ports import free_port

    monkeypatch.setenv("EXPFORGE_GCP_PROJECT", "p")
    monkeypatch.setenv("EXPFORGE_BIGQUERY_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("EXPFORGE_TRACKING_SPOOL", str(tmp_path))
    monkeypatch.setenv("EXPFORGE_VERTEX", "off")
    tracker = open_tracker(TrackingConfig.from_env(backend="gcp"), timeout_s=1)
    with pytest.raises(ExpforgeError, match="^BigQuery p.expforge.runs: query failed"):
        tracker.list_runs()
    tracker.close()
    assert not list(Path(tmp_path).iterdir())
