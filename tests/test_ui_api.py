"""The dashboard's JSON API over HTTP, against a live ``expforge ui`` over real tracked runs."""

from __future__ import annotations

import concurrent.futures
import struct
import urllib.parse
from pathlib import Path

import pytest
from ui_runs import Runs, Server, free_port, serve, session_runs

from expforge.tracking.local import LocalTracker

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return session_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def server(runs: Runs, tmp_path_factory: pytest.TempPathFactory):
    with serve(runs.root, tmp_path_factory.mktemp("ui-api-logs")) as live:
        yield live


def tracked(runs: Runs):
    with LocalTracker(runs.root / ".tracking" / "runs.sqlite") as store:
        return store.list_runs()


def test_health_counts_every_tracked_run(server: Server, runs: Runs) -> None:
    status, body = server.get("/api/health")
    assert status == 200 and body["status"] == "ok" and body["tracking"] == "local"
    assert body["runs"] == len(tracked(runs))


def test_runs_lists_pipeline_runs_with_their_final_metrics(server: Server, runs: Runs) -> None:
    status, body = server.get("/api/runs?top_level=true")
    assert status == 200
    by_id = {r["run_id"]: r for r in body["runs"]}
    assert set(by_id) == {runs.baseline, runs.hyperband} and body["total"] == 2
    baseline = by_id[runs.baseline]
    assert baseline["state"] == "SUCCEEDED" and baseline["pipeline"] == "mnist-baseline"
    assert baseline["metrics"]["accuracy"] == runs.record(runs.baseline)["pipeline_outputs"]["accuracy"]
    assert baseline["params"]["epochs"] == 3 and baseline["duration_s"] > 0
    # newest first by default
    assert [r["run_id"] for r in body["runs"]] == [runs.hyperband, runs.baseline]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("pipeline=mnist-baseline", {"baseline"}),
        ("pipeline=hyperband-digits", {"hyperband"}),
        ("state=SUCCEEDED", {"baseline", "hyperband"}),
        ("state=FAILED", set()),
        ("param=epochs=3", {"baseline"}),
        ("param=epochs=4", set()),
        ("metric=accuracy&metric_min=0", {"baseline"}),
        ("metric=accuracy&metric_min=1.5", set()),
        ("metric=val_accuracy&metric_max=1", {"hyperband"}),
        ("since=2999-01-01", set()),
        ("until=2999-01-01", {"baseline", "hyperband"}),
        ("note=no-such-note-text", set()),
    ],
)
def test_run_filters(server: Server, runs: Runs, query: str, expected: set[str]) -> None:
    status, body = server.get(f"/api/runs?top_level=true&{query}")
    assert status == 200, body
    names = {"baseline": runs.baseline, "hyperband": runs.hyperband}
    assert {r["run_id"] for r in body["runs"]} == {names[e] for e in expected}
    assert body["total"] == len(expected)


def test_task_runs_sort_by_a_metric_and_page(server: Server, runs: Runs) -> None:
    every = [r for r in tracked(runs) if r.metric("val_accuracy") is not None]
    wanted = sorted(every, key=lambda r: -r.metric("val_accuracy"))
    status, first = server.get("/api/runs?sort=val_accuracy&metric=val_accuracy&metric_min=0&limit=2")
    assert status == 200 and first["total"] == len(every) and len(first["runs"]) == 2
    status, rest = server.get("/api/runs?sort=val_accuracy&metric=val_accuracy&metric_min=0&limit=2&offset=2")
    values = [r["metrics"]["val_accuracy"] for r in first["runs"] + rest["runs"]]
    assert values == sorted(values, reverse=True)
    assert values[0] == wanted[0].metric("val_accuracy")
    status, ascending = server.get("/api/runs?sort=val_accuracy&order=asc&metric=val_accuracy&metric_min=0&limit=1")
    assert ascending["runs"][0]["metrics"]["val_accuracy"] == wanted[-1].metric("val_accuracy")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=BOGUS", "state"),
        ("since=yesterday", "since"),
        ("until=2024-13-45", "until"),
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
        ("metric_min=0.5", "metric"),
        ("metric=accuracy&metric_min=high", "metric_min"),
        ("param=epochs", "param"),
        ("tag=novalue", "tag"),
        ("order=sideways", "order"),
        ("top_level=perhaps", "top_level"),
    ],
)
def test_invalid_filters_are_422_naming_the_field(server: Server, query: str, field: str) -> None:
    status, body = server.get(f"/api/runs?{query}")
    assert status == 422, body
    assert body["field"] == field and body["detail"].startswith(f"{field}:")


