"""`make bench-runner`'s demo part: how long the first `make demo` takes, and its pipeline, written as JSON.

Two figures, both with the real graph of ``mnist-synthetic`` (bootstrap ∥ fonts → Hyperband → evaluate → drift →
register), each task in its image when Docker answers:

* ``pipeline``: the demo's pipeline run cold (no cache), in this process — wall time, every task's duration and
  runtime, the winner and its real-test accuracy. ``serial_task_seconds`` is the sum of the task durations: what
  a runner that executes one task at a time (as ``kfp.local`` does) would need at the least for the same tasks.
  Target: ≤ 3 min on a 2-core machine.
* ``fresh_clone`` (``--fresh-clone``): ``git clone`` of this checkout into a scratch directory, then ``make demo``
  there, timed end to end (its virtualenv, the image check, the pipeline). Target: ≤ 8 min. Docker images are
  content-addressed, so a clone finds the images this machine already built, as a second checkout would.

    python bench/bench_demo.py --output bench/results/demo.json
    python bench/bench_demo.py --fresh-clone --output bench/results/demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from expforge.atomic import staged_file
from expforge.demo import describe_results, run_demo
from expforge.local_runner.progress import PlainProgress

REPO = Path(__file__).resolve().parents[1]
PIPELINE_TARGET_S = 180.0
FRESH_CLONE_TARGET_S = 480.0


def _task_rows(tasks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [
        {
            "task": name,
            "component": task.get("component"),
            "state": task.get("state"),
            "duration_s": task.get("duration_s"),
            "runtime_s": task.get("runtime_s"),
        }
        for name, task in tasks.items()
    ]
    return sorted(rows, key=lambda row: -(row["duration_s"] or 0.0))


def measure_pipeline(root: Path, images: Path | None) -> dict[str, Any]:
    """Run the demo's pipeline cold under ``root`` and report its times and outcome."""
    started = time.perf_counter()
    result = run_demo(
        root=root / "runs",
        output_dir=root / "pipelines",
        images=images,
        use_cache=False,
        progress=PlainProgress(),
    )
    wall = time.perf_counter() - started
    rows = _task_rows(result.tasks)
    outputs = result.pipeline_outputs
    return {
        "state": result.state,
        "wall_seconds": round(wall, 1),
        "target_seconds": PIPELINE_TARGET_S,
        "tasks": len(rows),
        "serial_task_seconds": round(sum(row["duration_s"] or 0.0 for row in rows), 1),
        "real_test_accuracy": outputs.get("accuracy"),
        "real_val_accuracy": outputs.get("val_accuracy"),
        "backend": result.record.get("backend"),
        "summary": describe_results(result, root / "runs"),
        "task_times": rows,
    }


def measure_fresh_clone(scratch: Path) -> dict[str, Any]:
    """``git clone`` this checkout and time ``make demo`` in the clone, end to end."""
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    started = time.perf_counter()
    completed = subprocess.run(["make", "demo"], cwd=clone, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    log = completed.stdout + completed.stderr
    (scratch / "make-demo.log").write_text(log, encoding="utf-8")
    runs = sorted((clone / "runs").glob("*/run.json"))
    pipeline_s = None
    if runs:
        record = json.loads(runs[-1].read_text(encoding="utf-8"))
        if record.get("started") and record.get("finished"):
            span = datetime.fromisoformat(record["finished"]) - datetime.fromisoformat(record["started"])
            pipeline_s = round(span.total_seconds(), 1)
    return {
        "exit_status": completed.returncode,
        "wall_seconds": round(wall, 1),
        "target_seconds": FRESH_CLONE_TARGET_S,
        "pipeline_seconds_from_run_json": pipeline_s,
        "log_tail": log.splitlines()[-25:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "demo.json")
    parser.add_argument("--images", type=Path, default=None, help="Image map (default build/images.json).")
    parser.add_argument("--fresh-clone", action="store_true", help="Also time `make demo` in a fresh clone.")
    parser.add_argument("--skip-pipeline", action="store_true", help="Only the fresh-clone figure.")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "benchmark": "demo",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "load_before": os.getloadavg()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as scratch:
        if not args.skip_pipeline:
            os.chdir(REPO)
            report["pipeline"] = measure_pipeline(Path(scratch), args.images)
        if args.fresh_clone:
            report["fresh_clone"] = measure_fresh_clone(Path(scratch))
    report["machine"]["load_after"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(args.output) as staging:
        staging.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "pipeline"}, indent=2))
    if "pipeline" in report:
        print("\n".join(report["pipeline"]["summary"]))
        print(f"pipeline: {report['pipeline']['wall_seconds']} s ({report['pipeline']['tasks']} tasks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
