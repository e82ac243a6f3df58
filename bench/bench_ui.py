"""Dashboard figures: ``GET /api/runs`` latency over 10,000 tracked runs in SQLite, the Run page of a 100-task
pipeline rendered in headless Chromium, and page weight.

    python bench/bench_ui.py --output bench/results/ui.json [--runs 10000] [--requests 200]

What is measured, honestly:

* the runs are written through the real :class:`~expforge.tracking.local.LocalTracker` (1 pipeline run per 9 task
  runs, final metrics on all, a 5-epoch series on the training tasks);
* ``expforge ui`` runs as its own process; latency is wall time of HTTP requests from this process, the first
  (cold: the store reads every run) reported apart from the warm ones (p50/p95);
* the 100-task pipeline is compiled with KFP and really run by ``expforge run --backend subprocess``; render time
  is the browser's own navigation timing (``loadEventEnd``), median of 5 loads;
* page weight is what the browser transferred for the page and its assets (plotly.js only on plot pages).

(No ``from __future__ import annotations``: KFP reads the 100-task pipeline's component annotations as types.)
"""

import argparse
import datetime as dt
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_common import cpu_model, write_report  # noqa: E402

from expforge.tracking.base import RunStart  # noqa: E402
from expforge.tracking.local import LocalTracker  # noqa: E402

TASKS_PER_PIPELINE = 9


def populate(db: Path, runs: int) -> float:
    """``runs`` tracked runs; returns the seconds it took."""
    rng = random.Random(0)
    started = time.perf_counter()
    with LocalTracker(db) as tracker:
        for p in range(runs // (TASKS_PER_PIPELINE + 1)):
            parent = f"bench-pipeline-20261201-{p:06d}-{p:06x}"
            params = {"epochs": rng.choice([3, 5, 10]), "lr": round(rng.uniform(1e-4, 1e-2), 5), "seed": p}
            tracker.start_run(RunStart(parent, experiment="bench", pipeline="bench", step="pipeline", params=params))
            for t in range(TASKS_PER_PIPELINE):
                child = f"{parent}/task-{t}"
                tracker.start_run(
                    RunStart(child, experiment="bench", pipeline="bench", step=f"task-{t}", parent_run_id=parent)
                )
                if t == 0:
                    for epoch in range(1, 6):
                        tracker.log_metrics(child, {"val_loss": 1 / epoch, "val_accuracy": 1 - 0.5 / epoch}, step=epoch)
                tracker.log_metrics(child, {"accuracy": rng.random(), "val_accuracy": rng.random()})
                tracker.end_run(child)
            tracker.log_metrics(parent, {"accuracy": rng.random()})
            tracker.end_run(parent, rng.choice(["SUCCEEDED"] * 8 + ["FAILED"]))
    return time.perf_counter() - started


def latency(url: str, requests: int) -> dict[str, Any]:
    def once() -> float:
        begin = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as response:
            response.read()
        return (time.perf_counter() - begin) * 1000

    cold = once()
    warm = sorted(once() for _ in range(requests))
    return {
        "url": url.split("/api/", 1)[1],
        "cold_ms": round(cold, 1),
        "p50_ms": round(statistics.median(warm), 2),
        "p95_ms": round(warm[int(0.95 * (len(warm) - 1))], 2),
        "requests": requests,
    }


def hundred_task_pipeline(path: Path) -> Path:
    """100 tasks in 10 layers of 10; each task of a layer waits on one task of the previous layer."""
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
    def step(value: int) -> int:
        return value + 1

    @dsl.pipeline(name="hundred-tasks")
    def hundred() -> None:
        previous: list[Any] = []
        for layer in range(10):
            current = []
            for i in range(10):
                value = previous[i].output if previous else i
                current.append(step(value=value).set_display_name(f"layer {layer} task {i}").set_caching_options(False))
            previous = current

    compiler.Compiler().compile(hundred, str(path))
    return path


def page_timing(browser: Any, url: str, loads: int = 5) -> dict[str, Any]:
    times, weight = [], 0
    for _ in range(loads):
        browser.get(url)
        timing = browser.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "const r = performance.getEntriesByType('resource');"
            "return [n.loadEventEnd, n.transferSize + r.reduce((s, e) => s + e.transferSize, 0),"
            " n.decodedBodySize + r.reduce((s, e) => s + e.decodedBodySize, 0)];"
        )
        times.append(timing[0])
        weight = timing[2]
    return {
        "render_ms_median": round(statistics.median(times), 1),
        "render_ms": [round(t, 1) for t in times],
        "page_bytes": weight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("bench/results/ui.json"))
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    from ui_runs import browser_or_skip, serve

    report: dict[str, Any] = {
        "benchmark": "ui",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "cpu": cpu_model(),
            "cores": len(__import__("os").sched_getaffinity(0)),
            "python": platform.python_version(),
        },
    }
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        base = Path(tmp)
        root = base / "runs"
        report["populate_s"] = round(populate(root / ".tracking" / "runs.sqlite", args.runs), 1)
        spec = hundred_task_pipeline(base / "hundred.yaml")
        begin = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "expforge",
                "run",
                str(spec),
                "--backend",
                "subprocess",
                "--root",
                str(root),
                "--no-cache",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"the 100-task pipeline failed: {done.stderr[-2000:]}")
        run_id = Path(done.stdout.strip().splitlines()[-1]).name
        report["hundred_task_run_s"] = round(time.perf_counter() - begin, 1)
        with serve(root, base) as server:
            report["tracked_runs"] = len(LocalTracker(root / ".tracking" / "runs.sqlite").list_runs())
            report["api"] = [
                latency(f"{server.url}/api/runs", args.requests),
                latency(f"{server.url}/api/runs?top_level=true&sort=accuracy&state=SUCCEEDED", args.requests),
                latency(
                    f"{server.url}/api/runs?metric=val_accuracy&metric_min=0.5&offset=5000&limit=50", args.requests
                ),
                # the one above lies past its ~4,500 matches (an empty page); this one is a full page
                latency(
                    f"{server.url}/api/runs?metric=val_accuracy&metric_min=0.5&offset=2000&limit=50", args.requests
                ),
            ]
            browser = browser_or_skip()
            try:
                report["pages"] = {
                    "run_100_tasks": page_timing(browser, f"{server.url}/runs/{run_id}"),
                    "runs": page_timing(browser, f"{server.url}/"),
                    "compare": page_timing(
                        browser,
                        f"{server.url}/compare?ids=bench-pipeline-20261201-000000-000000/task-0"
                        "&ids=bench-pipeline-20261201-000001-000001/task-0",
                        loads=3,
                    ),
                }
            finally:
                browser.quit()
    report["targets"] = {"api_runs_p95_ms": 50, "run_page_render_ms": 1000}
    write_report(report, args.output)


if __name__ == "__main__":
    main()