def test_run_detail_has_provenance_series_children_and_run_json(server: Server, runs: Runs) -> None:
    status, body = server.get(f"/api/runs/{runs.hyperband}")
    assert status == 200
    record = runs.record(runs.hyperband)
    ran = {k for k, t in record["tasks"].items() if not t.get("cached")}
    assert {c["run_id"] for c in body["children"]} == {f"{runs.hyperband}/{k}" for k in ran}
    assert body["run_json"]["tasks"].keys() == record["tasks"].keys()
    assert body["pip_freeze"] and body["python"] and body["image_digests"] and body["device"]
    assert body["parent"] is None
    trial = next(c["run_id"] for c in body["children"] if "/hyperband-trial" in c["run_id"])
    status, child = server.get(f"/api/runs/{trial}")
    assert status == 200 and child["parent"]["run_id"] == runs.hyperband
    assert [step for step, _ in child["series"]["val_loss"]] == sorted(s for s, _ in child["series"]["val_loss"])
    assert child["series"]["val_accuracy"][-1][1] == child["metrics"]["val_accuracy"]


def test_unknown_run_is_404_json(server: Server) -> None:
    for path in ("/api/runs/no-such-run", "/api/runs/no-such-run/status", "/api/runs/no-such-run/artifacts/model"):
        status, body = server.get(path)
        assert status == 404, path
        assert "no-such-run" in body["detail"]


def test_compare_gives_the_union_of_keys_and_each_runs_values(server: Server, runs: Runs) -> None:
    status, body = server.get(f"/api/runs/compare?ids={runs.baseline}&ids={runs.hyperband}")
    assert status == 200 and body["run_ids"] == [runs.baseline, runs.hyperband]
    assert body["params"]["epochs"] == [3, None]
    assert body["params"]["search_space"][0] is None and body["params"]["search_space"][1]
    assert set(body["metrics"]) == {"accuracy", "val_accuracy"}
    # baseline: the sklearn history CSV (4 metrics); hyperband: every trial task's tracked series (4 each)
    trials = [k for k in runs.record(runs.hyperband)["tasks"] if "hyperband-trial" in k]
    sources = {(c["run_id"], c["source"]) for c in body["curves"]}
    assert sources == {(runs.baseline, "train-sklearn")} | {(runs.hyperband, k) for k in trials}
    assert len(body["curves"]) == 4 + 4 * len(trials)
    status, body = server.get(f"/api/runs/compare?ids={runs.baseline}")
    assert status == 422 and body["field"] == "ids"


def test_leaderboard_ranks_by_a_metric_either_way(server: Server, runs: Runs) -> None:
    status, best = server.get("/api/leaderboard?metric=val_accuracy&top_k=3&mode=max")
    assert status == 200 and [e["rank"] for e in best] == [1, 2, 3]
    values = [e["value"] for e in best]
    assert values == sorted(values, reverse=True)
    status, worst = server.get("/api/leaderboard?metric=val_accuracy&top_k=100&mode=min")
    assert [e["value"] for e in worst] == sorted(e["value"] for e in worst)
    assert len(worst) == len([r for r in tracked(runs) if r.metric("val_accuracy") is not None])
    status, body = server.get("/api/leaderboard?metric=val_accuracy&mode=best")
    assert status == 422 and body["field"] == "mode"


def test_patch_sets_the_note_and_merges_tags_and_concurrent_edits_lose_nothing(server: Server, runs: Runs) -> None:
    run = f"{runs.baseline}/evaluate"
    status, body = server.request(
        "PATCH", f"/api/runs/{urllib.parse.quote(run)}", {"note": "first", "tags": {"a": "1"}}
    )
    assert status == 200 and body == {"run_id": run, "note": "first", "tags": {"a": "1"}}
    status, body = server.request("PATCH", f"/api/runs/{run}", {"tags": {"b": "2"}})
    assert body["note"] == "first" and body["tags"] == {"a": "1", "b": "2"}

    def edit(i: int) -> int:
        return server.request("PATCH", f"/api/runs/{run}", {"note": f"note {i}", "tags": {f"t{i}": str(i)}})[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(edit, range(16))) == {200}
    status, body = server.get(f"/api/runs/{run}")
    assert {f"t{i}": str(i) for i in range(16)}.items() <= body["tags"].items()
    assert body["tags"]["a"] == "1" and body["note"] in {f"note {i}" for i in range(16)}
    status, body = server.request("PATCH", f"/api/runs/{run}", {"tags": {"a": ""}})
    assert "a" not in body["tags"]
    status, found = server.get("/api/runs?tag=b=2")
    assert [r["run_id"] for r in found["runs"]] == [run]
    status, body = server.request("PATCH", f"/api/runs/{run}", {})
    assert status == 422 and body["field"] == "body"
    status, body = server.request("PATCH", "/api/runs/no-such-run", {"note": "x"})
    assert status == 404


