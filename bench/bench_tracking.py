"""Tracking overhead per logged metric point: the ``local`` SQLite backend and the ``gcp`` backend against the
local stand-ins (Firestore emulator, bqemulator, the Vertex AI stand-in).

What is timed is what a training loop pays: ``log_metrics(..., step=epoch)`` calls from the first to the last,
plus the final ``end_run`` + ``close`` (for ``gcp`` that is the flush that delivers every buffered row, so the
figure includes delivery, not only buffering). Two shapes: one metric per call (worst case) and ten metrics per
call (a typical epoch: losses, accuracies, learning rate...). ``gcp`` is measured with Vertex AI on and off,
because Vertex writes one TensorBoard request per step. Stand-ins run on this machine, so the ``gcp`` numbers
are a lower bound for the network cost of the real services, and an upper bound for client-side overhead.

    python bench/bench_tracking.py --output bench/results/tracking.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from expforge.atomic import staged_file
from expforge.tracking.base import RunStart
from expforge.tracking.select import TrackingConfig, open_tracker


def _time_run(tracker: Any, run_id: str, steps: int, metrics_per_step: int) -> float:
    """Seconds for ``steps`` log calls of ``metrics_per_step`` points, plus end_run and close (delivery)."""
    tracker.start_run(RunStart(run_id=run_id, experiment="bench", params={"lr": 0.1}))
    tracker.flush()  # the start is not part of the per-point cost
    names = [f"metric_{i}" for i in range(metrics_per_step)]
    started = time.perf_counter()
    for step in range(steps):
        tracker.log_metrics(run_id, {name: 1.0 / (step + 1) for name in names}, step=step)
    tracker.end_run(run_id)
    tracker.close()
    return time.perf_counter() - started


def _measure(make_tracker: Any, label: str, steps: int, repeats: int) -> dict[str, Any]:
    shapes = {}
    for per_step in (1, 10):
        seconds = [
            _time_run(make_tracker(), f"{label}-{per_step}-{r}-{time.time_ns()}", steps, per_step)
            for r in range(repeats)
        ]
        points = steps * per_step
        best = min(seconds)
        shapes[f"{per_step}_metric_per_call"] = {
            "points": points,
            "calls": steps,
            "seconds": [round(s, 4) for s in seconds],
            "us_per_point_best": round(best / points * 1e6, 1),
            "us_per_point_median": round(statistics.median(seconds) / points * 1e6, 1),
        }
    return shapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("bench/results/tracking.json"))
    parser.add_argument("--steps", type=int, default=500, help="log calls per local run")
    parser.add_argument("--gcp-steps", type=int, default=100, help="log calls per gcp run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-gcp", action="store_true", help="only the local backend (no stand-ins)")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {
        "what": "tracking overhead per logged metric point (log_metrics calls + end_run + close/flush)",
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        },
    }
    with tempfile.TemporaryDirectory(prefix="expforge-bench-tracking-") as work:
        db = Path(work) / "runs.sqlite"
        local_config = TrackingConfig(backend="local", db=db)
        results["local"] = _measure(lambda: open_tracker(local_config), "local", args.steps, args.repeats)
        results["local"]["storage"] = f"SQLite WAL on {work} (synchronous=NORMAL, one transaction per call)"
        print(json.dumps({"local": results["local"]}, indent=2), flush=True)

        if not args.skip_gcp:
            from expforge.standins.stack import emulated_gcp_stack

            with emulated_gcp_stack() as stack:
                env = {**stack.env, "EXPFORGE_TRACKING_SPOOL": str(Path(work) / "spool")}
                for vertex in (True, False):
                    config = TrackingConfig.from_env({**env, "EXPFORGE_VERTEX": "on" if vertex else "off"})
                    warm = open_tracker(config)  # first contact pays table creation and JVM warm-up
                    _time_run(warm, f"warm-{vertex}-{time.time_ns()}", 2, 1)
                    key = "gcp_with_vertex" if vertex else "gcp_bigquery_firestore"
                    make = lambda config=config: open_tracker(config)  # noqa: E731
                    results[key] = _measure(make, key, args.gcp_steps, args.repeats)
                    results[key]["batching"] = "rows spooled to disk, sent in batches of 200 and at close"
                    print(json.dumps({key: results[key]}, indent=2), flush=True)
                results["gcp_stand_ins"] = "gcloud Firestore emulator, bqemulator, Vertex gRPC stand-in (127.0.0.1)"

    args.output.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(args.output) as staging:
        staging.write_text(json.dumps(results, indent=2) + "\n")
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
