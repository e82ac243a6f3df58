"""The Google Cloud stand-ins: each starts on a free port, answers the real client library, and stops cleanly
(its whole process group, including the Firestore emulator's java child: see also the outage test in
test_tracking_gcp.py, which stops and restarts Firestore and BigQuery)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from expforge.errors import ExpforgeError
from expforge.standins.ports import ManagedProcess, free_port, group_members, wait_until_ready


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_stand_in_that_fails_to_start_is_one_error_with_its_log(tmp_path):
    crashing = ManagedProcess(
        "broken", [sys.executable, "-c", "print('bad flag --x'); raise SystemExit(3)"], tmp_path / "b.log"
    )
    with pytest.raises(ExpforgeError, match="broken exited with status 3 while starting") as failure:
        wait_until_ready(crashing, lambda: False, timeout=30)
    assert "bad flag --x" in str(failure.value)
    sleeping = ManagedProcess("sleepy", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "s.log")
    with pytest.raises(ExpforgeError, match="sleepy did not become ready within 1 s"):
        wait_until_ready(sleeping, lambda: False, timeout=1)
    assert not sleeping.alive()


def test_free_ports_are_free():
    ports = {free_port() for _ in range(20)}
    assert len(ports) > 15 and not any(_listening(p) for p in ports)


def test_firestore_and_bigquery_serve_real_clients(gcp_stack):
    from google.cloud import bigquery as bq
    from google.cloud import firestore

    from expforge.standins.bigquery import ensure_duckdb_extensions

    ensure_duckdb_extensions()  # idempotent: the stack installed them already
    emulator, bigquery = gcp_stack.firestore, gcp_stack.bigquery
    assert any("java" in command for _, command in group_members(emulator.process.pid))  # the launcher's child

    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.env()["FIRESTORE_EMULATOR_HOST"]
    try:
        client = firestore.Client(project=gcp_stack.project)
    finally:
        del os.environ["FIRESTORE_EMULATOR_HOST"]
    client.collection("c").document("d").set({"x": 1, "nested": {"y": [1, 2]}}, timeout=60)
    assert client.collection("c").document("d").get().to_dict() == {"x": 1, "nested": {"y": [1, 2]}}
    client.close()

    bigquery.create_datasets(["standins"])
    bq_client = bigquery.client()
    table = bq.Table(
        f"{gcp_stack.project}.standins.t", schema=[bq.SchemaField("name", "STRING"), bq.SchemaField("v", "FLOAT")]
    )
    bq_client.create_table(table, retry=None, exists_ok=True)
    assert bq_client.insert_rows_json(table, [{"name": "a", "v": 1.5}], retry=None) == []
    rows = bq_client.query(f"SELECT name, v FROM `{gcp_stack.project}.standins.t`", retry=None).result()
    assert [tuple(row.values()) for row in rows] == [("a", 1.5)]
    bq_client.close()


def test_fake_gcs_round_trip(standins_available, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from expforge.standins.gcs import start_fake_gcs

    with start_fake_gcs(buckets=["pipeline-root"]) as gcs:
        for key, value in gcs.env().items():  # what a task gets: only the variable, as with real GCS
            monkeypatch.setenv(key, value)
        client = storage.Client(project=gcs.project, credentials=AnonymousCredentials())
        blob = client.bucket("pipeline-root").blob("runs/r1/model.bin")
        blob.upload_from_string(b"\x00weights\xff")
        assert client.bucket("pipeline-root").blob("runs/r1/model.bin").download_as_bytes() == b"\x00weights\xff"
        assert [b.name for b in client.list_blobs("pipeline-root", prefix="runs/")] == ["runs/r1/model.bin"]
        port, pgid = gcs.port, gcs.process.pid
    assert not _listening(port) and group_members(pgid) == []


def test_the_stack_env_points_every_client_at_a_stand_in(gcp_stack):
    env = gcp_stack.env
    for key in (
        "FIRESTORE_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
        "EXPFORGE_BIGQUERY_ENDPOINT",
        "EXPFORGE_VERTEX_ENDPOINT",
    ):
        address = env[key].removeprefix("http://")
        assert _listening(int(address.rsplit(":", 1)[1])), key
    assert "BEGIN CERTIFICATE" in Path(env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"]).read_text()
    assert env["EXPFORGE_TRACKING"] == "gcp" and env["EXPFORGE_GCP_PROJECT"] == gcp_stack.project
    assert env["EXPFORGE_PIPELINE_ROOT"] == f"gs://{gcp_stack.bucket}/pipeline-root"
    assert [b.name for b in gcp_stack.gcs.client().list_buckets()] == [gcp_stack.bucket]
    client = gcp_stack.bigquery.client()
    assert gcp_stack.dataset in [d.dataset_id for d in client.list_datasets(retry=None)]
    client.close()