def test_artifacts_are_served_from_the_run_root_only(server: Server, runs: Runs, tmp_path: Path) -> None:
    task = f"{runs.baseline}/evaluate"
    status, png, headers = server.raw(f"/api/runs/{task}/artifacts/evaluation/confusion_matrix.png")
    assert status == 200 and png.startswith(b"\x89PNG") and headers["content-type"] == "image/png"
    evaluation = Path(runs.record(runs.baseline)["tasks"]["evaluate"]["artifacts"]["evaluation"][0])
    assert png == (evaluation / "confusion_matrix.png").read_bytes()
    status, html, headers = server.raw(f"/api/runs/{task}/artifacts/report")
    assert status == 200 and b"<html" in html.lower()
    assert headers["content-type"].startswith("text/html") and headers["content-security-policy"] == "sandbox"
    status, body = server.get(f"/api/runs/{task}/artifacts/evaluation/metrics.json")
    assert body["accuracy"] == runs.record(runs.baseline)["pipeline_outputs"]["accuracy"]

    secret = tmp_path / "secret.txt"
    secret.write_text("outside the root")
    (evaluation / "leak.txt").symlink_to(secret)
    (evaluation / "leak-dir").symlink_to(tmp_path, target_is_directory=True)
    try:
        for sub in ("leak.txt", "leak-dir/secret.txt", "..%2F..%2Frun.json", "%2Fetc%2Fpasswd", "../../run.json"):
            status, body, _ = server.raw(f"/api/runs/{task}/artifacts/evaluation/{sub}")
            assert status == 404, sub
            assert b"outside the root" not in body and b"root:" not in body
        status, _, _ = server.raw(f"/api/runs/{task}/artifacts/evaluation")
        assert status == 404  # a directory is not a file
    finally:
        (evaluation / "leak.txt").unlink()
        (evaluation / "leak-dir").unlink()


def test_task_detail_and_log(server: Server, runs: Runs) -> None:
    status, body = server.get(f"/api/runs/{runs.baseline}/tasks/evaluate")
    assert status == 200 and body["task"]["state"] == "SUCCEEDED"
    assert body["output_parameters"]["accuracy"] == runs.record(runs.baseline)["pipeline_outputs"]["accuracy"]
    assert body["metrics"]["accuracy"] == body["output_parameters"]["accuracy"]
    names = {f["name"] for o in body["outputs"] for f in o["files"]}
    assert {"confusion_matrix.png", "metrics.json", "report.md"} <= names
    log = Path(runs.record(runs.baseline)["tasks"]["evaluate"]["log"]).read_text()
    status, text = server.get(f"/api/runs/{runs.baseline}/tasks/evaluate/log")
    assert status == 200 and text == log and "evaluate" in text
    status, body = server.get(f"/api/runs/{runs.baseline}/tasks/no-such-task")
    assert status == 404 and "no-such-task" in body["detail"]


def test_the_trainer_task_lists_its_curves_png_and_serves_it(server: Server, runs: Runs) -> None:
    status, body = server.get(f"/api/runs/{runs.baseline}/tasks/train-sklearn")
    assert status == 200
    files = {(o["name"], f["path"]): f["kind"] for o in body["outputs"] for f in o["files"]}
    assert files[("tensorboard", "curves.png")] == "image"
    status, png, headers = server.raw(f"/api/runs/{runs.baseline}/train-sklearn/artifacts/tensorboard/curves.png")
    assert status == 200 and headers["content-type"] == "image/png"
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (800, 320)


