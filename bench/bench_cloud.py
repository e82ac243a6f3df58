"""Cloud figures on the stand-ins: `expforge bigquery setup` time, what each dashboard view reads for a 100-run
history, and the API calls `submit --wait` makes per minute.

bqemulator reports totalBytesProcessed = 0, so bytes are estimated the way BigQuery bills a query without
partition pruning: every value of every base-table column the view references, at BigQuery's documented data
sizes (STRING/JSON: 2 + UTF-8 bytes, INT64/FLOAT64/TIMESTAMP: 8, BOOL: 1, NULL: 0, ARRAY: its elements).
Rows read are the rows of the base tables the view scans (views reading views count their base tables).

    .venv/bin/python bench/bench_cloud.py --output bench/results/cloud.json
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import cpu_model, write_report  # noqa: E402

PROJECT = "expforge-local"
TRIALS_PER_PIPELINE = 6
PIPELINES = 10  # 10 pipeline runs x (1 pipeline run + 3 tasks + 6 trials) = 100 runs
EPOCHS = 10


def history(emulator: Any, dataset: str, spool: Path) -> int:
    """Write the 100-run history through the real GcpTracker (BigQuery sink only); return the run count."""
    from expforge.tracking.base import RunStart
    from expforge.tracking.gcp import GcpSettings, GcpTracker

    settings = GcpSettings(
        project=PROJECT,
        spool_dir=spool,
        dataset=dataset,
        bigquery_endpoint=emulator.endpoint,
        vertex=False,
        batch_size=5000,
        flush_interval_s=3600,
        timeout_s=60,
    )
    tracker = GcpTracker(settings)
    del tracker.sinks["firestore"]
    runs = 0
    for p in range(PIPELINES):
        parent = f"bench-{p:02d}"
        tracker.start_run(RunStart(parent, experiment="bench", pipeline="mnist-synthetic", step="pipeline"))
        runs += 1
        children = [("bootstrap-mnist", {}), ("render-font-digits", {}), ("evaluate", {})]
        children += [
            (
                f"hyperband-trial-{t}",
                {
                    "trial": {
                        "trial_id": f"b0-c{t:02d}",
                        "config": {
                            "lr": 0.001 * (t + 1),
                            "width": 8 << (t % 3),
                            "dropout": 0.1,
                            "batch_size": 64,
                            "optimizer": "adamw",
                            "weight_decay": 1e-4,
                        },
                    },
                    "bracket": 0,
                    "rung": t % 2,
                    "epochs": EPOCHS,
                },
            )
            for t in range(TRIALS_PER_PIPELINE)
        ]
        for task, params in children:
            run_id = f"{parent}/{task}"
            step = "hyperband-trial" if task.startswith("hyperband-trial") else task
            tracker.start_run(
                RunStart(
                    run_id,
                    experiment="bench",
                    pipeline="mnist-synthetic",
                    step=step,
                    parent_run_id=parent,
                    params=params,
                )
            )
            for epoch in range(EPOCHS):
                tracker.log_metrics(run_id, {"loss": 1.0 / (epoch + 1), "val_accuracy": 0.5 + epoch / 25}, step=epoch)
            tracker.log_metrics(run_id, {"val_accuracy": 0.9})
            tracker.end_run(run_id, "SUCCEEDED")
            runs += 1
        tracker.log_metrics(parent, {"accuracy": 0.9})
        tracker.end_run(parent, "SUCCEEDED")
    tracker.close()
    return runs


def _size(value: Any, kind: str) -> int:
    if value is None:
        return 0
    if isinstance(value, list):
        return sum(_size(item, kind) for item in value)
    if kind in ("STRING", "JSON"):
        return 2 + len(str(value).encode())
    if kind in ("BOOLEAN", "BOOL"):
        return 1
    return 8


def base_columns(view: str) -> dict[str, set[str]]:
    """Base table -> columns a view references, following views it reads (by the names in its SQL)."""
    import sqlglot
    from sqlglot import exp

    from expforge.bigquery.ddl import VIEWS, view_body
    from expforge.tracking.bqrows import table_schema

    _, query = view_body(view, PROJECT, "d")
    tree = sqlglot.parse_one(query, read="bigquery")
    names = {column.name for column in tree.find_all(exp.Column)}
    tables = {table.name for table in tree.find_all(exp.Table)}
    found: dict[str, set[str]] = {}
    for table in tables:
        if table in VIEWS:
            for base, columns in base_columns(table).items():
                found.setdefault(base, set()).update(columns)
        elif table in ("runs", "metric_points"):
            schema = {entry["name"] for entry in table_schema(table)}
            found.setdefault(table, set()).update(names & schema)
    # columns a view reads from a view it selects from resolve to the base columns of that view (above)
    return found


def view_figures(emulator: Any, dataset: str) -> dict[str, Any]:
    from expforge.bigquery.ddl import VIEWS
    from expforge.tracking.bqrows import table_schema

    client = emulator.client()
    tables = {}
    for table in ("runs", "metric_points"):
        rows = [dict(r) for r in client.query(f"SELECT * FROM `{PROJECT}.{dataset}.{table}`", retry=None).result()]
        tables[table] = rows
    kinds = {t: {e["name"]: e["type"] for e in table_schema(t)} for t in tables}
    figures: dict[str, Any] = {}
    for view in VIEWS:
        started = time.perf_counter()
        returned = list(client.query(f"SELECT * FROM `{PROJECT}.{dataset}.{view}`", retry=None).result())
        elapsed = time.perf_counter() - started
        reads = base_columns(view)
        rows_read = sum(len(tables[t]) for t in reads)
        bytes_read = sum(
            _size(row.get(column), kinds[t][column])
            for t, columns in reads.items()
            for row in tables[t]
            for column in columns
        )
        figures[view] = {
            "rows_returned": len(returned),
            "base_tables": {t: {"rows": len(tables[t]), "columns": sorted(c)} for t, c in sorted(reads.items())},
            "rows_read": rows_read,
            "bytes_read_estimated": bytes_read,
            "query_s_on_bqemulator": round(elapsed, 3),
        }
    client.close()
    return figures


def wait_figures(interval_s: float) -> dict[str, Any]:
    """Submit to the Vertex stand-in, then watch the job as `submit --wait` does; count GetPipelineJob calls
    per minute of watching (the job's life: one step per poll)."""
    from google.auth.credentials import AnonymousCredentials

    from expforge.cloud.submit import submit_pipeline
    from expforge.cloud.wait import DEFAULT_POLL_INTERVAL_S, vertex_poller, watch
    from expforge.pipelines.compile import compile_pipeline
    from expforge.standins.tls import process_cert
    from expforge.standins.vertex import start_vertex_standin, trust_certificate
    from expforge.standins.vertex_pipelines import Pipelines
    from expforge.standins.vertex_progress import Life

    trust_certificate(process_cert().cert_path)
    with tempfile.TemporaryDirectory() as tmp, start_vertex_standin() as vertex:
        spec = compile_pipeline("mnist-baseline", Path(tmp) / "m.yaml")
        vertex.service(Pipelines).play(Life())
        submitted = submit_pipeline(
            spec,
            project="bench-project",
            region="us-central1",
            bucket="bench-b",
            parameters={"mnist_source": "bundled"},
            api_endpoint=vertex.endpoint,
        )
        before = len(vertex.requests)
        poll = vertex_poller(
            submitted.job_name, api_endpoint=vertex.endpoint, region="us-central1", credentials=AnonymousCredentials()
        )
        result = watch(poll, interval_s=interval_s, echo=lambda _: None)
        during = [r.method for r in vertex.requests[before:]]
    assert result.final.succeeded
    return {
        "poll_interval_s": interval_s,
        "default_poll_interval_s": DEFAULT_POLL_INTERVAL_S,
        "polls": result.polls,
        "calls_while_watching": sorted(set(during)),
        "api_calls_while_watching": len(during),
        "watch_s": round(result.elapsed_s, 2),
        "api_calls_per_minute_measured": round(len(during) / result.elapsed_s * 60, 1),
        "api_calls_per_minute_at_default_interval": round(60 / DEFAULT_POLL_INTERVAL_S, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("bench/results/cloud.json"))
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args()
    from expforge.bigquery.setup import run_setup
    from expforge.standins.bigquery import start_bigquery_emulator

    with tempfile.TemporaryDirectory() as tmp, start_bigquery_emulator(project=PROJECT) as emulator:
        client = emulator.client()
        first = run_setup(PROJECT, "bench", client=client)
        again = run_setup(PROJECT, "bench", client=client)
        client.close()
        runs = history(emulator, "bench", Path(tmp) / "spool")
        views = view_figures(emulator, "bench")
    report = {
        "benchmark": "cloud",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "machine": {"cpu": cpu_model(), "python": platform.python_version(), "system": platform.platform()},
        "command": "python bench/bench_cloud.py " + " ".join(sys.argv[1:]),
        "bigquery_setup": {
            "statements": len(first.done),
            "first_run_s": round(first.elapsed_s, 2),
            "second_run_s": round(again.elapsed_s, 2),
            "where": "bqemulator (DuckDB) on this machine; real BigQuery runs each DDL statement as a query job",
        },
        "history": {"runs": runs, "pipelines": PIPELINES, "epochs_per_task": EPOCHS},
        "views": views,
        "bytes_note": (
            "bqemulator reports totalBytesProcessed 0; bytes are an upper bound: every value of every base-table "
            "column the view chain references, at BigQuery's data sizes (BigQuery prunes columns a SELECT skips)"
        ),
        "submit_wait": wait_figures(args.poll_interval),
    }
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