def test_hyperband_view_has_every_trial_and_one_axis_per_hyperparameter(server: Server, runs: Runs) -> None:
    status, body = server.get(f"/api/runs/{runs.hyperband}/hyperband")
    assert status == 200
    records = [
        t["parameters"]["record"]
        for t in runs.record(runs.hyperband)["tasks"].values()
        if "record" in t.get("parameters", {})
    ]
    ids = {r["trial_id"] if "trial_id" in r else r["item"]["trial_id"] for r in records}
    configs = [r["config"] if "config" in r else r["item"]["config"] for r in records]
    assert body["trials"] == len(ids) and body["rungs_run"] == len(records)
    labels = [d["label"] for d in body["parallel_coordinates"]["dimensions"]]
    assert labels == sorted({k for c in configs for k in c}) + ["val_accuracy"]
    assert {line["trial_id"] for line in body["rung_chart"]} == ids
    promoted = [line for line in body["rung_chart"] if line["promoted"]]
    assert promoted and all(line["epochs"] == [1, 2] for line in promoted)  # resumed at epoch 2, not restarted
    assert [e["rank"] for e in body["leaderboard"]] == list(range(1, len(ids) + 1))
    status, body = server.get(f"/api/runs/{runs.baseline}/hyperband")
    assert status == 200 and body["trials"] == 0


def test_registry_lists_the_registered_model(server: Server, runs: Runs) -> None:
    status, body = server.get("/api/registry")
    assert status == 200
    (model,) = [m for m in body["models"] if m["name"] == "ui-digits"]
    assert model["aliases"]["champion"] == "1"  # the first version of a model is its champion
    version = model["versions"][0]
    assert version["evaluation"]["accuracy"] == runs.record(runs.baseline)["pipeline_outputs"]["accuracy"]


def test_openapi_documents_the_api(server: Server) -> None:
    status, spec = server.get("/openapi.json")
    assert status == 200
    paths = set(spec["paths"])
    assert {"/api/runs", "/api/runs/compare", "/api/leaderboard", "/api/health", "/api/runs/{run_id}"} <= paths
    assert "patch" in spec["paths"]["/api/runs/{run_id}"]
    status, page = server.get("/docs")
    assert status == 200 and "swagger" in page.lower()


def test_unreachable_bigquery_is_a_banner_and_503_not_a_traceback(runs: Runs, tmp_path: Path) -> None:
    env = {
        "EXPFORGE_GCP_PROJECT": "expforge-test",
        "EXPFORGE_BIGQUERY_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{free_port()}",
        "EXPFORGE_VERTEX": "off",
        "EXPFORGE_TRACKING_SPOOL": str(tmp_path / "spool"),
    }
    with serve(runs.root, tmp_path, "--tracking", "gcp", env=env) as live:
        status, body = live.get("/api/health")
        assert status == 503 and body["status"] == "unavailable" and "gcp tracking" in body["detail"]
        status, body = live.get("/api/runs")
        assert status == 503 and "gcp tracking" in body["detail"]
        status, page = live.get("/")
        assert status == 200 and 'class="banner"' in page and "gcp tracking" in page
        assert "Traceback" not in page
        # run.json needs no tracking backend: the Run page still shows the graph, under the banner
        status, page = live.get(f"/runs/{runs.baseline}")
        assert status == 200 and 'class="banner"' in page and 'data-key="evaluate"' in page
    assert "Traceback" not in live.log.read_text()


def test_ui_refuses_a_missing_root(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "expforge", "ui", "--root", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"expforge: error: --root: {tmp_path / 'nope'} is not a directory (run a pipeline first, or pass --root)"
    ]


def test_run_page_names_the_tensorboard_command_only_for_runs_with_event_files(server: Server, runs: Runs) -> None:
    record = runs.record(runs.baseline)
    event_dirs = [
        Path(uris[0]) for t in record["tasks"].values() for n, uris in t["artifacts"].items() if n == "tensorboard"
    ]
    assert event_dirs and any(d.is_dir() and any(d.iterdir()) for d in event_dirs)  # train-sklearn wrote events
    status, html, _ = server.raw(f"/runs/{runs.baseline}")
    assert status == 200
    assert f"expforge tensorboard --root {runs.root} --run {runs.baseline}".encode() in html
    # A task's own run (no child tasks in a run.json of its own) has nothing to serve.
    status, html, _ = server.raw(f"/runs/{runs.baseline}/evaluate")
    assert status == 200 and b'id="tensorboard"' not in html
